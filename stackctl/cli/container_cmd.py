"""The Docker-like container verbs: run, ps, logs, exec, stop, start, restart, kill, rm, top,
inspect, wait, stats, and ``container <verb>`` as their long form.

Thin: parse flags, call :class:`~stackctl.runtime.manager.ContainerManager`, print Docker's
output shapes (see :mod:`stackctl.cli.format`). Imports stay light; ``run`` pays only for what
it uses. Exit codes follow Docker: 125 when stackctl fails before the container starts, 126 /
127 when its command cannot be invoked / is not found, else the container's own exit code.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from stackctl.cli.common import for_each, manager, print_pruned, read_env_files
from stackctl.cli.run_cmd import (  # the run path, click-free (see its docstring)
    RUN_OPTIONS,
    _create,
    _run_attached,
    _waiter,
    _write,
    run_container,
)
from stackctl.errors import NotFoundError, StackctlError, UsageError

_NOHELP_H = {"help_option_names": ["--help"]}  # -h is --hostname for run/create, as in docker


# --- run / create -------------------------------------------------------------------------

_CLICK_TYPES = {"int": int, "float": float}


def _run_options(f):
    """The options of run/create, from the table the click-free parser reads too."""
    for decls, kind, default, help_ in reversed(RUN_OPTIONS):
        kwargs: dict[str, Any] = {"help": help_}
        if kind == "flag":
            kwargs["is_flag"] = True
        elif kind == "multi":
            kwargs["multiple"] = True
        elif kind == "path_multi":
            kwargs.update(multiple=True, type=click.Path(dir_okay=False))
        else:
            kwargs["default"] = default
            if kind in _CLICK_TYPES:
                kwargs["type"] = _CLICK_TYPES[kind]
            if default:
                kwargs["show_default"] = True
        f = click.option(*decls, **kwargs)(f)
    return f


@click.command(context_settings={**_NOHELP_H, "allow_interspersed_args": False})
@_run_options
@click.option("-d", "--detach", is_flag=True, help="Run container in background and print container ID.")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Proxy received signals to the process.")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(image: str, command: tuple[str, ...], detach: bool, sig_proxy: bool, **kw) -> None:
    """Create and run a new container from an image."""
    run_container(image, command, detach, sig_proxy, **kw)


@click.command(name="create", context_settings={**_NOHELP_H, "allow_interspersed_args": False})
@_run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def create(image: str, command: tuple[str, ...], **kw) -> None:
    """Create a new container (without starting it)."""
    rec = _create(manager(), image, command, kw)
    click.echo(rec.id)


# --- ps -----------------------------------------------------------------------------------

@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running).")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs.")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container (includes all states).")
@click.option("-n", "--last", type=int, default=-1, help="Show n last created containers (includes all states).")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (status=, name=, label=, id=, ancestor=, exited=, volume=).")
@click.option("--format", "fmt", default="", help="table, json, or a Go-like template ({{.Names}}).")
@click.option("-s", "--size", is_flag=True, hidden=True)
def ps(all_: bool, quiet: bool, latest: bool, last: int, no_trunc: bool, filters, fmt: str, size: bool) -> None:
    """List containers."""
    from stackctl.cli import format as F
    from stackctl.runtime.records import parse_filters

    mgr = manager()
    n = 1 if latest else (last if last >= 0 else None)
    recs = mgr.list(all=all_, filters=parse_filters(filters), last=n)
    now = time.time_ns()
    rows = []
    for r in recs:
        row = F.container_row(r.spec, r.state, now, trunc=not no_trunc)
        settings = r.meta.get("NetworkSettings")
        if settings:
            row["Networks"] = ",".join(settings.get("Networks") or {})
            row["Ports"] = F.ports_column(settings) if r.state.status == "running" else ""
        rows.append(row)
    if quiet:
        for r in rows:
            click.echo(r["ID"])
        return
    _print_rows(rows, fmt, F.ps_table)


def _print_rows(rows: list[dict[str, Any]], fmt: str, table_fn) -> None:
    from stackctl.cli import format as F

    if fmt in ("", "table"):
        click.echo(table_fn(rows))
    elif fmt == "json":
        if rows:
            click.echo(F.to_json_lines(rows))
    else:
        template = F.unescape_template(fmt)
        if template.startswith("table "):
            import re

            cols = [c.strip() for c in template[len("table "):].split("\t")]
            heads = [re.sub(r"\{\{\s*(?:json\s+)?\.?([\w.]*)\s*\}\}", lambda m: _header(m.group(1)), c)
                     for c in cols]
            click.echo(F.table(heads, [[F.render_template(c, r) for c in cols] for r in rows]))
            return
        for r in rows:
            click.echo(F.render_template(template, r))


_HEADERS = {"ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedAt": "CREATED AT", "Names": "NAMES",
            "LocalVolumes": "LOCAL VOLUMES", "Name": "NAME", "CPUPerc": "CPU %", "MemPerc": "MEM %",
            "MemUsage": "MEM USAGE / LIMIT", "PIDs": "PIDS", "Container": "CONTAINER"}


def _header(field: str) -> str:
    return _HEADERS.get(field, field.upper())


# --- logs ---------------------------------------------------------------------------------

@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end of the logs.")
@click.option("--since", default=None, help="Show logs since a timestamp (2013-01-02T13:23:37Z) or relative (42m).")
@click.option("--until", default=None, help="Show logs before a timestamp or relative time.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--details", is_flag=True, hidden=True)
@click.argument("container")
def logs(follow: bool, tail: str, since: str | None, until: str | None, timestamps: bool, details: bool,
         container: str) -> None:
    """Fetch the logs of a container."""
    from stackctl.runtime import logs as L

    mgr = manager()
    rec = mgr.get(container)
    now = time.time_ns()
    offset_s = -time.altzone if time.daylight and time.localtime().tm_isdst else -time.timezone
    since_ns = L.parse_time_arg(since, now, "--since", offset_s) if since else None
    until_ns = L.parse_time_arg(until, now, "--until", offset_s) if until else None
    path = mgr.log_path(rec.id)
    entries, offset = L.read_log(path, tail=L.parse_tail(tail), since_ns=since_ns, until_ns=until_ns)
    for e in entries:
        _write(e.stream, L.render(e, timestamps))
    if follow and rec.state.status == "running" and (until_ns is None or until_ns > now):
        done = _waiter(mgr, rec.id)
        for e in L.follow_log(path, offset, done.wait, until_ns=until_ns):
            if since_ns is None or e.time_ns >= since_ns:
                _write(e.stream, L.render(e, timestamps))


# --- exec ---------------------------------------------------------------------------------

@click.command(name="exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background.")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-e", "--env", multiple=True, help="Set environment variables.")
@click.option("--env-file", multiple=True, type=click.Path(dir_okay=False), help="Read in a file of environment variables.")
@click.option("-w", "--workdir", default="", help="Working directory inside the container.")
@click.option("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>]).")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(detach: bool, interactive: bool, tty: bool, env, env_file, workdir: str, user: str, privileged: bool,
          container: str, command: tuple[str, ...]) -> None:
    """Run a command in a running container."""
    from stackctl.runtime.imageconfig import resolve_env

    mgr = manager()
    rec = mgr.get(container)
    if rec.state.status != "running":
        raise StackctlError(f"container {container} is not running")
    if rec.state.paused:
        raise StackctlError(f"container {container} is paused, unpause the container before exec")
    if workdir and not workdir.startswith("/"):
        raise UsageError(f"the working directory {workdir!r} is invalid: it must be an absolute path")
    environ = resolve_env(read_env_files(env_file) + list(env), os.environ)
    args = dict(env=environ, cwd=workdir, user=user, tty=tty and not detach, stdin=interactive and not detach,
                privileged=privileged)
    if detach:
        _exec_detached(mgr, rec.id, list(command), args)
        return
    raise SystemExit(_exec(mgr, rec.id, list(command), args))


def _exec_exit_code(exc: StackctlError) -> int:
    code = getattr(exc, "container_exit_code", 126)
    return code if code in (1, 126, 127) else 126


def _exec(mgr, cid: str, argv: list[str], args: dict[str, Any]) -> int:
    """The command's exit code; Docker's codes when it cannot run: 126 not executable (or
    another setup failure, e.g. an unknown user), 127 not found, 1 when the container is not
    running."""
    from stackctl.runtime.containers.exec import ExecError, exec_in_container

    try:
        return exec_in_container(mgr.paths, cid, argv, **args)
    except ExecError as exc:
        exc.exit_code = _exec_exit_code(exc)
        raise


def _exec_detached(mgr, cid: str, argv: list[str], args: dict[str, Any]) -> None:
    """``exec -d``: a detached process (own session, stdio on /dev/null) runs the command; we
    wait only until it has started, so ``exec -d C nosuch`` still fails with 127 as in Docker."""
    from stackctl.runtime.containers.exec import exec_in_container

    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork() == 0:  # the grandchild: not our child, so nobody has to reap it
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                try:
                    exec_in_container(mgr.paths, cid, argv, ready_fd=w, **args)
                except StackctlError as exc:
                    os.write(w, f"{_exec_exit_code(exc)}\n{exc.message}".encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    if data:
        head, _, msg = data.decode(errors="replace").partition("\n")
        exc = StackctlError(msg)
        exc.exit_code = int(head) if head.isdigit() else 126
        raise exc


# --- life cycle ---------------------------------------------------------------------------

def _stop_options(f):
    """stop's and restart's options."""
    f = click.option("-s", "--signal", "sig", default=None, help="Signal to send to the container.")(f)
    return click.option("-t", "--time", "--timeout", "timeout", type=int, default=None,
                        help="Seconds to wait before killing the container.")(f)


@click.command()
@_stop_options
@click.argument("containers", nargs=-1, required=True)
def stop(timeout: int | None, sig: str | None, containers: tuple[str, ...]) -> None:
    """Stop one or more running containers."""
    mgr = manager()

    def one(c: str) -> None:
        mgr.stop(c, timeout, sig)
        click.echo(c)

    for_each(containers, one)


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", help="Signal to send to the container.")
@click.argument("containers", nargs=-1, required=True)
def kill(sig: str, containers: tuple[str, ...]) -> None:
    """Kill one or more running containers."""
    mgr = manager()

    def one(c: str) -> None:
        mgr.kill(c, sig)
        click.echo(c)

    for_each(containers, one)


@click.command()
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals.")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN.")
@click.argument("containers", nargs=-1, required=True)
def start(attach: bool, interactive: bool, containers: tuple[str, ...]) -> None:
    """Start one or more stopped containers."""
    mgr = manager()
    if attach or interactive:
        if len(containers) > 1:
            raise UsageError("you cannot start and attach multiple containers at once")
        rec = mgr.get(containers[0])
        code = _run_attached(mgr, rec, sig_proxy=True, auto_remove=rec.spec.auto_remove,
                             stdin=interactive and rec.spec.stdin_open, tty=rec.spec.tty)
        raise SystemExit(code)

    def one(c: str) -> None:
        mgr.start(c)
        click.echo(c)

    for_each(containers, one)


@click.command()
@_stop_options
@click.argument("containers", nargs=-1, required=True)
def restart(timeout: int | None, sig: str | None, containers: tuple[str, ...]) -> None:
    """Restart one or more containers."""
    mgr = manager()

    def one(c: str) -> None:
        mgr.restart(c, timeout, sig)
        click.echo(c)

    for_each(containers, one)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL).")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes associated with the container.")
@click.argument("containers", nargs=-1, required=True)
def rm(force: bool, volumes: bool, containers: tuple[str, ...]) -> None:
    """Remove one or more containers."""
    mgr = manager()

    def one(c: str) -> None:
        try:
            mgr.remove(c, force=force, volumes=volumes)
        except NotFoundError:
            if force:  # docker rm -f ignores what is not there
                return
            raise
        click.echo(c)

    for_each(containers, one)


@click.command()
@click.argument("containers", nargs=-1, required=True)
def wait(containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes."""
    mgr = manager()
    for_each(containers, lambda c: click.echo(str(mgr.wait(c))))


# --- inspect / top / stats ----------------------------------------------------------------

@click.command()
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go-like template.")
@click.option("--type", "type_", type=click.Choice(["container", "image", "volume"]), default=None)
@click.option("-s", "--size", is_flag=True, hidden=True)
@click.argument("names", nargs=-1, required=True)
def inspect(fmt: str, type_: str | None, size: bool, names: tuple[str, ...]) -> None:
    """Return low-level information on containers, images or volumes."""
    from stackctl.cli import format as F

    mgr = manager()
    found: list[dict[str, Any]] = []
    errors: list[str] = []
    for name in names:
        obj = _inspect_one(mgr, name, type_)
        if obj is None:
            errors.append(f"error: no such object: {name}")
        else:
            found.append(obj)
    if fmt:
        template = F.unescape_template(fmt)
        for obj in found:
            click.echo(F.to_json_array([obj])[1:-1].strip() if template.strip() == "json" else F.render_template(template, obj))
    else:
        click.echo(F.to_json_array(found))
    for e in errors:
        click.echo(e, err=True)
    if errors:
        raise SystemExit(1)


def _inspect_one(mgr, name: str, type_: str | None) -> dict[str, Any] | None:
    if type_ in (None, "container"):
        try:
            return mgr.inspect(name)
        except NotFoundError:
            pass
    if type_ in (None, "image"):
        try:
            img = mgr.images.resolve(name)
            cfg = img.config
            return {
                "Id": img.id, "RepoTags": img.repo_tags, "Created": getattr(img, "created", ""),
                "Size": getattr(img, "size", 0), "Architecture": cfg.get("architecture", ""),
                "Os": cfg.get("os", ""), "Config": cfg.get("config", {}), "RootFS": cfg.get("rootfs", {}),
            }
        except (NotFoundError, ImportError):
            pass
        except StackctlError:
            pass
    if type_ in (None, "volume"):
        try:
            return mgr.volumes.get(name).inspect()
        except NotFoundError:
            pass
    return None


@click.command(context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
def top(container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container."""
    from stackctl.cli import format as F

    headers, rows = manager().top(container, list(ps_args) or None)
    click.echo(F.table(headers, rows))


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running).")
@click.option("--no-stream", is_flag=True, help="Disable streaming stats and only pull the first result.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--format", "fmt", default="", help="table, json, or a template.")
@click.argument("containers", nargs=-1)
def stats(all_: bool, no_stream: bool, no_trunc: bool, fmt: str, containers: tuple[str, ...]) -> None:
    """Display resource usage of containers."""
    from stackctl.cli import format as F

    mgr = manager()
    if containers:
        ids = [mgr.resolve(c) for c in containers]
    else:
        ids = [r.id for r in mgr.list(all=all_)]
    prev: dict[str, tuple[int, float]] = {}
    while True:
        rows = []
        for cid in ids:
            try:
                rec, st = mgr.stats(cid)
            except NotFoundError:
                continue
            rows.append(F.stats_row(rec.spec, st, prev, time.monotonic(), trunc=not no_trunc))
        if no_stream and not prev and any(r.get("_sampled") for r in rows):
            time.sleep(0.5)  # CPU % needs two samples
            continue
        for r in rows:
            r.pop("_sampled", None)
        if not no_stream and sys.stdout.isatty():
            click.echo("\033[2J\033[H", nl=False)
        _print_rows(rows, fmt, F.stats_table)
        if no_stream:
            return
        time.sleep(1)


# --- container <verb> ---------------------------------------------------------------------

@click.group()
def container() -> None:
    """Manage containers."""


@click.command(name="prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
def prune(force: bool) -> None:
    """Remove all stopped containers."""
    if not force and not click.confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?"):
        return
    mgr = manager()
    removed = []
    for rec in mgr.list(all=True):
        if rec.state.status in ("exited", "created", "dead"):
            try:
                mgr.remove(rec.id)
                removed.append(rec.id)
            except StackctlError:
                continue
    print_pruned("Containers", removed, "0B")


for _cmd in (run, create, ps, logs, exec_, stop, start, restart, kill, rm, top, inspect, wait, stats, prune):
    container.add_command(_cmd)
container.add_command(ps, name="ls")
container.add_command(ps, name="list")


def _add_extra_verbs() -> None:
    """``container commit|cp|diff|export|port|pause|unpause|rename|update|attach``."""
    from stackctl.cli.container_extra_cmd import COMMANDS as EXTRA

    for cmd in EXTRA:
        container.add_command(cmd)


_add_extra_verbs()
