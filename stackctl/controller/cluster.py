"""The nodes the controller works with, behind one object that routes each call.

The controller holds a :class:`Cluster`: a map of node name to
:class:`~stackctl.node.interface.NodeClient` (the manager's own node in-process, the others
over the agent protocol). It never calls the runtime, the network code or the filesystem
itself. The cluster routes:

- a call on a container (start, stop, remove, inspect, serving state) to the node that holds
  it — learned from every listing and create, asked of every node when unknown;
- a create to the node the scheduler placed the task on (``node=``);
- networks, volumes, published ports and task files to the nodes named by the caller (the
  nodes that run the stack's tasks), removals to every node;
- image look-ups to a given node, or the first node that has the image (the manager's first).

With one node (no inventory) every call goes to it, exactly as before the cluster existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import trio

from stackctl.errors import NotFoundError, StackctlError
from stackctl.node.interface import NodeClient
from stackctl.scheduler.observed import ContainerInfo


class NodeUnavailable(StackctlError):
    """A node the controller needs does not answer."""


class Cluster:
    def __init__(self, members: Mapping[str, NodeClient], local: str | None = None) -> None:
        if not members:
            raise StackctlError("a cluster needs at least one node")
        self.members: dict[str, NodeClient] = dict(members)
        self.local = local if local is not None else next(iter(self.members))
        self._where: dict[str, str] = {}  # container id -> node name
        #: nodes marked down (controller/members.py): their containers are not observed
        #: (their replicated tasks are placed again elsewhere) and nothing is sent to them
        self.down: set[str] = set()

    # -- membership --------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self.members)

    def live(self) -> list[str]:
        """The members not marked down."""
        return [n for n in self.members if n not in self.down]

    def member(self, name: str | None) -> NodeClient:
        if name is None:
            if len(self.members) == 1:
                return next(iter(self.members.values()))
            name = self.local
        try:
            return self.members[name]
        except KeyError:
            raise NodeUnavailable(f"node {name} is not in the cluster",
                                  hint="see `stackctl node ls`") from None

    def set_members(self, members: Mapping[str, NodeClient]) -> None:
        self.members = dict(members)
        self._where = {cid: n for cid, n in self._where.items() if n in self.members}
        self.down &= set(self.members)

    def _targets(self, nodes: Iterable[str] | None) -> list[str]:
        if nodes is None:
            return self.live()
        return [n for n in dict.fromkeys(nodes) if n is not None and n not in self.down]

    async def _each(self, nodes: Iterable[str], fn: Any) -> dict[str, Any]:
        """``fn(name, member)`` on each node at once; results by node name."""
        out: dict[str, Any] = {}

        async def one(name: str) -> None:
            out[name] = await fn(name, self.member(name))

        names = list(nodes)
        if len(names) == 1:
            await one(names[0])
            return out
        failed: dict[str, StackctlError] = {}

        async def guarded(name: str) -> None:
            try:
                await one(name)
            except StackctlError as exc:
                failed[name] = exc

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(guarded, name)
        if len(failed) == 1:
            raise next(iter(failed.values()))
        if failed:  # one line naming every node that failed
            first = next(iter(failed.values()))
            raise NodeUnavailable("; ".join(e.message for _, e in sorted(failed.items())),
                                  hint=first.hint)
        return out

    # -- containers --------------------------------------------------------------------------

    async def list_containers(self, *, stack: str | None = None) -> list[ContainerInfo]:
        async def one(name: str, m: NodeClient) -> list[ContainerInfo]:
            return await m.list_containers(stack=stack)

        found = await self._each(self.live(), one)
        out: list[ContainerInfo] = []
        for name in self.live():
            for c in found.get(name, []):
                self._where[c.id] = name
                out.append(c)
        return out

    async def node_of(self, cid: str) -> str:
        name = self._where.get(cid)
        if name is not None and name in self.members:
            return name
        if len(self.members) == 1:
            return next(iter(self.members))
        for c in await self.list_containers():
            if c.id == cid:
                return self._where[cid]
        raise NotFoundError(f"no such container on any node: {cid[:12]}")

    async def _on(self, cid: str) -> NodeClient:
        return self.member(await self.node_of(cid))

    async def create_container(self, opts: Any, *, node: str | None = None,
                               **kw: Any) -> str:
        name = node if node is not None else (self.local if len(self.members) > 1 else
                                              next(iter(self.members)))
        cid = await self.member(name).create_container(opts, **kw)
        self._where[cid] = name
        return cid

    async def start_container(self, cid: str) -> None:
        await (await self._on(cid)).start_container(cid)

    async def stop_container(self, cid: str, timeout: float | None = None) -> None:
        await (await self._on(cid)).stop_container(cid, timeout)

    async def kill_container(self, cid: str, signal: str = "SIGKILL") -> None:
        await (await self._on(cid)).kill_container(cid, signal)

    async def remove_container(self, cid: str, *, volumes: bool = False) -> None:
        try:
            node = await self._on(cid)
        except NotFoundError:
            return  # removal is idempotent
        await node.remove_container(cid, volumes=volumes)
        self._where.pop(cid, None)

    async def inspect_container(self, cid: str) -> dict[str, Any]:
        return await (await self._on(cid)).inspect_container(cid)

    # -- networks and volumes ----------------------------------------------------------------

    async def ensure_network(self, name: str, *, nodes: Iterable[str] | None = None,
                             **kw: Any) -> bool:
        made = await self._each(self._targets(nodes),
                                lambda _n, m: m.ensure_network(name, **kw))
        return any(made.values())

    async def remove_network(self, name: str) -> None:
        await self._remove_everywhere(lambda m: m.remove_network(name))

    async def ensure_volume(self, name: str, *, nodes: Iterable[str] | None = None,
                            **kw: Any) -> bool:
        made = await self._each(self._targets(nodes),
                                lambda _n, m: m.ensure_volume(name, **kw))
        return any(made.values())

    async def remove_volume(self, name: str) -> None:
        await self._remove_everywhere(lambda m: m.remove_volume(name))

    async def _remove_everywhere(self, fn: Any) -> None:
        """On every node; NotFound everywhere is NotFound, any other error is raised."""
        missing: list[str] = []

        async def one(name: str, m: NodeClient) -> None:
            try:
                await fn(m)
            except NotFoundError:
                missing.append(name)

        await self._each(self.live(), one)
        if len(missing) == len(self.live()):
            raise NotFoundError("not found on any node")

    # -- images ------------------------------------------------------------------------------

    def _image_order(self, node: str | None) -> list[str]:
        if node is not None:
            return [node]
        live = self.live()
        return [self.local, *(n for n in live if n != self.local)] \
            if self.local in live else live

    async def image_id(self, ref: str, node: str | None = None) -> str | None:
        for name in self._image_order(node):
            found = await self.member(name).image_id(ref)
            if found is not None:
                return found
        return None

    async def image_config(self, ref: str, node: str | None = None) -> dict[str, Any] | None:
        for name in self._image_order(node):
            found = await self.member(name).image_config(ref)
            if found is not None:
                return found
        return None

    async def build_image(self, context: str, **kw: Any) -> str:
        return await self.member(self.local if self.local in self.members else None) \
            .build_image(context, **kw)

    # -- serving state -----------------------------------------------------------------------

    async def set_serving(self, container_id: str, serving: bool) -> None:
        try:
            node = await self._on(container_id)
        except NotFoundError:
            return  # gone: nothing routes to it any more
        await node.set_serving(container_id, serving)

    async def publish_service(self, stack: str, service: str, ports: list[str],
                              networks: list[str], *,
                              nodes: Iterable[str] | None = None) -> None:
        await self._each(self._targets(nodes), lambda _n, m: m.publish_service(
            stack, service, ports, networks))

    async def unpublish_service(self, stack: str, service: str, *,
                                nodes: Iterable[str] | None = None) -> None:
        await self._each(self._targets(nodes),
                         lambda _n, m: m.unpublish_service(stack, service))

    # -- task files --------------------------------------------------------------------------

    async def write_task_files(self, stack: str, service: str, config_hash: str,
                               files: list[Any], contents: Mapping[str, bytes], *,
                               nodes: Iterable[str] | None = None) -> None:
        await self._each(self._targets(nodes), lambda _n, m: m.write_task_files(
            stack, service, config_hash, files, contents))

    async def has_task_files(self, stack: str, service: str, config_hash: str, *,
                             node: str | None = None) -> bool:
        return await self.member(node).has_task_files(stack, service, config_hash)

    async def prune_task_files(self, stack: str, keep: list[str]) -> None:
        await self._each(self.live(), lambda _n, m: m.prune_task_files(stack, keep))

    async def remove_task_files(self, stack: str) -> None:
        await self._each(self.live(), lambda _n, m: m.remove_task_files(stack))
