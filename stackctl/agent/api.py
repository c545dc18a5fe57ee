"""The agent's methods (docs/agent-api.md): what each request does. The transport is
:mod:`stackctl.agent.server`; stack changes are the controller's
(``stackctl.controller.manager.Manager``), which this module only hands the request to.

Methods implemented here: ``agent.info``, ``agent.shutdown``, ``stack.list``, ``stack.ps``,
``stack.events``, ``stack.run`` (with the controller's pieces), ``container.list``, ``container.inspect``, ``container.logs``. Delegated to
the controller: ``stack.deploy | plan | remove | scale | rollback | stop | start | restart`` —
without a controller they answer ``internal: controller not available``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from stackctl import __version__
from stackctl.transport import protocol as P
from stackctl.agent.server import Method, MethodError, RequestContext
from stackctl.errors import StackctlError, UsageError
from stackctl.scheduler.observed import slot_sort_key

if TYPE_CHECKING:
    from stackctl.agent.events import EventBus
    from stackctl.agent.nodeops import NodeOps
    from stackctl.agent.store import Store
    from stackctl.agent.supervisor import Supervisor

LOG_POLL = 0.1  # seconds between reads of a followed log file
STACK_STREAMS = ("deploy", "remove", "scale", "rollback", "stop", "start", "restart", "kill",
                 "rm")


def _param(params: dict[str, Any], key: str, kind: type | tuple, default: Any = None, *,
           required: bool = False) -> Any:
    if key not in params or params[key] is None:
        if required:
            raise UsageError(f"missing parameter {key!r}")
        return default
    value = params[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(f"parameter {key!r} has the wrong type ({type(value).__name__})")
    return value


def stack_status(states: list[str]) -> str:
    """Compose's ``ls`` status: ``running(2), exited(1)``."""
    counts: dict[str, int] = {}
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    return ", ".join(f"{s}({n})" for s, n in sorted(counts.items())) or "empty"


class AgentAPI:
    def __init__(self, *, store: Store, bus: EventBus, node: NodeOps, supervisor: Supervisor,
                 manager: Any = None, info: dict[str, Any] | None = None,
                 shutdown: Callable[[], None] | None = None) -> None:
        self.store = store
        self.bus = bus
        self.node = node
        self.supervisor = supervisor
        self.manager = manager
        self.info = dict(info or {})
        self.started = time.time()
        self._shutdown = shutdown

    def methods(self) -> dict[str, Method]:
        table = {
            "agent.info": Method(self.agent_info),
            "agent.ping": Method(self.agent_ping),
            "agent.shutdown": Method(self.agent_shutdown),
            "stack.list": Method(self.stack_list),
            "stack.ps": Method(self.stack_ps),
            "stack.events": Method(self.stack_events, stream=True),
            "stack.plan": Method(self.stack_plan),
            "stack.run": Method(self.stack_run),
            "container.list": Method(self.container_list),
            "container.inspect": Method(self.container_inspect),
            "container.logs": Method(self.container_logs, stream=True),
            "cluster.update_inventory": Method(self.cluster_update_inventory),
            "cluster.nodes": Method(self.cluster_nodes),
        }
        for verb in STACK_STREAMS:
            table[f"stack.{verb}"] = Method(self._delegate(verb), stream=True)
        return table

    # -- agent -------------------------------------------------------------------------------

    async def agent_info(self, req: RequestContext) -> dict[str, Any]:
        from stackctl.controller.members import host_facts

        recs = await self.node.records()
        return {
            **self.info, **host_facts(), "version": __version__, "protocol": P.PROTOCOL_VERSION,
            "pid": os.getpid(), "started_at": self.started,
            "uptime": round(time.time() - self.started, 3),
            "controller": self.manager is not None,
            "stacks": len(self.store.list_stacks()), "containers": len(recs),
            "running": sum(1 for r in recs if r.state.status == "running"),
        }

    async def agent_ping(self, req: RequestContext) -> dict[str, Any]:
        """The manager's heartbeat: answered at once, reads nothing."""
        return {"time": time.time()}

    async def agent_shutdown(self, req: RequestContext) -> dict[str, Any]:
        """Stop the agent (never a container) once this answer is sent."""
        if self._shutdown is None:
            raise MethodError("failed", "this agent cannot be shut down over the API")
        self._shutdown()
        return {"pid": os.getpid()}

    # -- the cluster ---------------------------------------------------------------------------

    def _remotes(self) -> list[tuple[str, Any]]:
        """The other nodes of the manager's cluster (none without an inventory)."""
        m = self.manager
        members = getattr(m, "members", None)  # a controller without a cluster (tests)
        if members is None or not members.clustered:
            return []
        return [(name, node) for name, node in m.cluster.members.items()
                if name != m.cluster.local]

    def _local_name(self) -> str:
        return self.manager.cluster.local if self._remotes() else self.node.node

    async def _gather(self, method: str, params: dict[str, Any]) -> list[tuple[str, Any]]:
        """``method`` on every other node at once: (node, result); a node that does not
        answer is left out (logged)."""
        import logging

        out: list[tuple[str, Any]] = []

        async def one(name: str, node: Any) -> None:
            try:
                out.append((name, await node.client.call(method, params, timeout=10)))
            except StackctlError as exc:
                logging.getLogger("stackctl.agent").warning("%s on %s: %s", method, name,
                                                            exc.message)

        members = self.manager.members
        async with trio.open_nursery() as nursery:
            for name, node in self._remotes():
                if hasattr(node, "client") and members.ready(name):
                    nursery.start_soon(one, name, node)
        return out

    async def _node_client(self, cid: str) -> Any:
        """The agent client of the node that holds ``cid``; None for this node."""
        if not self._remotes():
            return None
        name = await self.manager.cluster.node_of(cid)
        if name == self.manager.cluster.local:
            return None
        return self.manager.cluster.member(name).client

    async def cluster_update_inventory(self, req: RequestContext) -> dict[str, Any]:
        """The CLI's inventory (``{nodes: [...], manager: NAME, wait: seconds}``): the
        manager connects to every node; with ``wait``, answers once they are connected or
        the time is up, naming those that are not."""
        manager = self._require_manager()
        nodes = _param(req.params, "nodes", list, required=True)
        if not all(isinstance(n, dict) for n in nodes):
            raise UsageError("parameter 'nodes' must be a list of objects")
        name = _param(req.params, "manager", str, None) or next(
            (n.get("name") for n in nodes if n.get("role") == "manager"), None) or \
            (nodes[0].get("name") if nodes else "")
        manager.members.update(nodes, name, _param(req.params, "liveness", dict, None))
        wait = _param(req.params, "wait", (int, float), 0)
        missing = await manager.members.wait_connected(
            [n["name"] for n in nodes], float(wait)) if wait else []
        return {"nodes": manager.members.describe(), "unreachable": missing}

    async def cluster_nodes(self, req: RequestContext) -> list[dict[str, Any]]:
        return self._require_manager().members.describe()

    # -- stacks ------------------------------------------------------------------------------

    def _require_manager(self) -> Any:
        if self.manager is None:
            raise MethodError(P.INTERNAL, "controller not available",
                              hint="this stackctl has no controller (stackctl.controller)")
        return self.manager

    def _delegate(self, verb: str) -> Callable[[RequestContext], Any]:
        async def call(req: RequestContext) -> None:
            manager = self._require_manager()
            p = req.params
            progress = req.emit
            if verb == "deploy":
                stack = _param(p, "stack", dict, required=True)
                files = _param(p, "files", list, [])
                if isinstance(stack.get("name"), str) and stack["name"] and \
                        all(isinstance(f, str) for f in files):
                    self.store.set_stack_files(stack["name"], files)
                # `up --with-registry-auth`: for this deploy's pulls only (never stored)
                auth = _param(p, "registry_auth", dict, {})
                await manager.deploy(_param(p, "stack", dict, required=True),
                                     _param(p, "project_dir", str, ""),
                                     _param(p, "options", dict, {}), progress,
                                     **({"registry_auth": auth} if auth else {}))
            elif verb == "remove":
                try:
                    await manager.remove(_param(p, "name", str, required=True),
                                         _param(p, "volumes", bool, False),
                                         _param(p, "remove_orphans", bool, False), progress)
                finally:
                    with trio.CancelScope(shield=True):  # nothing outlives `down`
                        await self._stop_dns_if_idle()
            elif verb == "scale":
                await manager.scale(_param(p, "name", str, required=True),
                                    _param(p, "scales", dict, required=True), progress)
            elif verb == "rollback":
                await manager.rollback(_param(p, "name", str, required=True),
                                       _param(p, "services", list, []), progress)
            elif verb == "kill":  # the signalled ids
                return await manager.kill(_param(p, "name", str, required=True),
                                          _param(p, "services", list, []),
                                          _param(p, "signal", str, "SIGKILL"), progress)
            elif verb == "rm":  # the removed ids (containers that are not running)
                return await manager.remove_stopped(_param(p, "name", str, required=True),
                                                    _param(p, "services", list, []),
                                                    _param(p, "volumes", bool, False), progress)
            else:  # stop | start | restart
                await getattr(manager, verb)(_param(p, "name", str, required=True),
                                             _param(p, "services", list, []),
                                             _param(p, "timeout", (int, float), None), progress)
        return call

    async def _stop_dns_if_idle(self) -> None:
        stop = getattr(self.supervisor, "stop_dns_if_idle", None)
        if stop is not None:
            await stop()

    async def stack_plan(self, req: RequestContext) -> Any:
        """``{plan: Plan.to_json(), text: render_text(plan)}`` (a manager that already answers
        in that form is passed through)."""
        manager = self._require_manager()
        p = req.params
        result = await manager.plan(_param(p, "stack", dict, required=True),
                                    _param(p, "project_dir", str, ""),
                                    _param(p, "options", dict, {}))
        if hasattr(result, "to_json"):
            from stackctl.scheduler.render import render_text

            return {"plan": result.to_json(), "text": render_text(result)}
        return result

    async def stack_run(self, req: RequestContext) -> dict[str, Any]:
        """A one-off container of a service (:mod:`stackctl.agent.oneoff`): ``{id}``."""
        from stackctl.agent.oneoff import create_oneoff

        manager = self._require_manager()
        cid, node = await create_oneoff(manager.ctx, req.params)
        return {"id": cid, "node": node if self._remotes() else None}

    async def stack_list(self, req: RequestContext) -> list[dict[str, Any]]:
        infos = await (self.manager.cluster.list_containers() if self._remotes()
                       else self.node.list_containers())
        states: dict[str, list[str]] = {}
        for c in infos:
            if c.stack:
                states.setdefault(c.stack, []).append(c.state)
        out = []
        known = {s.name: s for s in self.store.list_stacks()}
        files = self.store.stack_files()
        for name in sorted(set(known) | set(states)):
            rec = known.get(name)
            out.append({"name": name, "status": stack_status(states.get(name, [])),
                        "desired": rec.status if rec else "",
                        "version": rec.version if rec else None,
                        "project_dir": rec.project_dir if rec else "",
                        "files": files.get(name, []),
                        "updated_at": rec.updated_at if rec else None})
        return out

    async def stack_ps(self, req: RequestContext) -> list[dict[str, Any]]:
        from stackctl.agent.nodeops import container_json

        p = req.params
        name = _param(p, "name", str, required=True)
        show_all = _param(p, "all", bool, False)
        services = set(_param(p, "services", list, []))
        recs = await self.node.records()
        sports = await self.node.service_ports()
        out = []
        for r in recs:
            labels = r.spec.labels
            if labels.get("com.stackctl.stack") != name:
                continue
            if services and labels.get("com.stackctl.service") not in services:
                continue
            if not show_all and r.state.status != "running":
                continue
            out.append(container_json(r, self.supervisor.health_of(r.id), self._local_name(),
                                      sports))
        if self._remotes() and not p.get("local"):
            for name, rows in await self._gather("stack.ps", {**p, "local": True}):
                out += [{**row, "node": name} for row in rows or []]
        out.sort(key=lambda c: (c["service"], slot_sort_key(c["slot"] or "0"), c["name"]))
        return out

    async def stack_events(self, req: RequestContext) -> None:
        name = _param(req.params, "name", str, None)

        async def remote(node_name: str, node: Any) -> None:
            try:
                async with node.client.stream("stack.events", {**req.params, "local": True}) \
                        as events:
                    async for ev in events:
                        await req.emit({**ev, "node": node_name} if isinstance(ev, dict)
                                       else ev)
            except StackctlError:
                return  # a node that goes away stops sending; the others go on

        async with trio.open_nursery() as nursery:
            if not req.params.get("local"):
                for node_name, node in self._remotes():
                    if hasattr(node, "client"):
                        nursery.start_soon(remote, node_name, node)
            with self.bus.subscribe(stack=name) as sub:
                async for ev in sub:
                    await req.emit(ev)

    # -- containers --------------------------------------------------------------------------

    async def container_list(self, req: RequestContext) -> list[dict[str, Any]]:
        from stackctl.agent.nodeops import container_json
        from stackctl.runtime.records import parse_filters

        p = req.params
        filters = _param(p, "filters", (dict, list), {})
        if isinstance(filters, list):
            filters = parse_filters(filters)
        recs = await trio.to_thread.run_sync(
            lambda: self.node.containers.list(all=_param(p, "all", bool, False), filters=filters))
        sports = await self.node.service_ports()
        return [container_json(r, self.supervisor.health_of(r.id), self.node.node, sports) for r in recs]

    async def container_inspect(self, req: RequestContext) -> dict[str, Any]:
        cid = _param(req.params, "id", str, required=True)
        client = await self._node_client(cid) if len(cid) == 64 else None
        if client is not None:
            return await client.call("container.inspect", req.params, timeout=30)
        out = await self.node.inspect_container(cid)
        health = self.supervisor.health_json(out["Id"])
        if health is not None:
            out["State"]["Health"] = health
        return out

    async def container_logs(self, req: RequestContext) -> None:
        from stackctl.runtime import logs

        p = req.params
        ids = _param(p, "ids", list, required=True)
        if self._remotes() and not p.get("local"):
            await self._cluster_logs(req, ids)
            return
        follow = _param(p, "follow", bool, False)
        tail = logs.parse_tail(_param(p, "tail", (str, int), None))
        now = time.time_ns()
        since = _time_param(p.get("since"), now, "since")
        until = _time_param(p.get("until"), now, "until")
        recs = [await trio.to_thread.run_sync(self.node.containers.get, i) for i in ids]
        backlog = []
        offsets = {}
        for r in recs:
            entries, offsets[r.id] = await trio.to_thread.run_sync(
                lambda r=r: logs.read_log(self.node.containers.log_path(r.id), tail=tail,
                                          since_ns=since, until_ns=until))
            backlog += [(e.time_ns, i, r, e) for i, e in enumerate(entries)]
        backlog.sort(key=lambda t: (t[0], t[1]))
        for _, _, r, e in backlog:
            await req.emit(_log_event(r, e))
        if not follow:
            return
        async with trio.open_nursery() as nursery:
            for r in recs:
                nursery.start_soon(self._follow, req, r, offsets[r.id], until)

    async def _cluster_logs(self, req: RequestContext, ids: list[Any]) -> None:
        """``container.logs`` of containers on several nodes: each node's part from that
        node (streams merged as they come with ``follow``; sorted by time without)."""
        by_node: dict[str, list[str]] = {}
        for cid in ids:
            if not isinstance(cid, str):
                raise UsageError("parameter 'ids' must be a list of strings")
            by_node.setdefault(await self.manager.cluster.node_of(cid), []).append(cid)
        follow = bool(req.params.get("follow"))
        backlog: list[Any] = []

        async def keep(item: Any) -> None:
            if follow:
                await req.emit(item)
            else:
                backlog.append(item)

        async def part(name: str, part_ids: list[str]) -> None:
            params = {**req.params, "ids": part_ids, "local": True}
            if name == self.manager.cluster.local:
                await self.container_logs(dataclasses.replace(req, params=params, _emit=keep))
                return
            client = self.manager.cluster.member(name).client
            async with client.stream("container.logs", params) as events:
                async for ev in events:
                    if follow:
                        await req.emit(ev)
                    else:
                        backlog.append(ev)

        async with trio.open_nursery() as nursery:
            for name, part_ids in by_node.items():
                nursery.start_soon(part, name, part_ids)
        backlog.sort(key=lambda ev: ev.get("time", "") if isinstance(ev, dict) else "")
        for ev in backlog:
            await req.emit(ev)

    async def _follow(self, req: RequestContext, rec: Any, offset: int, until: int | None) -> None:
        """New lines of one container's log until it stops and the file is drained."""
        from stackctl.runtime import logs
        from stackctl.runtime.containers import api as core

        path = self.node.containers.log_path(rec.id)
        buf = b""
        while True:
            stopped = core.read_state(self.node.paths, rec.id).status != "running" \
                if os.path.isdir(os.path.dirname(path)) else True
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            offset += len(chunk)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            if stopped and buf:
                lines.append(buf)
                buf = b""
            for line in lines:
                e = logs.parse_line(line)
                if e is None:
                    continue
                if until is not None and e.time_ns > until:
                    return
                await req.emit(_log_event(rec, e))
            if stopped:
                return
            await trio.sleep(LOG_POLL)


def _log_event(rec: Any, e: Any) -> dict[str, Any]:
    from stackctl.runtime.logs import format_rfc3339_ns

    return {"id": rec.id, "name": rec.name, "stream": e.stream,
            "time": format_rfc3339_ns(e.time_ns), "line": e.text}


def _time_param(value: Any, now_ns: int, flag: str) -> int | None:
    """``since``/``until``: unix seconds (a number) or the CLI's forms (RFC 3339, 10m...)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1_000_000_000)
    if isinstance(value, str):
        from stackctl.runtime.logs import parse_time_arg

        return parse_time_arg(value, now_ns, f"--{flag}")
    raise UsageError(f"parameter {flag!r} must be a time")
