"""Observed state: what the agents report, grouped per stack, service and slot.

Agents report plain :class:`ContainerInfo` records (built from their container store); nothing
here asks anything. :func:`group_stack` sorts a stack's containers into slots, recognising

- **duplicates**: several containers for one slot (a crash between create and remove, two
  controllers racing). The best one is the slot's :attr:`SlotObserved.primary` — running
  first, then healthy, then the newest — and the others are :attr:`SlotObserved.duplicates`;
- **orphans**: services that have containers but are no longer in the stack file
  (:func:`orphans`);
- **strays**: containers labelled with the stack but without a usable service or slot label
  (made by hand, or by an older stackctl). They are reported, never touched.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from stackctl.scheduler.confighash import parse_parts_label
from stackctl.scheduler.tasks import (
    LABEL_CONFIG_HASH,
    LABEL_CONFIG_PARTS,
    LABEL_LISTEN_PORTS,
    LABEL_ONEOFF,
    LABEL_SERVICE,
    LABEL_SLOT,
    LABEL_STACK,
    LABEL_TASK_ID,
)

STATES = ("created", "running", "paused", "restarting", "exited", "dead", "removing")
HEALTH = ("starting", "healthy", "unhealthy")


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """One container as an agent reports it."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    state: str = "created"  # one of STATES
    health: str | None = None  # one of HEALTH; None: no health check
    exit_code: int | None = None
    started_at: str = ""  # RFC 3339 (UTC, as the monitor writes it); "" if never started
    finished_at: str = ""
    node: str = "local"
    #: TCP ports listening in its network namespace (not on loopback), read by the node for a
    #: running container that has ports to wait for (:attr:`listen_ports`); None: not read
    listening: frozenset[int] | None = None

    @property
    def stack(self) -> str | None:
        return self.labels.get(LABEL_STACK)

    @property
    def service(self) -> str | None:
        return self.labels.get(LABEL_SERVICE)

    @property
    def slot(self) -> str | None:
        return self.labels.get(LABEL_SLOT)

    @property
    def config_hash(self) -> str | None:
        return self.labels.get(LABEL_CONFIG_HASH)

    @property
    def config_parts(self) -> dict[str, str]:
        return parse_parts_label(self.labels.get(LABEL_CONFIG_PARTS, ""))

    @property
    def task_id(self) -> str | None:
        return self.labels.get(LABEL_TASK_ID)

    @property
    def oneoff(self) -> bool:
        return self.labels.get(LABEL_ONEOFF) == "true"

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting", "paused")

    @property
    def listen_ports(self) -> tuple[int, ...]:
        """The TCP ports it must listen on before it is ready (its label; none: no wait)."""
        return parse_listen_ports(self.labels.get(LABEL_LISTEN_PORTS, ""))

    @property
    def ports_ready(self) -> bool:
        """Every port of :attr:`listen_ports` is listening (true when there are none)."""
        return ports_ready(self.listen_ports, self.listening)

    @property
    def ready(self) -> bool:
        """Ready to serve: running, and healthy with a health check, else listening on its
        ports (docs/controller.md, "Readiness without a health check")."""
        return self.running and self.health in (None, "healthy") and self.ports_ready

    def missing_ports(self) -> list[int]:
        """The ports of :attr:`listen_ports` not listening yet."""
        have = self.listening or frozenset()
        return [p for p in self.listen_ports if p not in have]

    @property
    def completed(self) -> bool:
        """Exited with status 0 (a finished job)."""
        return self.state == "exited" and self.exit_code == 0

    def describe_state(self) -> str:
        """``running (healthy)``, ``exited (137)``..."""
        if self.state == "exited" and self.exit_code is not None:
            return f"exited ({self.exit_code})"
        if self.running and self.health:
            return f"{self.state} ({self.health})"
        return self.state


def parse_listen_ports(text: str) -> tuple[int, ...]:
    """``"80,443"`` -> ``(80, 443)``; what does not parse is ignored (a hand-made label)."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if part.isdigit() and 0 < int(part) < 65536:
            out.append(int(part))
    return tuple(dict.fromkeys(out))


def format_listen_ports(ports: Iterable[int]) -> str:
    return ",".join(str(p) for p in sorted(set(ports)))


def ports_ready(required: Collection[int], listening: Collection[int] | None) -> bool:
    """The readiness decision without a health check: every required port listens.
    ``listening`` None (not read: the process is gone) is not ready unless nothing is
    required."""
    if not required:
        return True
    return listening is not None and all(p in listening for p in required)


def _rank(c: ContainerInfo) -> tuple:
    """Sort key: the best container of a slot first."""
    health = {"healthy": 0, None: 1, "starting": 2, "unhealthy": 3}.get(c.health, 3)
    return (0 if c.running else 1, health, _Desc(c.started_at), c.id)


class _Desc(str):
    """A string that sorts in reverse (for "newest first" inside an ascending sort key)."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:  # type: ignore[override]
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:  # type: ignore[override]
        return str.__lt__(self, other)


@dataclass(frozen=True, slots=True)
class SlotObserved:
    """The containers of one slot, best first."""

    service: str
    slot: str
    containers: tuple[ContainerInfo, ...]

    @property
    def name(self) -> str:
        return f"{self.service}.{self.slot}"

    @property
    def primary(self) -> ContainerInfo:
        return self.containers[0]

    @property
    def duplicates(self) -> tuple[ContainerInfo, ...]:
        return self.containers[1:]


@dataclass(frozen=True, slots=True)
class ServiceObserved:
    name: str
    slots: Mapping[str, SlotObserved]

    def containers(self) -> list[ContainerInfo]:
        return [c for s in self.slots.values() for c in s.containers]


@dataclass(frozen=True, slots=True)
class StackObserved:
    """Everything observed of one stack."""

    name: str
    services: Mapping[str, ServiceObserved] = field(default_factory=dict)
    strays: tuple[ContainerInfo, ...] = ()
    oneoffs: tuple[ContainerInfo, ...] = ()

    def slot(self, service: str, slot: str) -> SlotObserved | None:
        svc = self.services.get(service)
        return svc.slots.get(slot) if svc else None

    def containers(self) -> list[ContainerInfo]:
        return [c for s in self.services.values() for c in s.containers()]


def slot_sort_key(slot: str) -> tuple:
    """Numeric slots in numeric order (``2`` before ``10``), then node-named ones."""
    return (0, int(slot), "") if slot.isdigit() else (1, 0, slot)


def group_stack(containers: Iterable[ContainerInfo], stack: str) -> StackObserved:
    """The containers of ``stack`` (by label), grouped per service and slot."""
    by_slot: dict[str, dict[str, list[ContainerInfo]]] = {}
    strays: list[ContainerInfo] = []
    oneoffs: list[ContainerInfo] = []
    for c in containers:
        if c.stack != stack:
            continue
        if c.oneoff:
            oneoffs.append(c)
        elif not c.service or not c.slot:
            strays.append(c)
        else:
            by_slot.setdefault(c.service, {}).setdefault(c.slot, []).append(c)
    services = {}
    for name in sorted(by_slot):
        slots = {slot: SlotObserved(name, slot, tuple(sorted(items, key=_rank)))
                 for slot, items in sorted(by_slot[name].items(),
                                           key=lambda kv: slot_sort_key(kv[0]))}
        services[name] = ServiceObserved(name, slots)
    return StackObserved(stack, services, tuple(sorted(strays, key=lambda c: c.name)),
                         tuple(sorted(oneoffs, key=lambda c: c.name)))


def group_all(containers: Iterable[ContainerInfo]) -> dict[str, StackObserved]:
    """Every stack found in ``containers`` (for ``stackctl ls``)."""
    items = list(containers)
    names = sorted({c.stack for c in items if c.stack})
    return {name: group_stack(items, name) for name in names}


def orphans(observed: StackObserved, services: Collection[str]) -> list[ServiceObserved]:
    """Observed services that are not among ``services`` (the stack file's)."""
    return [svc for name, svc in observed.services.items() if name not in services]


def duplicates(observed: StackObserved) -> dict[str, tuple[ContainerInfo, ...]]:
    """Slot name -> its extra containers, for every slot that has more than one."""
    return {slot.name: slot.duplicates for svc in observed.services.values()
            for slot in svc.slots.values() if slot.duplicates}
