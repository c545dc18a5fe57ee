"""The rolling update of one service, as a pure state machine driven by reports and a clock.

The controller creates a :class:`RollingUpdate` from the plan's update waves
(:func:`.planner.wave_slots`) and the service's ``update_config`` / ``rollback_config``, then
feeds it :class:`TaskReport` s as the agents report task states, and calls :meth:`poll` when the
time it asked for (:class:`WaitUntil`) has come. Both return the :class:`Command` s to carry out
now. Time is an integer in nanoseconds passed in by the caller — tests use a fake clock; nothing
here sleeps or reads a clock.

Semantics (swarmkit's updater, with one deliberate difference):

- Waves run one after the other; within a wave every slot is updated at once. With
  ``order: stop-first`` the old task is stopped, then the new one started; with
  ``start-first`` the new one is started and the old one stopped once the new one is *ready*.
- *Ready* means running, and healthy when the service has a health check (Docker's swarm
  executor also reports a task running only once it is healthy). Without one, a task that
  publishes TCP ports (``listen_ports``) is reported running only once it listens on them —
  the controller's part; here it only lengthens the deadline (below).
- The next wave starts ``delay`` after the current one settled (every slot ready or failed).
- A new task **fails** when it exits, is reported unhealthy or fails to start, before it is
  ready or within ``monitor`` after it became ready. It also fails when it is not ready in
  time: without a health check, ``monitor`` after it was started (``LISTEN_TIMEOUT +
  monitor`` when it has ports to listen on); with one, after
  ``start_period + retries * interval + monitor`` — the longest a health check may take to
  give its verdict, plus the monitor period. Swarm waits forever here; we do not, so that
  ``up --wait`` always ends.
- Failure ratio, as Swarm computes it: failed tasks / **all slots of the update** (not the
  slots updated so far), compared with ``max_failure_ratio`` by ``>``. So with 4 slots and
  ``max_failure_ratio: 0.25`` one failure is tolerated and the second triggers the action.
- ``failure_action``: ``pause`` stops launching waves (slots already started finish, the rest
  keep the old version) and reports :class:`UpdatePaused`; ``continue`` carries on;
  ``rollback`` reverts every slot the update touched, in reverse order, with
  ``rollback_config`` (parallelism, delay, order, monitor, failure_action pause/continue) —
  and then the slots an earlier run of the same update had already moved to the new version
  before it was stopped (``updated_before``: a CI job cancelled mid-deploy and run again), so a
  rollback always leaves the whole service on the previous version, as Swarm's does. A
  failing rollback is never rolled back (Swarm's rule): it pauses.
- The update completes when every wave was launched and every new task is ready and past its
  monitor period (or failed without triggering the failure action).

Commands name tasks by slot and *version*: ``new`` (the updated spec) or ``old`` (the previous
one). A :class:`StartTask` always means a new container (tasks are never restarted in place);
:class:`StopTask` means stop and remove that version's task of the slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stackctl.scheduler.tasks import HealthTiming
from stackctl.spec import units
from stackctl.spec.models import RollbackConfig, UpdateConfig

NEW, OLD = "new", "old"
REPORT_STATES = ("running", "healthy", "unhealthy", "failed", "stopped")


# --------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True, slots=True)
class TaskReport:
    """What an agent said about one version's task in a slot, at time ``at`` (ns)."""

    slot: str
    version: str  # "new" | "old"
    state: str  # running | healthy | unhealthy | failed | stopped
    at: int
    reason: str = ""  # e.g. "exited (1)", "image not found"


@dataclass(frozen=True, slots=True)
class StartTask:
    slot: str
    version: str


@dataclass(frozen=True, slots=True)
class StopTask:
    slot: str
    version: str


@dataclass(frozen=True, slots=True)
class WaitUntil:
    """Call :meth:`RollingUpdate.poll` at ``at`` (ns) unless a report comes first."""

    at: int


@dataclass(frozen=True, slots=True)
class UpdatePaused:
    reason: str


@dataclass(frozen=True, slots=True)
class RollbackStarted:
    reason: str


@dataclass(frozen=True, slots=True)
class RollbackPaused:
    reason: str


@dataclass(frozen=True, slots=True)
class UpdateCompleted:
    failed: tuple[str, ...] = ()  # slots that failed without triggering the failure action


@dataclass(frozen=True, slots=True)
class RollbackCompleted:
    pass


Command = StartTask | StopTask | WaitUntil | UpdatePaused | RollbackStarted | RollbackPaused \
    | UpdateCompleted | RollbackCompleted

# states of the whole update
UPDATING, PAUSED, COMPLETED = "updating", "paused", "completed"
ROLLING_BACK, ROLLBACK_PAUSED, ROLLED_BACK = "rolling_back", "rollback_paused", "rolled_back"


#: how long a task without a health check may take to listen on its ports (ns)
LISTEN_TIMEOUT = 30 * units.SECOND


def ready_deadline(health: HealthTiming | None, monitor: int,
                   listen_ports: Sequence[int] = ()) -> int:
    """How long a started task may take to become ready (ns; see the module docstring)."""
    if health is None:
        return (LISTEN_TIMEOUT if listen_ports else 0) + monitor
    return health.start_period + health.retries * health.interval + monitor


def _fmt(ns: int) -> str:
    return units.format_duration(max(0, ns))


# --------------------------------------------------------------------------------------------
# One slot's move from one version to another


@dataclass(slots=True)
class _SlotRun:
    slot: str
    src: str  # the version being replaced
    dst: str  # the version being started
    src_task: str  # "alive" | "dead" | "none"
    dst_alive: bool = False  # dst's task still runs (rollback of an unfinished start-first)
    state: str = "pending"  # pending|stopping|starting|monitoring|done|failed
    started_at: int = 0
    ready_at: int = 0
    settled_at: int = 0
    src_stop_sent: bool = False
    reason: str = ""

    @property
    def settled(self) -> bool:
        return self.state in ("monitoring", "done", "failed")


class _Phase:
    """A list of waves moving slots from ``src`` to ``dst`` with one update config."""

    def __init__(self, waves: Sequence[Sequence[tuple[str, str, bool]]], src: str, dst: str,
                 config: UpdateConfig, health: HealthTiming | None,
                 listen_ports: Sequence[int] = ()) -> None:
        # waves of (slot, src_task, dst_alive)
        self.waves = [list(w) for w in waves if w]
        self.src, self.dst = src, dst
        self.config = config
        self.health = health
        self.listen_ports = tuple(listen_ports) if health is None else ()
        self.deadline = ready_deadline(health, config.monitor, self.listen_ports)
        self.runs: dict[str, _SlotRun] = {}
        self.launched = 0
        self.halted = False
        self.total = sum(len(w) for w in self.waves)
        self.failures: list[str] = []

    # -- progress ----------------------------------------------------------------------------

    def _wave_runs(self, index: int) -> list[_SlotRun]:
        return [self.runs[slot] for slot, _, _ in self.waves[index]]

    def _launch(self, now: int) -> list[Command]:
        cmds: list[Command] = []
        for slot, src_task, dst_alive in self.waves[self.launched]:
            run = _SlotRun(slot, self.src, self.dst, src_task, dst_alive)
            self.runs[slot] = run
            if dst_alive:  # nothing to start: just remove the src task
                cmds.append(StopTask(slot, self.src))
                run.src_stop_sent = True
                run.state = "done"
                run.settled_at = now
            elif self.config.order == "stop-first" and src_task == "alive":
                cmds.append(StopTask(slot, self.src))
                run.src_stop_sent = True
                run.state = "stopping"
            else:
                if src_task == "dead":
                    cmds.append(StopTask(slot, self.src))  # clean up the dead task first
                    run.src_stop_sent = True
                cmds += self._start(run, now)
        self.launched += 1
        return cmds

    def _start(self, run: _SlotRun, now: int) -> list[Command]:
        run.state = "starting"
        run.started_at = now
        return [StartTask(run.slot, run.dst)]

    def _ready(self, run: _SlotRun, at: int) -> list[Command]:
        run.state = "monitoring"
        run.ready_at = run.settled_at = at
        if not run.src_stop_sent and run.src_task != "none":
            run.src_stop_sent = True
            return [StopTask(run.slot, run.src)]
        return []

    def _fail(self, run: _SlotRun, at: int, reason: str) -> str:
        run.state = "failed"
        run.settled_at = at
        run.reason = reason
        self.failures.append(run.slot)
        return reason

    def expire(self, now: int) -> list[str]:
        """Apply the timers at ``now``: late starts fail, monitor periods end. Failures."""
        failed: list[str] = []
        for run in self.runs.values():
            if run.state == "starting" and now >= run.started_at + self.deadline:
                failed.append(self._fail(run, now, self._late_reason(run)))
            elif run.state == "monitoring" and now >= run.ready_at + self.config.monitor:
                run.state = "done"
        return failed

    def advance(self, now: int) -> list[Command]:
        """Launch the next wave if the current one settled and its delay is over."""
        if self.halted or self.launched >= len(self.waves):
            return []
        if self.launched == 0:
            return self._launch(now)
        current = self._wave_runs(self.launched - 1)
        if all(r.settled for r in current) and \
                now >= max(r.settled_at for r in current) + self.config.delay:
            return self._launch(now)
        return []

    def _late_reason(self, run: _SlotRun) -> str:
        if self.health is None and self.listen_ports:
            ports = ", ".join(f"{p}/tcp" for p in self.listen_ports)
            return (f"{run.slot}: not listening on {ports} {_fmt(self.deadline)} after start "
                    f"({_fmt(LISTEN_TIMEOUT)} + monitor {_fmt(self.config.monitor)})")
        if self.health is None:
            return (f"{run.slot}: not running {_fmt(self.deadline)} after start "
                    f"(monitor {_fmt(self.config.monitor)})")
        h = self.health
        return (f"{run.slot}: not healthy {_fmt(self.deadline)} after start "
                f"(start_period {_fmt(h.start_period)} + {h.retries} retries x "
                f"{_fmt(h.interval)} + monitor {_fmt(self.config.monitor)})")

    def _next_timer(self) -> int | None:
        times = []
        for run in self.runs.values():
            if run.state == "starting":
                times.append(run.started_at + self.deadline)
            elif run.state == "monitoring":
                times.append(run.ready_at + self.config.monitor)
        if not self.halted and 0 < self.launched < len(self.waves):
            current = self._wave_runs(self.launched - 1)
            if all(r.settled for r in current):
                times.append(max(r.settled_at for r in current) + self.config.delay)
        return min(times) if times else None

    def report(self, r: TaskReport) -> tuple[list[Command], list[str]]:
        failed = self.expire(r.at)  # a report after a timer went off: the timer came first
        cmds, more = self._report(r)
        return cmds, failed + more

    def _report(self, r: TaskReport) -> tuple[list[Command], list[str]]:
        run = self.runs.get(r.slot)
        if run is None:
            return [], []
        if r.version == run.src:
            if run.state == "stopping" and r.state in ("stopped", "failed"):
                return self._start(run, r.at), []
            return [], []
        if r.version != run.dst or run.state not in ("starting", "monitoring"):
            return [], []
        if r.state == "healthy" or (r.state == "running" and self.health is None):
            return (self._ready(run, r.at) if run.state == "starting" else []), []
        if r.state in ("unhealthy", "failed", "stopped"):
            what = r.reason or {"unhealthy": "unhealthy", "stopped": "exited"}.get(r.state,
                                                                                   "failed")
            since = r.at - run.started_at
            return [], [self._fail(run, r.at, f"{run.slot}: {what} {_fmt(since)} after start")]
        return [], []

    @property
    def finished(self) -> bool:
        return (self.launched == len(self.waves) or self.halted) and \
            all(r.state in ("done", "failed") for r in self.runs.values())


# --------------------------------------------------------------------------------------------
# The update


@dataclass
class RollingUpdate:
    """The rolling update of one service (see the module docstring).

    ``waves``: the slots of each update wave, in order. ``health``: the new spec's health check
    timing (None: no health check); ``rollback_health`` likewise for the old spec.
    ``listen_ports`` / ``rollback_listen_ports``: the TCP ports a task without a health check
    must listen on before it is reported running (they lengthen its deadline).
    ``updated_before``: slots already on the new version when this run began (in the order they
    were updated); not updated again, but rolled back with the rest.
    """

    service: str
    waves: Sequence[Sequence[str]]
    update_config: UpdateConfig
    rollback_config: RollbackConfig
    health: HealthTiming | None = None
    rollback_health: HealthTiming | None = None
    listen_ports: Sequence[int] = ()
    rollback_listen_ports: Sequence[int] = ()
    updated_before: Sequence[str] = ()
    state: str = field(default=UPDATING, init=False)
    reason: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self._phase = _Phase([[(s, "alive", False) for s in w] for w in self.waves], OLD, NEW,
                             self.update_config, self.health, self.listen_ports)
        self._announced = False
        self._update_failures: list[str] | None = None

    # -- queries -----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state in (PAUSED, COMPLETED, ROLLBACK_PAUSED, ROLLED_BACK) and \
            self._phase.finished

    @property
    def succeeded(self) -> bool:
        """What ``up --wait`` exits 0 on."""
        return self.state == COMPLETED

    @property
    def failed_slots(self) -> list[str]:
        return list(self._phase.failures)

    def slot_state(self, slot: str) -> str:
        """pending | stopping | starting | monitoring | done | failed (current phase)."""
        run = self._phase.runs.get(slot)
        return run.state if run else "pending"

    # -- driving -----------------------------------------------------------------------------

    def poll(self, now: int) -> list[Command]:
        """What to do at time ``now`` (launch waves, time out tasks, finish)."""
        cmds: list[Command] = []
        for reason in self._phase.expire(now):
            cmds += self._on_failure(reason, now)
        cmds += self._phase.advance(now)
        return self._finish(cmds, now)

    def report(self, r: TaskReport) -> list[Command]:
        """Take a task report; returns what to do now (it polls at ``r.at`` too)."""
        if r.state not in REPORT_STATES or r.version not in (NEW, OLD):
            raise ValueError(f"invalid task report {r!r}")
        cmds, failed = self._phase.report(r)
        for reason in failed:
            cmds += self._on_failure(reason, r.at)
        return cmds + self.poll(r.at)

    # -- internals ---------------------------------------------------------------------------

    def _on_failure(self, reason: str, now: int) -> list[Command]:
        phase = self._phase
        config = phase.config
        if config.failure_action == "continue" or self.state not in (UPDATING, ROLLING_BACK):
            return []
        ratio = len(phase.failures) / phase.total if phase.total else 1.0
        if ratio <= config.max_failure_ratio:
            return []
        detail = (f"{reason}; {len(phase.failures)} of {phase.total} tasks failed, "
                  f"max_failure_ratio {config.max_failure_ratio:g}")
        if self.state == ROLLING_BACK:
            self.state, self.reason = ROLLBACK_PAUSED, f"rollback paused: {detail}"
            phase.halted = True
            return [RollbackPaused(self.reason)]
        if config.failure_action == "pause":
            self.state, self.reason = PAUSED, f"update paused: {detail}"
            phase.halted = True
            return [UpdatePaused(self.reason)]
        return self._begin_rollback(f"update rolled back: {detail}", now)

    def _begin_rollback(self, reason: str, now: int) -> list[Command]:
        update = self._phase
        update.halted = True
        touched = [update.runs[slot] for w in update.waves[:update.launched]
                   for slot, _, _ in w]
        items = []
        for run in reversed(touched):
            if run.state == "stopping":  # old being stopped, new never started
                items.append((run.slot, "none", False))
            elif not run.src_stop_sent:  # start-first, old still running
                items.append((run.slot, "dead" if run.state == "failed" else "alive", True))
            else:
                items.append((run.slot, "dead" if run.state == "failed" else "alive", False))
        # moved by an earlier run: their new task runs, their old one is gone
        items += [(slot, "alive", False) for slot in reversed(self.updated_before)]
        size = self.rollback_config.parallelism or len(items) or 1
        waves = [items[i:i + size] for i in range(0, len(items), size)]
        self.state, self.reason = ROLLING_BACK, reason
        self._phase = _Phase(waves, NEW, OLD, self.rollback_config, self.rollback_health,
                             self.rollback_listen_ports)
        self._update_failures = list(update.failures)
        return [RollbackStarted(reason)] + self._phase.advance(now)

    @property
    def update_failures(self) -> list[str]:
        """Slots whose new task failed during the update (kept across a rollback)."""
        if self._update_failures is not None:
            return list(self._update_failures)
        return list(self._phase.failures)

    def _finish(self, cmds: list[Command], now: int) -> list[Command]:
        if self._phase.finished and not self._announced:
            if self.state == UPDATING:
                self.state = COMPLETED
                self.reason = "update completed"
                cmds.append(UpdateCompleted(tuple(self._phase.failures)))
                self._announced = True
            elif self.state == ROLLING_BACK:
                self.state = ROLLED_BACK
                cmds.append(RollbackCompleted())
                self._announced = True
            elif self.state in (PAUSED, ROLLBACK_PAUSED):
                self._announced = True
        if not self._phase.finished:
            wake = self._phase._next_timer()
            if wake is not None:
                cmds.append(WaitUntil(max(wake, now)))
        return cmds
