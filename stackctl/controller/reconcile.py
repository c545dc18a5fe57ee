"""One reconcile pass over one stack: heal what is running, never roll out a change.

The pass re-reads desired state (the store's current version) and observed state (the node),
so it is safe to run any number of times; events only say *when* to run it. It

- puts ready replicas into their VIPs / published ports and takes the others out (a replica
  waiting for its ports to listen makes the pass ask to run again after a short tick);
- creates a task for a slot that has no container (removed by hand, lost) — except while
  the stack is *held* (its last deploy was interrupted): then a slot with no container stays
  empty until the next ``up``, because the pass cannot tell a slot that vanished from one the
  cancelled deploy never reached;
- applies the restart policy, with Swarm's semantics: a dead task is **replaced** by a new
  container in the same slot once ``delay`` has passed since it ended
  (:func:`~stackctl.scheduler.restart.should_restart`, history per slot and config hash in the
  store); the dead container is removed just before its replacement is created (its exit code
  and time stay in the slot's history). The replacement is of the dead task's *own* version
  (the stored version its config hash comes from), not necessarily the current one: a slot an
  interrupted, paused or rolled-back update did not reach stays at the old version;
- leaves alone: services the user stopped, completed jobs, containers created with
  ``--no-start``, and config changes (rolling those out is ``up``'s job, so that a cancelled
  or paused update is never carried on behind the user's back).

It returns the wall-clock time (ns) of the next restart it is waiting for, if any.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection
from typing import Any

import trio

from stackctl.controller import objects
from stackctl.controller.context import Ctx, Progress, parse_iso_ns
from stackctl.controller.deploy import Loaded, version_of
from stackctl.controller.taskops import start_task, stop_task, sync_serving
from stackctl.controller.taskspec import object_files
from stackctl.controller.watch import observe
from stackctl.errors import StackctlError
from stackctl.scheduler.observed import ContainerInfo, StackObserved, slot_sort_key
from stackctl.scheduler.restart import should_restart
from stackctl.scheduler.rolling import LISTEN_TIMEOUT
from stackctl.scheduler.tasks import Desired

log = logging.getLogger("stackctl.controller")


class RestartHistory:
    """Per-slot restart times, through the store (``record_restart`` / ``restart_history``),
    or in memory when the store has no such methods."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._memory: dict[tuple[str, str, str, str], list[int]] = {}

    def times(self, stack: str, service: str, slot: str, config_hash: str) -> list[int]:
        get = getattr(self.store, "restart_history", None)
        if get is not None:
            return [int(t) for t in get(stack, service, slot, config_hash)]
        return list(self._memory.get((stack, service, slot, config_hash), []))

    def add(self, stack: str, service: str, slot: str, config_hash: str, at: int,
            exit_code: int | None) -> None:
        put = getattr(self.store, "record_restart", None)
        if put is not None:  # the store keeps times only (the exit code is the container's)
            put(stack, service, slot, config_hash, at)
        else:
            self._memory.setdefault((stack, service, slot, config_hash), []).append(at)


def waiting_for_ports(c: ContainerInfo, now: int) -> bool:
    """A running replica without a health check whose published ports are not listening
    yet, started less than ``LISTEN_TIMEOUT`` before ``now`` (wall ns)."""
    if not c.running or c.health is not None or c.ports_ready:
        return False
    started = parse_iso_ns(c.started_at)
    return started is not None and now < started + LISTEN_TIMEOUT


async def reconcile_stack(ctx: Ctx, loaded: Loaded, history: RestartHistory, *,
                          stopped: Collection[str] = (), hold: bool = False,
                          versions: Callable[[str, str], Loaded | None] | None = None,
                          progress: Progress | None = None,
                          image_config: Callable[[str], Any] | None = None,
                          desired: Desired | None = None,
                          observed: StackObserved | None = None) -> int | None:
    """One pass (see the module docstring); the next restart due (wall ns), if any.

    ``versions(service, config_hash)`` finds the stored version a container was made from
    (default: ``loaded`` only); ``hold``: the stack's last deploy was interrupted — heal the
    slots that have a container, create none. ``desired``: ``loaded``'s tasks as placed
    (default: unplaced); ``observed``: the stack as the caller just read it (default: read
    here)."""
    name = loaded.name
    progress = progress or Progress(name, None, ctx.wall)
    desired = desired if desired is not None else loaded.desired()
    if observed is None:
        observed = await observe(ctx, name)
    await sync_serving(ctx, observed.containers())
    now = ctx.wall()
    next_wake: int | None = None
    if any(waiting_for_ports(c, now) and c.id not in ctx.draining
           for c in observed.containers()):
        # a replica waiting for its ports to listen: no event says when they do, so look
        # again after a short tick to put it into service (docs/controller.md); only for
        # LISTEN_TIMEOUT after its start, then the usual tick
        next_wake = now + int(ctx.poll_interval * 1e9)
    made: dict[tuple[int, str, str | None], Any] = {}  # (version, service, node) -> Version
    replacements: list[tuple[str | None, Callable[[], Any]]] = []  # (node, job)

    def owner_of(service: str, config_hash: str | None) -> Loaded | None:
        if config_hash == desired.services[service].config_hash.value:
            return loaded
        return versions(service, config_hash or "") if versions is not None else None

    for st in desired.services.values():
        if st.name in stopped:
            continue
        svc = observed.services.get(st.name)
        slots = [t.slot for t in st.tasks]
        # slots the current version does not have (an interrupted or paused scale-down)
        slots += sorted((k for k in (svc.slots if svc else {}) if k not in slots),
                        key=slot_sort_key)
        for slot in slots:
            so = observed.slot(st.name, slot)
            if so is not None:
                c = so.primary
                owner = owner_of(st.name, c.config_hash)
                if owner is None:
                    if hold:  # made from a version no longer stored: leave it as it is
                        continue
                    owner = loaded
                ost = owner.desired().services[st.name] if owner is not loaded else st
                if c.running or c.state == "created" or (ost.is_job and c.completed):
                    continue
                config_hash = ost.config_hash.value
                ended = parse_iso_ns(c.finished_at) or now
                h = history.times(name, st.name, slot, config_hash)
                decision = should_restart(h, c.exit_code, ended, ost.restart_policy)
                if not decision.restart:
                    continue
                assert decision.when is not None
                if decision.when > now:
                    next_wake = decision.when if next_wake is None else \
                        min(next_wake, decision.when)
                    continue
                why = decision.reason
            elif hold or slot not in st.slots:
                # interrupted: a slot the deploy never reached stays empty until `up`
                continue
            else:
                c, owner, ost = None, loaded, st
                config_hash = st.config_hash.value
                why = "missing: no container for this slot"
            node = ctx.node_of_slot(name, st.name, slot)
            key = (id(owner), st.name, node)
            if key not in made:
                version = version_of(ctx, owner, owner.desired() if owner is not loaded
                                     else desired, st.name)
                made[key] = version if await _objects_ready(ctx, owner, version, node) \
                    else None
                if made[key] is None:
                    log.warning("stack %s: service %s: its secret/config files are gone; "
                                "run `stackctl up` again", name, st.name)
            version = made[key]
            if version is None:
                continue
            if c is not None:
                # its end stays in the slot's restart history
                history.add(name, st.name, slot, config_hash, now, c.exit_code)
            replacements.append((node, functools.partial(
                _replace, ctx, progress, version, slot, why, c,
                list(so.containers) if so and c is not None else [])))
    if replacements:
        # every slot at once, as Swarm's orchestrator replaces failed tasks (no
        # update_config: that paces rollouts, not healing), bounded per node so that a node
        # that lost 100 replicas' worth of work elsewhere is not asked for 100 at once
        limits: dict[str | None, trio.CapacityLimiter] = {}
        async with trio.open_nursery() as nursery:
            for node, job in replacements:
                limit = limits.setdefault(node, trio.CapacityLimiter(STARTS_PER_NODE))
                nursery.start_soon(_bounded, limit, job)
    return next_wake


# at most this many replacements are made at once on one node (create + start)
STARTS_PER_NODE = 8


async def _bounded(limit: trio.CapacityLimiter, job: Callable[[], Any]) -> None:
    async with limit:
        await job()


async def _replace(ctx: Ctx, progress: Progress, version, slot: str, why: str,
                   c: ContainerInfo | None, dead: list[ContainerInfo]) -> None:
    """Make the slot's task again: the dead one goes first (nothing of it serves), so that
    its replacement takes the slot's own name."""
    service = version.service
    await progress(service, "recreate" if c else "create", "started", why, slot=slot)
    try:
        for old in dead:
            await stop_task(ctx, progress, service, slot, old, drain=False)
        await start_task(ctx, progress, version, slot)
    except StackctlError as exc:
        log.warning("stack %s: %s.%s: replacing the task failed: %s",
                    version.stack.name, service, slot, exc.message)
        await progress(service, "failed", "error", exc.message, slot=slot)


async def _objects_ready(ctx: Ctx, loaded: Loaded, version, node: str | None) -> bool:
    """A version's secret files exist on ``node`` (or can be written again from their
    files)."""
    files = object_files(loaded.stack, loaded.stack.services[version.service])
    config_hash = version.st.config_hash.value
    if not files or await ctx.node.has_task_files(loaded.name, version.service, config_hash,
                                                  node=node):
        return True
    try:
        contents = objects.resolve_contents(loaded.stack, provided={},
                                            needed={f.ref for f in files})
        await ctx.node.write_task_files(loaded.name, version.service, config_hash, files,
                                        contents, nodes=[node] if node else None)
    except (StackctlError, OSError):
        return False
    return True
