"""Reading task states from observed containers, and waiting for conditions on them.

:func:`condition_state` is pure: given a service's desired tasks and the observed containers,
is a ``depends_on`` condition (or "ready", what ``up --wait`` waits for) met, still pending,
or failed — with a reason naming the slot. :func:`wait_condition` re-reads the node until it
is decided or a deadline passes (woken early by the agent's events).
"""

from __future__ import annotations

import math

import trio

from stackctl.controller.context import Ctx
from stackctl.scheduler.observed import ContainerInfo, StackObserved, group_stack
from stackctl.scheduler.tasks import ServiceTasks

MET, PENDING, FAILED = "met", "pending", "failed"
READY = "ready"  # every slot running (healthy with a health check, else listening on its
#                   published TCP ports: ContainerInfo.ready), a job completed


def _ended(c: ContainerInfo) -> str:
    return f"exited ({c.exit_code})" if c.exit_code is not None else c.state


def slot_state(c: ContainerInfo | None, condition: str, is_job: bool) -> tuple[str, str]:
    """(met | pending | failed, why) for one slot's current container."""
    if c is None:
        return PENDING, "no container yet"
    if condition == "service_completed_successfully" or (condition == READY and is_job):
        if c.state in ("exited", "dead"):
            return (MET, "completed") if c.exit_code == 0 else (FAILED, _ended(c))
        return PENDING, c.describe_state()
    if condition == "service_started":
        if c.running or c.started_at:
            return MET, c.describe_state()
        return PENDING, c.state
    # service_healthy, ready
    if c.running:
        if c.health is None and not c.ports_ready:  # docs/controller.md: readiness
            ports = ", ".join(f"{p}/tcp" for p in c.missing_ports())
            return PENDING, f"running, not listening on {ports} yet"
        if c.health in (None, "healthy"):
            return MET, c.describe_state()
        if c.health == "unhealthy":
            return FAILED, "unhealthy"
        return PENDING, c.describe_state()
    if c.state in ("exited", "dead"):
        return FAILED, _ended(c)
    return PENDING, c.state


def condition_state(st: ServiceTasks, observed: StackObserved, condition: str,
                    *, config_hash: bool = True) -> tuple[str, str]:
    """Whether every desired slot of ``st`` meets ``condition``; the first failure or wait.

    ``config_hash``: only containers of the desired config count (a slot still running the
    old version is pending)."""
    pending = ""
    for task in st.tasks:
        so = observed.slot(st.name, task.slot)
        c = so.primary if so else None
        if c is not None and config_hash and c.config_hash != task.config_hash.value:
            c = next((x for x in so.containers if x.config_hash == task.config_hash.value),
                     None)
        state, why = slot_state(c, condition, st.is_job)
        if state == FAILED:
            return FAILED, f"{task.name} {why}"
        if state == PENDING and not pending:
            pending = f"{task.name} {why}"
    return (PENDING, pending) if pending else (MET, "")


async def observe(ctx: Ctx, stack: str) -> StackObserved:
    """The stack's containers as the node reports them now.

    Tasks that ask at the same moment (every waiter woken by one change) share one read: a
    caller joins a read that has not begun yet — the first caller yields once to let them
    come — never one already under way, which could miss what the caller has just done. The
    shared :class:`StackObserved` is read-only. If the first caller is cancelled before its
    read is done, the others read for themselves."""
    pending = ctx.reads.get(stack)
    if pending is not None:
        await pending.done.wait()
        if pending.result is not None:
            return pending.result
        return group_stack(await ctx.node.list_containers(stack=stack), stack)
    read = SharedRead()
    ctx.reads[stack] = read
    try:
        await trio.lowlevel.checkpoint()  # the other tasks woken with this one join here
        del ctx.reads[stack]  # from now on, a caller starts a read of its own
        read.result = group_stack(await ctx.node.list_containers(stack=stack), stack)
        return read.result
    finally:
        if ctx.reads.get(stack) is read:
            del ctx.reads[stack]
        read.done.set()


class SharedRead:
    """One ``list_containers`` for the callers of :func:`observe` that joined it."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: StackObserved | None = None


async def wait_condition(ctx: Ctx, stack: str, st: ServiceTasks, condition: str,
                         timeout: float | None) -> tuple[str, str]:
    """Wait until ``condition`` is met or failed, or ``timeout`` seconds pass (then pending)."""
    deadline = trio.current_time() + (timeout if timeout is not None else math.inf)
    while True:
        state, why = condition_state(st, await observe(ctx, stack), condition)
        if state != PENDING or trio.current_time() >= deadline:
            return state, why
        with trio.move_on_at(deadline):
            await ctx.wait_change()
