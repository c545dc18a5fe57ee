"""What the controller's parts share: the node interfaces they call, progress reporting, the
clock, and the error a failed deploy raises.

The controller talks to a node only through narrow interfaces, each with a real and a fake:

- ``node`` — :class:`stackctl.agent.nodeops.NodeOps` (containers, networks, volumes, images);
- ``net`` — :class:`NetOps`: taking a replica out of (and back into) its service's VIPs and
  published ports, and publishing a service's ports (:mod:`stackctl.net.service_ports`).
  :class:`LocalNet` is the real one for the local node; tests use a fake;
- ``store`` — the agent's SQLite store (stack versions, status, per-slot restart history).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from stackctl.errors import StackctlError
from stackctl.paths import NodePaths

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


class NetOps(Protocol):
    async def set_serving(self, container_id: str, serving: bool) -> None: ...

    async def publish_service(self, stack: str, service: str, ports: list[str],
                              networks: list[str]) -> None: ...

    async def unpublish_service(self, stack: str, service: str) -> None: ...


class LocalNet:
    """:class:`NetOps` on this node, through :mod:`stackctl.net` (in a worker thread)."""

    def __init__(self, paths: NodePaths) -> None:
        self.paths = paths

    async def set_serving(self, container_id: str, serving: bool) -> None:
        from stackctl.errors import NotFoundError
        from stackctl.net import sandbox

        def work() -> None:
            try:
                sandbox.set_health(self.paths, container_id, serving)
            except NotFoundError:
                pass  # no network of ours (network_mode host/none): nothing to route

        await trio.to_thread.run_sync(work)

    async def publish_service(self, stack: str, service: str, ports: list[str],
                              networks: list[str]) -> None:
        try:
            from stackctl.net import service_ports
        except ImportError:
            raise StackctlError(
                f"service {service}: published ports balanced over replicas (mode ingress) "
                "are not available on this node yet",
                hint="publish with `mode: host` (one replica per host port) for now") from None
        await trio.to_thread.run_sync(lambda: service_ports.publish(
            self.paths, f"{stack}_{service}", service, ports, networks))

    async def unpublish_service(self, stack: str, service: str) -> None:
        try:
            from stackctl.net import service_ports
        except ImportError:
            return
        await trio.to_thread.run_sync(lambda: service_ports.unpublish(
            self.paths, f"{stack}_{service}"))


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
    """The node interfaces and settings a deploy or reconcile pass works with."""

    paths: NodePaths
    node: Any  # NodeOps
    net: NetOps
    store: Any
    wall: Callable[[], int] = time.time_ns
    poll_interval: float = POLL_INTERVAL
    drain_grace: float = DRAIN_GRACE
    changed: trio.Event = field(default_factory=trio.Event)
    serving: dict[str, bool] = field(default_factory=dict)  # last set per container
    draining: set[str] = field(default_factory=set)  # being taken out before a stop
    reads: dict[str, Any] = field(default_factory=dict)  # stack -> watch.SharedRead not begun yet

    def kick(self) -> None:
        """Something changed on the node: wake every waiter now."""
        self.changed.set()
        self.changed = trio.Event()

    async def wait_change(self) -> None:
        """Until the next bus event or poll interval, whichever comes first."""
        with trio.move_on_after(self.poll_interval):
            await self.changed.wait()
