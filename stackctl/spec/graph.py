"""The service graph: who depends on whom, in which order services start and stop.

Nodes are the services switched on by the active profiles. An edge ``a -> b`` means "a depends
on b" and comes from ``depends_on`` (with its condition, required and restart flags) or
implicitly from ``network_mode: service:b`` and ``volumes_from: [b]`` (condition
service_started). ``start_levels()`` gives topological generations (every service of a level
can start in parallel once the previous levels are up); ``stop_levels()`` is the reverse.

Errors (all reported at once, located): a dependency on an undefined service; a dependency
on a service switched off by profiles, unless ``required: false`` (then the edge is dropped
with a warning); a cycle, named in order (``a -> b -> c -> a``).

Profiles, as Compose: a service without ``profiles`` is always on; one with profiles is on
when any of them is active; ``*`` activates every profile.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from stackctl.errors import Issue, SpecError
from stackctl.spec.issues import issue_at, sort_issues, written_key
from stackctl.spec.models import Service


def active_services(services: Mapping[str, Service], profiles: Collection[str]) -> set[str]:
    """Names of the services switched on by ``profiles``."""
    active = set(profiles)
    everything = "*" in active
    return {name for name, svc in services.items()
            if not svc.profiles or everything or active.intersection(svc.profiles)}


@dataclass(frozen=True, slots=True)
class Dependency:
    """One edge: ``service`` depends on ``on``."""

    service: str
    on: str
    kind: str  # "depends_on" | "network_mode" | "volumes_from"
    condition: str = "service_started"
    required: bool = True
    restart: bool = False


class ServiceGraph:
    """Services and their dependencies (a networkx DiGraph underneath)."""

    def __init__(self, graph: nx.DiGraph) -> None:
        self._g = graph

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def build(cls, services: Mapping[str, Service], *, enabled: Collection[str] | None = None,
              raw: Any = None) -> tuple[ServiceGraph, list[Issue]]:
        """The graph of the ``enabled`` services (default: all) and warnings.

        Raise :class:`SpecError` for undefined or switched-off dependencies and for cycles.
        """
        on = set(services) if enabled is None else set(enabled)
        graph = nx.DiGraph()
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
                    graph.add_edge(name, dep.on, dep=dep)
        if not errors:
            errors += _cycles(graph, services, raw)
        if errors:
            raise SpecError(sort_issues(errors))
        return cls(graph), warnings

    # -- queries -----------------------------------------------------------------------------

    @property
    def services(self) -> list[str]:
        return sorted(self._g.nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._g

    def __len__(self) -> int:
        return len(self._g)

    @property
    def nx(self) -> nx.DiGraph:
        """A copy of the underlying graph (edges ``service -> dependency``)."""
        return self._g.copy()

    def dependencies(self, name: str) -> list[Dependency]:
        """What ``name`` depends on directly."""
        return [self._g.edges[name, on]["dep"] for on in sorted(self._g.successors(name))]

    def dependents(self, name: str) -> list[str]:
        """The services that depend on ``name`` directly."""
        return sorted(self._g.predecessors(name))

    def edges(self) -> list[Dependency]:
        return sorted((d["dep"] for _, _, d in self._g.edges(data=True)),
                      key=lambda d: (d.service, d.on))

    def with_dependencies(self, names: Iterable[str]) -> set[str]:
        """``names`` and everything they depend on, transitively."""
        out: set[str] = set()
        for name in names:
            out.add(name)
            out |= nx.descendants(self._g, name)
        return out

    def start_levels(self) -> list[list[str]]:
        """Topological generations, dependencies first; each level starts in parallel."""
        return [sorted(level) for level in nx.topological_generations(self._g.reverse(copy=False))]

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
    mode = service.network_mode or ""
    if mode.startswith("service:"):
        out.append((Dependency(name, mode[len("service:"):], "network_mode"),
                    ("network_mode",)))
    for i, ref in enumerate(service.volumes_from):
        if ref.startswith("container:"):
            continue
        on = ref.split(":", 1)[0]
        out.append((Dependency(name, on, "volumes_from"), ("volumes_from", i)))
    return out


def _cycles(graph: nx.DiGraph, services: Mapping[str, Service], raw: Any) -> list[Issue]:
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
