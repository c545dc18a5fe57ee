"""The agent wire protocol, sans-IO: bytes in, events out (the way h11 does HTTP/1.1).

Nothing here touches a socket, a clock or an event loop. The controller (asyncio) and the agent
(trio) each wrap one :class:`Connection`: they feed it what they read with
:meth:`Connection.receive_data`, pull events with :meth:`Connection.next_event` until it says
:data:`NEED_DATA`, and write whatever bytes the ``send_*`` methods return.

Framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON holding one object.
Why not newline-delimited JSON: a length prefix lets the reader refuse an oversized frame
*before* buffering it (NDJSON has to scan and hold bytes until a newline turns up), needs no
escaping rules, and costs one ``int.from_bytes`` per frame instead of a search. The price — a
capture is not readable with ``socat`` alone — is paid by ``docs/agent-protocol.md``'s tiny
decoder. Frames are bounded by ``max_frame`` (default :data:`DEFAULT_MAX_FRAME`, 4 MiB): large
payloads (log chunks, attach output) are split into several stream events by the sender.

Messages (the ``kind`` key of every frame):

- ``hello`` ``{version, role, node}`` — each side sends one first; the client speaks first. A
  peer whose *major* version differs is refused (:class:`IncompatibleVersion`); the refusing
  side may tell the peer why with :meth:`Connection.send_goodbye`.
- ``request`` ``{id, method, params}`` — client to server only. ``id`` is a positive int,
  unique among the client's open requests.
- ``response`` ``{id, result}`` or ``{id, error: {code, message, data}}`` — ends a request.
- ``event`` ``{id, event}`` — a stream item on an open request: the server sends output
  (``logs -f``, ``events``, attach output); the client may send input (attach stdin).
- ``end`` ``{id}`` or ``{id, error}`` — ends a streaming request (server only).
- ``cancel`` ``{id}`` — the client gives up on a request; the server still ends it with
  ``end``/``response`` (error code ``cancelled``), and events may arrive until then.
- ``goodbye`` ``{error?}`` — the sender closes the connection (with a reason when refusing).

Errors: :class:`LocalProtocolError` when *we* misuse the connection (sending a response to a
request that is not open, a request before hello...); :class:`RemoteProtocolError` when the
*peer* sent something invalid (bad JSON, an oversized frame, an unknown kind, a response for an
unknown id). After a remote error the connection is broken: every later call raises again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from stackctl.errors import StackctlError

PROTOCOL_VERSION = "1.0"
DEFAULT_MAX_FRAME = 4 * 1024 * 1024
ENDED_KEPT = 1024  # how many ended request ids a connection remembers (late cancels)
_LATE = object()  # a late cancel/input for an ended request: dropped
HEADER_SIZE = 4
_MAX_ENCODABLE = 2**32 - 1

CLIENT = "client"
SERVER = "server"

#: well-known error codes of ``response.error`` / ``end.error`` / ``goodbye.error``
CANCELLED = "cancelled"
VERSION_MISMATCH = "version_mismatch"
BAD_REQUEST = "bad_request"
NOT_FOUND = "not_found"
INTERNAL = "internal"


# --------------------------------------------------------------------------------------------
# Errors


class ProtocolError(StackctlError):
    """Something is wrong with the conversation on an agent connection."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow; the connection is unusable."""


class IncompatibleVersion(RemoteProtocolError):
    """The peer speaks another major version of the protocol."""

    def __init__(self, ours: str, theirs: str, role: str) -> None:
        super().__init__(
            f"the {role} speaks agent protocol {theirs}, this stackctl speaks {ours}",
            hint="run the same stackctl major version on the controller and every node "
                 "(stackctl agent upgrade)")
        self.ours = ours
        self.theirs = theirs


# --------------------------------------------------------------------------------------------
# Events


class _Sentinel(Enum):
    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value


NEED_DATA = _Sentinel.NEED_DATA


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error carried by a response, a stream end or a goodbye."""

    code: str
    message: str
    data: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


@dataclass(frozen=True, slots=True)
class Hello:
    version: str
    role: str
    node: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    id: int
    result: Any = None
    error: ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class StreamEvent:
    id: int
    event: Any


@dataclass(frozen=True, slots=True)
class StreamEnd:
    id: int
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    id: int


@dataclass(frozen=True, slots=True)
class Goodbye:
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side (``receive_data(b"")``) at a frame boundary."""


Event = Hello | Request | Response | StreamEvent | StreamEnd | Cancel | Goodbye | \
    ConnectionClosed


# --------------------------------------------------------------------------------------------
# Framing


def encode_frame(message: dict[str, Any], *, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One frame: length prefix and compact JSON. LocalProtocolError if too large."""
    try:
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"cannot encode a {message.get('kind')} message as JSON: "
                                 f"{exc}") from None
    if len(body) > min(max_frame, _MAX_ENCODABLE):
        raise LocalProtocolError(f"a {message.get('kind')} message of {len(body)} bytes is "
                                 f"larger than the frame limit of {max_frame} bytes",
                                 hint="split large payloads into several stream events")
    return len(body).to_bytes(HEADER_SIZE, "big") + body


def _version_major(version: Any) -> int | None:
    if not isinstance(version, str):
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# --------------------------------------------------------------------------------------------
# The connection


class Connection:
    """One side of an agent connection: ``role`` is :data:`CLIENT` (the controller, the CLI)
    or :data:`SERVER` (the agent).

    State kept: the handshake (did we send / receive hello), the open request ids (sent by
    the client, not yet ended), which of them were cancelled, and the receive buffer.
    """

    def __init__(self, role: str, *, max_frame: int = DEFAULT_MAX_FRAME,
                 version: str = PROTOCOL_VERSION) -> None:
        if role not in (CLIENT, SERVER):
            raise LocalProtocolError(f"role must be {CLIENT!r} or {SERVER!r}, got {role!r}")
        self.role = role
        self.version = version
        self.max_frame = max_frame
        self.peer: Hello | None = None
        self.hello_sent = False
        self.closed = False  # goodbye sent or received, or the peer closed
        self._buffer = bytearray()
        self._eof = False
        self._broken: RemoteProtocolError | None = None
        self._open: set[int] = set()
        self._cancelled: set[int] = set()
        #: ids of requests that ended lately (oldest first): a cancel or input for one of
        #: them crossed its end on the wire and is dropped
        self._ended: dict[int, None] = {}
        self._next_id = 1

    # -- queries -----------------------------------------------------------------------------

    @property
    def open_requests(self) -> frozenset[int]:
        return frozenset(self._open)

    @property
    def ready(self) -> bool:
        """Both hellos exchanged."""
        return self.hello_sent and self.peer is not None

    def is_cancelled(self, id: int) -> bool:
        """Whether the client cancelled request ``id`` (still open until it is ended)."""
        return id in self._cancelled

    def next_request_id(self) -> int:
        """A fresh id for :meth:`send_request` (client side)."""
        while self._next_id in self._open:
            self._next_id += 1
        value = self._next_id
        self._next_id += 1
        return value

    # -- sending -----------------------------------------------------------------------------

    def send_hello(self, node: dict[str, Any] | None = None) -> bytes:
        """Our hello. The client sends it first; the server after the client's."""
        self._check_sendable("hello")
        if self.hello_sent:
            raise LocalProtocolError("hello was sent already")
        if self.role == SERVER and self.peer is None:
            raise LocalProtocolError("the server sends hello only after the client's hello")
        self.hello_sent = True
        return self._frame({"kind": "hello", "version": self.version, "role": self.role,
                            "node": dict(node or {})})

    def send_request(self, id: int, method: str, params: dict[str, Any] | None = None) -> bytes:
        self._check_sendable("request", role=CLIENT)
        if not _is_id(id):
            raise LocalProtocolError(f"a request id must be a positive integer, got {id!r}")
        if id in self._open:
            raise LocalProtocolError(f"request {id} is still open; use another id")
        if not isinstance(method, str) or not method:
            raise LocalProtocolError(f"a request needs a method name, got {method!r}")
        data = self._frame({"kind": "request", "id": id, "method": method,
                            "params": dict(params or {})})
        self._open.add(id)
        return data

    def send_response(self, id: int, result: Any = None, *,
                      error: ErrorInfo | None = None) -> bytes:
        self._check_sendable("response", role=SERVER)
        self._check_open(id, "response")
        message: dict[str, Any] = {"kind": "response", "id": id}
        if error is not None:
            message["error"] = error.to_json()
        else:
            message["result"] = result
        data = self._frame(message)
        self._finish(id)
        return data

    def send_event(self, id: int, event: Any) -> bytes:
        """A stream item on an open request (output from the server, input from the client)."""
        self._check_sendable("event")
        self._check_open(id, "event")
        return self._frame({"kind": "event", "id": id, "event": event})

    def send_end(self, id: int, *, error: ErrorInfo | None = None) -> bytes:
        self._check_sendable("end", role=SERVER)
        self._check_open(id, "end")
        message: dict[str, Any] = {"kind": "end", "id": id}
        if error is not None:
            message["error"] = error.to_json()
        data = self._frame(message)
        self._finish(id)
        return data

    def send_cancel(self, id: int) -> bytes:
        self._check_sendable("cancel", role=CLIENT)
        self._check_open(id, "cancel")
        if id in self._cancelled:
            raise LocalProtocolError(f"request {id} was cancelled already")
        self._cancelled.add(id)
        return self._frame({"kind": "cancel", "id": id})

    def send_goodbye(self, error: ErrorInfo | RemoteProtocolError | None = None) -> bytes:
        """Close our side, optionally saying why (e.g. after :class:`IncompatibleVersion`).

        Allowed on a broken connection: it is how a refusal reaches the peer."""
        if self.closed and self._broken is None:
            raise LocalProtocolError("the connection is closed")
        if isinstance(error, IncompatibleVersion):
            error = ErrorInfo(VERSION_MISMATCH, error.message,
                              {"version": self.version})
        elif isinstance(error, RemoteProtocolError):
            error = ErrorInfo(BAD_REQUEST, error.message)
        message: dict[str, Any] = {"kind": "goodbye"}
        if error is not None:
            message["error"] = error.to_json()
        self.closed = True
        return encode_frame(message, max_frame=max(self.max_frame, 4096))

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the peer; ``b""`` means the peer closed its side."""
        if self._eof:
            if data:
                raise LocalProtocolError("receive_data after end of file")
            return
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> Event | _Sentinel:
        """The next event, or :data:`NEED_DATA`. Raises :class:`RemoteProtocolError`."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._broken = exc
            raise

    def _next_event(self) -> Event | _Sentinel:
        while True:
            ev = self._read_frame()
            if ev is not _LATE:
                return ev

    def _read_frame(self) -> Event | _Sentinel | object:
        if len(self._buffer) < HEADER_SIZE:
            return self._at_boundary()
        size = int.from_bytes(self._buffer[:HEADER_SIZE], "big")
        if size > self.max_frame:
            raise RemoteProtocolError(f"the peer sent a frame of {size} bytes; the limit is "
                                      f"{self.max_frame} bytes")
        if len(self._buffer) < HEADER_SIZE + size:
            if self._eof:
                raise RemoteProtocolError("the peer closed the connection in the middle of "
                                          "a frame")
            return NEED_DATA
        body = bytes(self._buffer[HEADER_SIZE:HEADER_SIZE + size])
        del self._buffer[:HEADER_SIZE + size]
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise RemoteProtocolError(f"the peer sent a frame that is not UTF-8 JSON: "
                                      f"{exc}") from None
        except RecursionError:  # "[[[[..." within the frame limit: json recurses per level
            raise RemoteProtocolError("the peer sent a frame nested too deep") from None
        if not isinstance(message, dict):
            raise RemoteProtocolError("the peer sent a frame that is not a JSON object")
        return self._dispatch(message)

    def _at_boundary(self) -> Event | _Sentinel:
        if not self._eof:
            return NEED_DATA
        if self._buffer:
            raise RemoteProtocolError("the peer closed the connection in the middle of a "
                                      "frame header")
        self.closed = True
        return ConnectionClosed()

    def _dispatch(self, m: dict[str, Any]) -> Event:
        kind = m.get("kind")
        if self.closed:
            raise RemoteProtocolError(f"the peer sent a {kind} message after closing")
        if kind == "hello":
            return self._on_hello(m)
        if kind == "goodbye":
            self.closed = True
            return Goodbye(self._error(m.get("error"), "goodbye"))
        if kind not in ("request", "response", "event", "end", "cancel"):
            raise RemoteProtocolError(f"the peer sent an unknown message kind {kind!r}")
        if self.peer is None:
            raise RemoteProtocolError(f"the peer sent a {kind} message before hello")
        mid = m.get("id")
        if not _is_id(mid):
            raise RemoteProtocolError(f"the peer sent a {kind} message with an invalid id "
                                      f"{mid!r}")
        sender = CLIENT if self.role == SERVER else SERVER
        only = {"request": CLIENT, "cancel": CLIENT, "response": SERVER, "end": SERVER}
        if kind in only and only[kind] != sender:
            raise RemoteProtocolError(f"a {sender} may not send a {kind} message")
        if kind == "request":
            method = m.get("method")
            params = m.get("params", {})
            if not isinstance(method, str) or not method:
                raise RemoteProtocolError(f"request {mid}: the method must be a non-empty "
                                          "string")
            if not isinstance(params, dict):
                raise RemoteProtocolError(f"request {mid}: params must be an object")
            if mid in self._open:
                raise RemoteProtocolError(f"request {mid}: the id is already in use")
            self._open.add(mid)
            return Request(mid, method, params)
        if mid not in self._open:
            if kind in ("cancel", "event") and mid in self._ended:
                # the client's cancel (or input) crossed our end of that request on the
                # wire: a race every client can lose, not a protocol violation
                return _LATE  # type: ignore[return-value]
            raise RemoteProtocolError(f"the peer sent a {kind} message for request {mid}, "
                                      "which is not open")
        if kind == "event":
            if "event" not in m:
                raise RemoteProtocolError(f"event for request {mid} carries no event")
            return StreamEvent(mid, m["event"])
        if kind == "cancel":
            self._cancelled.add(mid)
            return Cancel(mid)
        error = self._error(m.get("error"), kind)
        self._finish(mid)
        if kind == "end":
            return StreamEnd(mid, error)
        if error is None and "result" not in m:
            raise RemoteProtocolError(f"response to request {mid} has neither result nor "
                                      "error")
        return Response(mid, m.get("result"), error)

    def _on_hello(self, m: dict[str, Any]) -> Hello:
        if self.peer is not None:
            raise RemoteProtocolError("the peer sent hello twice")
        role = m.get("role")
        expected = CLIENT if self.role == SERVER else SERVER
        if role != expected:
            raise RemoteProtocolError(f"the peer says it is a {role!r}; expected a "
                                      f"{expected}")
        if self.role == CLIENT and not self.hello_sent:
            raise RemoteProtocolError("the server sent hello before the client")
        version = m.get("version")
        theirs = _version_major(version)
        if theirs is None:
            raise RemoteProtocolError(f"the peer sent an invalid protocol version "
                                      f"{version!r}")
        node = m.get("node", {})
        if not isinstance(node, dict):
            raise RemoteProtocolError("hello: node must be an object")
        if theirs != _version_major(self.version):
            raise IncompatibleVersion(self.version, version, expected)
        self.peer = Hello(version, role, node)
        return self.peer

    @staticmethod
    def _error(raw: Any, kind: str) -> ErrorInfo | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("code"), str) \
                or not isinstance(raw.get("message"), str):
            raise RemoteProtocolError(f"{kind}: error must be an object with string code "
                                      "and message")
        return ErrorInfo(raw["code"], raw["message"], raw.get("data"))

    # -- helpers -----------------------------------------------------------------------------

    def _check_sendable(self, kind: str, *, role: str | None = None) -> None:
        if self._broken is not None:
            raise LocalProtocolError(f"cannot send {kind}: the connection is broken "
                                     f"({self._broken.message})")
        if self.closed:
            raise LocalProtocolError(f"cannot send {kind}: the connection is closed")
        if role is not None and self.role != role:
            raise LocalProtocolError(f"a {self.role} cannot send a {kind} message")
        if kind != "hello" and not self.hello_sent:
            raise LocalProtocolError(f"cannot send {kind} before hello")
        if kind != "hello" and self.role == SERVER and self.peer is None:
            raise LocalProtocolError(f"cannot send {kind} before the client's hello")

    def _check_open(self, id: int, kind: str) -> None:
        if id not in self._open:
            raise LocalProtocolError(f"cannot send {kind}: request {id!r} is not open")

    def _finish(self, id: int) -> None:
        if id in self._open:
            self._ended[id] = None
            if len(self._ended) > ENDED_KEPT:
                del self._ended[next(iter(self._ended))]
        self._open.discard(id)
        self._cancelled.discard(id)

    def _frame(self, message: dict[str, Any]) -> bytes:
        return encode_frame(message, max_frame=self.max_frame)
