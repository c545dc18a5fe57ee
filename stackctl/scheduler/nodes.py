"""The scheduler's plain data: node snapshots, tasks to place, and tasks already placed.

Everything here is a frozen dataclass the controller fills from its inventory, the agents'
reports and the normalized stack; the placement functions (:mod:`.placement`) only read them.

Units are Swarm's: CPUs in nano-CPUs (``1.5`` CPUs = 1_500_000_000), memory in bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from stackctl.scheduler.constraints import Constraint, check_spread, parse_constraints

MANAGER, WORKER = "manager", "worker"
ROLES = (MANAGER, WORKER)
ACTIVE, PAUSE, DRAIN = "active", "pause", "drain"
AVAILABILITIES = (ACTIVE, PAUSE, DRAIN)
READY, DOWN, UNKNOWN = "ready", "down", "unknown"
STATUSES = (READY, DOWN, UNKNOWN)
MODES = ("replicated", "global", "replicated-job", "global-job")
NANO = 1_000_000_000



@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """One node as the manager sees it at this moment.

    ``id`` and ``hostname`` default to ``name`` (the inventory's name for the node).
    ``cpus``/``memory``: the node's capacity (nano-CPUs, bytes); 0 means none reported, so
    no reservation fits (as in Swarm).
    """

    name: str
    id: str = ""
    hostname: str = ""
    role: str = WORKER
    availability: str = ACTIVE
    status: str = READY
    labels: Mapping[str, str] = field(default_factory=dict)
    engine_labels: Mapping[str, str] = field(default_factory=dict)
    os: str = "linux"
    arch: str = "x86_64"
    ip: str = ""
    cpus: int = 0  # nano-CPUs
    memory: int = 0  # bytes

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.name)
        if not self.hostname:
            object.__setattr__(self, "hostname", self.name)
        if self.role not in ROLES:
            raise ValueError(f"node {self.name}: role {self.role!r} is not one of {ROLES}")
        if self.availability not in AVAILABILITIES:
            raise ValueError(f"node {self.name}: availability {self.availability!r} is not "
                             f"one of {AVAILABILITIES}")
        if self.status not in STATUSES:
            raise ValueError(f"node {self.name}: status {self.status!r} is not one of "
                             f"{STATUSES}")

    @property
    def schedulable(self) -> bool:
        """Swarm's ReadyFilter: ready and active (pause and drain take no new task)."""
        return self.status == READY and self.availability == ACTIVE


class HostPort(NamedTuple):
    """A port published in host mode (``ports: - {published: 80, mode: host}``); a tuple, so
    that the scheduler's port sets hash it cheaply."""

    port: int
    protocol: str = "tcp"  # tcp | udp | sctp

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


@dataclass(frozen=True, slots=True)
class Platform:
    """An os/architecture an image supports; "" matches any."""

    os: str = ""
    arch: str = ""


@dataclass(frozen=True, slots=True)
class PlacementSpec:
    """What placement reads of a service version: shared by all of its tasks.

    ``preferences``: spread descriptors, outermost first (``node.labels.zone`` then
    ``node.labels.rack`` spreads over zones, then over racks within each zone).
    ``platforms``: the image's platforms; empty means any node will do.
    """

    constraints: tuple[Constraint, ...] = ()
    preferences: tuple[str, ...] = ()
    cpus: int = 0  # reserved nano-CPUs
    memory: int = 0  # reserved bytes
    host_ports: tuple[HostPort, ...] = ()
    max_replicas_per_node: int = 0  # 0: unlimited
    platforms: tuple[Platform, ...] = ()

    @classmethod
    def build(cls, *, constraints: Iterable[str | Constraint] = (),
              preferences: Iterable[str] = (), cpus: int = 0, memory: int = 0,
              host_ports: Iterable[HostPort | tuple[int, str] | int] = (),
              max_replicas_per_node: int | None = 0,
              platforms: Iterable[Platform] = ()) -> PlacementSpec:
        """From loose values: constraint strings are parsed, spread descriptors checked
        (:class:`.constraints.ConstraintError` on a bad one), ports given as ints or pairs."""
        parsed = tuple(c if isinstance(c, Constraint) else parse_constraints([c])[0]
                       for c in constraints)
        ports = []
        for p in host_ports:
            if isinstance(p, HostPort):
                ports.append(p)
            elif isinstance(p, int):
                ports.append(HostPort(p))
            else:
                ports.append(HostPort(int(p[0]), p[1]))
        return cls(parsed, tuple(check_spread(p) for p in preferences), cpus, memory,
                   tuple(ports), max_replicas_per_node or 0, tuple(platforms))


@dataclass(frozen=True, slots=True)
class TaskToPlace:
    """One task the scheduler must place: a slot of a service version.

    Tasks of one service with one ``version`` (the config hash) are placed together, as
    swarmkit groups by (service, spec version); they must share one ``spec``. ``node`` is set
    for global-mode tasks (one per node, :func:`.placement.global_nodes`): the scheduler then
    only checks that the node can take it.
    """

    stack: str
    service: str
    slot: str
    version: str = ""
    spec: PlacementSpec = field(default_factory=PlacementSpec)
    mode: str = "replicated"
    node: str | None = None

    def __hash__(self) -> int:
        # (stack, service, slot) names a task; hashing the spec for every dict lookup would
        # cost more than placing the task
        return hash((self.stack, self.service, self.slot))

    @property
    def name(self) -> str:
        return f"{self.service}.{self.slot}"

    @property
    def is_global(self) -> bool:
        return self.mode in ("global", "global-job")


@dataclass(frozen=True, slots=True)
class ExistingTask:
    """A task that already exists on a node (its container is pending..running).

    It holds its reservations and host ports while it lives. ``active`` (desired to run)
    decides whether it counts for spreading, ``max_replicas_per_node`` and "fewest tasks":
    a task being shut down still holds its resources until it has stopped, but no longer
    counts (swarmkit's NodeInfo). ``running`` and ``slot`` serve :func:`.placement.
    choose_removals`; ``version`` and ``spec`` serve :func:`.placement.displaced`.
    """

    stack: str
    service: str
    node: str
    slot: str = ""
    cpus: int = 0
    memory: int = 0
    host_ports: tuple[HostPort, ...] = ()
    active: bool = True
    running: bool = True
    version: str = ""
    spec: PlacementSpec | None = None
    mode: str = "replicated"

    @property
    def name(self) -> str:
        return f"{self.service}.{self.slot}"

    @property
    def is_global(self) -> bool:
        return self.mode in ("global", "global-job")
