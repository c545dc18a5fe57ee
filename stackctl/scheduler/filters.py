"""The filter pipeline: Swarm's filters, in Swarm's order, each with ``check`` and ``explain``.

swarmkit (``manager/scheduler/filter.go``, ``pipeline.go``) runs, for every node, the filters
a task enables, in this order, and stops at the first that fails:

1. **ready** — the node is ready and its availability active (pause and drain take no new
   task; a down or unknown node takes none);
2. **resources** — the task's CPU and memory reservations fit what the node has left: its
   capacity minus the reservations of every task living on it (pending..running, also those
   being shut down), re-checked after each assignment. Enabled only when the task reserves;
3. **constraints** — every ``placement.constraints`` entry holds;
4. **platform** — the node's os/arch is one the image supports (x86_64 = amd64,
   aarch64 = arm64); enabled only when platforms are known;
5. **host ports** — none of the task's host-mode published ports is in use on the node;
6. **max replicas** — fewer than ``max_replicas_per_node`` active tasks of the service there.

A filter that rejects a node counts it; :func:`explain_counts` joins the counts, highest
first, with "; " — the text inside Swarm's ``no suitable node (...)``.

Deliberate difference: Swarm's resource filter says "insufficient resources on N nodes"; we
say which resource ("insufficient memory on 2 nodes", "insufficient CPU on 1 node"), a node
short of both counting as CPU (checked first, as Swarm checks it first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from stackctl.scheduler.constraints import matches_all
from stackctl.scheduler.nodes import ACTIVE, DOWN, DRAIN, NANO, PAUSE, READY, NodeSnapshot, \
    Platform, TaskToPlace

_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64"}


class NodeState:
    """A node during one placement run: its snapshot and what is left on it.

    ``cpus``/``memory``: capacity minus the reservations of the tasks living there.
    ``ports``: host-mode (port, protocol) pairs in use. ``total``: active tasks.
    ``by_service``: active tasks per service id (an int the run gives each (stack, service)).
    """

    __slots__ = ("node", "index", "cpus", "memory", "ports", "total", "by_service")

    def __init__(self, node: NodeSnapshot, index: int) -> None:
        self.node = node
        self.index = index
        self.cpus = node.cpus
        self.memory = node.memory
        self.ports: set[tuple[int, str]] = set()
        self.total = 0
        self.by_service: dict[int, int] = {}

    def __repr__(self) -> str:
        return (f"NodeState({self.node.name}, cpus={self.cpus}, memory={self.memory}, "
                f"total={self.total})")


class Filter:
    """One step of the pipeline. ``service`` is the run's id for the task's service."""

    name = ""

    def enabled(self, task: TaskToPlace) -> bool:
        return True

    def check(self, task: TaskToPlace, state: NodeState, service: int = -1) -> bool:
        raise NotImplementedError

    def explain(self, count: int) -> str:
        raise NotImplementedError

    def describe(self, task: TaskToPlace, state: NodeState, service: int = -1) -> str:
        """Why this node in particular fails (for ``plan``'s per-node explanation)."""
        return self.explain(1)


def _nodes(count: int) -> str:
    return "1 node" if count == 1 else f"{count} nodes"


class ReadyFilter(Filter):
    name = "ready"

    def check(self, task, state, service=-1):
        node = state.node
        return node.status == READY and node.availability == ACTIVE

    def explain(self, count):
        return f"{_nodes(count)} not available for new tasks"

    def describe(self, task, state, service=-1):
        node = state.node
        if node.status == DOWN:
            return "node is down"
        if node.status != READY:
            return f"node status is {node.status}"
        if node.availability == DRAIN:
            return "node is drained"
        if node.availability == PAUSE:
            return "node is paused"
        return self.explain(1)


def format_cpus(nano: int) -> str:
    return f"{nano / NANO:g}"


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.4g}{unit}"
    return f"{n}B"


class CPUFilter(Filter):
    name = "cpu"

    def enabled(self, task):
        return task.spec.cpus > 0

    def check(self, task, state, service=-1):
        return task.spec.cpus <= state.cpus

    def explain(self, count):
        return f"insufficient CPU on {_nodes(count)}"

    def describe(self, task, state, service=-1):
        return (f"insufficient CPU: {format_cpus(task.spec.cpus)} reserved, "
                f"{format_cpus(max(state.cpus, 0))} of {format_cpus(state.node.cpus)} left")


class MemoryFilter(Filter):
    name = "memory"

    def enabled(self, task):
        return task.spec.memory > 0

    def check(self, task, state, service=-1):
        return task.spec.memory <= state.memory

    def explain(self, count):
        return f"insufficient memory on {_nodes(count)}"

    def describe(self, task, state, service=-1):
        return (f"insufficient memory: {format_bytes(task.spec.memory)} reserved, "
                f"{format_bytes(max(state.memory, 0))} of {format_bytes(state.node.memory)} "
                "left")


class ConstraintFilter(Filter):
    name = "constraints"

    def enabled(self, task):
        return bool(task.spec.constraints)

    def check(self, task, state, service=-1):
        return matches_all(task.spec.constraints, state.node)

    def explain(self, count):
        return f"scheduling constraints not satisfied on {_nodes(count)}"

    def describe(self, task, state, service=-1):
        failed = [str(c) for c in task.spec.constraints if not c.matches(state.node)]
        return "constraint not satisfied: " + ", ".join(failed)


def _arch(arch: str) -> str:
    return _ARCH_ALIASES.get(arch, arch)


def platform_supported(platforms: Iterable[Platform], node: NodeSnapshot) -> bool:
    arch = _arch(node.arch)
    return any((not p.arch or _arch(p.arch) == arch) and (not p.os or p.os == node.os)
               for p in platforms)


class PlatformFilter(Filter):
    name = "platform"

    def enabled(self, task):
        return bool(task.spec.platforms)

    def check(self, task, state, service=-1):
        return platform_supported(task.spec.platforms, state.node)

    def explain(self, count):
        return f"unsupported platform on {_nodes(count)}"

    def describe(self, task, state, service=-1):
        node = state.node
        wanted = ", ".join(f"{p.os or '*'}/{p.arch or '*'}" for p in task.spec.platforms)
        return f"unsupported platform: node is {node.os}/{node.arch}, the image has {wanted}"


class HostPortFilter(Filter):
    name = "host-port"

    def enabled(self, task):
        return bool(task.spec.host_ports)

    def check(self, task, state, service=-1):
        ports = state.ports
        return not any(p in ports for p in task.spec.host_ports)

    def explain(self, count):
        return f"host-mode port already in use on {_nodes(count)}"

    def describe(self, task, state, service=-1):
        used = [str(p) for p in task.spec.host_ports if p in state.ports]
        return "host-mode port already in use: " + ", ".join(used)


class MaxReplicasFilter(Filter):
    name = "max-replicas"

    def enabled(self, task):
        return task.spec.max_replicas_per_node > 0

    def check(self, task, state, service=-1):
        return state.by_service.get(service, 0) < task.spec.max_replicas_per_node

    def explain(self, count):
        # Swarm's text, which gives no count
        return "max replicas per node limit exceed"

    def describe(self, task, state, service=-1):
        n = state.by_service.get(service, 0)
        return (f"max replicas per node reached: {n} of {task.service} here, "
                f"max_replicas_per_node is {task.spec.max_replicas_per_node}")


FILTERS: tuple[Filter, ...] = (ReadyFilter(), CPUFilter(), MemoryFilter(), ConstraintFilter(),
                               PlatformFilter(), HostPortFilter(), MaxReplicasFilter())
FILTER_NAMES = tuple(f.name for f in FILTERS)
BY_NAME: Mapping[str, Filter] = {f.name: f for f in FILTERS}


class Pipeline:
    """The filters one task enables, run in order over nodes, counting rejections."""

    __slots__ = ("task", "service", "filters", "counts")

    def __init__(self, task: TaskToPlace, service: int = -1) -> None:
        self.task = task
        self.service = service
        self.filters = [f for f in FILTERS if f.enabled(task)]
        self.counts: dict[str, int] = {}

    def first_failure(self, state: NodeState) -> Filter | None:
        for f in self.filters:
            if not f.check(self.task, state, self.service):
                return f
        return None

    def process(self, state: NodeState) -> bool:
        """Whether the node passes every filter; a rejection is counted."""
        f = self.first_failure(state)
        if f is None:
            return True
        self.counts[f.name] = self.counts.get(f.name, 0) + 1
        return False

    def explain(self) -> str:
        return explain_counts(self.counts)


def explain_counts(counts: Mapping[str, int]) -> str:
    """Swarm's explanation: each filter's phrase, the most rejections first (ties in pipeline
    order), joined by "; ": ``{"ready": 1, "memory": 2}`` gives
    ``insufficient memory on 2 nodes; 1 node not available for new tasks``."""
    order = {name: i for i, name in enumerate(FILTER_NAMES)}
    items = sorted(((n, name) for name, n in counts.items() if n > 0),
                   key=lambda item: (-item[0], order.get(item[1], 99)))
    return "; ".join(BY_NAME[name].explain(n) for n, name in items)


def no_suitable_node(counts: Mapping[str, int]) -> str:
    text = explain_counts(counts)
    return f"no suitable node ({text})" if text else "no suitable node"


def reject_reasons(task: TaskToPlace, states: Sequence[NodeState], service: int = -1,
                   ) -> tuple[dict[str, int], dict[str, str | None], dict[str, str | None]]:
    """Run the whole pipeline over ``states``: the rejection count per filter, and per node
    the reason it was rejected and the filter that did (None: it would take the task)."""
    pipe = Pipeline(task, service)
    per_node: dict[str, str | None] = {}
    by_filter: dict[str, str | None] = {}
    for st in states:
        f = pipe.first_failure(st)
        name = st.node.name
        if f is None:
            per_node[name] = by_filter[name] = None
        else:
            pipe.counts[f.name] = pipe.counts.get(f.name, 0) + 1
            per_node[name] = f.describe(task, st, service)
            by_filter[name] = f.name
    return pipe.counts, per_node, by_filter
