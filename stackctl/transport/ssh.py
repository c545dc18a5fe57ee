"""The SSH transport of the manager: asyncssh, confined to one asyncio event loop in a thread
of its own, bridged to trio streams — nothing above this module knows which loop carries the
bytes (docs/transport.md).

    conn = await SSHConnection.connect(SSHTarget.parse("ssh://root@10.0.0.2"), SSHOptions())
    stream = await conn.open_agent_stream()          # runs `stackctl agent dial-stdio` there
    async with open_client(stream, node="n2") as agent:
        await agent.call("agent.info")
    rc, out, err = await conn.run(["uname", "-r"])
    await conn.put("dist/stackctl.whl", "/tmp/stackctl.whl")
    await conn.aclose()

Why a thread and not trio-asyncio: trio-asyncio re-implements the asyncio loop on trio and
documents no asyncssh support; asyncssh's maintainer calls it asyncio-only (ronf/asyncssh#208).
A plain ``asyncio`` loop in one daemon thread runs asyncssh exactly as its own tests do, and the
bridge is small: calls go in with ``run_coroutine_threadsafe``/``call_soon_threadsafe``, results
and received bytes come back with the trio token's ``run_sync_soon`` (no thread per call). Every
asyncssh object is touched only on that thread.

- One :class:`SSHConnection` per node, kept; each :meth:`~SSHConnection.open_stream` is a new
  channel (session) on it, so many agent connections, commands and SFTP transfers share it.
- Configuration as the user has it: ``~/.ssh/config`` (or ``SSHOptions.config``) read by
  asyncssh itself — Host aliases, HostName, User, Port, IdentityFile, ProxyJump,
  UserKnownHostsFile; the user's default keys and ssh-agent.
- Host keys are always verified: against ``SSHOptions.known_hosts``, else the config's
  UserKnownHostsFile, else ``~/.ssh/known_hosts``. ``UserKnownHostsFile none`` (which asyncssh
  would read as "do not check") is replaced by ``~/.ssh/known_hosts``. An unknown key raises
  :class:`HostKeyUnknown`, a different one :class:`HostKeyChanged`, each with the fingerprint
  and how to accept it; :func:`fetch_host_key` gives the line to add after checking it.
- Connecting is bounded (``connect_timeout``, default 10 s); a node that does not answer is
  :class:`~stackctl.transport.errors.NodeUnreachable`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shlex
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from stackctl.transport.errors import (HostKeyChanged, HostKeyUnknown, NodeUnreachable, SSHError,
                                       _known_name)
from stackctl.transport.target import (CONNECT_TIMEOUT, DEFAULT_REMOTE_COMMAND,  # noqa: F401
                                       KEEPALIVE_INTERVAL, SSHOptions, SSHTarget)

T = TypeVar("T")

KEEPALIVE_COUNT_MAX = 3  # missed keepalives before the connection counts as lost
READ_HIGH = 1 << 20  # buffered and unread bytes of a channel above which its reading pauses
READ_LOW = 1 << 18
STDERR_KEEP = 4096

# -- the asyncio thread ------------------------------------------------------------------------

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _aio_loop() -> asyncio.AbstractEventLoop:
    """The process's asyncio loop for asyncssh, started on first use in a daemon thread."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="stackctl-asyncssh", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


async def run_aio(make: Callable[[], Coroutine[Any, Any, T]], *,
                  abandon: Callable[[T], Any] | None = None) -> T:
    """Run the coroutine ``make()`` on the asyncio thread and wait for it from trio. Cancelling
    the trio caller cancels the asyncio task; if that task still completes (it was past its
    last await), ``abandon(result)`` runs on the asyncio thread, e.g. to close a connection
    nobody will use."""
    loop = _aio_loop()
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    state: dict[str, Any] = {"task": None, "cancel": False}  # asyncio thread only

    async def wrapper() -> T:
        state["task"] = asyncio.current_task()
        if state["cancel"]:
            raise asyncio.CancelledError()
        return await make()

    def cancel_task() -> None:
        if state["task"] is not None:
            state["task"].cancel()
        else:
            state["cancel"] = True  # cancelled before it started

    fut = asyncio.run_coroutine_threadsafe(wrapper(), loop)

    def wake(_f: Any) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass

    fut.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        # cancel the task, not the future: a task that completes anyway (it was past its
        # last await) must still hand its result to `abandon`
        try:
            loop.call_soon_threadsafe(cancel_task)
        except RuntimeError:  # the loop is gone
            pass
        if abandon is not None:
            def drop(f: Any) -> None:  # on whichever thread completes the future
                if not f.cancelled() and f.exception() is None:
                    try:
                        loop.call_soon_threadsafe(abandon, f.result())
                    except RuntimeError:
                        pass
            fut.add_done_callback(drop)
        raise
    return fut.result()


def _import_asyncssh():
    import asyncssh  # ~150 ms: only the manager and the node tools pay it

    return asyncssh


# -- the trio side of a channel ----------------------------------------------------------------


class SSHChannelStream(trio.abc.HalfCloseableStream):
    """One SSH channel running a remote command, as a trio stream of its stdin/stdout. Its
    stderr is kept (the last few KiB, :attr:`stderr`) for error messages, its exit status in
    :attr:`exit_status`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, token: trio.lowlevel.TrioToken,
                 label: str) -> None:
        self.label = label
        self.exit_status: int | None = None
        self.stderr = b""
        self._loop = loop
        self._token = token
        self._chan: Any = None  # the asyncssh channel: touched only on the asyncio thread
        self._buf = bytearray()
        self._eof = False
        self._lost: BaseException | None = None
        self._closed = False
        self._eof_sent = False
        self._readable = trio.Event()
        self._write_paused = False
        self._writable = trio.Event()
        self._read_paused = False
        self.read_pauses = 0  # times reading paused for a slow consumer (observability)
        self._ended = trio.Event()

    # -- called on the trio thread by the asyncio side (run_sync_soon) --

    def _on_data(self, data: bytes) -> None:
        self._buf += data
        self._readable.set()
        if not self._read_paused and len(self._buf) > READ_HIGH:
            self._read_paused = True
            self.read_pauses += 1
            self._on_aio(lambda chan: chan.pause_reading())

    def _on_stderr(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-STDERR_KEEP:]

    def _on_eof(self) -> None:
        self._eof = True
        self._readable.set()

    def _on_exit(self, status: int) -> None:
        self.exit_status = status

    def _on_lost(self, exc: BaseException | None) -> None:
        self._eof = True
        self._lost = exc
        self._readable.set()
        self._write_paused = False
        self._writable.set()
        self._ended.set()

    def _on_pause(self, paused: bool) -> None:
        self._write_paused = paused
        if not paused:
            self._writable.set()

    def _on_aio(self, fn: Callable[[Any], Any]) -> None:
        """Run ``fn(channel)`` on the asyncio thread (in order with earlier calls)."""
        def call() -> None:
            if self._chan is not None:
                try:
                    fn(self._chan)
                except Exception:  # noqa: BLE001 - a closed channel: the loss is reported
                    pass
        try:
            self._loop.call_soon_threadsafe(call)
        except RuntimeError:  # the loop is gone (interpreter exit)
            pass

    # -- trio.abc.Stream --

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("the channel is closed")
        while not self._buf and not self._eof:
            self._readable = trio.Event()
            await self._readable.wait()
            if self._closed:
                raise trio.ClosedResourceError("the channel is closed")
        await trio.lowlevel.checkpoint()
        if not self._buf:
            return b""
        n = len(self._buf) if max_bytes is None else max_bytes
        data = bytes(self._buf[:n])
        del self._buf[:n]
        if self._read_paused and len(self._buf) < READ_LOW:
            self._read_paused = False
            self._on_aio(lambda chan: chan.resume_reading())
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the channel is closed")
        while self._write_paused and self._lost is None and not self._ended.is_set():
            self._writable = trio.Event()
            await self._writable.wait()
        if self._ended.is_set() or self._eof_sent:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError(f"the SSH channel to {self.label} is closed")
        payload = bytes(data)
        self._on_aio(lambda chan: chan.write(payload))
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        while self._write_paused and not self._ended.is_set():
            self._writable = trio.Event()
            await self._writable.wait()
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        if not self._eof_sent and not self._ended.is_set():
            self._eof_sent = True
            self._on_aio(lambda chan: chan.write_eof())
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._readable.set()
            self._on_aio(lambda chan: chan.close())
        await trio.lowlevel.checkpoint()

    async def wait_closed(self) -> None:
        """Wait until the channel has closed on both sides (after :meth:`aclose` or the
        remote command's exit)."""
        await self._ended.wait()

    def failure(self) -> str:
        """What the remote side said, for an error message: its exit status and the last
        line of its stderr."""
        parts = []
        if self.exit_status is not None:
            parts.append(f"the remote command exited with status {self.exit_status}")
        tail = self.stderr.decode(errors="replace").strip().splitlines()
        if tail:
            parts.append(tail[-1])
        return ": ".join(parts)


@functools.cache
def _session_class(asyncssh):
    class _Session(asyncssh.SSHClientSession):
        """The asyncio side of a channel: forwards callbacks to the trio stream."""

        def __init__(self, stream: SSHChannelStream) -> None:
            self.stream = stream

        def _tell(self, fn: Callable[..., None], *args: Any) -> None:
            try:
                self.stream._token.run_sync_soon(fn, *args)
            except trio.RunFinishedError:
                pass

        def connection_made(self, chan: Any) -> None:
            self.stream._chan = chan

        def data_received(self, data: bytes, datatype: Any) -> None:
            if datatype == asyncssh.EXTENDED_DATA_STDERR:
                self._tell(self.stream._on_stderr, data)
            else:
                self._tell(self.stream._on_data, data)

        def eof_received(self) -> bool:
            self._tell(self.stream._on_eof)
            return True  # keep our side open: the agent's last answers may be in flight out

        def exit_status_received(self, status: int) -> None:
            self._tell(self.stream._on_exit, status)

        def connection_lost(self, exc: Exception | None) -> None:
            self._tell(self.stream._on_lost, exc)

        def pause_writing(self) -> None:
            self._tell(self.stream._on_pause, True)

        def resume_writing(self) -> None:
            self._tell(self.stream._on_pause, False)

    return _Session


# -- connections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resolved:
    """What the config says about a target: the name known_hosts uses, and the files."""

    host: str  # HostName (or HostKeyAlias): the name looked up in known_hosts
    port: int
    user: str
    known_hosts: list[str]


def _default_known_hosts() -> str:
    return os.path.expanduser("~/.ssh/known_hosts")


def _kwargs(target: SSHTarget, options: SSHOptions) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "config": [options.config] if options.config else (),
        "connect_timeout": options.connect_timeout,
        "keepalive_interval": options.keepalive_interval,
        "keepalive_count_max": KEEPALIVE_COUNT_MAX,
    }
    if target.user:
        kw["username"] = target.user
    if target.port is not None:
        kw["port"] = target.port
    if options.identity:
        kw["client_keys"] = [options.identity]
    if options.known_hosts:
        kw["known_hosts"] = options.known_hosts
    return kw


async def _resolve(asyncssh, target: SSHTarget, options: SSHOptions) -> tuple[_Resolved, dict]:
    """On the asyncio thread: apply the SSH config to the target (as connect will), and pin
    the known_hosts files so that checking can never be switched off."""
    kw = _kwargs(target, options)
    port = kw.pop("port", ())
    opts = await asyncssh.SSHClientConnectionOptions.construct(
        None, host=target.host, port=port, **kw)
    known = opts.known_hosts
    if not known:  # None ("UserKnownHostsFile none") or () (unset): the default file
        known = [_default_known_hosts()]
    elif isinstance(known, str):
        known = [known]
    known = [os.path.expanduser(k) for k in known]
    kw["known_hosts"] = [k for k in known if os.path.isfile(k)] or b""
    if port != ():
        kw["port"] = port
    resolved = _Resolved(host=opts.host_key_alias or opts.host, port=opts.port,
                         user=opts.username, known_hosts=known)
    return resolved, kw


def _fingerprint(key: Any) -> str:
    return key.get_fingerprint("sha256")


async def _host_key_error(asyncssh, target: SSHTarget, resolved: _Resolved,
                          kw: dict) -> Exception:
    """After asyncssh refused the host key: was it unknown or changed, and what is it?"""
    fingerprint = None
    try:
        key = await asyncssh.get_server_host_key(
            target.host, kw.get("port", ()), config=kw["config"])
        fingerprint = _fingerprint(key) if key is not None else None
    except (OSError, asyncssh.Error, asyncio.TimeoutError):
        pass
    files = [k for k in resolved.known_hosts if os.path.isfile(k)]
    known_keys: list[Any] = []
    if files:
        port = resolved.port if resolved.port != 22 else None
        try:
            known_keys = list(asyncssh.match_known_hosts(files, resolved.host, "", port)[0])
        except (OSError, ValueError, asyncssh.KeyImportError):
            known_keys = []
    where = resolved.known_hosts[0] if resolved.known_hosts else None
    if known_keys:
        return HostKeyChanged(resolved.host, resolved.port, fingerprint, where)
    return HostKeyUnknown(resolved.host, resolved.port, fingerprint, where)


class SSHConnection:
    """One kept SSH connection to a node; many channels over it. Made by :meth:`connect`."""

    def __init__(self, target: SSHTarget, options: SSHOptions, conn: Any, name: str) -> None:
        self.target = target
        self.options = options
        self.name = name
        self._conn = conn  # asyncssh.SSHClientConnection: asyncio thread only

    @classmethod
    async def connect(cls, target: SSHTarget, options: SSHOptions | None = None, *,
                      name: str | None = None) -> SSHConnection:
        """Connect and authenticate (bounded by ``options.connect_timeout``).

        Raises :class:`HostKeyUnknown` / :class:`HostKeyChanged` (never accepted silently),
        :class:`SSHError` (authentication refused, protocol failure), or
        :class:`NodeUnreachable` (refused, timed out, no route)."""
        options = options or SSHOptions()
        name = name or target.url
        asyncssh = _import_asyncssh()

        async def go() -> Any:
            resolved, kw = await _resolve(asyncssh, target, options)
            try:
                return await asyncssh.connect(target.host, **kw)
            except asyncssh.HostKeyNotVerifiable:
                raise await _host_key_error(asyncssh, target, resolved, kw) from None
            except asyncssh.PermissionDenied:
                raise SSHError(
                    f"{resolved.user}@{resolved.host}:{resolved.port} refused our keys",
                    hint="check that a key of yours is in the node's authorized_keys "
                         "(`ssh -v` shows which keys are tried; --identity picks one)") from None
            except (asyncio.TimeoutError, TimeoutError):
                raise NodeUnreachable(
                    name, f"no SSH answer from {resolved.host}:{resolved.port} within "
                          f"{options.connect_timeout:g} s",
                    hint="check that the host is up and sshd listens there "
                         f"(`ssh -p {resolved.port} {resolved.user}@{resolved.host}`)") from None
            except OSError as exc:
                raise NodeUnreachable(
                    name, f"cannot connect to {resolved.host}:{resolved.port}: "
                          f"{exc.strerror or exc}",
                    hint="check that the host is up and sshd listens there") from None
            except asyncssh.Error as exc:
                raise SSHError(f"SSH to {resolved.host}:{resolved.port} failed: "
                               f"{exc.reason}") from None

        conn = await run_aio(go, abandon=lambda c: c.close())
        return cls(target, options, conn, name)

    async def open_stream(self, command: str) -> SSHChannelStream:
        """A new channel running ``command`` on the node, as a trio stream."""
        asyncssh = _import_asyncssh()
        stream = SSHChannelStream(_aio_loop(), trio.lowlevel.current_trio_token(), self.name)
        session = _session_class(asyncssh)

        async def go() -> Any:
            try:
                chan, _ = await self._conn.create_session(lambda: session(stream), command,
                                                          encoding=None)
                return chan
            except asyncssh.Error as exc:
                raise NodeUnreachable(self.name, f"cannot open an SSH channel: {exc.reason}")
            except OSError as exc:
                raise NodeUnreachable(self.name, f"cannot open an SSH channel: {exc}")

        await run_aio(go, abandon=lambda chan: chan.close())
        return stream

    async def open_unix_stream(self, remote_path: str) -> SSHChannelStream:
        """A channel to a unix socket on the node (OpenSSH's direct-streamlocal, as ``ssh -L
        ...:/path``): the node's agent socket without a ``dial-stdio`` process between —
        but only to an agent that already runs, at a path the caller knows, and only where
        sshd allows stream-local forwarding (a key restricted to a forced command does not)."""
        asyncssh = _import_asyncssh()
        stream = SSHChannelStream(_aio_loop(), trio.lowlevel.current_trio_token(), self.name)
        session = _session_class(asyncssh)

        async def go() -> Any:
            try:
                chan, _ = await self._conn.create_unix_connection(lambda: session(stream),
                                                                  remote_path)
                return chan
            except (asyncssh.Error, OSError) as exc:
                raise NodeUnreachable(self.name, f"cannot reach {remote_path} there: "
                                      f"{getattr(exc, 'reason', None) or exc}") from None

        await run_aio(go, abandon=lambda chan: chan.close())
        return stream

    async def open_agent_stream(self) -> SSHChannelStream:
        """A channel to the node's agent (``options.remote_command``, by default
        ``stackctl agent dial-stdio``, which starts the agent when none runs)."""
        return await self.open_stream(self.options.remote_command)

    async def run(self, argv: list[str] | str, input: bytes = b"",
                  timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run a command on the node: (exit status, stdout, stderr). ``argv`` is quoted for
        the remote shell (a string is passed as it is)."""
        command = argv if isinstance(argv, str) else shlex.join(argv)
        asyncssh = _import_asyncssh()

        async def go() -> tuple[int, bytes, bytes]:
            try:
                res = await self._conn.run(command, input=input or None, encoding=None,
                                           check=False, timeout=timeout)
            except asyncssh.TimeoutError:
                raise SSHError(f"{command!r} on {self.name} did not finish within "
                               f"{timeout:g} s") from None
            except (asyncssh.Error, OSError) as exc:
                raise NodeUnreachable(self.name, f"running {command!r} failed: "
                                      f"{getattr(exc, 'reason', None) or exc}") from None
            status = res.exit_status if res.exit_status is not None else 255
            return status, res.stdout or b"", res.stderr or b""

        return await run_aio(go)

    async def put(self, local: str, remote: str) -> None:
        """Copy a local file to the node (SFTP)."""
        asyncssh = _import_asyncssh()

        async def go() -> None:
            try:
                async with self._conn.start_sftp_client() as sftp:
                    await sftp.put(local, remote)
            except (asyncssh.Error, OSError) as exc:
                raise SSHError(f"copying {local} to {self.name}:{remote} failed: "
                               f"{getattr(exc, 'reason', None) or exc}") from None

        await run_aio(go)

    async def wait_closed(self) -> None:
        """Wait until the SSH connection is gone (closed, or lost: keepalives unanswered for
        ``keepalive_interval`` x 3, a reset). Its channels end with it."""
        await run_aio(lambda: self._conn.wait_closed())

    async def aclose(self) -> None:
        async def go() -> None:
            self._conn.close()
            await self._conn.wait_closed()

        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await run_aio(go)


@asynccontextmanager
async def connect_ssh(target: SSHTarget, options: SSHOptions | None = None, *,
                      name: str | None = None) -> AsyncIterator[SSHConnection]:
    """:meth:`SSHConnection.connect` for a block; closed on exit."""
    conn = await SSHConnection.connect(target, options, name=name)
    try:
        yield conn
    finally:
        await conn.aclose()


@asynccontextmanager
async def open_ssh_client(conn: SSHConnection, *, node: str | None = None,
                          hello: dict[str, Any] | None = None):
    """An :class:`~stackctl.transport.aclient.AsyncAgentClient` to the node's agent over a new
    channel of ``conn``. A remote command that fails before the agent greets (no stackctl
    there, an agent that cannot start) is a :class:`NodeUnreachable` quoting its stderr."""
    from stackctl.transport.aclient import open_client

    node = node or conn.name
    stream = await conn.open_agent_stream()
    hint = (f"check that `ssh {conn.target.url} {conn.options.remote_command}` works "
            f"(stackctl installed there: `stackctl node bootstrap {node}`)")
    entered = False
    try:
        async with open_client(stream, node=node, hello=hello, hint=hint) as client:
            entered = True
            yield client
    except NodeUnreachable as exc:
        if entered:
            raise
        with trio.move_on_after(2):
            await stream.wait_closed()
        said = stream.failure()
        raise NodeUnreachable(node, exc.reason + (f" ({said})" if said else ""),
                              hint=hint) from None


@asynccontextmanager
async def open_ssh_agent(target: SSHTarget, options: SSHOptions | None = None, *,
                         node: str | None = None, hello: dict[str, Any] | None = None):
    """A connection of its own and an agent client on it, for the block (a CLI-side tool or a
    test; a manager keeps the :class:`SSHConnection` and opens clients on it)."""
    async with connect_ssh(target, options, name=node) as conn:
        async with open_ssh_client(conn, node=node, hello=hello) as client:
            yield client


async def fetch_host_key(target: SSHTarget, options: SSHOptions | None = None
                         ) -> tuple[str, str]:
    """The node's host key as a known_hosts line (``[host]:port alg base64``, host as the SSH
    config resolves it) and its SHA256 fingerprint — to show, and to append to known_hosts
    only after the user checked it (``stackctl node add --accept-host-key``). Nothing is
    authenticated and nothing written."""
    options = options or SSHOptions()
    asyncssh = _import_asyncssh()

    async def go() -> tuple[str, str]:
        resolved, kw = await _resolve(asyncssh, target, options)
        try:
            key = await asyncssh.get_server_host_key(
                target.host, kw.get("port", ()), config=kw["config"])
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise NodeUnreachable(target.url, f"cannot read the host key of "
                                  f"{resolved.host}:{resolved.port}: "
                                  f"{getattr(exc, 'strerror', None) or exc}") from None
        if key is None:
            raise SSHError(f"{resolved.host}:{resolved.port} presented no host key")
        alg_b64 = key.export_public_key("openssh").decode().split()[:2]
        line = f"{_known_name(resolved.host, resolved.port)} {' '.join(alg_b64)}"
        return line, _fingerprint(key)

    return await run_aio(go)


async def ssh_run(target: SSHTarget, argv: list[str] | str, input: bytes = b"", *,
                  options: SSHOptions | None = None,
                  timeout: float | None = None) -> tuple[int, bytes, bytes]:
    """One command on a node over a connection of its own: (exit status, stdout, stderr)."""
    async with connect_ssh(target, options) as conn:
        return await conn.run(argv, input, timeout=timeout)


async def ssh_put(target: SSHTarget, local: str, remote: str, *,
                  options: SSHOptions | None = None) -> None:
    """Copy one file to a node (SFTP) over a connection of its own."""
    async with connect_ssh(target, options) as conn:
        await conn.put(local, remote)
