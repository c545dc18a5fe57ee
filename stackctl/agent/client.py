"""The blocking agent client, for the CLI: a plain unix socket around the sans-IO
:class:`~stackctl.transport.protocol.Connection`. No trio, no asyncio: a stack verb pays for
``socket`` and ``json`` only.

    with AgentClient(paths) as agent:
        info = agent.call("agent.info")
        for event in agent.stream("stack.deploy", params):   # Ctrl-C sends `cancel`
            show(event)

:func:`ensure_agent` starts the node's agent when its socket does not answer (detached: its
own session, stdio to ``<state>/agent.log``) and waits until it serves ``agent.info``.

Errors the agent returns become :class:`AgentError` s (one family with the rest of
stackctl): ``not_found`` -> :class:`AgentNotFound` (a :class:`NotFoundError`), ``conflict``
-> :class:`AgentConflict`, the others keep their ``code``. An agent that cannot be reached is
:class:`AgentUnavailable`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from stackctl.transport import protocol as P
from stackctl.errors import ConflictError, NotFoundError, StackctlError
from stackctl.paths import NodePaths

SOCKET_NAME = "agent.sock"
PID_NAME = "agent.pid"
LOCK_NAME = "agent.lock"
LOG_NAME = "agent.log"
CANCEL_GRACE = 5.0  # seconds to wait for the end of a cancelled stream
_SUN_PATH_MAX = 107


def socket_path(paths: NodePaths) -> str:
    return os.path.join(paths.run, SOCKET_NAME)


def pid_path(paths: NodePaths) -> str:
    return os.path.join(paths.run, PID_NAME)


def lock_path(paths: NodePaths) -> str:
    return os.path.join(paths.run, LOCK_NAME)


def log_path(paths: NodePaths) -> str:
    return os.path.join(paths.state, LOG_NAME)


@contextlib.contextmanager
def short_address(path: str) -> Iterator[str]:
    """An AF_UNIX address for ``path`` even when it is longer than sun_path (108 bytes):
    ``/proc/self/fd/<dirfd>/<name>``, valid while the block lasts (for bind and connect)."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield path
        return
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{os.path.basename(path)}"
    finally:
        os.close(fd)


class AgentError(StackctlError):
    """The agent answered a request with an error."""

    def __init__(self, code: str, message: str, *, data: Any = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.data = data


class AgentNotFound(AgentError, NotFoundError):
    pass


class AgentConflict(AgentError, ConflictError):
    pass


class AgentUnavailable(StackctlError):
    """No agent answers on the node's socket."""


def error_from(info: P.ErrorInfo) -> AgentError:
    cls = {P.NOT_FOUND: AgentNotFound, "conflict": AgentConflict}.get(info.code, AgentError)
    hint = info.data.get("hint") if isinstance(info.data, dict) else None
    return cls(info.code, info.message, data=info.data, hint=hint)


class AgentClient:
    """One connection to the node's agent. Not thread-safe; one request at a time."""

    def __init__(self, paths: NodePaths, *, timeout: float | None = 30.0,
                 path: str | None = None, dial: Callable[[], Any] | None = None) -> None:
        """``dial``: instead of the unix socket, a function returning a connected byte channel
        with a socket's ``sendall``/``recv``/``settimeout``/``close`` (raising a
        StackctlError when it cannot), e.g. ssh to a remote node (:meth:`over_ssh`);
        ``path`` then names the far end in messages."""
        self.paths = paths
        self.path = path or socket_path(paths)
        self.timeout = timeout
        self.dial = dial
        self.conn: P.Connection | None = None
        self.sock: Any = None  # a socket.socket, or what `dial` returned
        self.peer: P.Hello | None = None

    @classmethod
    def over_ssh(cls, target: Any, options: Any = None, *, timeout: float | None = 30.0,
                 name: str | None = None) -> AgentClient:
        """A client to a remote node's agent through OpenSSH (``ssh -T ... stackctl agent
        dial-stdio``): ``target`` an :class:`~stackctl.transport.target.SSHTarget`,
        ``options`` an :class:`~stackctl.transport.target.SSHOptions` (docs/transport.md)."""
        from stackctl.paths import default_paths
        from stackctl.transport.openssh import open_channel

        return cls(default_paths(), timeout=timeout, path=name or target.url,
                   dial=lambda: open_channel(target, options, name=name))

    # -- connection --------------------------------------------------------------------------

    def connect(self) -> AgentClient:
        if self.sock is not None:
            return self
        if self.dial is not None:
            sock = self.dial()
            sock.settimeout(self.timeout)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            sock.settimeout(self.timeout)
            try:
                with short_address(self.path) as addr:
                    sock.connect(addr)
            except OSError as exc:
                sock.close()
                raise AgentUnavailable(f"the agent does not answer on {self.path}: "
                                       f"{exc.strerror or exc}",
                                       hint="start it with `stackctl agent serve`") from None
        self.sock = sock
        self.conn = P.Connection(P.CLIENT)
        try:
            self._send(self.conn.send_hello({"pid": os.getpid()}))
            ev = self._next_event()
        except BaseException:
            self.close()
            raise
        if isinstance(ev, P.Goodbye):
            self.close()
            raise error_from(ev.error) if ev.error else AgentUnavailable("the agent hung up")
        if not isinstance(ev, P.Hello):
            self.close()
            raise AgentUnavailable(f"the agent did not greet us (got {type(ev).__name__})")
        self.peer = ev
        return self

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError, P.ProtocolError):
                if self.conn is not None and not self.conn.closed and self.conn.ready:
                    self.sock.sendall(self.conn.send_goodbye())
            self.sock.close()
        self.sock = None

    def __enter__(self) -> AgentClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """A unary request: its result, or an :class:`AgentError`."""
        self.connect()
        assert self.conn is not None
        rid = self.conn.next_request_id()
        self._send(self.conn.send_request(rid, method, params or {}))
        while True:
            ev = self._next_event()
            if isinstance(ev, P.Response) and ev.id == rid:
                if ev.error is not None:
                    raise error_from(ev.error)
                return ev.result
            if isinstance(ev, P.StreamEnd) and ev.id == rid:
                # a streaming method called as unary: its end is the answer
                if ev.error is not None:
                    raise error_from(ev.error)
                return None
            self._unexpected(ev)

    def stream(self, method: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """The events of a streaming request, until its end (an error end raises). Closing
        the generator early — ``break``, Ctrl-C — sends ``cancel`` and waits (bounded) for
        the agent to end the request, so that the agent stops working on it."""
        self.connect()
        assert self.conn is not None
        rid = self.conn.next_request_id()
        self._send(self.conn.send_request(rid, method, params or {}))
        done = False
        try:
            while True:
                ev = self._next_event()
                if isinstance(ev, P.StreamEvent) and ev.id == rid:
                    yield ev.event
                elif isinstance(ev, (P.StreamEnd, P.Response)) and ev.id == rid:
                    done = True
                    if ev.error is not None:
                        raise error_from(ev.error)
                    if isinstance(ev, P.Response) and ev.result is not None:
                        yield ev.result
                    return
                else:
                    self._unexpected(ev)
        finally:
            if not done:
                self._cancel(rid)

    def _cancel(self, rid: int) -> None:
        """Send cancel for ``rid`` and drain until the agent ends it (a second Ctrl-C or a
        silent agent gives up and drops the connection)."""
        if self.conn is None or self.sock is None or rid not in self.conn.open_requests:
            return
        try:
            self._send(self.conn.send_cancel(rid))
            deadline = time.monotonic() + CANCEL_GRACE
            while rid in self.conn.open_requests:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.sock.settimeout(remaining)
                ev = self._next_event()
                if isinstance(ev, (P.Goodbye, P.ConnectionClosed)):
                    break
        except (OSError, StackctlError, KeyboardInterrupt):
            pass
        finally:
            if self.conn is not None and rid in self.conn.open_requests:
                self.close()  # the connection is in an unknown state: start afresh next time
            elif self.sock is not None:
                self.sock.settimeout(self.timeout)

    # -- I/O ---------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.close()
            raise AgentUnavailable(f"lost the connection to the agent: {exc}") from None

    def _next_event(self) -> P.Event:
        assert self.conn is not None
        while True:
            ev = self.conn.next_event()
            if ev is not P.NEED_DATA:
                return ev  # type: ignore[return-value]
            if self.sock is None:
                raise AgentUnavailable("the connection to the agent is closed")
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise AgentUnavailable(f"the agent on {self.path} did not answer within "
                                       f"{self.timeout:g} s (is it hung?)",
                                       hint=unavailable_hint(self.paths)) from None
            except OSError as exc:
                self.close()
                raise AgentUnavailable(f"lost the connection to the agent: {exc}") from None
            self.conn.receive_data(data)

    def _unexpected(self, ev: P.Event) -> None:
        if isinstance(ev, P.Goodbye):
            self.close()
            if ev.error is not None:
                raise error_from(ev.error)
            raise AgentUnavailable("the agent closed the connection (is it shutting down?)")
        if isinstance(ev, P.ConnectionClosed):
            self.close()
            raise AgentUnavailable("the agent closed the connection (is it shutting down?)",
                                   hint=f"see {log_path(self.paths)}")
        # events of other requests cannot happen: one request at a time


# -- starting the agent ------------------------------------------------------------------------


def try_info(paths: NodePaths, timeout: float = 2.0) -> dict[str, Any] | None:
    """``agent.info`` if the agent answers, else None."""
    try:
        with AgentClient(paths, timeout=timeout) as c:
            return c.call("agent.info")
    except (AgentUnavailable, P.ProtocolError, AgentError):
        return None


def serve_command(paths: NodePaths) -> list[str]:
    return [sys.executable, "-m", "stackctl", "agent", "serve", "--foreground",
            "--state-dir", paths.state, "--run-dir", paths.run,
            "--cgroup-parent", paths.cgroup_parent]


def ensure_agent(paths: NodePaths, timeout: float = 5.0) -> dict[str, Any]:
    """The node agent's ``agent.info``, starting the agent first if its socket does not answer.

    The agent runs detached (its own session, stdin /dev/null, stdout/stderr appended to
    ``<state>/agent.log``). Two callers racing both start one; the agent's lock file lets
    only the first serve, and both callers then talk to it."""
    info = try_info(paths)
    if info is not None:
        return info
    os.makedirs(paths.state, mode=0o700, exist_ok=True)
    os.makedirs(paths.run, mode=0o700, exist_ok=True)
    log = open(log_path(paths), "ab")
    try:
        proc = subprocess.Popen(serve_command(paths), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True, cwd="/", close_fds=True)
    finally:
        log.close()
    return wait_agent(paths, timeout, proc=proc)


def wait_agent(paths: NodePaths, timeout: float, *, proc: subprocess.Popen | None = None) -> dict[str, Any]:
    """Wait until the agent answers ``agent.info`` (or ``proc`` exits without one serving)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        info = try_info(paths, timeout=max(0.1, min(2.0, deadline - time.monotonic())))
        if info is not None:
            return info
        if proc is not None and proc.poll() is not None and proc.returncode != 0:
            # it may have lost the race to another agent that is still starting
            if not os.path.exists(lock_path(paths)) or time.monotonic() >= deadline:
                raise AgentUnavailable(f"the agent exited with status {proc.returncode} "
                                       f"({_log_tail(paths)}) and none answers on {socket_path(paths)}",
                                       hint=unavailable_hint(paths))
        if time.monotonic() >= deadline:
            raise AgentUnavailable(f"the agent on {socket_path(paths)} did not answer within "
                                   f"{timeout:g} s", hint=unavailable_hint(paths))
        time.sleep(delay)  # polling a socket that does not exist yet: nothing to wait on
        delay = min(delay * 2, 0.1)


def unavailable_hint(paths: NodePaths) -> str:
    """What to do about an agent that does not answer."""
    return (f"check it with `stackctl agent status` (`stackctl agent stop` ends a hung one; "
            f"containers keep running); its log is {log_path(paths)}")


def _log_tail(paths: NodePaths, lines: int = 1) -> str:
    try:
        with open(log_path(paths), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " / ".join(text[-lines:]) if text else "(empty log)"
