"""One reconcile pass over one stack: heal what is running, never roll out a change.

The pass re-reads desired state (the store's current version) and observed state (the node),
so it is safe to run any number of times; events only say *when* to run it. It

- puts ready replicas into their VIPs / published ports and takes the others out;
- creates a task for a slot that has no container (removed by hand, lost);
- applies the restart policy, with Swarm's semantics: a dead task is **replaced** by a new
  container in the same slot once ``delay`` has passed since it ended
  (:func:`~stackctl.scheduler.restart.should_restart`, history per slot and config hash in the
  store); the dead container is removed once its replacement has started (its exit code and
  time stay in the slot's history);
- leaves alone: services the user stopped, completed jobs, containers created with
  ``--no-start``, and config changes (rolling those out is ``up``'s job, so that a cancelled
  or paused update is never carried on behind the user's back).

It returns the wall-clock time (ns) of the next restart it is waiting for, if any.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from stackctl.controller import objects
from stackctl.controller.context import Ctx, Progress, parse_iso_ns
from stackctl.controller.deploy import Loaded, version_of
from stackctl.controller.taskops import start_task, stop_task, sync_serving
from stackctl.controller.taskspec import object_files
from stackctl.controller.watch import observe
from stackctl.errors import StackctlError
from stackctl.scheduler.restart import should_restart

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


async def reconcile_stack(ctx: Ctx, loaded: Loaded, history: RestartHistory, *,
                          stopped: Collection[str] = (),
                          progress: Progress | None = None,
                          image_config: Callable[[str], Any] | None = None) -> int | None:
    """One pass (see the module docstring); the next restart due (wall ns), if any."""
    name = loaded.name
    progress = progress or Progress(name, None, ctx.wall)
    desired = loaded.desired()
    observed = await observe(ctx, name)
    await sync_serving(ctx, observed.containers())
    now = ctx.wall()
    next_wake: int | None = None
    for st in desired.services.values():
        if st.name in stopped:
            continue
        version = None
        for task in st.tasks:
            so = observed.slot(st.name, task.slot)
            if so is not None:
                c = so.primary
                if c.running or c.state == "created" or (st.is_job and c.completed):
                    continue
                ended = parse_iso_ns(c.finished_at) or now
                h = history.times(name, st.name, task.slot, task.config_hash.value)
                decision = should_restart(h, c.exit_code, ended, st.restart_policy)
                if not decision.restart:
                    continue
                assert decision.when is not None
                if decision.when > now:
                    next_wake = decision.when if next_wake is None else \
                        min(next_wake, decision.when)
                    continue
                why = decision.reason
            else:
                c = None
                why = "missing: no container for this slot"
            if version is None:
                version = version_of(ctx, loaded, desired, st.name)
                if not _objects_ready(ctx, loaded, version):
                    log.warning("stack %s: service %s: its secret/config files are gone; "
                                "run `stackctl up` again", name, st.name)
                    break
            await progress(st.name, "recreate" if c else "create", "started", why,
                           slot=task.slot)
            if c is not None:
                # the dead task goes first (nothing of it serves), so that its replacement
                # takes the slot's own name; its end stays in the slot's restart history
                history.add(name, st.name, task.slot, task.config_hash.value, now,
                            c.exit_code)
                for old in so.containers if so else ():
                    await stop_task(ctx, progress, st.name, task.slot, old, drain=False)
            try:
                await start_task(ctx, progress, version, task.slot)
            except StackctlError as exc:
                log.warning("stack %s: %s: replacing the task failed: %s", name, task.name,
                            exc.message)
                await progress(st.name, "failed", "error", exc.message, slot=task.slot)
                continue
    return next_wake


def _objects_ready(ctx: Ctx, loaded: Loaded, version) -> bool:
    """A version's secret files exist (or can be written again from their files)."""
    import os
    files = object_files(loaded.stack, loaded.stack.services[version.service])
    if not files or os.path.isdir(version.objects_dir):
        return True
    try:
        contents = objects.resolve_contents(loaded.stack, provided={},
                                            needed={f.ref for f in files})
        objects.ensure_stack_tmpfs(ctx.paths.run, loaded.name)
        objects.write_version(ctx.paths.run, loaded.name, version.service,
                              version.st.config_hash.value, files, contents)
    except (StackctlError, OSError):
        return False
    return True
