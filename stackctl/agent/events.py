"""The agent's in-process event bus: the supervisor, the node operations and the controller
publish; ``stack.events`` streams and the controller's reconcile loop subscribe.

An event is a flat JSON object::

    {"event": "container.die", "time": "2024-05-01T12:00:00.123456789Z", "time_ns": ...,
     "id": "<container id>", "name": "web-1", "stack": "shop", "service": "web", "slot": "1",
     "exit_code": 137, "oom_killed": false}

``event`` names: ``container.create | start | die | destroy | health`` (with ``health``:
starting / healthy / unhealthy, and ``output`` of the last probe), ``network.create |
destroy``, ``volume.create | destroy``, ``image.build``; the controller adds ``stack.*``.

Events only say *when* to look again (STYLE.md 3): a subscriber that falls behind loses events
rather than slowing the publisher down. Each subscription has a bounded buffer; when it is
full, further events are dropped and counted, and the subscriber next receives
``{"event": "events.dropped", "count": N}`` before the events that did fit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import trio

from stackctl.runtime.logs import format_rfc3339_ns

DEFAULT_BUFFER = 1024

Filter = Callable[[dict[str, Any]], bool]


class Subscription:
    """An async iterator of events; made by :meth:`EventBus.subscribe`."""

    def __init__(self, buffer: int, accept: Filter | None) -> None:
        self._send, self._recv = trio.open_memory_channel[dict[str, Any]](buffer)
        self._accept = accept
        self.dropped = 0

    def _offer(self, event: dict[str, Any]) -> None:
        if self._accept is not None and not self._accept(event):
            return
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self.dropped:
            count, self.dropped = self.dropped, 0
            return {"event": "events.dropped", "count": count,
                    **_stamp(time.time_ns())}
        try:
            return await self._recv.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def receive_nowait(self) -> dict[str, Any]:
        """The next buffered event, or trio.WouldBlock (for tests and draining)."""
        return self._recv.receive_nowait()

    def _close(self) -> None:
        self._send.close()


class EventBus:
    """Publish-subscribe within one trio run. ``publish`` never blocks."""

    def __init__(self, *, buffer: int = DEFAULT_BUFFER, clock: Callable[[], int] = time.time_ns) -> None:
        self._subs: list[Subscription] = []
        self._buffer = buffer
        self._clock = clock
        self.published = 0

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        """Stamp ``event`` with its time and hand it to every subscriber; returns it."""
        if "event" not in event:
            raise ValueError("an event needs an 'event' name")
        event = {**_stamp(self._clock()), **event}
        self.published += 1
        for sub in list(self._subs):
            sub._offer(event)
        return event

    def subscribe(self, *, stack: str | None = None, accept: Filter | None = None,
                  buffer: int | None = None) -> _Subscribing:
        """Receive events published from now on, while the ``with`` (or ``async with``) block
        lasts; ``stack`` keeps only that stack's events, ``accept`` is any other filter."""
        def _accept(ev: dict[str, Any]) -> bool:
            if stack is not None and ev.get("stack") != stack:
                return False
            return accept is None or accept(ev)

        sub = Subscription(buffer or self._buffer, _accept if (stack or accept) else None)
        return _Subscribing(self, sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)


class _Subscribing:
    """``with bus.subscribe() as sub`` and ``async with bus.subscribe() as sub`` alike."""

    def __init__(self, bus: EventBus, sub: Subscription) -> None:
        self._bus = bus
        self._sub = sub

    def __enter__(self) -> Subscription:
        self._bus._subs.append(self._sub)
        return self._sub

    def __exit__(self, *exc: object) -> None:
        self._bus._subs.remove(self._sub)
        self._sub._close()

    async def __aenter__(self) -> Subscription:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


def _stamp(ns: int) -> dict[str, Any]:
    return {"time": format_rfc3339_ns(ns), "time_ns": ns}
