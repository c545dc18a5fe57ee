"""The planner: desired state and observed state in, an ordered :class:`Plan` out.

``plan(desired, observed, options=...)`` is pure — it never asks a node anything — so
``stackctl plan`` and ``up --dry-run`` print exactly what ``up`` would do, and the tests build
both states from data. Per slot it decides one action, with a reason a person can read:

- **create** — no container for the slot (``new slot``, ``new slot: scaled 2 -> 3``);
- **recreate** — the container's config hash differs from the task's
  (``config changed: environment, image``), ``--force-recreate``, or the service shares the
  network namespace of a service that is recreated (``network_mode: service:db``);
- **start** — the container exists, is up to date and stopped (not with ``--no-start``);
- **keep** — up to date (running, a completed job, or stopped with ``--no-start``);
- **remove** — slots beyond the replica count (highest first), duplicates of a slot, and
  orphan services (only with ``--remove-orphans``; otherwise a note says they exist).

Order: removals first, dependents before their dependencies (orphans first: nothing in the
file depends on them); then the services level by level in dependency order
(:meth:`ServiceGraph.start_levels`), each level behind *gates* — the ``depends_on`` conditions
(service_started / service_healthy / service_completed_successfully) its services wait for.
Within a service: one *converge* wave (creates and starts, all at once: nothing old to
protect), then the recreates in *update* waves of ``update_config.parallelism`` (0: all in one
wave), each with the update ``order`` and ``delay`` after it. The rolling state machine
(:mod:`.rolling`) carries the update waves out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stackctl.scheduler.confighash import changed_parts
from stackctl.scheduler.observed import ContainerInfo, StackObserved, slot_sort_key
from stackctl.scheduler.tasks import Desired, ServiceTasks, Task
from stackctl.spec import units

CREATE, RECREATE, START, KEEP, REMOVE = "create", "recreate", "start", "keep", "remove"
CONVERGE, UPDATE, REMOVAL = "converge", "update", "remove"
CONDITION_WORDS = {
    "service_started": "started",
    "service_healthy": "healthy",
    "service_completed_successfully": "completed successfully",
}


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """What the command line says (``up`` / ``plan`` flags)."""

    services: tuple[str, ...] = ()  # only these (and, unless no_deps, their dependencies)
    no_deps: bool = False
    force_recreate: bool = False
    no_recreate: bool = False
    no_start: bool = False
    remove_orphans: bool = False


@dataclass(frozen=True, slots=True)
class Action:
    """One thing to do to one slot, and why."""

    kind: str  # create | recreate | start | keep | remove
    service: str
    slot: str
    reason: str
    container: ContainerInfo | None = None  # the existing container acted on
    task: Task | None = None  # the desired task (not for remove)

    @property
    def name(self) -> str:
        return f"{self.service}.{self.slot}"

    @property
    def node(self) -> str | None:
        """The node it acts on: the desired task's (placed) or the container's."""
        if self.task is not None and self.task.node is not None:
            return self.task.node
        return self.container.node if self.container is not None else None

    def to_json(self) -> dict[str, Any]:
        return {"action": self.kind, "service": self.service, "slot": self.slot,
                "reason": self.reason, "node": self.node,
                "container": self.container.id if self.container else None,
                "config_hash": self.task.config_hash.value if self.task else None}


@dataclass(frozen=True, slots=True)
class Gate:
    """``service`` may start only once ``on`` meets ``condition``."""

    service: str
    on: str
    condition: str

    def describe(self) -> str:
        return f"{self.on} {CONDITION_WORDS.get(self.condition, self.condition)}"


@dataclass(frozen=True, slots=True)
class Wave:
    """Actions carried out together; ``delay`` (ns) is waited after it, before the next."""

    service: str
    kind: str  # converge | update | remove
    actions: tuple[Action, ...]
    index: int = 1
    count: int = 1
    order: str | None = None  # start-first | stop-first (update waves)
    delay: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "kind": self.kind, "index": self.index,
                "count": self.count, "order": self.order,
                "delay": units.format_duration(self.delay),
                "actions": [a.to_json() for a in self.actions]}


@dataclass(frozen=True, slots=True)
class ServicePlan:
    name: str
    waves: tuple[Wave, ...]
    keeps: tuple[Action, ...] = ()

    @property
    def update_waves(self) -> list[Wave]:
        return [w for w in self.waves if w.kind == UPDATE]


@dataclass(frozen=True, slots=True)
class Level:
    """Services that start in parallel, once the gates hold."""

    index: int
    services: tuple[ServicePlan, ...]
    gates: tuple[Gate, ...] = ()


@dataclass(frozen=True, slots=True)
class Pending:
    """A task no node will take: the scheduler's reason, and per node why it refuses."""

    slot: str  # "web.3"
    reason: str  # "no suitable node (2 nodes have insufficient memory)"
    nodes: tuple[tuple[str, str], ...] = ()  # (node, why it refuses)

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "reason": self.reason, "nodes": dict(self.nodes)}


@dataclass(frozen=True, slots=True)
class Plan:
    stack: str
    removals: tuple[Wave, ...] = ()
    levels: tuple[Level, ...] = ()
    notes: tuple[str, ...] = ()
    services_considered: int = 0
    pending: tuple[Pending, ...] = ()  # filled by the controller from the scheduler
    multi_node: bool = False  # more than one node: show each action's node

    def waves(self) -> list[Wave]:
        """Every wave in execution order (a level's services run side by side)."""
        return list(self.removals) + [w for lv in self.levels for s in lv.services
                                      for w in s.waves]

    def actions(self, kind: str | None = None) -> list[Action]:
        """Every action (keeps included), optionally of one kind."""
        out = [a for w in self.waves() for a in w.actions]
        out += [a for lv in self.levels for s in lv.services for a in s.keeps]
        return [a for a in out if kind is None or a.kind == kind]

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in (CREATE, RECREATE, START, REMOVE, KEEP)}
        for action in self.actions():
            out[action.kind] += 1
        return out

    @property
    def empty(self) -> bool:
        return not self.waves() and not self.pending

    def summary(self) -> str:
        if self.empty:
            n = self.services_considered
            return f"nothing to do: {n} service{'s' if n != 1 else ''} up to date"
        c = self.counts()
        words = [(CREATE, "to create"), (RECREATE, "to recreate"), (START, "to start"),
                 (REMOVE, "to remove"), (KEEP, "unchanged")]
        parts = [f"{c[k]} {w}" for k, w in words if c[k]]
        if self.pending:
            parts.append(f"{len(self.pending)} pending (no suitable node)")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "summary": self.counts(),
            "removals": [w.to_json() for w in self.removals],
            "levels": [{"level": lv.index,
                        "gates": [{"service": g.service, "on": g.on, "condition": g.condition}
                                  for g in lv.gates],
                        "services": [{"service": s.name,
                                      "waves": [w.to_json() for w in s.waves],
                                      "unchanged": [a.to_json() for a in s.keeps]}
                                     for s in lv.services]}
                       for lv in self.levels],
            "notes": list(self.notes),
            "pending": [p.to_json() for p in self.pending],
        }



# --------------------------------------------------------------------------------------------
# Planning


def plan(desired: Desired, observed: StackObserved, *,
         options: PlanOptions = PlanOptions()) -> Plan:
    """What to do to turn ``observed`` into ``desired`` (see the module docstring)."""
    graph = desired.graph
    selected = _selected(desired, options)
    notes: list[str] = []
    removals: list[Wave] = []

    for orphan in sorted(set(observed.services) - set(desired.services)):
        svc = observed.services[orphan]
        reason = f"orphan: service {orphan} no longer in the stack"
        if options.remove_orphans:
            removals.append(Wave(orphan, REMOVAL, tuple(
                Action(REMOVE, orphan, slot.slot, reason, c)
                for slot in _highest_first(svc.slots.values()) for c in slot.containers)))
        else:
            notes.append(f"{reason} ({len(svc.containers())} container(s)); "
                         "use --remove-orphans to remove")
    for stray in observed.strays:
        notes.append(f"container {stray.name} is labelled with stack {desired.stack} but has "
                     "no service or slot label; left alone")

    recreated: set[str] = set()
    service_plans: dict[str, tuple[ServicePlan, list[Action]]] = {}
    for level in graph.start_levels():
        for name in level:
            if name in selected and name in desired.services:
                sp, removes = _plan_service(desired.services[name], observed, options,
                                            recreated)
                service_plans[name] = (sp, removes)
                if any(a.kind == RECREATE for w in sp.waves for a in w.actions):
                    recreated.add(name)

    for level in graph.stop_levels():
        for name in level:
            if name in service_plans and service_plans[name][1]:
                removals.append(Wave(name, REMOVAL, tuple(service_plans[name][1])))

    levels = []
    for level in graph.start_levels():
        names = [n for n in level if n in service_plans]
        if not names:
            continue
        gates = tuple(Gate(d.service, d.on, d.condition) for n in names
                      for d in graph.dependencies(n) if d.on in selected)
        levels.append(Level(len(levels) + 1, tuple(service_plans[n][0] for n in names), gates))
    return Plan(desired.stack, tuple(removals), tuple(levels), tuple(notes),
                services_considered=len(service_plans))


def _selected(desired: Desired, options: PlanOptions) -> set[str]:
    if not options.services:
        return set(desired.services)
    unknown = [s for s in options.services if s not in desired.services]
    if unknown:
        from stackctl.errors import UsageError
        raise UsageError(f"no such service: {', '.join(unknown)}",
                         hint="services: " + ", ".join(sorted(desired.services)))
    if options.no_deps:
        return set(options.services)
    return desired.graph.with_dependencies(options.services)


def _highest_first(slots):
    return sorted(slots, key=lambda s: slot_sort_key(s.slot), reverse=True)


def _plan_service(st: ServiceTasks, observed: StackObserved, options: PlanOptions,
                  recreated: set[str]) -> tuple[ServicePlan, list[Action]]:
    obs = observed.services.get(st.name)
    obs_slots = dict(obs.slots) if obs else {}
    converge: list[Action] = []
    update: list[Action] = []
    keeps: list[Action] = []
    removes: list[Action] = []
    wanted = set(st.slots)
    old_count = len(obs_slots)

    for task in st.tasks:
        so = obs_slots.get(task.slot)
        if so is None:
            converge.append(Action(CREATE, st.name, task.slot,
                                   _new_slot_reason(st, task, obs_slots), task=task))
            continue
        c = so.primary
        for dup in so.duplicates:
            removes.append(Action(REMOVE, st.name, task.slot,
                                  f"duplicate of {so.name}: keeping container {c.id[:12]}",
                                  dup))
        why = _recreate_reason(st, task, c, options, recreated)
        if why and not options.no_recreate:
            update.append(Action(RECREATE, st.name, task.slot, why, c, task))
        elif why:
            keeps.append(Action(KEEP, st.name, task.slot, f"{why}; --no-recreate given", c,
                                task))
        elif c.running:
            keeps.append(Action(KEEP, st.name, task.slot, f"up to date, {c.describe_state()}",
                                c, task))
        elif st.is_job and c.completed:
            keeps.append(Action(KEEP, st.name, task.slot, "job completed", c, task))
        elif options.no_start:
            keeps.append(Action(KEEP, st.name, task.slot,
                                f"up to date, {c.describe_state()}; --no-start given", c, task))
        else:
            converge.append(Action(START, st.name, task.slot,
                                   f"up to date but {c.describe_state()}", c, task))

    for so in _highest_first(s for k, s in obs_slots.items() if k not in wanted):
        if st.is_global:
            reason = f"node {so.slot} no longer runs {st.name}"
        else:
            reason = f"scaled {old_count} -> {st.replicas}"
        for c in so.containers:
            removes.append(Action(REMOVE, st.name, so.slot, reason, c))

    waves: list[Wave] = []
    if converge:
        waves.append(Wave(st.name, CONVERGE, tuple(converge)))
    update.sort(key=lambda a: slot_sort_key(a.slot))
    size = st.update_config.parallelism or len(update)
    chunks = [update[i:i + size] for i in range(0, len(update), size)] if update else []
    for i, chunk in enumerate(chunks, 1):
        waves.append(Wave(st.name, UPDATE, tuple(chunk), i, len(chunks),
                          st.update_config.order,
                          st.update_config.delay if i < len(chunks) else 0))
    return ServicePlan(st.name, tuple(waves), tuple(keeps)), removes


def _new_slot_reason(st: ServiceTasks, task: Task, obs_slots: dict) -> str:
    """``new slot`` (first deploy), ``new slot: scaled 2 -> 3`` (above every observed slot),
    ``missing: ...`` (a gap: its container was removed or never made)."""
    if not obs_slots:
        return "new slot"
    if st.is_global:
        return "new node"
    highest = max((int(k) for k in obs_slots if k.isdigit()), default=0)
    if (task.index or 0) > highest and st.replicas != len(obs_slots):
        return f"new slot: scaled {len(obs_slots)} -> {st.replicas}"
    return "missing: no container for this slot"


def _recreate_reason(st: ServiceTasks, task: Task, c: ContainerInfo, options: PlanOptions,
                     recreated: set[str]) -> str | None:
    if task.node is not None and c.node != task.node and not st.is_global:
        return f"moves from node {c.node} to {task.node}"
    if c.config_hash != task.config_hash.value:
        parts = c.config_parts
        if not parts:
            return "config changed (no config-parts label to say which key)"
        keys = changed_parts(parts, task.config_hash.parts)
        return "config changed: " + ", ".join(keys) if keys else "config changed"
    if options.force_recreate:
        return "--force-recreate"
    if st.network_mode_service in recreated:
        return (f"network_mode service:{st.network_mode_service}: "
                f"{st.network_mode_service} is recreated")
    return None


def wave_slots(waves: Sequence[Wave]) -> list[list[str]]:
    """The slots of update waves, as :class:`.rolling.RollingUpdate` takes them."""
    return [[a.slot for a in w.actions] for w in waves if w.kind == UPDATE]
