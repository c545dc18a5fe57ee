"""Carrying out one service's rolling update: :class:`~stackctl.scheduler.rolling.RollingUpdate`
decides, this module acts and reports.

The loop: run the commands the state machine returns (start and stop tasks in a nursery, so
that a slow stop does not hold back another slot's timer), turn what the node reports into
:class:`TaskReport` s (only on a change of state), and call ``poll`` whenever a timer the
machine asked for (:class:`WaitUntil`) comes due. Time is trio's clock in nanoseconds, so the
tests drive the whole update with a fake clock. A new task joins its service's VIPs and
published ports only once it is ready; the old one leaves them before it is stopped
(:mod:`.taskops`), so a client looping requests through a published port loses none.

Cancelled (Ctrl-C), the update stops where it is: a slot whose old task was already stopped
keeps its new task (it is updated), and a slot still in flight — its new task started while
the old one still runs (start-first, before the new one was ready) — is undone: the new task
is stopped and removed in a shielded scope, so the old version keeps serving and no slot is
left with two tasks. A slot left with none (stop-first, cancelled between the old task's stop
and the new one's start) gets a task of the old version again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import trio

from stackctl.controller.context import Ctx, Progress
from stackctl.controller.taskops import Version, start_task, stop_task
from stackctl.scheduler.observed import ContainerInfo
from stackctl.scheduler.planner import Wave, wave_slots
from stackctl.scheduler.rolling import (
    NEW,
    OLD,
    RollbackCompleted,
    RollbackPaused,
    RollbackStarted,
    RollingUpdate,
    StartTask,
    StopTask,
    TaskReport,
    UpdateCompleted,
    UpdatePaused,
    WaitUntil,
)


def now_ns() -> int:
    return int(trio.current_time() * 1e9)


def report_state(c: ContainerInfo) -> tuple[str, str]:
    """(rolling report state, reason) of a container; ("", "") while nothing is decided — a
    health check still starting, or (without one) its published ports not listening yet."""
    if c.running:
        if c.health == "healthy":
            return "healthy", ""
        if c.health == "unhealthy":
            return "unhealthy", "unhealthy"
        if c.health is None and not c.ports_ready:
            return "", ""
        return "running", ""
    if c.state in ("exited", "dead"):
        return "stopped", (f"exited ({c.exit_code})" if c.exit_code is not None
                           else c.state)
    return "", ""


class Rollout:
    """One service's update from ``old`` to ``new`` over the plan's update ``waves``."""

    def __init__(self, ctx: Ctx, progress: Progress, new: Version, old: Version | None,
                 waves: Sequence[Wave], old_containers: Mapping[str, ContainerInfo], *,
                 network_container: str | None = None,
                 rollback_only: bool = False,
                 updated_before: Mapping[str, ContainerInfo] | None = None) -> None:
        self.ctx, self.progress = ctx, progress
        self.new, self.old = new, old
        self.service = new.service
        st = new.st
        # a rollback (``stackctl rollback``) is rolled out with rollback_config
        config = st.rollback_config if rollback_only else st.update_config
        self.update = RollingUpdate(self.service, wave_slots(waves), config,
                                    st.rollback_config, health=new.timing,
                                    rollback_health=old.timing if old else None,
                                    listen_ports=new.listen_ports,
                                    rollback_listen_ports=old.listen_ports if old else (),
                                    updated_before=list(updated_before or {}))
        self.containers: dict[tuple[str, str], ContainerInfo | str] = {
            (slot, OLD): c for slot, c in old_containers.items()}
        # slots an earlier, stopped run of this update already moved: a rollback takes them too
        self.containers.update({(slot, NEW): c for slot, c in (updated_before or {}).items()})
        self.reported: dict[tuple[str, str], str] = {}
        self.original = {slot: c.id for slot, c in old_containers.items()}
        self.started: dict[tuple[str, str], str] = {}  # every task started, never forgotten
        self.network_container = network_container
        self.wake_at: int | None = None
        self.announced_failures: set[str] = set()
        # reports, or None: a nudge to observe now
        self._send, self._recv = trio.open_memory_channel[TaskReport | None](math.inf)

    # -- commands ------------------------------------------------------------------------------

    async def _execute(self, nursery: trio.Nursery, cmds: list) -> None:
        self.wake_at = None
        for cmd in cmds:
            if isinstance(cmd, StartTask):
                nursery.start_soon(self._start, cmd.slot, cmd.version)
            elif isinstance(cmd, StopTask):
                nursery.start_soon(self._stop, cmd.slot, cmd.version)
            elif isinstance(cmd, WaitUntil):
                self.wake_at = cmd.at if self.wake_at is None else min(self.wake_at, cmd.at)
            elif isinstance(cmd, UpdatePaused):
                await self.progress(self.service, "paused", "error", cmd.reason)
            elif isinstance(cmd, RollbackStarted):
                await self.progress(self.service, "rollback", "started", cmd.reason)
            elif isinstance(cmd, RollbackPaused):
                await self.progress(self.service, "rollback", "error", cmd.reason)
            elif isinstance(cmd, RollbackCompleted):
                await self.progress(self.service, "rollback", "done",
                                    "rolled back to the previous version")
            elif isinstance(cmd, UpdateCompleted):
                extra = f" ({len(cmd.failed)} failed: {', '.join(cmd.failed)})" \
                    if cmd.failed else ""
                await self.progress(self.service, "done", "done", "update completed" + extra)

    async def _start(self, slot: str, version: str) -> None:
        target = self.new if version == NEW else self.old
        if target is None:
            await self._send.send(TaskReport(slot, version, "failed", now_ns(),
                                             "no previous version to roll back to"))
            return
        try:
            cid = await start_task(self.ctx, self.progress, target, slot,
                                   network_container=self.network_container,
                                   action="recreate" if version == NEW else "rollback")
        except Exception as exc:  # a StackctlError or a node failure: the task failed
            message = getattr(exc, "message", None) or str(exc)
            await self.progress(self.service, "failed", "error", message, slot=slot)
            await self._send.send(TaskReport(slot, version, "failed", now_ns(), message))
            return
        self.containers[(slot, version)] = cid
        self.started[(slot, version)] = cid
        self.reported.pop((slot, version), None)
        await self._send.send(None)  # look at it now: it may be ready already

    async def _stop(self, slot: str, version: str) -> None:
        c = self.containers.pop((slot, version), None)
        if isinstance(c, str):
            c = await self._find(c)
        if c is not None:
            await stop_task(self.ctx, self.progress, self.service, slot, c)
        await self._send.send(TaskReport(slot, version, "stopped", now_ns()))

    async def _find(self, cid: str) -> ContainerInfo | None:
        for c in await self.ctx.node.list_containers(stack=self.new.stack.name):
            if c.id == cid:
                return c
        return None

    # -- observation ---------------------------------------------------------------------------

    async def _observe(self) -> list[TaskReport]:
        started = {key: v for key, v in self.containers.items() if isinstance(v, str)}
        if not started:
            return []
        by_id = {c.id: c for c in await self.ctx.node.list_containers(
            stack=self.new.stack.name)}
        out = []
        for (slot, version), cid in started.items():
            c = by_id.get(cid)
            if c is None:
                continue
            state, reason = report_state(c)
            if state and self.reported.get((slot, version)) != state:
                self.reported[(slot, version)] = state
                out.append(TaskReport(slot, version, state, now_ns(), reason))
                if state == "healthy" or (state == "running" and c.health is None):
                    await self.ctx.net.set_serving(cid, True)
                    self.ctx.serving[cid] = True
                    await self.progress(self.service, "healthy", "done",
                                        f"{c.name} {c.describe_state()}", slot=slot,
                                        container=cid)
        return out

    async def _announce_failures(self) -> None:
        for slot in self.update.failed_slots:
            key = f"{self.update.state}:{slot}"
            if key not in self.announced_failures:
                self.announced_failures.add(key)
                run = self.update._phase.runs.get(slot)
                reason = run.reason if run is not None else ""
                await self.progress(self.service, "failed", "error", reason or f"{slot} failed",
                                    slot=slot)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> RollingUpdate:
        try:
            return await self._run()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._undo_in_flight()
            raise

    async def _undo_in_flight(self) -> None:
        """Remove each new task whose slot still has an older task running (see the module
        docstring); re-reads the node, so what was stopped half-way is seen as it is."""
        by_id = {c.id: c for c in await self.ctx.node.list_containers(
            stack=self.new.stack.name)}
        for (slot, version), cid in sorted(self.started.items()):
            c = by_id.get(cid)
            if version != NEW or c is None:
                continue
            older = (self.original.get(slot), self.started.get((slot, OLD)))
            if any(o in by_id and by_id[o].running for o in older if o):
                await self.progress(self.service, "remove", "started",
                                    "update interrupted: the previous task keeps the slot",
                                    slot=slot, container=cid)
                await stop_task(self.ctx, self.progress, self.service, slot, c)
        await self._refill_emptied(by_id)

    async def _refill_emptied(self, by_id: Mapping[str, ContainerInfo]) -> None:
        """A slot left with no running task — stop-first, cancelled between the old task's
        stop and the new one's start — gets a task of the previous version again, so a Ctrl-C
        never costs the service a replica."""
        if self.old is None:
            return
        for slot, old_id in sorted(self.original.items()):
            tasks = [old_id, self.started.get((slot, NEW)), self.started.get((slot, OLD))]
            if any(t in by_id and by_id[t].running for t in tasks if t):
                continue
            old = by_id.get(old_id)
            if old is not None:  # stopped, not yet removed
                await stop_task(self.ctx, self.progress, self.service, slot, old)
            await self.progress(self.service, "rollback", "started",
                                "update interrupted: the slot gets its previous task back",
                                slot=slot)
            try:
                await start_task(self.ctx, self.progress, self.old, slot,
                                 network_container=self.network_container, action="rollback")
            except Exception as exc:  # noqa: BLE001 - the reconcile loop or the next `up` heals it
                await self.progress(self.service, "failed", "error",
                                    getattr(exc, "message", None) or str(exc), slot=slot)

    async def _wait_reports(self, timeout: float) -> list[TaskReport]:
        """Until a report, a nudge (a task was started: look at it now), a node event (a
        start, an exit, a health verdict: ``ctx.changed``) or ``timeout``; then every report
        queued. Waking on events rather than only on the poll interval is what makes a
        started replica count as ready at once (each slot used to wait up to one interval)."""
        reports: list[TaskReport] = []
        changed = self.ctx.changed
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                async def receive() -> None:
                    item = await self._recv.receive()
                    if item is not None:
                        reports.append(item)
                    nursery.cancel_scope.cancel()

                async def node_changed() -> None:
                    await changed.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(receive)
                nursery.start_soon(node_changed)
        while True:
            try:
                item = self._recv.receive_nowait()
            except trio.WouldBlock:
                break
            if item is not None:
                reports.append(item)
        return reports

    async def _run(self) -> RollingUpdate:
        ru = self.update
        async with trio.open_nursery() as nursery:
            await self._execute(nursery, ru.poll(now_ns()))
            while not ru.done:
                timeout = self.ctx.poll_interval
                if self.wake_at is not None:
                    timeout = min(timeout, max(0.0, (self.wake_at - now_ns()) / 1e9))
                reports = await self._wait_reports(timeout)
                reports += await self._observe()
                cmds: list = []
                for r in reports:
                    cmds += ru.report(r)
                cmds += ru.poll(now_ns())
                await self._execute(nursery, cmds)
                await self._announce_failures()
        return ru


def describe_result(ru: RollingUpdate) -> str:
    return ru.reason or ru.state
