"""The agent's server: trio, one task per connection, one task per request, each request in
its own cancel scope — the sans-IO :class:`~stackctl.transport.protocol.Connection` does the
talking.

What the methods *do* lives in :mod:`stackctl.agent.api`; this module only knows a table of
:class:`Method` s::

    server = AgentServer({"agent.info": Method(info)}, node={"name": "local", "role": "manager"})
    await nursery.start(server.serve, "/run/stackctl/agent.sock")

- A unary method is ``async def f(req: RequestContext) -> result``; a streaming one (``stream=
  True``) sends items with ``await req.emit(item)`` and returns when done (its return value is
  ignored); the server then sends ``end``.
- ``cancel`` from the client cancels the request's scope; the server answers ``end`` /
  ``response`` with error ``cancelled``. A client that hangs up cancels all its requests.
- Errors: :class:`~stackctl.errors.NotFoundError` -> ``not_found``, ``ConflictError`` ->
  ``conflict``, ``UsageError`` -> ``bad_request``, an exception with a ``code`` attribute (such
  as :class:`MethodError`) -> that code, any other ``StackctlError`` -> ``failed``; anything else
  is a bug: ``internal``, with the traceback in the agent's log. An error's hint travels in
  ``data.hint``.
- A client speaking another major protocol version gets ``goodbye {version_mismatch}``.
"""

from __future__ import annotations

import logging
import os
import socket as _socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from stackctl.transport import protocol as P
from stackctl.agent.client import short_address
from stackctl.errors import ConflictError, NotFoundError, StackctlError, UsageError

log = logging.getLogger("stackctl.agent")

SEND_TIMEOUT = 30.0  # a client that does not read for this long is dropped
CONFLICT = "conflict"
FAILED = "failed"


class MethodError(StackctlError):
    """An error a method returns with an explicit protocol error code."""

    def __init__(self, code: str, message: str, *, hint: str | None = None, data: Any = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.data = data


@dataclass
class RequestContext:
    """One request as a method sees it."""

    id: int
    method: str
    params: dict[str, Any]
    peer: P.Hello | None
    _emit: Callable[[Any], Awaitable[None]]

    async def emit(self, item: Any) -> None:
        """Send one stream item (streaming methods)."""
        await self._emit(item)


@dataclass(frozen=True)
class Method:
    fn: Callable[[RequestContext], Awaitable[Any]]
    stream: bool = False


def error_info(exc: BaseException) -> P.ErrorInfo:
    """The protocol error for an exception a method raised."""
    data: dict[str, Any] = {}
    if isinstance(exc, StackctlError) and exc.hint:
        data["hint"] = exc.hint
    extra = getattr(exc, "data", None)
    if isinstance(extra, dict):
        data.update(extra)
    code = getattr(exc, "code", None)
    if not isinstance(code, str):
        if isinstance(exc, NotFoundError):
            code = P.NOT_FOUND
        elif isinstance(exc, ConflictError):
            code = CONFLICT
        elif isinstance(exc, UsageError):
            code = P.BAD_REQUEST
        elif isinstance(exc, StackctlError):
            code = FAILED
        else:
            code = P.INTERNAL
    if isinstance(exc, StackctlError):
        message = exc.message
    else:
        message = f"{type(exc).__name__}: {exc} (a bug in the agent; its log has the traceback)"
    return P.ErrorInfo(code, message, data or None)


class _BrokenClient(Exception):
    """The client stopped reading; the connection is dropped."""


@dataclass
class _Session:
    server: AgentServer
    stream: trio.abc.Stream
    conn: P.Connection = field(default_factory=lambda: P.Connection(P.SERVER))
    scopes: dict[int, trio.CancelScope] = field(default_factory=dict)
    send_lock: trio.Lock = field(default_factory=trio.Lock)
    broken: bool = False
    nursery: trio.Nursery | None = None

    async def run(self) -> None:
        """Serve this connection until the client leaves. Nothing but the agent's own
        cancellation escapes: a connection's failure ends only that connection's requests."""
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                try:
                    await self._read_loop(nursery)
                finally:
                    nursery.cancel_scope.cancel()  # the client is gone: so are its requests
        except* _BrokenClient:
            pass
        except* Exception as group:  # a bug; the other connections and the agent go on
            log.error("connection failed", exc_info=group)
        finally:
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    def _hang_up(self) -> None:
        """The client is gone (or stopped reading): cancel all its requests, as if it had sent
        ``cancel`` for each, and stop reading."""
        self.broken = True
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    async def _send(self, make: Callable[[], bytes]) -> None:
        """Encode (in order) and write one message; never interrupted half-way, which would
        break the framing, but bounded by :data:`SEND_TIMEOUT`. A client that is gone (or
        whose connection the protocol has closed) raises :class:`_BrokenClient`."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(SEND_TIMEOUT) as scope:
                async with self.send_lock:
                    if self.broken or self.conn.closed:
                        self.broken = True
                        raise _BrokenClient()
                    try:
                        data = make()
                    except P.LocalProtocolError:
                        if not self.conn.closed:
                            raise  # e.g. a result too large: the caller answers an error
                        self.broken = True
                        raise _BrokenClient() from None
                    try:
                        await self.stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self.broken = True
            if scope.cancelled_caught:
                self.broken = True
        if self.broken:
            raise _BrokenClient()

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        conn = self.conn
        while True:
            try:
                ev = conn.next_event()
            except P.RemoteProtocolError as exc:
                log.info("client refused: %s", exc.message)
                if not self.broken:
                    try:
                        await self._send(lambda refusal=exc: conn.send_goodbye(refusal))
                    except _BrokenClient:
                        pass
                return
            if ev is P.NEED_DATA:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                conn.receive_data(data)
                continue
            if isinstance(ev, P.Hello):
                await self._send(lambda: conn.send_hello(self.server.node))
            elif isinstance(ev, P.Request):
                scope = trio.CancelScope()
                self.scopes[ev.id] = scope
                nursery.start_soon(self._run_request, ev, scope)
            elif isinstance(ev, P.Cancel):
                scope = self.scopes.get(ev.id)
                if scope is not None:
                    scope.cancel()
            elif isinstance(ev, (P.Goodbye, P.ConnectionClosed)):
                return
            # StreamEvent (client input, e.g. attach stdin): no method takes input yet

    async def _run_request(self, req: P.Request, scope: trio.CancelScope) -> None:
        try:
            await self._answer(req, scope)
        except* _BrokenClient:
            self._hang_up()
        except* Exception as group:  # a bug in the transport: drop this connection only
            log.error("request %s %s: the connection failed", req.id, req.method,
                      exc_info=group)
            self._hang_up()

    async def _answer(self, req: P.Request, scope: trio.CancelScope) -> None:
        method = self.server.methods.get(req.method)
        result: Any = None
        error: P.ErrorInfo | None = None
        if method is None:
            error = P.ErrorInfo(P.BAD_REQUEST, f"unknown method {req.method!r}",
                                {"methods": sorted(self.server.methods)})
        else:
            async def emit(item: Any) -> None:
                # A client that is gone cancels the request (at its next checkpoint), as its
                # `cancel` would; the item is dropped rather than raised into the method, so
                # that a deploy's clean-up, which still reports progress, runs to its end.
                try:
                    await self._send(lambda: self.conn.send_event(req.id, item))
                except _BrokenClient:
                    self._hang_up()

            ctx = RequestContext(req.id, req.method, req.params, self.conn.peer, emit)
            with scope:
                try:
                    result = await method.fn(ctx)
                except _BrokenClient:
                    raise
                except trio.Cancelled:
                    raise
                except P.LocalProtocolError as exc:  # e.g. a result too large to send
                    log.exception("request %s %s failed", req.id, req.method)
                    error = P.ErrorInfo(P.INTERNAL, exc.message)
                except Exception as exc:  # noqa: BLE001 - every error becomes an answer
                    if not isinstance(exc, StackctlError):
                        log.exception("request %s %s failed", req.id, req.method)
                    error = error_info(exc)
            if scope.cancelled_caught:
                error = P.ErrorInfo(P.CANCELLED, f"{req.method} was cancelled")
                result = None
        self.scopes.pop(req.id, None)
        if self.conn.closed or self.broken:
            return
        if method is not None and method.stream:
            await self._send(lambda: self.conn.send_end(req.id, error=error))
        else:
            try:
                await self._send(lambda: self.conn.send_response(req.id, result, error=error))
            except P.LocalProtocolError as exc:
                await self._send(lambda msg=exc.message: self.conn.send_response(
                    req.id, error=P.ErrorInfo(P.INTERNAL, msg)))


class AgentServer:
    """Serves a table of methods on a unix socket."""

    def __init__(self, methods: dict[str, Method], *, node: dict[str, Any] | None = None) -> None:
        self.methods = methods
        self.node = dict(node or {})
        self.connections = 0

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        try:
            await _Session(self, stream).run()
        except Exception:  # noqa: BLE001 - never let one connection end the server
            log.exception("connection handler failed")
        finally:
            self.connections -= 1

    async def serve(self, path: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``path`` (mode 0600; a stale socket file is replaced — the caller holds
        the node's agent lock) until cancelled; the socket file is removed on the way out."""
        sock = trio.socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            old = os.umask(0o177)  # the socket is created 0600: no window where others connect
            try:
                with short_address(path) as addr:
                    await sock.bind(addr)
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
            sock.listen(128)
            listener = trio.SocketListener(sock)
        except BaseException:
            sock.close()
            raise
        try:
            async with listener:
                await trio.serve_listeners(self.handle, [listener], task_status=task_status)
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
