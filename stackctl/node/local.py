"""This node, in-process: :class:`~stackctl.node.interface.NodeClient` over the runtime
(:class:`~stackctl.agent.nodeops.NodeOps`), the network code (VIPs and published ports) and
the task files (:mod:`stackctl.controller.objects`, on a tmpfs).

The manager reaches its own node through this class; every agent also serves it to a remote
manager through :mod:`stackctl.node.service`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import trio

from stackctl.agent.nodeops import NodeOps
from stackctl.controller import objects
from stackctl.errors import StackctlError
from stackctl.net.sandbox import Attachment
from stackctl.node.interface import TASKFILES_PREFIX
from stackctl.paths import NodePaths
from stackctl.runtime.imageconfig import RunOptions
from stackctl.scheduler.observed import ContainerInfo
from stackctl.scheduler.tasks import LABEL_TASK_ID, LOCAL_NODE


class LocalNet:
    """VIPs and published ports on this node, through :mod:`stackctl.net` (in a worker
    thread)."""

    def __init__(self, paths: NodePaths) -> None:
        self.paths = paths

    async def set_serving(self, container_id: str, serving: bool) -> None:
        from stackctl.errors import NotFoundError
        from stackctl.net import sandbox

        def work() -> None:
            try:
                sandbox.set_health(self.paths, container_id, serving)
            except NotFoundError:
                pass  # no network of ours (network_mode host/none): nothing to route

        await trio.to_thread.run_sync(work)

    async def publish_service(self, stack: str, service: str, ports: list[str],
                              networks: list[str]) -> None:
        from stackctl.net import service_ports

        await trio.to_thread.run_sync(lambda: service_ports.publish(
            self.paths, f"{stack}_{service}", service, ports, networks))

    async def unpublish_service(self, stack: str, service: str) -> None:
        from stackctl.net import service_ports

        await trio.to_thread.run_sync(lambda: service_ports.unpublish(
            self.paths, f"{stack}_{service}"))


def resolve_taskfiles(run: str, opts: RunOptions) -> RunOptions:
    """``opts`` with every ``source=taskfiles:<stack>/<dir>/<file>`` of its mounts turned
    into this node's path (``<run>/secrets/<stack>/<dir>/<file>``). A name that tries to
    leave that directory is refused (the request may come from another machine)."""
    mounts = []
    changed = False
    for m in opts.mounts:
        parts = m.split(",")
        for i, part in enumerate(parts):
            if part.startswith("source=" + TASKFILES_PREFIX):
                rel = part[len("source=" + TASKFILES_PREFIX):]
                segs = rel.split("/")
                if len(segs) != 3 or any(s in ("", ".", "..") for s in segs):
                    raise StackctlError(f"container {opts.image}: a task file name that is "
                                        f"not valid: {rel!r}")
                parts[i] = "source=" + os.path.join(objects.stack_dir(run, segs[0]),
                                                    segs[1], segs[2])
                changed = True
        mounts.append(",".join(parts))
    return dataclasses.replace(opts, mounts=mounts) if changed else opts


TASK_INDEX_REREAD = 4096  # entries, before the task-id index is read again from the records


def task_ids_of(containers_dir: str) -> dict[str, str]:
    """(blocking) Task id -> container id of the containers under ``containers_dir``, from
    the labels of their records (a record being written or removed is skipped)."""
    out: dict[str, str] = {}
    try:
        entries = os.listdir(containers_dir)
    except FileNotFoundError:
        return out
    for cid in entries:
        try:
            with open(os.path.join(containers_dir, cid, "config.json")) as f:
                labels = json.load(f).get("labels") or {}
        except (OSError, ValueError, AttributeError):
            continue
        task_id = labels.get(LABEL_TASK_ID) if isinstance(labels, dict) else None
        if task_id:
            out[task_id] = cid
    return out


class LocalNode:
    """:class:`~stackctl.node.interface.NodeClient` for this node."""

    def __init__(self, ops: NodeOps, net: Any = None, *, paths: NodePaths | None = None,
                 name: str | None = None) -> None:
        self.ops = ops
        self.paths: NodePaths = paths if paths is not None else ops.paths
        self.net = net if net is not None else LocalNet(self.paths)
        self.name = name or getattr(ops, "node", LOCAL_NODE)
        self._creating: dict[str, trio.Event] = {}  # task id -> a create under way
        self._task_ids: dict[str, str] | None = None  # task id -> container id (see _by_task_id)

    # -- containers --------------------------------------------------------------------------

    async def list_containers(self, *, stack: str | None = None) -> list[ContainerInfo]:
        infos = await self.ops.list_containers(stack=stack)
        return [c if c.node == self.name else dataclasses.replace(c, node=self.name)
                for c in infos]

    def _by_task_id(self, task_id: str) -> str | None:
        """The container made for ``task_id``, from an index of this node's containers by
        task id (read from their records once, then kept up to date by this node's creates
        and removals): a create is O(1), not a listing of every container."""
        if self._task_ids is None or len(self._task_ids) > TASK_INDEX_REREAD:
            # (again when entries of containers removed by other means, `stackctl rm`,
            # have piled up; a retry comes within seconds of its first try, so a stale
            # entry meanwhile costs nothing)
            # read in this thread: once per agent (a few ms per thousand records), and a
            # worker thread would let a test's virtual clock jump
            self._task_ids = task_ids_of(self.paths.containers)
        return self._task_ids.get(task_id)

    async def create_container(self, opts: RunOptions, *, name: str,
                               networks: list[Attachment] | None = None,
                               ports: list[str] | None = None, service: str = "",
                               endpoint_mode: str = "vip",
                               health: dict[str, Any] | None = None) -> str:
        """Create (idempotent by task id: a retried request returns the first container)."""
        task_id = opts.labels.get(LABEL_TASK_ID)
        if task_id:
            while task_id in self._creating:  # the same request, retried while it runs
                await self._creating[task_id].wait()
            existing = self._by_task_id(task_id)
            if existing is not None:
                return existing
            self._creating[task_id] = trio.Event()
        try:
            opts = resolve_taskfiles(self.paths.run, opts)
            cid = await self.ops.create_container(
                opts, name=name, networks=networks, ports=ports, service=service,
                endpoint_mode=endpoint_mode, health=health)
            if task_id and self._task_ids is not None:
                self._task_ids[task_id] = cid
            return cid
        finally:
            if task_id:
                self._creating.pop(task_id).set()

    async def start_container(self, cid: str) -> None:
        await self.ops.start_container(cid)

    async def stop_container(self, cid: str, timeout: float | None = None) -> None:
        await self.ops.stop_container(cid, timeout)

    async def kill_container(self, cid: str, signal: str = "SIGKILL") -> None:
        await self.ops.kill_container(cid, signal)

    async def remove_container(self, cid: str, *, volumes: bool = False) -> None:
        await self.ops.remove_container(cid, volumes=volumes)
        if self._task_ids:
            for task_id in [t for t, c in self._task_ids.items() if c == cid]:
                del self._task_ids[task_id]

    async def inspect_container(self, cid: str) -> dict[str, Any]:
        return await self.ops.inspect_container(cid)

    # -- networks and volumes ----------------------------------------------------------------

    async def ensure_network(self, name: str, **kw: Any) -> bool:
        return await self.ops.ensure_network(name, **kw)

    async def remove_network(self, name: str) -> None:
        await self.ops.remove_network(name)

    async def ensure_volume(self, name: str, **kw: Any) -> bool:
        return await self.ops.ensure_volume(name, **kw)

    async def remove_volume(self, name: str) -> None:
        await self.ops.remove_volume(name)

    # -- images ------------------------------------------------------------------------------

    async def image_id(self, ref: str) -> str | None:
        return await self.ops.image_id(ref)

    async def image_config(self, ref: str) -> dict[str, Any] | None:
        return await self.ops.image_config(ref)

    async def build_image(self, context: str, *, dockerfile: str, tag: str,
                          args: dict[str, str], target: str | None) -> str:
        return await self.ops.build_image(context, dockerfile=dockerfile, tag=tag, args=args,
                                          target=target)

    async def pull_image(self, ref: str, *, policy: str = "missing",
                         auth: dict[str, Any] | None = None,
                         progress: Any = None) -> dict[str, Any]:
        """Make ``ref`` present here as ``policy`` says, pulling it from its registry
        (:meth:`~stackctl.agent.nodeops.NodeOps.pull_image`); ``auth`` is for this pull
        only; ``progress(dict)`` hears the transfer (from its threads)."""
        if progress is None:
            return await self.ops.pull_image(ref, policy=policy, auth=auth)
        return await self.ops.pull_image(ref, policy=policy, auth=auth, progress=progress)

    # -- serving state -----------------------------------------------------------------------

    async def set_serving(self, container_id: str, serving: bool) -> None:
        await self.net.set_serving(container_id, serving)

    async def publish_service(self, stack: str, service: str, ports: list[str],
                              networks: list[str]) -> None:
        await self.net.publish_service(stack, service, ports, networks)

    async def unpublish_service(self, stack: str, service: str) -> None:
        await self.net.unpublish_service(stack, service)

    # -- overlay networks --------------------------------------------------------------------

    async def overlay_sync(self, view: dict[str, Any]) -> dict[str, Any]:
        """Make this node's part of one overlay network the manager's view (idempotent)."""
        from stackctl.net import overlay

        parsed = overlay.OverlaySync.from_json(view)
        # the DNS server (started by a local container's create) re-reads the state file
        return await trio.to_thread.run_sync(overlay.sync, self.paths, parsed)

    async def overlay_caps(self) -> dict[str, Any]:
        """What this node can do for encrypted overlay networks: IPsec algorithms of its
        kernel, else the userspace tunnel (stackctl/net/tunneld.py), and why not."""
        from stackctl.net import tunneld, xfrm

        def probe() -> dict[str, Any]:
            caps: dict[str, Any] = dict(xfrm.capabilities())
            if not (caps.get("gcm") or caps.get("cbc")):
                caps["esp_reason"] = xfrm.esp_reason() or (
                    "no xfrm" if not caps.get("xfrm") else "no ESP in the kernel")
            caps["userspace"], caps["userspace_reason"] = tunneld.available()
            return caps

        return await trio.to_thread.run_sync(probe)

    # -- task files --------------------------------------------------------------------------

    async def write_task_files(self, stack: str, service: str, config_hash: str,
                               files: list[Any], contents: Mapping[str, bytes]) -> None:
        def write() -> None:
            objects.ensure_stack_tmpfs(self.paths.run, stack)
            objects.write_version(self.paths.run, stack, service, config_hash, files,
                                  contents)

        await trio.to_thread.run_sync(write)

    async def has_task_files(self, stack: str, service: str, config_hash: str) -> bool:
        return os.path.isdir(objects.version_dir(self.paths.run, stack, service, config_hash))

    async def prune_task_files(self, stack: str, keep: list[str]) -> None:
        await trio.to_thread.run_sync(objects.prune_versions, self.paths.run, stack, keep)

    async def remove_task_files(self, stack: str) -> None:
        await trio.to_thread.run_sync(objects.remove_stack, self.paths.run, stack)
