"""Placement: which node each task goes to, or why none will do. Pure, as swarmkit does it.

``place(tasks, nodes, existing)`` follows swarmkit's scheduler (``manager/scheduler``):

- Tasks with a node already chosen (global services: one task per eligible node, see
  :func:`global_nodes`) are checked first: the pipeline runs on that node alone.
- The other tasks are grouped by (stack, service, version) and each group is placed at once.
  One task's spec stands for the group (they share it), so the filters run once per node
  per group, not once per task.
- A *decision tree* is built over all nodes: one level per spread preference, keyed by the
  node's value of that label ("" for a node without it). Each branch counts the active tasks
  of the service in it; each leaf keeps the best ``len(group)`` nodes passing the filters.
- Tasks are shared out between branches so that they even out: each usable branch's target
  is (tasks already in usable branches + tasks left) / (usable branches), the remainder going
  one task at a time; a branch that cannot take its share has no room and the rest is shared
  again among the others.
- Within a leaf, nodes are ordered by ``nodeLess``: a node with 5 or more recent failures of
  this service version loses to one with fewer; then fewest active tasks of the service; then
  fewest active tasks in total. Tasks go to the first node until the next one is as good, then
  round the nodes one task each, each node re-checked after every assignment (it may now lack
  memory, or hold ``max_replicas_per_node``).
- Tasks left over get ``no suitable node (<explanation>)`` from the whole pipeline run over
  every node, with the count per filter and, per node, why it was rejected.

Determinism (a deliberate difference): Swarm walks Go maps, so ties between equally good nodes
and the order of branches are random; here ties go to the node listed first, branches are
taken in sorted order (the "" branch last) and tasks in the order given (callers pass them
by slot). The same input always gives the
same placement, which `plan` relies on. Where Swarm's leaf heap leaves a fitting node out
and the rest of the group waits for the next scheduler tick, we run that next pass at once.
And when a branch had no room and the rest is shared out again, Swarm still sees the other
branches' task counts from before this group was placed, so one branch may get it all (three
zones, one with no fitting node, four tasks: 3 + 1); we count the tasks just placed (2 + 2).

Stability is the caller's part, as in Swarm: tasks that keep running are passed as
``existing`` (they count and hold their resources) and are not placed again; only new slots
and tasks whose node went away (:func:`displaced`) are placed. Scaling down picks its victims
with :func:`choose_removals`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stackctl.scheduler.constraints import matches_all, node_value
from stackctl.scheduler.filters import NodeState, Pipeline, no_suitable_node, \
    platform_supported, reject_reasons
from stackctl.scheduler.nodes import ACTIVE, DOWN, DRAIN, PAUSE, READY, ExistingTask, \
    NodeSnapshot, PlacementSpec, TaskToPlace

#: swarmkit's maxFailures: from this many recent failures on a node, a node with fewer wins
MAX_FAILURES = 5

#: (stack, service, version) -> node name -> recent failures of that version there
Failures = Mapping[tuple[str, str, str], Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class Unplaced:
    """A task no node will take, and why."""

    task: TaskToPlace
    reason: str  # "no suitable node (1 node not available for new tasks; ...)"
    counts: Mapping[str, int]  # filter name -> nodes it rejected (filters.FILTER_NAMES)
    nodes: Mapping[str, str | None]  # node -> why it rejects the task (None: it would not)
    filters: Mapping[str, str | None] = field(default_factory=dict)  # node -> filter name


@dataclass(frozen=True, slots=True)
class PlacementResult:
    placements: Mapping[TaskToPlace, str]  # task -> node name
    unplaced: Mapping[TaskToPlace, Unplaced]

    @property
    def complete(self) -> bool:
        return not self.unplaced

    def node_of(self, task: TaskToPlace) -> str | None:
        return self.placements.get(task)

    def by_node(self) -> dict[str, list[TaskToPlace]]:
        out: dict[str, list[TaskToPlace]] = {}
        for task, node in self.placements.items():
            out.setdefault(node, []).append(task)
        return out

    def reasons(self) -> dict[str, str]:
        """``web.3`` -> its reason, for every unplaced task."""
        return {task.name: u.reason for task, u in self.unplaced.items()}


class _Tree:
    """A level of the decision tree: a branch (``next``) or a leaf (``cands``/``nodes``)."""

    __slots__ = ("tasks", "next", "order", "cands", "nodes")

    def __init__(self) -> None:
        self.tasks = 0
        self.next: dict[str, _Tree] | None = None
        self.order: list[str] = []
        self.cands: list[NodeState] = []
        self.nodes: list[NodeState] | None = None

    def child(self, value: str) -> _Tree:
        if self.next is None:
            self.next = {}
        sub = self.next.get(value)
        if sub is None:
            sub = self.next[value] = _Tree()
        return sub

    def sort_branches(self) -> None:
        if self.next is not None:
            self.order = sorted(self.next, key=lambda v: (v == "", v))
            for sub in self.next.values():
                sub.sort_branches()


class _Group:
    """What the placement of one group needs at hand."""

    __slots__ = ("spec", "sid", "fits", "key", "cap", "plain")

    def __init__(self, spec: PlacementSpec, sid: int, fits: Callable[[NodeState], bool],
                 key: Callable[[NodeState], tuple], cap: int, plain: bool) -> None:
        self.spec = spec
        self.sid = sid
        self.fits = fits
        self.key = key
        self.cap = cap
        self.plain = plain  # key is (replicas of the service, tasks): no failures to weigh


class _Run:
    """One call of :func:`place`: the node states and the caches of static checks."""

    def __init__(self, nodes: Sequence[NodeSnapshot], existing: Iterable[ExistingTask],
                 failures: Failures | None) -> None:
        self.states = [NodeState(n, i) for i, n in enumerate(nodes)]
        self.by_name: dict[str, NodeState] = {}
        for st in self.states:
            if st.node.name in self.by_name:
                raise ValueError(f"node {st.node.name} is listed twice")
            self.by_name[st.node.name] = st
        self.failures = failures or {}
        self.service_ids: dict[tuple[str, str], int] = {}
        self.svc_nodes: dict[int, dict[int, int]] = {}  # service -> node index -> active
        self.static: dict[tuple, list[NodeState]] = {}
        self.bucket_cache: dict[tuple, dict[tuple, list[NodeState]]] = {}
        self.paths: dict[tuple[str, ...], tuple[list[tuple[str, ...]], list[tuple]]] = {}
        self.placements: dict[TaskToPlace, str] = {}
        self.unplaced: dict[TaskToPlace, Unplaced] = {}
        self._take(existing)

    def _take(self, existing: Iterable[ExistingTask]) -> None:
        """What the living tasks hold and count (``add`` inlined: 100,000 tasks pass here)."""
        by_name, ids, svc_nodes = self.by_name, self.service_ids, self.svc_nodes
        for e in existing:
            st = by_name.get(e.node)
            if st is None:
                continue
            sid = ids.get((e.stack, e.service))
            if sid is None:
                sid = ids[(e.stack, e.service)] = len(ids)
            if e.cpus:
                st.cpus -= e.cpus
            if e.memory:
                st.memory -= e.memory
            if e.host_ports:
                st.ports.update(e.host_ports)
            if e.active:
                st.total += 1
                by = st.by_service
                by[sid] = by.get(sid, 0) + 1
                counts = svc_nodes.get(sid)
                if counts is None:
                    counts = svc_nodes[sid] = {}
                counts[st.index] = counts.get(st.index, 0) + 1

    def sid(self, stack: str, service: str) -> int:
        key = (stack, service)
        sid = self.service_ids.get(key)
        if sid is None:
            sid = self.service_ids[key] = len(self.service_ids)
        return sid

    def add(self, st: NodeState, sid: int, cpus: int, memory: int, ports: Iterable,
            active: bool) -> None:
        st.cpus -= cpus
        st.memory -= memory
        st.ports.update(ports)
        if active:
            st.total += 1
            st.by_service[sid] = st.by_service.get(sid, 0) + 1
            counts = self.svc_nodes.setdefault(sid, {})
            counts[st.index] = counts.get(st.index, 0) + 1

    # ---------------------------------------------------------------------------------------
    # Caches: what does not change during a run (readiness, constraints, platform, labels)

    def static_ok(self, spec: PlacementSpec) -> list[NodeState]:
        key = (spec.constraints, spec.platforms)
        found = self.static.get(key)
        if found is None:
            found = [st for st in self.states
                     if st.node.status == READY and st.node.availability == ACTIVE
                     and (not spec.constraints or matches_all(spec.constraints, st.node))
                     and (not spec.platforms or platform_supported(spec.platforms, st.node))]
            self.static[key] = found
        return found

    def node_paths(self, prefs: tuple[str, ...]) -> tuple[list[tuple[str, ...]], list[tuple]]:
        """Per node, its branch values (one per preference); and the distinct paths."""
        found = self.paths.get(prefs)
        if found is None:
            per_node = [tuple(node_value(p, st.node) for p in prefs) for st in self.states]
            found = self.paths[prefs] = (per_node, sorted(set(per_node)))
        return found

    # ---------------------------------------------------------------------------------------
    # Groups

    def group_context(self, first: TaskToPlace, cap: int) -> _Group:
        spec = first.spec
        sid = self.sid(first.stack, first.service)
        cpus, memory, ports, most = spec.cpus, spec.memory, spec.host_ports, \
            spec.max_replicas_per_node
        port_set = frozenset(ports)

        def fits(st: NodeState) -> bool:
            if cpus and st.cpus < cpus:
                return False
            if memory and st.memory < memory:
                return False
            if port_set and not port_set.isdisjoint(st.ports):
                return False
            if most and st.by_service.get(sid, 0) >= most:
                return False
            return True

        failures = self.failures.get((first.stack, first.service, first.version))
        if failures:
            names = [st.node.name for st in self.states]

            def key(st: NodeState) -> tuple:
                f = failures.get(names[st.index], 0)
                return (f if f >= MAX_FAILURES else 0, st.by_service.get(sid, 0), st.total)
        else:
            def key(st: NodeState) -> tuple:
                return (st.by_service.get(sid, 0), st.total)
        return _Group(spec, sid, fits, key, cap, not failures)

    def tree(self, g: _Group) -> _Tree:
        root = _Tree()
        static = self.static_ok(g.spec)
        prefs = g.spec.preferences
        counts = self.svc_nodes.get(g.sid, {})
        if not prefs:
            root.tasks = sum(counts.values())
            root.cands = self.fitting(static, g)
            return root
        per_node, distinct = self.node_paths(prefs)
        buckets = self.buckets(g.spec)
        for path in distinct:  # every branch exists, also one whose nodes all fail
            t = root
            for value in path:
                t = t.child(value)
            bucket = buckets.get(path)
            if bucket:
                t.cands = self.fitting(bucket, g)
        for index, n in counts.items():
            t = root
            t.tasks += n
            for value in per_node[index]:
                t = t.next[value]  # type: ignore[index]
                t.tasks += n
        root.sort_branches()
        return root

    def buckets(self, spec: PlacementSpec) -> dict[tuple, list[NodeState]]:
        """The nodes passing the static filters for ``spec``, by branch path (cached)."""
        key = (spec.constraints, spec.platforms, spec.preferences)
        found = self.bucket_cache.get(key)
        if found is None:
            per_node = self.node_paths(spec.preferences)[0]
            found = {}
            for st in self.static_ok(spec):
                found.setdefault(per_node[st.index], []).append(st)
            self.bucket_cache[key] = found
        return found

    @staticmethod
    def fitting(static: list[NodeState], g: _Group) -> list[NodeState]:
        """The nodes of ``static`` that pass the dynamic filters now (the common cases as
        comprehensions: a call of ``fits`` per node and group is most of a group's cost)."""
        spec = g.spec
        if spec.host_ports or spec.max_replicas_per_node:
            return [st for st in static if g.fits(st)]
        cpus, memory = spec.cpus, spec.memory
        if cpus and memory:
            return [st for st in static if st.cpus >= cpus and st.memory >= memory]
        if cpus:
            return [st for st in static if st.cpus >= cpus]
        if memory:
            return [st for st in static if st.memory >= memory]
        return list(static)

    def ordered(self, leaf: _Tree, g: _Group) -> list[NodeState]:
        """The leaf's nodes, best first (swarmkit's orderedNodes over its capped heap)."""
        if leaf.nodes is None:
            cands = leaf.cands
            if len(cands) > g.cap:
                if g.plain:  # keys as tuples compared natively: no call per node
                    sid = g.sid
                    keyed = [(st.by_service.get(sid, 0), st.total, st.index, st)
                             for st in cands]
                    nodes = [k[3] for k in heapq.nsmallest(g.cap, keyed)]
                else:
                    nodes = heapq.nsmallest(g.cap, cands, key=g.key)
            elif g.plain:
                sid = g.sid
                keyed = [(st.by_service.get(sid, 0), st.total, st.index, st) for st in cands]
                keyed.sort()
                nodes = [k[3] for k in keyed]
            else:
                nodes = sorted(cands, key=g.key)
        else:  # visited again: nodes may have filled up since
            nodes = sorted((st for st in leaf.nodes if g.fits(st)), key=g.key)
        leaf.nodes = nodes
        return nodes

    def on_subtree(self, n: int, remaining: list[TaskToPlace], tree: _Tree, g: _Group) -> int:
        """Place up to ``n`` of ``remaining`` on ``tree`` (scheduleNTasksOnSubtree)."""
        if tree.next is None:
            nodes = self.ordered(tree, g)
            if not nodes:
                return 0
            return self.on_nodes(n, remaining, nodes, g)
        scheduled = 0
        usable_tasks = tree.tasks
        no_room: set[str] = set()
        branches = tree.order
        while scheduled < n and len(no_room) != len(branches) and remaining:
            desired, remainder = divmod(usable_tasks + n - scheduled,
                                        len(branches) - len(no_room))
            for value in branches:
                if value in no_room or not remaining or scheduled >= n:
                    continue
                sub = tree.next[value]
                sub_tasks = sub.tasks
                if sub_tasks < desired or (sub_tasks == desired and remainder > 0):
                    ask = desired - sub_tasks + (1 if remainder > 0 else 0)
                    # never more than this subtree still owes: Swarm does not cap the ask,
                    # so a nested subtree could place more than its share, and then find
                    # a negative share for every branch and stop making progress
                    ask = min(ask, n - scheduled)
                    got = self.on_subtree(ask, remaining, sub, g)
                    sub.tasks += got  # Swarm leaves this stale (see the module docstring)
                    if got < ask:
                        no_room.add(value)
                        usable_tasks -= sub_tasks
                    else:
                        usable_tasks += got
                        if remainder > 0:
                            remainder -= 1
                    scheduled += got
        return scheduled

    def on_nodes(self, n: int, remaining: list[TaskToPlace], nodes: list[NodeState],
                 g: _Group) -> int:
        """Place up to ``n`` tasks on ``nodes``, best first (scheduleNTasksOnNodes).

        The hot loop of the scheduler: the plain key (replicas of the service, tasks) and the
        reservation checks are written out inline; ``g.key``/``g.fits`` serve the rest."""
        spec, sid, fits, key = g.spec, g.sid, g.fits, g.key
        cpus, memory, ports = spec.cpus, spec.memory, spec.host_ports
        other_checks = bool(ports or spec.max_replicas_per_node)
        plain = g.plain
        svc_nodes = self.svc_nodes.setdefault(sid, {})
        placements = self.placements
        count = len(nodes)
        it = placed = 0
        failed: set[int] = set()
        while remaining:
            st = nodes[it % count]
            task = remaining.pop()
            st.cpus -= cpus
            st.memory -= memory
            if ports:
                st.ports.update(ports)
            st.total += 1
            by = st.by_service
            mine = by[sid] = by.get(sid, 0) + 1
            svc_nodes[st.index] = svc_nodes.get(st.index, 0) + 1
            placements[task] = st.node.name
            placed += 1
            if placed == n:
                return placed
            if it + 1 < count:
                # first pass: fill a node until the next one is as good
                nxt = nodes[it + 1]
                if plain:
                    theirs = nxt.by_service.get(sid, 0)
                    if theirs < mine or (theirs == mine and nxt.total < st.total):
                        it += 1
                elif key(nxt) < key(st):
                    it += 1
            else:
                # later passes: one task per node that still fits
                it += 1
            start = it
            while True:
                j = it % count
                if j not in failed:
                    cand = nodes[j]
                    if (not cpus or cand.cpus >= cpus) and \
                            (not memory or cand.memory >= memory) and \
                            (not other_checks or fits(cand)):
                        break
                failed.add(j)
                it += 1
                if it - start == count:
                    return placed
        return placed

    def place_group(self, tasks: list[TaskToPlace]) -> None:
        first = tasks[0]
        remaining = tasks[::-1]  # pop() takes them in the order given
        while remaining:
            g = self.group_context(first, len(remaining))
            if not self.on_subtree(len(remaining), remaining, self.tree(g), g):
                break
        if remaining:
            counts, per_node, by_filter = reject_reasons(
                first, self.states, self.sid(first.stack, first.service))
            reason = no_suitable_node(counts)
            for task in remaining:
                self.unplaced[task] = Unplaced(task, reason, counts, per_node, by_filter)

    def place_on(self, task: TaskToPlace) -> None:
        """A task whose node is given (global services): can that node take it?"""
        assert task.node is not None
        st = self.by_name.get(task.node)
        if st is None:
            reason = f"no suitable node (node {task.node} is not in the inventory)"
            self.unplaced[task] = Unplaced(task, reason, {}, {})
            return
        sid = self.sid(task.stack, task.service)
        f = Pipeline(task, sid).first_failure(st)
        if f is not None:
            counts = {f.name: 1}
            self.unplaced[task] = Unplaced(task, no_suitable_node(counts), counts,
                                           {st.node.name: f.describe(task, st, sid)},
                                           {st.node.name: f.name})
            return
        spec = task.spec
        self.add(st, sid, spec.cpus, spec.memory, spec.host_ports, True)
        self.placements[task] = st.node.name


def _groups(tasks: Iterable[TaskToPlace]) -> tuple[list[TaskToPlace], list[list[TaskToPlace]]]:
    """Tasks with a node, and the others grouped by (stack, service, version) — split further
    if two tasks of one version carry different specs (they cannot share one pipeline)."""
    fixed: list[TaskToPlace] = []
    groups: dict[tuple[str, str, str], list[list[TaskToPlace]]] = {}
    order: list[list[TaskToPlace]] = []
    last: list[TaskToPlace] | None = None
    for t in tasks:
        if t.node is not None:
            fixed.append(t)
            continue
        if last is not None:  # the common case: a group's tasks come one after the other
            head = last[0]
            if head.spec is t.spec and head.service == t.service and \
                    head.version == t.version and head.stack == t.stack:
                last.append(t)
                continue
        subs = groups.setdefault((t.stack, t.service, t.version), [])
        for sub in subs:
            if sub[0].spec is t.spec or sub[0].spec == t.spec:
                sub.append(t)
                last = sub
                break
        else:
            subs.append([t])
            order.append(subs[-1])
            last = subs[-1]
    return fixed, order


def slot_key(slot: str) -> tuple[int, int, str]:
    return (0, int(slot), "") if slot.isdigit() else (1, 0, slot)


def place(tasks: Iterable[TaskToPlace], nodes: Sequence[NodeSnapshot],
          existing: Iterable[ExistingTask] = (), *,
          failures: Failures | None = None) -> PlacementResult:
    """Place ``tasks`` on ``nodes``, given the tasks that already live there.

    ``existing``: every task living on a node (pending..running), including those of other
    services and those being shut down (``active=False``: they hold resources and ports but
    no longer count). ``failures``: recent failures per service version and node, kept by the
    controller (swarmkit counts those of the last 5 minutes).
    """
    run = _Run(nodes, existing, failures)
    fixed, groups = _groups(tasks)
    for task in fixed:
        run.place_on(task)
    for group in groups:
        run.place_group(group)
    return PlacementResult(run.placements, run.unplaced)


def explain_nodes(task: TaskToPlace, nodes: Sequence[NodeSnapshot],
                  existing: Iterable[ExistingTask] = ()) -> dict[str, str | None]:
    """Per node, why it would refuse ``task`` now (None: it would take it) — for ``plan``."""
    run = _Run(nodes, existing, None)
    return reject_reasons(task, run.states, run.sid(task.stack, task.service))[1]


# --------------------------------------------------------------------------------------------
# Global services, stability, scale-down, lost nodes


def global_nodes(spec: PlacementSpec, nodes: Iterable[NodeSnapshot],
                 has_task: Iterable[str] = ()) -> list[str]:
    """The nodes a global service runs on: one task (slot) each, as swarmkit's global
    orchestrator decides — every node not down and not drained whose labels meet the
    constraints; a paused node keeps the task it has but gets no new one. Whether the node
    can take the task (resources, ports, platform, readiness) is then the scheduler's check:
    such a task stays pending with a reason, as in Swarm."""
    keep = set(has_task)
    out = []
    for n in nodes:
        if n.status == DOWN or n.availability == DRAIN:
            continue
        if n.availability == PAUSE and n.name not in keep:
            continue
        if spec.constraints and not matches_all(spec.constraints, n):
            continue
        out.append(n.name)
    return out


def choose_removals(tasks: Sequence[ExistingTask], count: int) -> list[ExistingTask]:
    """The ``count`` tasks of one service to remove when it scales down, first to go first.

    swarmkit's order (replicated orchestrator): tasks sorted running first, then by slot; each
    numbered as the nth copy of the service on its node; stably sorted by that number; the
    first ``replicas`` are kept. So the most loaded nodes lose tasks first, a task that is not
    running goes before one that is, and among equals the highest slot goes first."""
    if count <= 0:
        return []
    ordered = sorted(tasks, key=lambda t: (not t.running, slot_key(t.slot)))
    nth: dict[str, int] = {}
    indexed = []
    for t in ordered:
        i = nth.get(t.node, 0)
        nth[t.node] = i + 1
        indexed.append((i, t))
    indexed.sort(key=lambda pair: pair[0])
    keep = max(len(indexed) - count, 0)
    return [t for _, t in reversed(indexed[keep:])]


@dataclass(frozen=True, slots=True)
class Displaced:
    """A live task whose node can no longer keep it."""

    task: ExistingTask
    reason: str  # "node n2 is down"
    replace: bool  # True: start a new task for the slot elsewhere; False (global): stop it


def displaced(existing: Iterable[ExistingTask],
              nodes: Iterable[NodeSnapshot]) -> list[Displaced]:
    """The reconcile decision when nodes change (swarmkit's ``InvalidNode`` and constraint
    enforcer): a replicated task on a node that is gone, down or drained, or whose labels no
    longer meet the task's constraints, is replaced elsewhere. A global task is never moved:
    on a drained node or one that no longer meets its constraints it is stopped; on a down
    node it stays (it comes back with the node). Tasks not active (being shut down) are left
    alone; paused nodes keep their tasks."""
    by_name = {n.name: n for n in nodes}
    node_reason: dict[str, str | None] = {}  # gone / down / drained, or None: usable
    verdicts: dict[tuple[int, str], str | None] = {}  # (spec, node) -> constraint reason
    out = []
    for t in existing:
        if not t.active:
            continue
        name = t.node
        if name in node_reason:
            reason = node_reason[name]
        else:
            node = by_name.get(name)
            reason = node_reason[name] = (
                f"node {name} is gone" if node is None else
                f"node {name} is down" if node.status == DOWN else
                f"node {name} is drained" if node.availability == DRAIN else None)
        if reason is None:
            spec = t.spec
            if spec is None or not spec.constraints:
                continue
            key = (id(spec), name)
            if key in verdicts:
                reason = verdicts[key]
            else:
                failed = [str(c) for c in spec.constraints if not c.matches(by_name[name])]
                reason = verdicts[key] = (
                    f"node {name} no longer meets the constraints ({', '.join(failed)})"
                    if failed else None)
            if reason is None:
                continue
        elif t.mode in ("global", "global-job") and by_name.get(name) is not None \
                and by_name[name].status == DOWN:
            continue  # a global task waits for its node
        out.append(Displaced(t, reason, t.mode not in ("global", "global-job")))
    return out
