"""Starting and stopping one task, so that cancellation never leaves half of it behind.

- :func:`start_task` creates the container, keeps it out of its service's VIPs and published
  ports (it joins them once ready: :func:`sync_serving`), and starts it. If anything fails or
  the caller is cancelled after the container was created and before it was started, the
  container is removed again in a shielded scope: there is never a created-but-abandoned
  container.
- :func:`stop_task` takes the replica out of its VIPs and published ports *first*, waits a
  short drain grace, then stops and removes it; cancelled before the stop, it puts the replica
  back (the previous version keeps serving).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import trio

from stackctl.controller.context import Ctx, Progress
from stackctl.controller.imagepull import ensure_task_image
from stackctl.controller.taskspec import (
    TaskRequest,
    health_timing,
    service_listen_ports,
    task_request,
)
from stackctl.scheduler.observed import ContainerInfo
from stackctl.errors import ConflictError, StackctlError
from stackctl.scheduler.tasks import LABEL_TASK_ID, HealthTiming, ServiceTasks, Task
from stackctl.spec.models import Stack


@dataclass
class Version:
    """A service at one version: what it takes to make its tasks."""

    stack: Stack
    service: str
    st: ServiceTasks
    objects_dir: str = ""
    image_config: dict[str, Any] | None = None
    #: the image id the version was made with (its config hash has it): a registry image the
    #: deploy pulled is pulled by its node too before a task is created there
    image_id: str = ""

    def task(self, slot: str) -> Task:
        for t in self.st.tasks:
            if t.slot == slot:
                return t
        # a slot outside the replica count of this version (e.g. rolling back after a scale)
        base = self.st.tasks[0] if self.st.tasks else None
        if base is None:
            return Task(self.stack.name or "", self.service, slot, self.st.config_hash)
        return Task(base.stack, base.service, slot, base.config_hash, base.node)

    def request(self, slot: str, *, task_id: str,
                network_container: str | None = None) -> TaskRequest:
        return task_request(self.stack, self.service, self.task(slot), task_id=task_id,
                            objects_dir=self.objects_dir, image_config=self.image_config,
                            network_container=network_container)

    @property
    def timing(self) -> HealthTiming | None:
        service = self.stack.services[self.service]
        from stackctl.controller.taskspec import health_config
        return health_timing(health_config(service.healthcheck, self.image_config))

    @property
    def listen_ports(self) -> list[int]:
        """The TCP ports its tasks must listen on before they are ready (no health check)."""
        return service_listen_ports(self.stack.services[self.service], self.image_config)


def new_task_id() -> str:
    return secrets.token_hex(12)


async def start_task(ctx: Ctx, progress: Progress, version: Version, slot: str, *,
                     network_container: str | None = None, action: str = "create",
                     start: bool = True) -> str:
    """Create and start a new container for ``slot`` of ``version``; its id. With
    ``start=False`` (``up --no-start``, ``create``) only create it."""
    req = version.request(slot, task_id=new_task_id(), network_container=network_container)
    service = version.service
    node = ctx.node_of_slot(version.stack.name or "", service, slot)
    if ctx.overlay is not None:  # overlay networks: the manager gives the addresses
        ctx.overlay.prepare(version.stack.name or "", service, node, req)
    where = f" on {node}" if node is not None and len(ctx.node.members) > 1 else ""
    if version.image_id:  # a task placed on a node that never pulled the image (moved)
        await ensure_task_image(ctx, version.stack.name or "", service, slot, version.image_id,
                                node)
    await progress(service, action, "started", f"creating {req.name}{where}", slot=slot)
    try:
        try:
            cid = await ctx.node.create_container(req.opts, node=node, **req.create_kwargs())
        except ConflictError:
            # the slot's previous container still holds the name (start-first, a replacement
            # of a dead task): the new one gets the task id as a suffix
            req.name = f"{req.name}-{req.opts.labels[LABEL_TASK_ID][:8]}"
            cid = await ctx.node.create_container(req.opts, node=node, **req.create_kwargs())
    except StackctlError:
        if version.image_id and node is not None:  # (the image removed there by hand?)
            ctx.images.present.discard((node, version.image_id))  # the next start looks again
        raise
    if not start:
        await progress(service, action, "done", f"created {req.name}", slot=slot, container=cid)
        return cid
    try:
        # no call needed to keep it out: a task's endpoints are made not serving at create
        # (`setup_container(serving=False)` for a service), so this only records it
        ctx.serving[cid] = False
        await ctx.node.start_container(cid)
    except BaseException:
        with trio.CancelScope(shield=True):
            try:
                await ctx.node.remove_container(cid)
            finally:
                ctx.serving.pop(cid, None)
        raise
    await progress(service, "start", "done", f"started {req.name}", slot=slot, container=cid)
    return cid


async def stop_task(ctx: Ctx, progress: Progress, service: str, slot: str,
                    c: ContainerInfo, *, remove: bool = True,
                    timeout: float | None = None, drain: bool = True) -> None:
    """Take ``c`` out of service, stop it and (``remove``) remove it. ``drain``: wait the
    drain grace first (other replicas take over; pointless when the whole service goes)."""
    if c.running:
        ctx.draining.add(c.id)
        await ctx.net.set_serving(c.id, False)
        ctx.serving[c.id] = False
        if ctx.overlay is not None:  # every node drops it from its answers and VIPs now
            await _overlay_push(ctx)
        try:
            if drain and ctx.drain_grace:
                await trio.sleep(ctx.drain_grace)
            await progress(service, "stop", "started", f"stopping {c.name}", slot=slot,
                           container=c.id)
            await ctx.node.stop_container(c.id, timeout=timeout)
        except BaseException:
            # cancelled (or failed) before it stopped: it keeps serving
            with trio.CancelScope(shield=True):
                if c.ready:
                    try:
                        await ctx.net.set_serving(c.id, True)
                        ctx.serving[c.id] = True
                    except Exception:
                        pass
                ctx.draining.discard(c.id)
            raise
    if remove:
        with trio.CancelScope(shield=True):
            await ctx.node.remove_container(c.id)
            ctx.serving.pop(c.id, None)
            ctx.draining.discard(c.id)
        await progress(service, "remove", "done", f"removed {c.name}", slot=slot,
                       container=c.id)
    else:
        ctx.draining.discard(c.id)
        await progress(service, "stop", "done", f"stopped {c.name}", slot=slot,
                       container=c.id)


async def sync_serving(ctx: Ctx, containers: list[ContainerInfo]) -> None:
    """Put ready replicas into their VIPs/published ports, and others out (idempotent).

    Ready (:attr:`ContainerInfo.ready`, docs/controller.md): running, and healthy with a
    health check, else listening on the ports it publishes. ``ctx.serving`` keeps the last
    serving state set per container, so that nothing is called needlessly."""
    cache = ctx.serving
    for c in containers:
        if c.id in ctx.draining:
            continue
        want = c.ready
        if cache.get(c.id) != want:
            await ctx.net.set_serving(c.id, want)
            cache[c.id] = want
    if ctx.overlay is not None:
        await _overlay_push(ctx, containers)


async def _overlay_push(ctx: Ctx, containers: list[ContainerInfo] | None = None) -> None:
    """The nodes' overlay views follow serving states (stackctl/controller/overlay.py); a
    node that cannot be reached gets its view when it is back."""
    import logging

    from stackctl.errors import StackctlError

    try:
        if containers is None:
            await ctx.overlay.serving_changed(ctx)
        else:
            await ctx.overlay.refresh(ctx, containers)
    except StackctlError as exc:
        logging.getLogger("stackctl.controller").warning("overlay: %s", exc.message)
