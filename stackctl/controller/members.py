"""The cluster's members as the manager keeps them: which nodes there are (the inventory the
CLI sends), how to reach each (the local node in-process, the others over SSH), and what each
is like (CPUs, memory, platform, labels, availability, status) — the scheduler's node
snapshots.

With no inventory the cluster is this node alone: a ready, active manager with this host's
CPUs and memory.

With an inventory, the manager keeps one SSH connection per other node (asyncssh,
:mod:`stackctl.transport.ssh`), one agent connection over it, and reconnects with a backoff
when it is lost. The manager authenticates with its own key (``<state>/manager_id_ed25519``,
made by ``node bootstrap`` and authorized on the nodes for the agent protocol only) when it
has one, else with the inventory's identity and the user's SSH setup; host keys are checked
against ``<state>/known_hosts`` or the inventory's known_hosts file — never accepted.

Liveness (docs/cluster.md, "Liveness and fencing"): the manager sends each connected node a
heartbeat (``agent.ping``) every ``heartbeat`` seconds. A node answers → *ready*. A node
that has not answered for ``down_after`` seconds (connection lost, or heartbeats failing) is
*down*: its containers drop out of the observed state (so its replicated tasks are placed
again elsewhere, global ones are not moved) and nothing is sent to it. Between a lost
connection and ``down_after`` a node is *unknown*: it stays in the cluster as
:class:`UnreachableNode`, every call on it fails with a line naming it, and none of its
replicas is thought missing — a blip never doubles a slot. Defaults: heartbeat 1 s,
down after 5 s (``STACKCTL_HEARTBEAT`` / ``STACKCTL_DOWN_AFTER``, or the inventory
request's ``liveness``).

Fencing: a node that comes back is first *fenced* — the manager raises the node's fencing
token (its term and the node's generation; the node refuses any later request carrying an
older one) and removes the node's containers whose slots were given to other nodes, or
whose stack or slot is no longer desired — and only then becomes a member again.

The inventory is kept in ``<state>/cluster.json`` (0600), so a restarted manager reconnects.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Mapping
from typing import Any

import trio

from stackctl.controller.cluster import Cluster
from stackctl.errors import StackctlError
from stackctl.scheduler.nodes import NANO, NodeSnapshot
from stackctl.transport.target import REMOTE_COMMAND

log = logging.getLogger("stackctl.controller")

CLUSTER_FILE = "cluster.json"
MANAGER_KEY = "manager_id_ed25519"
KNOWN_HOSTS = "known_hosts"
RECONNECT_MIN, RECONNECT_MAX = 0.5, 5.0
HEARTBEAT = 1.0  # seconds between heartbeats
DOWN_AFTER = 5.0  # seconds without an answer before a node is down
INFO_TIMEOUT = 30.0


def host_facts() -> dict[str, Any]:
    """This host's capacity and platform, as ``agent.info`` reports them."""
    memory = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return {"ncpu": os.cpu_count() or 1, "mem_total": memory, "os": "linux",
            "arch": platform.machine() or "x86_64"}


def snapshot(name: str, facts: Mapping[str, Any], *, role: str = "worker",
             availability: str = "active", status: str = "ready",
             labels: Mapping[str, str] | None = None, ip: str = "",
             node_id: str = "") -> NodeSnapshot:
    return NodeSnapshot(
        name=name, id=node_id or name, hostname=name, role=role, availability=availability,
        status=status, labels=dict(labels or {}),
        os=str(facts.get("os") or "linux"), arch=str(facts.get("arch") or "x86_64"),
        ip=ip, cpus=int(facts.get("ncpu") or 0) * NANO,
        memory=int(facts.get("mem_total") or 0))


class UnreachableNode:
    """A node of the inventory the manager is not connected to: every call fails."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def __getattr__(self, item: str) -> Any:
        if item.startswith("_"):
            raise AttributeError(item)

        async def fail(*_a: Any, **_kw: Any) -> Any:
            from stackctl.transport.errors import NodeUnreachable

            raise NodeUnreachable(self.name, self.reason,
                                  hint=f"check `ssh {self.name}` and `stackctl node ls`; the "
                                  "manager reconnects by itself")
        return fail


class Members:
    """The nodes of the cluster (see the module docstring)."""

    def __init__(self, cluster: Cluster, local: Any, state_dir: str | None = None, *,
                 on_event: Any = None, fence: Any = None,
                 clock: Any = time.monotonic) -> None:
        """``on_event()``: something happened on a node (a container started, exited, was
        removed, the node went down...): the manager reconciles soon. ``fence(name,
        node)``: (async) what the manager does to a node that comes back before it is a
        member again."""
        self.on_event = on_event or (lambda: None)
        self.fence = fence
        self.clock = clock
        self.heartbeat = float(os.environ.get("STACKCTL_HEARTBEAT") or HEARTBEAT)
        self.down_after = float(os.environ.get("STACKCTL_DOWN_AFTER") or DOWN_AFTER)
        self.term = 0  # this manager's incarnation (raised at each start: fencing token)
        self.generation: dict[str, int] = {}  # node -> raised each time it goes down
        self._seen: dict[str, float] = {}  # node -> clock() of its last answer
        self._watch_since = clock()
        self.cluster = cluster
        self.local = local
        self.state_dir = state_dir
        self.entries: list[dict[str, Any]] = []  # the inventory's nodes (public form)
        self.facts: dict[str, dict[str, Any]] = {local.name: host_facts()}
        self.status: dict[str, str] = {local.name: "ready"}
        self.errors: dict[str, str] = {}
        self.last_seen: dict[str, float] = {local.name: time.time()}
        self.versions: dict[str, str] = {}
        self.changed = trio.Event()
        self._scopes: dict[str, tuple[str, trio.CancelScope]] = {}  # name -> (url, scope)
        self._wanted = trio.Event()

    # -- the inventory -----------------------------------------------------------------------

    @property
    def clustered(self) -> bool:
        return bool(self.entries)

    def load(self) -> None:
        """The inventory kept by an earlier run of this manager, if any."""
        path = self._path()
        if path is None or not os.path.exists(path):
            return
        try:
            with open(path) as f:
                data = json.load(f)
            self.term = int(data.get("term") or 0)
            self.generation = {str(k): int(v) for k, v in (data.get("generation") or {}).items()}
            if data.get("nodes"):
                self._set(data.get("nodes") or [], data.get("manager") or "")
        except (OSError, ValueError, TypeError, StackctlError) as exc:
            log.warning("cannot read %s: %s; waiting for the CLI's inventory", path, exc)

    def start_term(self) -> None:
        """A new incarnation of the manager: a higher fencing term, kept."""
        self.term += 1
        self._save()

    def update(self, nodes: list[dict[str, Any]], manager: str,
               liveness: Mapping[str, Any] | None = None) -> None:
        """A new inventory from the CLI (``cluster.update_inventory``)."""
        before = {n["name"]: n.get("availability") for n in self.entries}
        self._set(nodes, manager)
        for key in ("heartbeat", "down_after"):
            value = (liveness or {}).get(key)
            if isinstance(value, (int, float)) and value > 0:
                setattr(self, key, float(value))
        self._save()
        if before != {n["name"]: n.get("availability") for n in self.entries}:
            self.on_event()  # drained, paused, activated, added or removed: reconcile

    def _save(self) -> None:
        path = self._path()
        if path is None:
            return
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"nodes": self.entries, "manager": self.cluster.local,
                       "term": self.term, "generation": self.generation}, f)
        os.replace(tmp, path)

    def _path(self) -> str | None:
        return os.path.join(self.state_dir, CLUSTER_FILE) if self.state_dir else None

    def _set(self, nodes: list[dict[str, Any]], manager: str) -> None:
        names = [n.get("name") for n in nodes]
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise StackctlError("an inventory with missing or duplicate node names")
        if manager not in names:
            raise StackctlError(f"the inventory's manager {manager!r} is not one of its nodes")
        self.entries = [dict(n) for n in nodes]
        if self.local.name != manager:  # this agent is the inventory's manager node
            old = self.local.name
            self.local.name = manager
            for d in (self.facts, self.status, self.last_seen):
                if old in d:
                    d[manager] = d.pop(old)
        members: dict[str, Any] = {manager: self.local}
        for n in self.entries:
            name = n["name"]
            if name == manager:
                continue
            current = self.cluster.members.get(name)
            if current is not None and self._scopes.get(name, ("", None))[0] == n["url"]:
                members[name] = current
            else:
                members[name] = UnreachableNode(name, "not connected yet")
                if self.status.get(name) != "down":
                    self.status[name] = "unknown"
        for gone in [n for n in self.status if n not in members]:
            for d in (self.status, self.errors, self.facts, self.versions, self.last_seen,
                      self._seen):
                d.pop(gone, None)
        self.cluster.set_members(members)
        self.cluster.local = manager
        self._wanted.set()

    def entry(self, name: str) -> dict[str, Any]:
        for n in self.entries:
            if n["name"] == name:
                return n
        return {"name": name}

    # -- snapshots ---------------------------------------------------------------------------

    async def snapshots(self) -> list[NodeSnapshot]:
        if not self.entries:
            return [snapshot(self.local.name, self.facts[self.local.name], role="manager")]
        out = []
        for n in self.entries:
            name = n["name"]
            status = "ready" if name == self.local.name else self.status.get(name, "unknown")
            role = "manager" if name == self.local.name else "worker"
            out.append(snapshot(name, self.facts.get(name, {}), role=role,
                                availability=n.get("availability") or "active",
                                status=status if status in ("ready", "down") else "unknown",
                                labels=n.get("labels") or {}, node_id=n.get("id") or ""))
        return out

    def ready(self, name: str) -> bool:
        """Whether ``name`` answers now (this node always does)."""
        return name == self.local.name or self.status.get(name) == "ready"

    def describe(self) -> list[dict[str, Any]]:
        """``cluster.nodes``: each node's status as the manager sees it."""
        from stackctl import __version__

        rows = []
        for n in self.entries or [{"name": self.local.name, "availability": "active"}]:
            name = n["name"]
            local = name == self.local.name
            rows.append({
                "name": name, "status": "ready" if local else self.status.get(name, "unknown"),
                "last_heartbeat": self.last_seen.get(name),
                "engine_version": __version__ if local else self.versions.get(name, ""),
                "error": "" if local else self.errors.get(name, ""),
                "availability": n.get("availability") or "active",
                "manager": local})
        return rows

    # -- connections -------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Keep one connection per remote node while the manager runs, and watch them."""
        self._watch_since = self.clock()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch)
            task_status.started()
            while True:
                self._sync(nursery)
                self._wanted = trio.Event()
                await self._wanted.wait()

    # -- liveness ----------------------------------------------------------------------------

    def check(self, now: float | None = None) -> list[str]:
        """Mark down every remote node that has not answered for ``down_after`` seconds
        (one never seen: since the manager began watching); the nodes newly down."""
        now = self.clock() if now is None else now
        newly = []
        for n in self.entries:
            name = n["name"]
            if name == self.local.name or self.status.get(name) == "down":
                continue
            last = self._seen.get(name, self._watch_since)
            if now - last >= self.down_after:
                self.status[name] = "down"
                self.generation[name] = self.generation.get(name, 0) + 1
                newly.append(name)
        if newly:
            self.cluster.down = {n for n, st in self.status.items() if st == "down"}
            self._save()
            for name in newly:
                log.warning("node %s is down (no answer for %.1f s); its tasks go elsewhere",
                            name, self.down_after)
                # what waits on it now (a reconcile pass reading it) fails at once, not when
                # its own heartbeat times out (up to a heartbeat later): its tasks move sooner
                client = getattr(self.cluster.members.get(name), "client", None)
                abort = getattr(client, "abort", None)
                if abort is not None:
                    abort(f"node {name} is down: no answer for {self.down_after:g} s")
            self.on_event()
            self._changed()
        return newly

    async def _watch(self) -> None:
        while True:
            self.check()
            await trio.sleep(min(self.heartbeat, self.down_after / 2))

    async def _beat(self, name: str, client: Any) -> StackctlError:
        """Heartbeats while connected; returns why they stopped (the connection is lost, or
        a heartbeat got no answer in time: then the connection is dropped and made again,
        and the node is fenced when it answers again)."""
        while True:
            await trio.sleep(self.heartbeat)
            try:
                await client.call("agent.ping", timeout=self.down_after)
            except StackctlError as exc:
                # whatever else waits on this node fails now, not at its own timeout
                client.abort(f"no answer to a heartbeat: {exc.message}")
                return exc
            self._seen[name] = self.clock()
            self.last_seen[name] = time.time()

    def _sync(self, nursery: trio.Nursery) -> None:
        want = {n["name"]: n for n in self.entries if n["name"] != self.local.name}
        for name, (url, scope) in list(self._scopes.items()):
            if name not in want or want[name]["url"] != url:
                scope.cancel()
                del self._scopes[name]
        for name, entry in want.items():
            if name not in self._scopes:
                scope = trio.CancelScope()
                self._scopes[name] = (entry["url"], scope)
                nursery.start_soon(self._keep, name, dict(entry), scope)

    def _options(self, entry: Mapping[str, Any]) -> Any:
        from stackctl.transport.ssh import SSHOptions

        identity = entry.get("identity") or None
        known = entry.get("known_hosts") or None
        if self.state_dir:
            own = os.path.join(self.state_dir, MANAGER_KEY)
            if os.path.exists(own):
                identity = own
            hosts = os.path.join(self.state_dir, KNOWN_HOSTS)
            if os.path.exists(hosts):
                known = hosts
        return SSHOptions(identity=identity, known_hosts=known, remote_command=REMOTE_COMMAND)

    async def _keep(self, name: str, entry: dict[str, Any], scope: trio.CancelScope) -> None:
        from stackctl.node.remote import RemoteNode
        from stackctl.transport.ssh import SSHConnection, open_ssh_client
        from stackctl.transport.target import SSHTarget

        delay = RECONNECT_MIN
        with scope:
            while True:
                try:
                    target = SSHTarget.parse(entry["url"])
                    conn = await SSHConnection.connect(target, self._options(entry), name=name)
                    try:
                        async with open_ssh_client(conn, node=name) as client:
                            info = await client.call("agent.info", timeout=INFO_TIMEOUT)
                            self.facts[name] = {k: info.get(k) for k in
                                                ("ncpu", "mem_total", "os", "arch")}
                            self.versions[name] = str(info.get("version") or "")
                            node = RemoteNode(name, client)
                            node.token = (self.term, self.generation.get(name, 0))
                            if self.fence is not None:
                                # before anything else: what was given away goes
                                await self.fence(name, node,
                                                 was_down=self.status.get(name) == "down")
                            self._seen[name] = self.clock()
                            self.status[name] = "ready"
                            self.cluster.down.discard(name)
                            self.errors.pop(name, None)
                            self.last_seen[name] = time.time()
                            self._member(name, node)
                            log.info("node %s connected", name)
                            self.on_event()
                            delay = RECONNECT_MIN
                            async with trio.open_nursery() as nursery:
                                nursery.start_soon(self._events, client)
                                lost = await self._beat(name, client)
                                nursery.cancel_scope.cancel()
                            raise lost
                    finally:
                        with trio.CancelScope(shield=True), trio.move_on_after(2):
                            await conn.aclose()  # bounded: a cut link never answers
                except StackctlError as exc:
                    self.errors[name] = exc.message
                    if self.status.get(name) == "ready":
                        log.warning("node %s: connection lost: %s", name, exc.message)
                        self.status[name] = "unknown"
                    self._member(name, UnreachableNode(name, exc.message))
                    self.on_event()
                await trio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)

    async def _events(self, client: Any) -> None:
        """The node's container events wake the manager's reconcile loop."""
        try:
            async with client.stream("stack.events", {"local": True}) as events:
                async for _ in events:
                    self.on_event()
        except StackctlError:
            return  # the connection's loss is handled by _keep

    def _member(self, name: str, node: Any) -> None:
        if name in self.cluster.members:
            self.cluster.members[name] = node
        self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_connected(self, names: list[str], timeout: float) -> list[str]:
        """Wait until ``names`` are connected or ``timeout`` passes; those still not. A node
        already marked down is not waited for (the manager has moved on without it)."""
        def missing() -> list[str]:
            return [n for n in names if n != self.local.name and
                    self.status.get(n) not in ("ready", "down")]

        with trio.move_on_after(timeout):
            while missing():
                await self.changed.wait()
        return [n for n in names if n != self.local.name and self.status.get(n) != "ready"]
