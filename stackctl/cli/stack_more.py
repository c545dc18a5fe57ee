"""More container verbs scoped to a stack, as ``docker compose`` has them: ``kill``, ``rm``,
``pause``/``unpause``, ``port``, ``images``, ``wait`` (``create`` and ``build`` are in
:mod:`stackctl.cli.stack_scoped_more`, on top of ``up`` and the builder).

Plain functions, as in :mod:`stackctl.cli.stack_verbs`: they ask the agent what belongs to the
stack (``stack.ps``) and act on it. What the controller must know goes through the agent —
``kill`` (``stack.kill``) and ``rm`` (``stack.rm``) mark the services stopped by the user, as
``stop`` does, so the reconcile loop does not heal them straight back. ``pause``/``unpause``
act on the runtime directly (a paused container counts as running: nothing heals it); a
container on another node of the cluster is reached over ssh, as ``exec`` and ``top`` do.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from stackctl.cli.stack_options import StackArgs
from stackctl.cli.stack_verbs import _agent, _name, containers, parse_target, require_deployed
from stackctl.errors import StackctlError, UsageError


def _oneoff(c: dict[str, Any]) -> bool:
    return (c.get("labels") or {}).get("com.stackctl.oneoff") == "true"


def _stream(client, verb: str, name: str, services: Sequence[str], **params: Any) -> None:
    from stackctl.cli.stack_common import run_stream

    run_stream(client, f"stack.{verb}", {"name": name, "services": list(services), **params},
               "text", title=f"{verb.capitalize()} {name}", stack=name,
               services=tuple(services))


def stack_kill(stack: StackArgs, services: Sequence[str], *, signal: str = "SIGKILL") -> None:
    """``kill -f FILE [-s SIGNAL] [SERVICE...]``: signal the services' running containers
    (through the agent, on whichever node runs them)."""
    name = _name(stack)
    sig = signal.upper()
    if not sig.isdigit() and not sig.startswith("SIG"):
        sig = "SIG" + sig
    with _agent() as client:
        _stream(client, "kill", name, services, signal=sig)


def stack_rm(stack: StackArgs, services: Sequence[str], *, force: bool = False,
             stop: bool = False, volumes: bool = False) -> None:
    """``rm -f FILE [-f] [-s] [-v] [SERVICE...]``: remove the services' stopped containers
    (``-s``: stop them first); asks first unless ``-f``, as Compose does."""
    name = _name(stack)
    with _agent() as client:
        if stop:
            _stream(client, "stop", name, services, timeout=None)
        found = [c for c in containers(client, name, services, all_=True)
                 if c.get("state") not in ("running", "paused", "restarting") and not _oneoff(c)]
        if not found:
            click.echo("No stopped containers", err=True)
            return
        msg = "Going to remove " + ", ".join(c.get("name", "") for c in found)
        if force:
            click.echo(msg)  # as Compose: the list on stdout, then the removal
        elif not click.confirm(msg, default=False, err=True):
            return
        _stream(client, "rm", name, services, volumes=volumes)


def _pause_one(c: dict[str, Any], verb: str) -> bool:
    """Pause or unpause one container, here or on its node; whether it changed."""
    from stackctl.cli.remote import remote_node, ssh_argv

    where = remote_node(c.get("node"))
    if where is not None:
        import subprocess

        return subprocess.run(ssh_argv(where, [verb, c["id"]]), capture_output=True).returncode == 0
    from stackctl.cli.common import manager
    from stackctl.errors import ConflictError, NotFoundError
    from stackctl.runtime import container_ops

    try:
        getattr(container_ops, verb)(manager(), c["id"])
    except (ConflictError, NotFoundError):
        return False  # not running (pause) / not paused (unpause), or gone meanwhile
    return True


def stack_pause(stack: StackArgs, services: Sequence[str], *, verb: str = "pause") -> None:
    """``pause|unpause -f FILE [SERVICE...]``: freeze (thaw) the services' running
    containers; one ``Container NAME  Paused`` line per container on stderr, as Compose."""
    name = _name(stack)
    with _agent() as client:
        found = [c for c in containers(client, name, services) if not _oneoff(c)]
        if not found and not containers(client, name, services, all_=True):
            require_deployed(client, name)
    done = "Paused" if verb == "pause" else "Unpaused"
    for c in found:
        if _pause_one(c, verb):
            click.echo(f" Container {c.get('name', c['id'][:12])}  {done}", err=True)


def published(ports: Any, target: int, proto: str) -> str | None:
    """``HOST_IP:PORT`` a container's ``target/proto`` is published on (pure), from the port
    list the agent reports (``stack.ps``), or None."""
    if isinstance(ports, str):  # the PORTS column: "127.0.0.1:8080->80/tcp, 53/udp"
        for entry in ports.split(","):
            host, arrow, inside = entry.strip().partition("->")
            if arrow and inside == f"{target}/{proto}":
                return host
        return None
    if isinstance(ports, dict):  # Docker's NetworkSettings.Ports form
        for b in ports.get(f"{target}/{proto}") or []:
            return f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}"
        return None
    for p in ports or []:
        if not isinstance(p, dict):
            continue
        t = p.get("target") or p.get("container_port") or p.get("port")
        pub = p.get("published") or p.get("host_port")
        if str(t) == str(target) and (p.get("protocol") or "tcp") == proto and pub:
            return f"{p.get('host_ip') or p.get('ip') or '0.0.0.0'}:{pub}"
    return None


def stack_port(stack: StackArgs, service: str, private_port: str, *, index: int = 1,
               protocol: str = "tcp") -> None:
    """``port -f FILE SERVICE PRIVATE_PORT [--index N] [--protocol P]``: the public
    ``HOST_IP:PORT`` of that port of slot N of the service (Compose's output: one line)."""
    from stackctl.cli.stack_verbs import resolve

    port, _, proto = private_port.partition("/")
    proto = proto or protocol
    if not port.isdigit() or proto not in ("tcp", "udp", "sctp"):
        raise UsageError(f"invalid port {private_port!r}: PRIVATE_PORT is a number, "
                         "optionally /tcp, /udp or /sctp")
    svc, slot = parse_target(service)
    target = svc if "." in service else f"{svc}.{index}"
    name = _name(stack)
    with _agent() as client:
        c = resolve(client, name, target)
    where = published(c.get("ports"), int(port), proto)
    if where is None:
        raise StackctlError(f"no port {port}/{proto} for container {c.get('name')}: "
                            "it is not published")
    click.echo(where)


IMAGES_HEADERS = ("CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE")


def split_ref(ref: str) -> tuple[str, str]:
    """``busybox:1.36`` -> (busybox, 1.36); a port in the registry is not a tag (pure)."""
    if "@" in ref:
        return ref.split("@", 1)[0], "<none>"
    repo, colon, tag = ref.rpartition(":")
    if colon and "/" not in tag:
        return repo, tag
    return ref, "latest"


def stack_images(stack: StackArgs, services: Sequence[str], *, quiet: bool = False,
                 fmt: str = "table") -> None:
    """``images -f FILE [-q] [--format table|json] [SERVICE...]``: the image of each of the
    stack's containers, as ``docker compose images`` lists them."""
    from stackctl.cli.format import table
    from stackctl.paths import default_paths
    from stackctl.runtime.images import view
    from stackctl.runtime.images.store import ImageStore

    name = _name(stack)
    with _agent() as client:
        found = containers(client, name, services, all_=True)
        if not found:
            require_deployed(client, name)
    store = ImageStore(default_paths().images)
    rows = []
    for c in found:
        ref = c.get("image") or ""
        repo, tag = split_ref(ref)
        try:
            img = store.resolve(ref)
            shown = view.ls_rows([img])[0]
            image_id, size, full = shown["ID"], shown["Size"], img.id
        except StackctlError:  # an image on another node only
            image_id = size = full = ""
        rows.append({"ContainerName": c.get("name", ""), "Repository": repo, "Tag": tag,
                     "ID": full, "ShortID": image_id, "Size": size})
    if quiet:
        for r in dict.fromkeys(r["ID"] for r in rows if r["ID"]):
            click.echo(r)
    elif fmt == "json":
        click.echo(json.dumps([{k: r[k] for k in ("ContainerName", "Repository", "Tag", "ID",
                                                   "Size")} for r in rows]))
    else:
        click.echo(table(IMAGES_HEADERS, [[r["ContainerName"], r["Repository"], r["Tag"],
                                           r["ShortID"], r["Size"]] for r in rows]))


def stack_wait(stack: StackArgs, services: Sequence[str], *, down_project: bool = False) -> None:
    """``wait -f FILE SERVICE...``: block until every container of the services (one-off
    ones too) has stopped, as ``docker compose wait``: one ``container "ID" exited with
    status code N`` line per container as it stops; the command exits with the status code
    of the last one to stop. ``--down-project`` then runs ``down --remove-orphans``."""
    import threading

    name = _name(stack)
    with _agent() as client:
        found = containers(client, name, services, all_=True)
        if not found:
            raise StackctlError(f'no containers for project "{name}"')
    lock = threading.Lock()
    last = [0]

    def one(c: dict[str, Any]) -> None:
        code = _wait_one(c)
        with lock:
            last[0] = code
            click.echo(f'container "{c["id"]}" exited with status code {code}')
            sys.stdout.flush()

    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in found]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    if down_project:
        with _agent() as client:
            from stackctl.cli.stack_common import run_stream

            run_stream(client, "stack.remove", {"name": name, "volumes": False,
                                                "remove_orphans": True}, "text",
                       title=f"Removing {name}", stack=name)
    raise SystemExit(last[0])


def _wait_one(c: dict[str, Any]) -> int:
    """The exit code of one container once it has stopped (here, or on its node over ssh)."""
    from stackctl.cli.remote import remote_node, ssh_argv

    where = remote_node(c.get("node"))
    if where is not None:
        import subprocess

        out = subprocess.run(ssh_argv(where, ["wait", c["id"]]), capture_output=True, text=True)
        text = out.stdout.strip()
        return int(text) if out.returncode == 0 and text.isdigit() else 1
    from stackctl.cli.common import manager

    return manager().wait(c["id"])


# --- images of the stack: pull, push, build ------------------------------------------------

def _images_of(project: Any, services: Sequence[str], *, buildable: bool) -> dict[str, list[str]]:
    """image -> the services that use it, for the named services (default: all). Services
    without ``image:`` are left out; with ``buildable=False`` so are those with ``build:``."""
    from stackctl.cli.stack_common import check_services

    check_services(project, tuple(services))
    out: dict[str, list[str]] = {}
    for name, svc in sorted(project.stack.services.items()):
        if services and name not in services:
            continue
        if not svc.image or (svc.build is not None and not buildable):
            continue
        out.setdefault(svc.image, []).append(name)
    return out


def _note(service: str, what: str) -> None:
    click.echo(f" Service {service}  {what}", err=True)


def _with_deps(project: Any, services: Sequence[str], include_deps: bool) -> Sequence[str]:
    if not include_deps or not services:
        return services
    from stackctl.cli.stack_common import check_services

    check_services(project, tuple(services))
    return sorted(project.graph.with_dependencies(services))


def stack_pull(stack: StackArgs, services: Sequence[str], *, quiet: bool = False,
               ignore_failures: bool = False, ignore_buildable: bool = False,
               include_deps: bool = False, policy: str = "always") -> None:
    """``pull -f FILE [SERVICE...]``: pull the services' images into this node's store
    (the registry client, docs/registry.md), each image once (``--policy missing``: only
    those the store does not have). Exit 1 if one fails (unless ``--ignore-pull-failures``;
    a service that can be built only warns, as Compose)."""
    from stackctl.runtime.images.registry import progress as P
    from stackctl.runtime.images.registry.pull import pull as do_pull

    project = stack.load_project()
    services = _with_deps(project, services, include_deps)
    store = _store()
    failed = []
    for image, users in _images_of(project, services, buildable=not ignore_buildable).items():
        if policy == "missing" and _present(store, image):
            if not quiet:
                for s in users:
                    _note(s, "Skipped (image is already present locally)")
            continue
        prog = P.for_terminal(True)
        try:
            do_pull(store, image, progress=prog)
        except StackctlError as exc:
            buildable = all(project.stack.services[s].build is not None for s in users)
            if not (ignore_failures or buildable):
                failed.append(f"{', '.join(users)}: {exc.message}")
            if not quiet:
                for s in users:
                    _note(s, f"Error: {exc.message}" if not buildable else
                          f"Warning: {exc.message} (it can be built: `stackctl build`)")
            continue
        finally:
            prog.close()
        if not quiet:
            for s in users:
                _note(s, "Pulled")
    if failed:
        raise StackctlError("pull failed: " + "; ".join(failed))


def _present(store: Any, image: str) -> bool:
    try:
        store.resolve(image)
    except StackctlError:
        return False
    return True


def stack_push(stack: StackArgs, services: Sequence[str], *, quiet: bool = False,
               ignore_failures: bool = False, include_deps: bool = False) -> None:
    """``push -f FILE [SERVICE...]``: push the images of the services that have both
    ``build:`` and ``image:`` (what Compose pushes; the others are skipped)."""
    from stackctl.runtime.images.registry import progress as P
    from stackctl.runtime.images.registry.push import push as do_push

    project = stack.load_project()
    services = _with_deps(project, services, include_deps)
    store = _store()
    failed = []
    for image, users in _images_of(project, services, buildable=True).items():
        if all(project.stack.services[s].build is None for s in users):
            if not quiet:
                for s in users:
                    _note(s, "Skipped (no build: section)")
            continue
        prog = P.for_terminal(True)
        try:
            do_push(store, image, progress=prog)
        except StackctlError as exc:
            if not ignore_failures:
                failed.append(f"{', '.join(users)}: {exc.message}")
            if not quiet:
                for s in users:
                    _note(s, f"Error: {exc.message}")
            continue
        finally:
            prog.close()
        if not quiet:
            for s in users:
                _note(s, "Pushed")
    if failed:
        raise StackctlError("push failed: " + "; ".join(failed))


def stack_build(stack: StackArgs, services: Sequence[str], *, quiet: bool = False) -> None:
    """``build -f FILE [SERVICE...]``: build the services that have ``build:`` on this node
    (as ``up --build`` does: stackctl/cli/stack_build.py)."""
    from stackctl.cli.stack_build import build_services
    from stackctl.cli.stack_common import check_services

    project = stack.load_project()
    check_services(project, tuple(services))
    if not any(svc.build is not None for n, svc in project.stack.services.items()
               if not services or n in services):
        click.echo("No services to build", err=True)
        return
    build_services(project, tuple(services), "text")


def _store():
    from stackctl.paths import default_paths
    from stackctl.runtime.images.store import ImageStore

    return ImageStore(default_paths().images)


def stack_cp(stack: StackArgs, src: str, dest: str, *, index: int = 1, all_: bool = False,
             archive: bool = False, follow_link: bool = False, quiet: bool = False) -> None:
    """``cp -f FILE SERVICE:SRC DEST`` / ``cp -f FILE SRC SERVICE:DEST``: ``stackctl cp``
    with the service's container (slot ``--index``, default 1; ``--all``: every container
    of the service, for a copy into them) in place of SERVICE."""
    from stackctl.cli import container_extra_cmd as X
    from stackctl.cli.remote import remote_node
    from stackctl.cli.stack_verbs import resolve

    s, d = X._split_container_path(src), X._split_container_path(dest)
    if (s is None) == (d is None):
        raise UsageError("copying between containers is not supported" if s else
                         "must specify at least one service (SERVICE:PATH)",
                         hint="stackctl cp -f FILE SERVICE:SRC_PATH DEST_PATH, or "
                              "SRC_PATH SERVICE:DEST_PATH")
    service, path = s or d
    if all_ and s is not None:
        raise UsageError("--all copies into the containers of a service, not out of them")
    name = _name(stack)
    with _agent() as client:
        if all_:
            found = [c for c in containers(client, name, [service], all_=True)
                     if not _oneoff(c)]
            if not found:
                resolve(client, name, service, running=False)  # the error that says why
        else:
            svc, slot = parse_target(service)
            found = [resolve(client, name, service if "." in service else f"{svc}.{index}",
                             running=False)]
    from stackctl.cli import remote

    spooled = None  # the archive of SRC made for one node serves the next (--all)
    try:
        for c in found:
            there = remote_node(c.get("node"))
            if there is not None:  # on another node: a tar over ssh (stackctl/cli/remote.py)
                label = f"{c.get('name') or c['id'][:12]} on node {c.get('node')}"
                if s is not None:
                    remote.copy_from(there, label, c["id"], path, dest, follow_link=follow_link,
                                     quiet=quiet)
                else:
                    spooled = remote.copy_to(there, label, c["id"], path, src, archive=archive,
                                             follow_link=follow_link, quiet=quiet,
                                             name=c.get("name") or "", spooled=spooled)
                continue
            where = f"{c['id']}:{path}"
            X.cp.callback(archive=archive, follow_link=follow_link, quiet=quiet,
                          src=where if s is not None else src,
                          dest=where if d is not None else dest)
    finally:
        if spooled is not None:
            spooled.close()
