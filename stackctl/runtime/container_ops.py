"""Docker's verbs that change a container in place: ``pause`` / ``unpause``, ``update``,
``rename``, ``port`` (a query), and ``network connect`` / ``disconnect``.

Each takes the node's :class:`~stackctl.runtime.manager.ContainerManager` and changes a
record under its lock; the kernel side is the execution core's
(:mod:`stackctl.runtime.containers.control`: freezer and live cgroup limits) or networking's
(:mod:`stackctl.net.sandbox`). The checks of the values are pure and come first, with
Docker's messages.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from stackctl.errors import ConflictError, NotFoundError, StackctlError
from stackctl.runtime import names
from stackctl.runtime.jsonfile import write_json
from stackctl.runtime.records import Record

MIN_MEMORY = 6 * 1024 * 1024  # Docker's minimum memory limit
RESTART_RE = re.compile(r"^(no|always|unless-stopped|on-failure)(?::(\d+))?$")


# --- pause / unpause --------------------------------------------------------------------------

def pause(mgr: Any, query: str) -> Record:
    from stackctl.runtime.containers import control

    with mgr.locked():
        rec = mgr.get(query)
        if rec.state.status != "running":
            raise ConflictError(f"container {rec.name} is not running")
        control.freeze_container(mgr.paths, rec.id)
        return mgr.load(rec.id)


def unpause(mgr: Any, query: str) -> Record:
    from stackctl.runtime.containers import control

    with mgr.locked():
        rec = mgr.get(query)
        if rec.state.status != "running" or not rec.state.paused:
            raise ConflictError(f"container {rec.name} is not paused")
        control.thaw_container(mgr.paths, rec.id)
        return mgr.load(rec.id)


# --- update -----------------------------------------------------------------------------------

@dataclass
class Update:
    """What ``update`` was asked to change (None: leave it), already parsed."""

    memory: int | None = None
    memory_swap: int | None = None  # -1: unlimited
    memory_reservation: int | None = None
    cpus: float | None = None  # 0: no limit
    pids: int | None = None  # 0 or -1: no limit
    restart: str | None = None

    def empty(self) -> bool:
        return all(v is None for v in vars(self).values())


def parse_restart(value: str) -> dict[str, Any]:
    """``--restart`` as Docker's RestartPolicy object (pure)."""
    m = RESTART_RE.match(value)
    if not m or (m.group(2) and m.group(1) != "on-failure"):
        raise StackctlError(f"invalid restart policy {value!r}",
                         hint="one of no, always, unless-stopped, on-failure[:MAX-RETRIES]")
    return {"Name": m.group(1), "MaximumRetryCount": int(m.group(2) or 0)}


def plan_update(spec_resources: Any, upd: Update, *, auto_remove: bool, host_cpus: int) -> dict[str, Any]:
    """Docker's checks of an update against the container's current limits, and the new
    values: ``{"resources": {field: value}, "cgroup": {key: value}, "restart": policy|None}``
    (pure). ``cgroup`` holds what to write live (cpus -1 / pids -1: remove the limit)."""
    r = spec_resources
    if upd.memory is not None and upd.memory < MIN_MEMORY:
        raise StackctlError("minimum memory limit allowed is 6MB")
    memory = upd.memory if upd.memory is not None else r.memory
    swap = upd.memory_swap if upd.memory_swap is not None else getattr(r, "memory_swap", None)
    if upd.memory_swap is not None and upd.memory_swap != -1:
        if not memory:
            raise StackctlError("you should always set the memory limit when using a memoryswap limit",
                             hint="give --memory too")
        if upd.memory_swap < memory:
            raise StackctlError("minimum memoryswap limit should be larger than memory limit, see usage")
    elif upd.memory is not None and swap and swap > 0 and upd.memory > swap:
        raise StackctlError("memory limit should be smaller than already set memoryswap limit, "
                         "update the memoryswap at the same time")
    if upd.memory_reservation is not None and memory and upd.memory_reservation > memory:
        raise StackctlError("minimum memory limit can not be less than memory reservation limit, see usage")
    if upd.cpus is not None and not 0 <= upd.cpus <= host_cpus:
        raise StackctlError(f"range of CPUs is from 0.01 to {host_cpus}.00, as there are only {host_cpus} CPUs available")
    restart = parse_restart(upd.restart) if upd.restart is not None else None
    if restart and restart["Name"] != "no" and auto_remove:
        raise ConflictError("restart policy cannot be updated because AutoRemove is enabled for the container")
    resources: dict[str, Any] = {}
    cgroup: dict[str, Any] = {}
    if upd.memory is not None:
        resources["memory"] = cgroup["memory"] = upd.memory
    if upd.memory_swap is not None:
        resources["memory_swap"] = cgroup["memory_swap"] = upd.memory_swap
    if upd.memory_reservation is not None:
        resources["memory_reservation"] = cgroup["memory_reservation"] = upd.memory_reservation
    if upd.cpus is not None:
        resources["cpus"] = upd.cpus or None
        cgroup["cpus"] = upd.cpus or -1
    if upd.pids is not None:
        resources["pids"] = upd.pids if upd.pids > 0 else None
        cgroup["pids"] = upd.pids if upd.pids > 0 else -1
    return {"resources": resources, "cgroup": cgroup, "restart": restart}


def update(mgr: Any, query: str, upd: Update) -> Record:
    """New limits for a container: recorded (they hold from the next start on) and, while it
    runs, written into its cgroup at once; ``restart`` is recorded as its RestartPolicy."""
    from stackctl.runtime.containers import control

    with mgr.locked():
        rec = mgr.get(query)
        plan = plan_update(rec.spec.resources, upd, auto_remove=rec.spec.auto_remove, host_cpus=os.cpu_count() or 1)
        if rec.state.status == "running" and plan["cgroup"]:
            control.update_limits(mgr.paths, rec.id, plan["cgroup"])
        for k, v in plan["resources"].items():
            setattr(rec.spec.resources, k, v)
        d = mgr._dir(rec.id)
        write_json(os.path.join(d, "config.json"), rec.spec.to_json())
        if plan["restart"] is not None:
            rec.meta["RestartPolicy"] = plan["restart"]
            write_json(os.path.join(d, "meta.json"), rec.meta)
        return mgr.load(rec.id)


# --- rename -----------------------------------------------------------------------------------

def rename(mgr: Any, query: str, new: str) -> None:
    """Docker's ``rename``: the record, the names the container answers to on its networks,
    and its /etc/hosts lines (rewritten in place: a running container sees them)."""
    try:
        new = names.validate_name(new)
    except StackctlError as exc:
        exc.exit_code = 1  # Docker: an error of the daemon, not of the command line
        raise
    with mgr.locked():
        rec = mgr.get(query)
        old = rec.spec.name
        if new == old:
            raise ConflictError("renaming a container with the same name as its current name")
        taken = {n: cid for cid, n in mgr._names()}
        taken.update((r.get("name"), c) for c, r in mgr._reservations().items())
        if new in taken:
            raise ConflictError(f'the container name "/{new}" is already in use by container "{taken[new]}"',
                                hint="remove (or rename) that container to be able to reuse that name")
        rec.spec.name = new
        rec.spec.extra_hosts = [f"{new}:{e.split(':', 1)[1]}" if e.split(":", 1)[0] == old else e
                                for e in rec.spec.extra_hosts]
        d = mgr._dir(rec.id)
        write_json(os.path.join(d, "config.json"), rec.spec.to_json())
        if "NetworkSettings" in rec.meta:
            from stackctl.net import sandbox

            sandbox.rename_container(mgr.paths, rec.id, old, new)
            for ep in (rec.meta["NetworkSettings"].get("Networks") or {}).values():
                for key in ("Aliases", "DNSNames"):
                    if ep.get(key):
                        ep[key] = list(dict.fromkeys(new if n == old else n for n in ep[key]))
            write_json(os.path.join(d, "meta.json"), rec.meta)
        if os.path.exists(os.path.join(d, "hosts")):
            from stackctl.runtime.containers.api import _write_etc_files

            _write_etc_files(d, rec.spec)


# --- port -------------------------------------------------------------------------------------

def port_lines(rec: Record, private: str | None = None) -> list[str]:
    """``docker port``: ``80/tcp -> 0.0.0.0:8080`` per binding of a running container, or
    only ``0.0.0.0:8080`` for one ``PRIVATE[/PROTO]`` (pure). No binding for the asked port:
    StackctlError, exit 1, Docker's words."""
    ports = (rec.meta.get("NetworkSettings") or {}).get("Ports") or {}
    if rec.state.status != "running":
        ports = {}
    if private is not None:
        num, _, proto = private.partition("/")
        if not num.isdigit() or proto not in ("", "tcp", "udp", "sctp"):
            raise StackctlError(f"invalid port {private!r}: expected PORT[/PROTO]")
        key = f"{int(num)}/{proto or 'tcp'}"
        bindings = ports.get(key) or []
        if not bindings:
            raise StackctlError(f"no public port '{key}' published for {rec.name}")
        return [f"{b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}" for b in bindings]

    def order(key: str) -> tuple[int, str]:
        n, _, p = key.partition("/")
        return (int(n) if n.isdigit() else 0, p)

    return [f"{key} -> {b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}"
            for key in sorted(ports, key=order) for b in ports[key] or []]


# --- network connect / disconnect -------------------------------------------------------------

def _sandboxed(rec: Record, verb: str) -> None:
    net = rec.spec.network
    if net == "host":
        raise ConflictError(f"container cannot be {verb} host network")
    if net == "none" or not net:
        raise ConflictError("container cannot be connected to multiple networks with one of the networks in "
                            "private (none) mode" if verb.startswith("connected") else
                            f"container {rec.name} is not connected to the network")
    if net.startswith("container:"):
        raise ConflictError(f"container {rec.name} shares the network namespace of another container; "
                            "connect that one instead")


def connect(mgr: Any, network: str, query: str, *, aliases: list[str] = (), ip: str = "") -> Record:  # type: ignore[assignment]
    from stackctl.net import dnsd, networks, sandbox
    from stackctl.net.model import DEFAULT_BRIDGE

    if network == DEFAULT_BRIDGE:
        networks.ensure_default_bridge(mgr.paths)
        if aliases:
            raise ConflictError("network-scoped alias is supported only for containers in user defined networks")
        if ip:
            raise ConflictError("user specified IP address is supported on user defined networks only")
    networks.get(mgr.paths, network)  # not found: a clear line before anything else
    with mgr.locked():
        rec = mgr.get(query)
        _sandboxed(rec, "connected to")
        state = sandbox.connect_container(mgr.paths, rec.id, sandbox.Attachment(network, list(aliases), ip or None),
                                          name=rec.name, hostname=rec.spec.hostname)
        _refresh_settings(mgr, rec, state)
    if network != DEFAULT_BRIDGE:
        dnsd.ensure_running(mgr.paths)
    return mgr.load(rec.id)


def disconnect(mgr: Any, network: str, query: str, *, force: bool = False) -> Record:
    from stackctl.net import networks, sandbox

    with mgr.locked():
        try:
            rec = mgr.get(query)
        except NotFoundError:
            if force:  # Docker's -f: also for a container that is gone
                return None  # type: ignore[return-value]
            raise
        if rec.spec.network in ("host",) or rec.spec.network.startswith("container:"):
            _sandboxed(rec, "disconnected from")
        net = networks.get(mgr.paths, network)
        if not rec.spec.network.startswith("netns:"):
            raise NotFoundError(f"container {rec.name} is not connected to network {net.name}")
        state = sandbox.disconnect_container(mgr.paths, rec.id, network, name=rec.name)
        _refresh_settings(mgr, rec, state)
    return mgr.load(rec.id)


def _refresh_settings(mgr: Any, rec: Record, state: Any) -> None:
    from stackctl.net import runtime_hooks

    exposed = list((rec.meta.get("Config") or {}).get("ExposedPorts") or {})
    rec.meta["NetworkSettings"] = runtime_hooks.network_settings(state, rec.id, exposed)
    write_json(os.path.join(mgr._dir(rec.id), "meta.json"), rec.meta)
