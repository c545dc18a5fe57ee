"""What the controller's parts share: the nodes they call, progress reporting, the clock,
and the error a failed deploy raises.

The controller reaches nodes only through :class:`~stackctl.controller.cluster.Cluster` (a
map of node name to :class:`~stackctl.node.interface.NodeClient`, routing each call to the
node it concerns); ``ctx.node`` is that cluster. ``ctx.placements`` holds, per stack, the
node of every slot the scheduler placed (:mod:`stackctl.controller.placement`); ``store`` is
the agent's SQLite store (stack versions, status, per-slot restart history).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from stackctl.controller.imagepull import ImagePins
from stackctl.errors import StackctlError

if TYPE_CHECKING:
    from stackctl.controller.cluster import Cluster

ProgressFn = Callable[[dict[str, Any]], Awaitable[None]]

#: how often observed state is re-read while waiting (bus events wake the waiters earlier)
POLL_INTERVAL = 0.25
#: how long a replica stays out of its VIP / published ports before it is stopped, so that
#: connections being DNAT'd to it as it leaves still reach a live process
DRAIN_GRACE = 0.2


class DeployError(StackctlError):
    """A deploy (or scale, rollback, ...) did not reach its desired state."""

    def __init__(self, message: str, *, failures: list[str] | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failures = list(failures or [])


def now_iso(wall_ns: int) -> str:
    return _dt.datetime.fromtimestamp(wall_ns / 1e9, _dt.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_ns(text: str) -> int | None:
    if not text:
        return None
    try:
        value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return int(value.timestamp() * 1e9)


@dataclass
class Progress:
    """Sends progress events (docs/agent-api.md) for one stack."""

    stack: str
    send: ProgressFn | None
    wall: Callable[[], int] = time.time_ns
    events: list[dict[str, Any]] = field(default_factory=list)  # kept for the final summary

    async def __call__(self, service: str, action: str, status: str = "done",
                       message: str = "", *, slot: str | None = None,
                       container: str | None = None) -> None:
        event: dict[str, Any] = {"time": now_iso(self.wall()), "stack": self.stack,
                                 "service": service, "action": action, "status": status,
                                 "message": message}
        if slot is not None:
            event["slot"] = slot
        if container is not None:
            event["container"] = container
        self.events.append(event)
        if self.send is not None:
            await self.send(event)


@dataclass
class Ctx:
    """The nodes and settings a deploy or reconcile pass works with."""

    node: Cluster
    store: Any
    wall: Callable[[], int] = time.time_ns
    poll_interval: float = POLL_INTERVAL
    drain_grace: float = DRAIN_GRACE
    changed: trio.Event = field(default_factory=trio.Event)
    serving: dict[str, bool] = field(default_factory=dict)  # last set per container
    draining: set[str] = field(default_factory=set)  # being taken out before a stop
    reads: dict[str, Any] = field(default_factory=dict)  # stack -> watch.SharedRead not begun yet
    #: stack -> {(service, slot): node}: where the scheduler placed each slot
    placements: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    #: overlay networks (stackctl/controller/overlay.Overlay), or None: bridges only
    overlay: Any = None
    #: the registry images deploys resolved, for tasks placed later (controller/imagepull.py)
    images: ImagePins = field(default_factory=ImagePins)

    @property
    def net(self) -> Cluster:
        """Serving state (VIPs, published ports) goes through the same cluster."""
        return self.node

    def node_of_slot(self, stack: str, service: str, slot: str) -> str | None:
        """The node ``service.slot`` of ``stack`` is placed on (None: not placed; with one
        node, the cluster's only node)."""
        return self.placements.get(stack, {}).get((service, slot))

    def kick(self) -> None:
        """Something changed on the node: wake every waiter now."""
        self.changed.set()
        self.changed = trio.Event()

    async def wait_change(self) -> None:
        """Until the next bus event or poll interval, whichever comes first."""
        with trio.move_on_after(self.poll_interval):
            await self.changed.wait()
