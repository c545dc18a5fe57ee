"""The container verbs scoped to a stack (``ps -f stack.yml``, ``logs -f stack.yml web``,
``exec -f stack.yml web.2 sh``, ``run -f stack.yml --rm web CMD``, ``stop|start|restart|top|
events``), as ``docker compose`` has them; and ``up``'s attached mode.

Plain functions: the click side lives in :mod:`stackctl.cli.stack_scoped`, which adds
``--file``/``-p`` to the Docker-like commands of :mod:`stackctl.cli.container_cmd` and calls
these when a stack is named. They ask the agent what belongs to the stack (``stack.ps``) and
act on the containers it reports: through the agent (logs, stop/start/restart, events) or,
for what runs on this node anyway, through the runtime directly (exec, top, the foreground
part of run), as ``stackctl exec`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from stackctl.cli.stack_options import StackArgs
from stackctl.errors import NotFoundError, StackctlError, UsageError

# Compose's palette for log prefixes (cyan, yellow, green, magenta, blue, and bright ones).
_PALETTE = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")


# --- pure helpers -------------------------------------------------------------------------

def slot_name(c: dict[str, Any]) -> str:
    """``web.2`` (``run-<id>`` for a one-off container)."""
    service = c.get("service") or c.get("name") or "?"
    slot = c.get("slot")
    return f"{service}.{slot}" if slot not in (None, "") else str(service)


def parse_target(target: str) -> tuple[str, str]:
    """``web`` -> (web, 1), ``web.2`` -> (web, 2): a service and its slot (default 1)."""
    service, dot, slot = target.rpartition(".")
    if dot and service and slot:
        return service, slot
    return target, "1"


def _ns(value: Any) -> int | None:
    """A time as the agent may send it (ns int, seconds float, RFC 3339) -> ns."""
    if value in (None, "", 0):
        return None
    if isinstance(value, (int, float)):
        return int(value if value > 1e15 else value * 1e9)
    from stackctl.runtime.logs import parse_rfc3339_ns

    try:
        if str(value).startswith("0001-"):
            return None
        return parse_rfc3339_ns(str(value))
    except ValueError:
        return None


def ports_text(ports: Any) -> str:
    """PORTS as ``docker compose ps``: ``127.0.0.1:8080->80/tcp``."""
    if not ports:
        return ""
    if isinstance(ports, str):
        return ports
    if isinstance(ports, dict):  # Docker's NetworkSettings.Ports form
        from stackctl.cli.format import ports_column

        return ports_column({"Ports": ports})
    out = []
    for p in ports:
        if isinstance(p, str):
            out.append(p)
            continue
        target = p.get("target") or p.get("container_port") or p.get("port")
        proto = p.get("protocol") or "tcp"
        published = p.get("published") or p.get("host_port")
        if published:
            ip = p.get("host_ip") or p.get("ip") or "0.0.0.0"
            out.append(f"{ip}:{published}->{target}/{proto}")
        else:
            out.append(f"{target}/{proto}")
    return ", ".join(out)


def status_text(c: dict[str, Any], now_ns: int) -> str:
    """STATUS as ``docker compose ps``: ``Up 5 seconds (healthy)``, ``Exited (1) 2 minutes ago``."""
    from stackctl.cli.format import status_string

    started, finished = _ns(c.get("started_at")), _ns(c.get("finished_at"))
    text = status_string(c.get("state") or "created", c.get("exit_code"),
                         (now_ns - started) / 1e9 if started else None,
                         (now_ns - finished) / 1e9 if finished else None)
    health = c.get("health")
    if health and c.get("state") == "running":
        text += f" ({'health: starting' if health == 'starting' else health})"
    return text


def command_text(command: Any) -> str:
    from stackctl.cli.format import command_string

    if isinstance(command, list):
        return command_string(command)
    return str(command or "")


def ps_row(c: dict[str, Any], now_ns: int, *, trunc: bool = True) -> dict[str, Any]:
    """One container as ``docker compose ps --format json`` shows it."""
    from stackctl.cli.format import ago, ellipsis, quote_go

    created = _ns(c.get("created"))
    cmd = command_text(c.get("command"))
    cid = c.get("id") or ""
    return {
        "ID": cid[:12] if trunc else cid,
        "Name": c.get("name", ""),
        "Image": c.get("image", ""),
        "Command": quote_go(ellipsis(cmd, 20)) if trunc else quote_go(cmd),
        "Project": c.get("stack", ""),
        "Service": c.get("service", ""),
        "Slot": str(c.get("slot", "")),
        "State": c.get("state", ""),
        "Health": c.get("health") or "",
        "ExitCode": c.get("exit_code") or 0,
        "Status": status_text(c, now_ns),
        "RunningFor": ago((now_ns - created) / 1e9) if created else "",
        "Ports": ports_text(c.get("ports")) if c.get("state") == "running" else "",
        "Node": c.get("node", ""),
    }


PS_HEADERS = ("NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS")


def ps_table(rows: Sequence[dict[str, Any]]) -> str:
    """Compose's columns; on a cluster (a row on a node other than this machine's ``local``)
    a NODE column after SERVICE, as ``docker service ps`` has one."""
    from stackctl.cli.format import table

    nodes = any(r.get("Node") not in ("", "local", None) for r in rows)
    headers = PS_HEADERS[:4] + ("NODE",) + PS_HEADERS[4:] if nodes else PS_HEADERS

    def cells(r: dict[str, Any]) -> list[str]:
        out = [r["Name"], r["Image"], r["Command"],
               f"{r['Service']}.{r['Slot']}" if r["Slot"] else r["Service"]]
        if nodes:
            out.append(r.get("Node") or "")
        return out + [r["RunningFor"], r["Status"], r["Ports"]]

    return table(headers, [cells(r) for r in rows])


def prefixes(containers: Sequence[dict[str, Any]], *, colour: bool) -> dict[str, str]:
    """container id -> ``web.2  | `` (padded to the longest, coloured per service)."""
    names = {c["id"]: slot_name(c) for c in containers}
    width = max((len(n) for n in names.values()), default=0)
    services = sorted({c.get("service") or "" for c in containers})
    out = {}
    for c in containers:
        text = f"{names[c['id']]:<{width}} | "
        if colour:
            code = _PALETTE[services.index(c.get("service") or "") % len(_PALETTE)]
            text = f"\x1b[{code}m{text}\x1b[0m"
        out[c["id"]] = text
    return out


def log_line(event: dict[str, Any], prefix: str, *, timestamps: bool) -> str:
    line = event.get("line") or event.get("text") or ""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.rstrip("\n")
    if timestamps:
        ns = _ns(event.get("time"))
        if ns:
            from stackctl.runtime.logs import format_rfc3339_ns

            line = f"{format_rfc3339_ns(ns)} {line}"
    return prefix + line


# --- helpers that talk to the agent -------------------------------------------------------

def _agent():
    from stackctl.cli.stack_client import Agent

    return Agent()


def _name(stack: StackArgs) -> str:
    from stackctl.cli.stack_common import stack_name

    return stack_name(stack)


def containers(client, name: str, services: Sequence[str] = (), *, all_: bool = False
               ) -> list[dict[str, Any]]:
    rows = client.call("stack.ps", {"name": name, "all": all_, "services": list(services)}) or []
    from stackctl.scheduler.observed import slot_sort_key

    return sorted(rows, key=lambda c: (c.get("service") or "", slot_sort_key(str(c.get("slot") or ""))))


def deployed(client, name: str) -> bool:
    """Whether the agent knows the stack (a stored version or containers of it)."""
    return any(s.get("name") == name for s in client.call("stack.list", {}) or [])


def require_deployed(client, name: str) -> None:
    """A stack never deployed (or brought down) is an error for the verbs that need its
    containers, not an empty answer. Asked only once nothing of the stack was found."""
    if not deployed(client, name):
        raise NotFoundError(f"stack {name} is not deployed",
                            hint="deploy it with `stackctl up`; `stackctl ls -a` lists the stacks")


def resolve(client, name: str, target: str, *, running: bool = True) -> dict[str, Any]:
    """The container of ``SERVICE[.SLOT]`` (slot 1 by default), as Compose's ``--index``."""
    service, slot = parse_target(target)
    found = containers(client, name, [service], all_=True)
    if not found:
        require_deployed(client, name)
        raise NotFoundError(f"no container of service {service!r} in stack {name}",
                            hint=f"`stackctl ps -p {name}` lists them")
    for c in found:
        oneoff = (c.get("labels") or {}).get("com.stackctl.oneoff") == "true"
        if str(c.get("slot")) == slot and not oneoff:
            if running and c.get("state") != "running":
                raise StackctlError(f"{service}.{slot} ({c.get('name')}) is not running")
            return c
    slots = ", ".join(slot_name(c) for c in found)
    raise NotFoundError(f"service {service} has no slot {slot} (it has {slots})")


# --- the verbs ----------------------------------------------------------------------------

def stack_ps(stack: StackArgs, *, services: Sequence[str] = (), all_: bool = False,
             quiet: bool = False, fmt: str = "", no_trunc: bool = False) -> None:
    name = _name(stack)
    with _agent() as client:
        found = containers(client, name, services, all_=all_)
        if not found and not quiet and fmt in ("", "table") and not deployed(client, name):
            # an empty table, as `docker compose ps` shows, and why it is empty
            click.echo(f"stack {name} is not deployed", err=True)
    now = time.time_ns()
    rows = [ps_row(c, now, trunc=not no_trunc) for c in found]
    if quiet:
        for r in rows:
            click.echo(r["ID"])
    elif fmt == "json":
        for r in rows:
            click.echo(json.dumps(r, separators=(",", ":")))
    elif fmt in ("", "table"):
        click.echo(ps_table(rows))
    else:
        from stackctl.cli.format import render_template, unescape_template

        for r in rows:
            click.echo(render_template(unescape_template(fmt), r))


def stack_logs(stack: StackArgs, *, services: Sequence[str] = (), follow: bool = False,
               tail: str = "all", since: str | None = None, until: str | None = None,
               timestamps: bool = False, colour: bool | None = None,
               no_prefix: bool = False) -> None:
    name = _name(stack)
    if colour is None:
        colour = sys.stdout.isatty()
    targets = [s for s in services]
    with _agent() as client:
        found = containers(client, name, [parse_target(s)[0] for s in targets], all_=True)
        wanted_slots = {s for s in targets if "." in s}
        if wanted_slots:
            found = [c for c in found if slot_name(c) in wanted_slots
                     or (c.get("service") in targets)]
        if not found:
            require_deployed(client, name)
            return
        follow_logs(client, found, follow=follow, tail=tail, since=since, until=until,
                    timestamps=timestamps, colour=colour, no_prefix=no_prefix)


def follow_logs(client, found: Sequence[dict[str, Any]], *, follow: bool, tail: str = "all",
                since: str | None = None, until: str | None = None, timestamps: bool = False,
                colour: bool = False, no_prefix: bool = False) -> None:
    """Interleave the containers' logs, each line prefixed ``service.slot |``."""
    pre = prefixes(found, colour=colour)
    from stackctl.runtime.logs import parse_tail

    params = {"ids": [c["id"] for c in found], "follow": follow, "tail": parse_tail(tail),
              "since": since, "until": until, "timestamps": False}

    def show(event: dict[str, Any]) -> None:
        text = log_line(event, "" if no_prefix else pre.get(event.get("id", ""), ""),
                        timestamps=timestamps)
        out = sys.stderr if event.get("stream") == "stderr" else sys.stdout
        out.write(text + "\n")
        out.flush()

    try:
        client.stream("container.logs", params, show)
    except KeyboardInterrupt:
        raise SystemExit(130 if not follow else 0) from None


def attach_and_stop(client, name: str, services: Sequence[str], *, colour: bool) -> None:
    """``up`` without ``-d``: follow the logs of the stack's containers (output since the
    deploy began); Ctrl-C stops the stack's services (a second Ctrl-C gives up waiting), as
    ``docker compose up`` does. Exit 130 after Ctrl-C; 0 when every container has exited."""
    began = time.time()
    found = containers(client, name, services)
    tty = sys.stdout.isatty()
    click.echo("Attaching to " + ", ".join(c.get("name", "") for c in found))
    try:
        follow_logs(client, found, follow=True, since=f"{began - 60:.3f}",
                    colour=colour and tty)
    except SystemExit:
        pass
    except KeyboardInterrupt:
        pass
    else:
        return
    click.echo("Gracefully stopping... (press Ctrl+C again to force)", err=True)
    from stackctl.cli.stack_common import run_stream

    run_stream(client, "stack.stop", {"name": name, "services": list(services), "timeout": None},
               "text", title=f"Stopping {name}", stack=name, services=tuple(services))
    raise SystemExit(130)


def stack_exec(stack: StackArgs, target: str, command: Sequence[str], *, detach: bool = False,
               interactive: bool = False, tty: bool = False, env: Sequence[str] = (),
               workdir: str = "", user: str = "", privileged: bool = False) -> None:
    """``exec -f FILE SERVICE[.SLOT] CMD``: exec in that slot's container (slot 1 by
    default), through the runtime, as ``stackctl exec`` does."""
    from stackctl.cli import container_cmd as C
    from stackctl.runtime.imageconfig import resolve_env

    name = _name(stack)
    with _agent() as client:
        c = resolve(client, name, target)
    if workdir and not workdir.startswith("/"):
        raise UsageError(f"the working directory {workdir!r} is invalid: it must be an absolute path")
    args = dict(env=resolve_env(list(env), os.environ), cwd=workdir, user=user,
                tty=tty and not detach, stdin=interactive and not detach, privileged=privileged)
    from stackctl.cli.remote import remote_node, run_there

    where = remote_node(c.get("node"))
    if where is not None:  # on another node: the same exec there, over ssh
        argv = ["exec"] + (["-d"] if detach else []) + (["-i"] if interactive else []) + \
            (["-t"] if tty else []) + [f"-e{e}" for e in args["env"]] + \
            (["-w", workdir] if workdir else []) + (["-u", user] if user else []) + \
            (["--privileged"] if privileged else []) + [c["id"], *command]
        raise SystemExit(run_there(where, argv, tty=tty and not detach))
    mgr = C.manager()
    if detach:
        C._exec_detached(mgr, c["id"], list(command), args)
        return
    raise SystemExit(C._exec(mgr, c["id"], list(command), args))


def stack_run(stack: StackArgs, service: str, command: Sequence[str], *, rm: bool = False,
              detach: bool = False, interactive: bool = False, tty: bool = False,
              env: Sequence[str] = (), entrypoint: str | None = None, name: str | None = None,
              user: str = "", workdir: str = "", sig_proxy: bool = True) -> None:
    """``run -f FILE [--rm] SERVICE CMD``: a one-off task of the service — a container with
    the service's config (networks, volumes, secrets, environment), labelled
    ``com.stackctl.oneoff=true``, its command replaced by CMD. The agent creates it (it owns
    the stack's networks; method ``stack.run``); this process starts it attached, as ``run``
    does, and removes it afterwards with ``--rm``."""
    from stackctl.cli import container_cmd as C
    from stackctl.cli.stack_common import check_services, deploy_params

    project = stack.load_project()
    check_services(project, (service,))
    params = deploy_params(project, services=(service,))
    from stackctl.runtime.imageconfig import resolve_env

    params.update({"service": service, "command": list(command) or None,
                   "entrypoint": entrypoint, "env": resolve_env(list(env), os.environ),
                   "name": name, "user": user,
                   "workdir": workdir, "tty": tty, "interactive": interactive,
                   "rm": rm, "detach": detach, "start": False})
    with _agent() as client:
        result = client.call("stack.run", params)
    cid = result["id"] if isinstance(result, dict) else str(result)
    from stackctl.cli.remote import remote_node, run_there

    where = remote_node(result.get("node") if isinstance(result, dict) else None)
    if where is not None:  # made on another node: started (attached) there, over ssh
        if detach:
            raise SystemExit(run_there(where, ["start", cid]))
        code = run_there(where, ["start", "-a"] + (["-i"] if interactive else []) + [cid],
                         tty=tty)
        if rm:
            from stackctl.cli.remote import ssh_argv

            subprocess.run(ssh_argv(where, ["rm", "-f", cid]), capture_output=True)
        raise SystemExit(code)
    mgr = C.manager()
    if detach:
        mgr.start(cid)
        click.echo(cid)
        return
    rec = mgr.get(cid)
    raise SystemExit(C._run_attached(mgr, rec, sig_proxy=sig_proxy, auto_remove=rm,
                                     stdin=interactive, tty=tty))


def stack_lifecycle(stack: StackArgs, verb: str, services: Sequence[str] = (), *,
                    timeout: int | None = None) -> None:
    """``stop|start|restart -f FILE [SERVICE...]`` through the agent (so its controller
    knows: a stopped service is not healed back up)."""
    from stackctl.cli.stack_common import run_stream

    name = _name(stack)
    with _agent() as client:
        run_stream(client, f"stack.{verb}", {"name": name, "services": list(services),
                                             "timeout": timeout},
                   "text", title=f"{verb.capitalize()} {name}", stack=name,
                   services=tuple(services))


def stack_top(stack: StackArgs, services: Sequence[str] = ()) -> None:
    """One process table per running container, headed by its name (``docker compose top``)."""
    from stackctl.cli import container_cmd as C
    from stackctl.cli.format import table

    name = _name(stack)
    with _agent() as client:
        found = containers(client, name, services)
    mgr = C.manager()
    first = True
    from stackctl.cli.remote import remote_node, ssh_argv

    for c in found:
        where = remote_node(c.get("node"))
        if where is not None:  # the process table of a container on another node
            proc = subprocess.run(ssh_argv(where, ["top", c["id"]]), capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                continue
            if not first:
                click.echo("")
            first = False
            click.echo(c.get("name", c["id"][:12]))
            click.echo(proc.stdout.rstrip("\n"))
            continue
        try:
            headers, rows = mgr.top(c["id"], None)
        except NotFoundError:
            continue
        if not first:
            click.echo("")
        first = False
        click.echo(c.get("name", c["id"][:12]))
        click.echo(table(headers, rows))


def event_line(event: dict[str, Any]) -> str:
    """``docker compose events`` text: ``TIME container ACTION ID (name=..., service=...)``."""
    if "action" in event and "status" in event:
        from stackctl.cli.progress import plain_line

        return plain_line(event)
    ns = _ns(event.get("time")) or time.time_ns()
    from stackctl.runtime.logs import format_rfc3339

    attrs = ", ".join(f"{k}={v}" for k, v in sorted(event.items())
                      if k not in ("time", "type", "action", "id") and isinstance(v, (str, int)))
    return (f"{format_rfc3339(ns)} {event.get('type', 'container')} {event.get('action', '')} "
            f"{event.get('id', '')} ({attrs})")


def stack_events(stack: StackArgs, services: Sequence[str] = (), *, json_: bool = False) -> None:
    name = _name(stack)

    def show(event: dict[str, Any]) -> None:
        if services and event.get("service") not in services:
            return
        click.echo(json.dumps(event, separators=(",", ":")) if json_ else event_line(event))

    with _agent() as client:
        try:
            client.stream("stack.events", {"name": name}, show)
        except KeyboardInterrupt:
            return


def all_events(*, json_: bool = False) -> None:
    """``events`` without a stack: every stack's events."""
    def show(event: dict[str, Any]) -> None:
        click.echo(json.dumps(event, separators=(",", ":")) if json_ else event_line(event))

    with _agent() as client:
        try:
            client.stream("stack.events", {}, show)
        except KeyboardInterrupt:
            return
