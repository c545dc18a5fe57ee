"""The service graph: who depends on whom, in which order services start and stop.

Nodes are the services switched on by the active profiles. An edge ``a -> b`` means "a depends
on b" and comes from ``depends_on`` (with its condition, required and restart flags) or
implicitly from ``network_mode: service:b``, ``ipc: service:b``, ``pid: service:b`` and
``volumes_from: [b]`` (condition service_started). ``start_levels()`` gives topological generations (every service of a level
can start in parallel once the previous levels are up); ``stop_levels()`` is the reverse.

Errors (all reported at once, located): a dependency on an undefined service; a dependency
on a service switched off by profiles, unless ``required: false`` (then the edge is dropped
with a warning); a cycle, named in order (``a -> b -> c -> a``).

Profiles, as Compose: a service without ``profiles`` is always on; one with profiles is on
when any of them is active; ``*`` activates every profile.

The graph itself is a plain adjacency map: a stack has a handful of services, and the CLI
builds this graph on every ``up`` (validation before anything is sent), where importing
networkx alone costs ~80 ms. networkx is still what names a cycle (strongly connected
components, then the shortest way round) and what :attr:`ServiceGraph.nx` hands out; it is
imported only then — a cycle is detected without it (what Kahn's algorithm cannot order).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from stackctl.errors import Issue, SpecError
from stackctl.spec.record import FrozenRecord
from stackctl.spec.issues import issue_at, sort_issues, written_key
from stackctl.spec.models import Service

if TYPE_CHECKING:
    import networkx as nx


def active_services(services: Mapping[str, Service], profiles: Collection[str]) -> set[str]:
    """Names of the services switched on by ``profiles``."""
    active = set(profiles)
    everything = "*" in active
    return {name for name, svc in services.items()
            if not svc.profiles or everything or active.intersection(svc.profiles)}


class Dependency(FrozenRecord):
    """One edge: ``service`` depends on ``on``. ``kind``: "depends_on" | "network_mode" |
    "ipc" | "pid" | "volumes_from"."""

    __slots__ = ("service", "on", "kind", "condition", "required", "restart")

    def __init__(self, service: str, on: str, kind: str, condition: str = "service_started",
                 required: bool = True, restart: bool = False) -> None:
        _set = object.__setattr__
        _set(self, "service", service)
        _set(self, "on", on)
        _set(self, "kind", kind)
        _set(self, "condition", condition)
        _set(self, "required", required)
        _set(self, "restart", restart)


class _Graph:
    """A small directed graph: ``succ[a][b]`` is the :class:`Dependency` of edge ``a -> b``."""

    def __init__(self) -> None:
        self.succ: dict[str, dict[str, Dependency]] = {}
        self.pred: dict[str, set[str]] = {}

    def add_node(self, name: str) -> None:
        self.succ.setdefault(name, {})
        self.pred.setdefault(name, set())

    def add_edge(self, a: str, b: str, dep: Dependency) -> None:
        self.add_node(a)
        self.add_node(b)
        self.succ[a][b] = dep
        self.pred[b].add(a)

    def has_edge(self, a: str, b: str) -> bool:
        return b in self.succ.get(a, {})

    def generations(self) -> tuple[list[set[str]], set[str]]:
        """Kahn's algorithm on dependencies: levels (dependencies first) and what is left over
        (the members of cycles and whatever depends on them)."""
        left = {n: len(on) for n, on in self.succ.items()}
        level = {n for n, k in left.items() if k == 0}
        out: list[set[str]] = []
        while level:
            out.append(level)
            nxt: set[str] = set()
            for n in level:
                del left[n]
                for d in self.pred[n]:
                    left[d] -= 1
                    if left[d] == 0:
                        nxt.add(d)
            level = nxt
        return out, set(left)

    def to_nx(self) -> nx.DiGraph:
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from(sorted(self.succ))
        for a in sorted(self.succ):
            for b, dep in sorted(self.succ[a].items()):
                g.add_edge(a, b, dep=dep)
        return g


class ServiceGraph:
    """Services and their dependencies (see the module docstring for why not networkx)."""

    def __init__(self, graph: _Graph) -> None:
        self._g = graph

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def build(cls, services: Mapping[str, Service], *, enabled: Collection[str] | None = None,
              raw: Any = None) -> tuple[ServiceGraph, list[Issue]]:
        """The graph of the ``enabled`` services (default: all) and warnings.

        Raise :class:`SpecError` for undefined or switched-off dependencies and for cycles.
        """
        on = set(services) if enabled is None else set(enabled)
        graph = _Graph()
        for name in sorted(on):
            graph.add_node(name)
        errors: list[Issue] = []
        warnings: list[Issue] = []
        for name in sorted(on):
            for dep, path in _dependencies(name, services[name]):
                if path[0] == "depends_on":
                    path = ("depends_on", written_key(raw, ("services", name, "depends_on"),
                                                      dep.on))
                where = ("services", name) + path
                if dep.on not in services:
                    errors.append(issue_at(raw, where, f"depends on undefined service {dep.on}",
                                           key=dep.kind == "depends_on"))
                elif dep.on not in on:
                    needs = ", ".join(services[dep.on].profiles)
                    message = (f"depends on service {dep.on}, which is not enabled by the "
                               f"active profiles (it needs profile {needs})")
                    if dep.required:
                        errors.append(issue_at(raw, where, message, key=True))
                    else:
                        warnings.append(issue_at(raw, where, message + "; ignored", key=True))
                elif dep.on == name:
                    errors.append(issue_at(raw, where, f"service {name} depends on itself",
                                           key=dep.kind == "depends_on"))
                elif not graph.has_edge(name, dep.on):
                    graph.add_edge(name, dep.on, dep)
        if not errors and graph.generations()[1]:
            errors += _cycles(graph.to_nx(), services, raw)
        if errors:
            raise SpecError(sort_issues(errors))
        return cls(graph), warnings

    # -- queries -----------------------------------------------------------------------------

    @property
    def services(self) -> list[str]:
        return sorted(self._g.succ)

    def __contains__(self, name: object) -> bool:
        return name in self._g.succ

    def __len__(self) -> int:
        return len(self._g.succ)

    @property
    def nx(self) -> nx.DiGraph:
        """A networkx copy of the graph (edges ``service -> dependency``, attribute ``dep``)."""
        return self._g.to_nx()

    def dependencies(self, name: str) -> list[Dependency]:
        """What ``name`` depends on directly."""
        on = self._g.succ[name]
        return [on[d] for d in sorted(on)]

    def dependents(self, name: str) -> list[str]:
        """The services that depend on ``name`` directly."""
        return sorted(self._g.pred[name])

    def edges(self) -> list[Dependency]:
        return sorted((d for on in self._g.succ.values() for d in on.values()),
                      key=lambda d: (d.service, d.on))

    def with_dependencies(self, names: Iterable[str]) -> set[str]:
        """``names`` and everything they depend on, transitively."""
        out: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in out:
                continue
            if name not in self._g.succ:
                raise KeyError(name)
            out.add(name)
            todo.extend(self._g.succ[name])
        return out

    def start_levels(self) -> list[list[str]]:
        """Topological generations, dependencies first; each level starts in parallel."""
        return [sorted(level) for level in self._g.generations()[0]]

    def stop_levels(self) -> list[list[str]]:
        """The start levels reversed: dependents stop before what they depend on."""
        return list(reversed(self.start_levels()))

    def start_order(self) -> list[str]:
        return [name for level in self.start_levels() for name in level]


def _dependencies(name: str, service: Service) -> list[tuple[Dependency, tuple]]:
    out = []
    for on, dep in service.depends_on.items():
        out.append((Dependency(name, on, "depends_on", dep.condition, dep.required, dep.restart),
                    ("depends_on", on)))
    for key in ("network_mode", "ipc", "pid"):  # compose-go: each `service:x` is an edge
        mode = getattr(service, key) or ""
        if mode.startswith("service:"):
            out.append((Dependency(name, mode[len("service:"):], key), (key,)))
    for i, ref in enumerate(service.volumes_from):
        if ref.startswith("container:"):
            continue
        on = ref.split(":", 1)[0]
        out.append((Dependency(name, on, "volumes_from"), ("volumes_from", i)))
    return out


def _cycles(graph: nx.DiGraph, services: Mapping[str, Service], raw: Any) -> list[Issue]:
    import networkx as nx

    errors = []
    for component in sorted(nx.strongly_connected_components(graph), key=min):
        if len(component) < 2:
            continue
        start = min(component)
        sub = graph.subgraph(component)
        cycle = [start]
        # follow edges inside the component back to the start (shortest way round)
        for node in _shortest_cycle(sub, start):
            cycle.append(node)
        first = graph.edges[cycle[0], cycle[1]]["dep"]
        path = ("services", start) + ((first.kind,) if first.kind != "depends_on"
                                      else ("depends_on",))
        errors.append(issue_at(raw, path,
                               "dependency cycle: " + " -> ".join(cycle), key=True))
    return errors


def _shortest_cycle(sub: nx.DiGraph, start: str) -> list[str]:
    import networkx as nx

    best: list[str] | None = None
    for succ in sorted(sub.successors(start)):
        try:
            path = nx.shortest_path(sub, succ, start)
        except nx.NetworkXNoPath:
            continue
        if best is None or len(path) < len(best):
            best = path
    assert best is not None  # a strongly connected component of 2+ nodes has a cycle
    return best
