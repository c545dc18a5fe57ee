"""The async agent client (trio), for the manager: many concurrent requests over one
connection, on any :class:`trio.abc.Stream` — a unix socket (:mod:`.unix`), an SSH channel
(:mod:`.ssh`), a memory stream in tests. The sans-IO
:class:`~stackctl.transport.protocol.Connection` does the talking; this module only moves
bytes and routes events to the waiting requests::

    async with open_client(stream, node="n2") as agent:           # hello exchanged
        info = await agent.call("agent.info", timeout=5)
        async with agent.stream("events.watch", {}) as events:   # leaving sends `cancel`
            async for ev in events:
                ...

- One reader task per connection, in a nursery that the ``async with`` block owns: it feeds
  the connection and hands each response/end/event to the request it names. Writes are
  serialised by a lock and never interrupted half-way (that would break the framing); a write
  that does not finish within :data:`SEND_TIMEOUT` loses the connection.
- Cancelling a caller (its own ``trio.fail_after``, or the ``timeout`` argument) sends
  ``cancel`` for its request and returns at once; the agent's late ``end`` is dropped.
- A lost connection (EOF, a reset, garbage from the peer, a ``goodbye``) fails every pending
  request and every later one with the same :class:`~.errors.NodeUnreachable`, which names
  the node and says what to do. :meth:`AsyncAgentClient.wait_lost` lets a liveness loop wait
  for that.
- Errors the agent returns are the blocking client's :class:`~stackctl.agent.client.AgentError`
  family (``not_found`` -> ``AgentNotFound``...), so both clients raise alike.
- Backpressure: a stream's events are buffered up to :data:`STREAM_BUFFER` items; a consumer
  slower than that makes the reader wait, which holds every request on the connection (there
  is no per-request flow control in the protocol). Consume streams promptly, or open a second
  connection for a bulk one.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from stackctl.agent.client import error_from
from stackctl.transport import protocol as P
from stackctl.transport.errors import NodeUnreachable, RequestTimeout

SEND_TIMEOUT = 30.0  # a write the peer does not take within this long loses the connection
HELLO_TIMEOUT = 15.0  # the agent's hello after ours (the remote side may be starting its agent)
GOODBYE_TIMEOUT = 1.0
STREAM_BUFFER = 1024
READ_SIZE = 65536


@dataclass(eq=False)
class _Pending:
    id: int
    method: str
    streaming: bool
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None
    abandoned: bool = False  # the caller left; drop whatever still arrives
    send: trio.MemorySendChannel | None = None
    recv: trio.MemoryReceiveChannel | None = None


class _Events:
    """A stream's events (an iterator rather than an async generator: nothing to finalize when
    the consumer leaves early)."""

    def __init__(self, req: _Pending) -> None:
        self._req = req

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> Any:
        assert self._req.recv is not None
        try:
            return await self._req.recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._req.error is not None:
                raise self._req.error from None
            raise StopAsyncIteration from None


class AsyncAgentClient:
    """One agent connection shared by many tasks. Made by :func:`open_client`."""

    def __init__(self, stream: trio.abc.Stream, node: str, *, hint: str | None = None) -> None:
        self.node = node
        self.peer: P.Hello | None = None
        self._stream = stream
        self._conn = P.Connection(P.CLIENT)
        self._hint = hint
        self._pending: dict[int, _Pending] = {}
        self._send_lock = trio.Lock()
        self._lost: NodeUnreachable | None = None
        self._lost_event = trio.Event()

    # -- state -------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._lost is None

    @property
    def pending(self) -> int:
        """Requests sent and not yet answered (whose callers still wait)."""
        return sum(1 for p in self._pending.values() if not p.abandoned)

    async def wait_lost(self) -> NodeUnreachable:
        """Wait until the connection is lost (or closed); the error pending calls got."""
        await self._lost_event.wait()
        assert self._lost is not None
        return self._lost

    # -- requests ----------------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> Any:
        """A unary request: its result, or the agent's error (an ``AgentError``), or
        :class:`NodeUnreachable`, or :class:`RequestTimeout` after ``timeout`` seconds
        (``None``: the caller's own cancel scopes bound it). A streaming method called this
        way returns None at its end (its events are dropped)."""
        with trio.move_on_after(math.inf if timeout is None else timeout):
            req = await self._start(method, params, streaming=False)
            try:
                await req.done.wait()
            finally:
                if not req.done.is_set():
                    await self._abandon(req)
            if req.error is not None:
                raise req.error
            return req.result
        raise RequestTimeout(self.node, method, timeout)  # type: ignore[arg-type]

    @asynccontextmanager
    async def stream(self, method: str, params: dict[str, Any] | None = None
                     ) -> AsyncIterator[AsyncIterator[Any]]:
        """A streaming request: ``async for ev in events`` yields its events until the agent
        ends it (an error end raises there). Leaving the block before the end — ``break``,
        cancellation — sends ``cancel``."""
        req = await self._start(method, params, streaming=True)
        try:
            yield _Events(req)
        finally:
            if not req.done.is_set():
                await self._abandon(req)

    async def _start(self, method: str, params: dict[str, Any] | None, *,
                     streaming: bool) -> _Pending:
        if self._lost is not None:
            raise self._lost
        rid = self._conn.next_request_id()
        req = _Pending(rid, method, streaming)
        if streaming:
            req.send, req.recv = trio.open_memory_channel(STREAM_BUFFER)
        self._pending[rid] = req
        try:
            await self._send(lambda: self._conn.send_request(rid, method, params or {}))
        except BaseException:
            self._pending.pop(rid, None)
            raise
        return req

    async def _abandon(self, req: _Pending) -> None:
        """The caller gave up on ``req``: tell the agent (best effort, never waiting for its
        end), and drop what still arrives for it."""
        req.abandoned = True
        if req.recv is not None:
            req.recv.close()
        if self._lost is None and req.id in self._conn.open_requests \
                and not self._conn.is_cancelled(req.id):
            try:
                await self._send(lambda: self._conn.send_cancel(req.id))
            except NodeUnreachable:
                pass

    # -- I/O ---------------------------------------------------------------------------------

    async def _send(self, make) -> None:
        """Encode (in order, under the lock) and write one message, shielded from the caller's
        cancellation so that no frame is cut in half, and bounded by :data:`SEND_TIMEOUT`."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(SEND_TIMEOUT) as scope:
                async with self._send_lock:
                    if self._lost is not None:
                        raise self._lost
                    data = make()
                    try:
                        await self._stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                        self._lose(f"the connection broke while sending ({_reason(exc)})")
            if scope.cancelled_caught:
                self._lose(f"a write did not complete within {SEND_TIMEOUT:g} s")
        if self._lost is not None:
            raise self._lost

    async def _receive(self) -> bytes:
        try:
            return await self._stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._lose(f"the connection broke ({_reason(exc)})")
            return b""

    def _next_event(self) -> P.Event | P._Sentinel | None:
        """The next event, :data:`~P.NEED_DATA`, or None when the connection is lost (and
        everyone told)."""
        try:
            return self._conn.next_event()
        except P.RemoteProtocolError as exc:
            self._lose(f"the agent sent something invalid: {exc.message}")
            return None

    async def handshake(self, hello: dict[str, Any] | None = None) -> P.Hello:
        """Send our hello and wait for the agent's (bounded by :data:`HELLO_TIMEOUT`)."""
        await self._send(lambda: self._conn.send_hello(hello or {"pid": os.getpid()}))
        with trio.move_on_after(HELLO_TIMEOUT):
            while self._lost is None:
                ev = self._next_event()
                if ev is P.NEED_DATA:
                    self._conn.receive_data(await self._receive())
                elif isinstance(ev, P.Hello):
                    self.peer = ev
                    return ev
                elif isinstance(ev, P.Goodbye) and ev.error is not None:
                    err = error_from(ev.error)
                    self._lose(f"the agent refused the connection: {err.message}")
                    raise err
                elif ev is not None:
                    self._lose("the agent closed the connection before greeting"
                               if isinstance(ev, (P.Goodbye, P.ConnectionClosed))
                               else f"the agent sent {type(ev).__name__} before hello")
        if self._lost is None:
            self._lose(f"the agent did not greet within {HELLO_TIMEOUT:g} s")
        raise self._lost

    async def run_reader(self) -> None:
        """Route events to their requests until the connection ends. Never raises for a lost
        connection (that is recorded and fails the requests); only cancellation ends it
        otherwise."""
        while self._lost is None:
            ev = self._next_event()
            if ev is None:
                return
            if ev is P.NEED_DATA:
                self._conn.receive_data(await self._receive())
                continue
            if isinstance(ev, P.StreamEvent):
                req = self._pending.get(ev.id)
                if req is not None and req.send is not None and not req.abandoned:
                    try:
                        await req.send.send(ev.event)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass  # the consumer left
            elif isinstance(ev, (P.Response, P.StreamEnd)):
                req = self._pending.pop(ev.id, None)
                if req is None:
                    continue
                if ev.error is not None:
                    req.error = error_from(ev.error)
                elif isinstance(ev, P.Response):
                    req.result = ev.result
                    if req.send is not None and ev.result is not None and not req.abandoned:
                        try:
                            req.send.send_nowait(ev.result)
                        except (trio.WouldBlock, trio.BrokenResourceError,
                                trio.ClosedResourceError):
                            pass
                self._finish(req)
            elif isinstance(ev, P.Goodbye):
                why = f": {ev.error.message}" if ev.error is not None else ""
                self._lose(f"the agent closed the connection{why}")
            elif isinstance(ev, P.ConnectionClosed):
                self._lose("the connection was closed by the other side")
            # Hello twice / Request / Cancel from a server are refused by the protocol

    @staticmethod
    def _finish(req: _Pending) -> None:
        if req.send is not None:
            req.send.close()
        req.done.set()

    def abort(self, reason: str) -> None:
        """Give the connection up now (a heartbeat went unanswered): every pending and later
        request fails at once with :class:`NodeUnreachable` saying ``reason``."""
        self._lose(reason)

    def _lose(self, reason: str) -> None:
        """Record the loss once, and fail every pending request with it."""
        if self._lost is not None:
            return
        self._lost = NodeUnreachable(self.node, reason, hint=self._hint)
        pending, self._pending = self._pending, {}
        for req in pending.values():
            req.error = self._lost
            self._finish(req)
        self._lost_event.set()

    async def aclose(self) -> None:
        """Say goodbye (bounded), close the stream, fail what is still pending."""
        with trio.CancelScope(shield=True):
            if self._lost is None and self._conn.ready and not self._conn.closed:
                with trio.move_on_after(GOODBYE_TIMEOUT):
                    try:
                        await self._send(self._conn.send_goodbye)
                    except (NodeUnreachable, P.LocalProtocolError):
                        pass
            self._lose("the connection was closed")
            with trio.move_on_after(GOODBYE_TIMEOUT):
                await self._stream.aclose()


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(exc) or type(exc).__name__


@asynccontextmanager
async def open_client(stream: trio.abc.Stream, *, node: str,
                      hello: dict[str, Any] | None = None,
                      hint: str | None = None) -> AsyncIterator[AsyncAgentClient]:
    """An agent client on ``stream`` for the block: hellos exchanged on entry (the agent's is
    ``client.peer``), a reader task for the block's lifetime, goodbye and close on exit. The
    stream is owned (closed) by the client from here on, also when the handshake fails.
    ``hint`` replaces :class:`NodeUnreachable`'s default advice (a transport knows better,
    e.g. "check `ssh n2`")."""
    client = AsyncAgentClient(stream, node, hint=hint)
    try:
        await client.handshake(hello)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run_reader)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await client.aclose()
