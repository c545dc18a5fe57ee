"""The CLI's side of the warm path: hand the command to the node's warm server, if one runs.

The launcher (:mod:`stackctl.launcher`) calls :func:`launch` before anything else is
imported, so this module uses only what is built into the interpreter (``posix`` rather than
``os``, whose import costs ~1 ms; ``sys``, ``_socket``, ``_signal``): the cold path pays a
dictionary lookup, or one ``connect`` to a missing socket when the command is warmable.

The request (one message on ``<run>/warm.sock``): ``b"W1"``, a 4-byte big-endian length, then
``umask \\0 argc \\0 argv... \\0 environ...`` (NUL-separated bytes), with the client's stdin,
stdout, stderr and current directory attached as SCM_RIGHTS descriptors. The answers are
5-byte frames, a type byte and a signed 32-bit big-endian number: ``P`` (the worker's pid:
signals the client receives are forwarded to it, as a command run here would get them), ``X``
(the command's exit status: the client exits with it), ``F`` (the server declines: run here).
"""

import posix
import sys

# commands the warm server runs (see docs/warm.md): `run`, whose start latency matters most,
# and the container verbs that go with it (stack verbs and `agent` run here: they talk to the
# agent, and `agent stop` would stop the server serving it)
WARM_COMMANDS = frozenset({"run", "exec", "ps", "logs", "inspect", "rm", "stop", "start", "restart", "kill",
                           "wait", "top", "stats", "pull", "push"})
SOCKET_NAME = "warm.sock"
# what a command run here would do on these signals, the worker does instead
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


# set in the warm server's worker: a command it runs must not hand itself back
in_worker = False
# set once a process has tried: a fallback to the cold path does not try again
tried = False


def socket_path(environ) -> str:
    """The warm server's socket for the node that ``environ``'s STACKCTL_RUN_DIR names (the
    default as :func:`stackctl.paths.default_paths`)."""
    return run_socket(environ.get("STACKCTL_RUN_DIR", "/run/stackctl"))


def run_socket(run_dir: str) -> str:
    """The warm server's socket in the node run directory ``run_dir``."""
    return run_dir.rstrip("/") + "/" + SOCKET_NAME


def encode_request(argv: list[bytes], environ: list[bytes], umask: int) -> bytes:
    """The request's bytes (pure)."""
    body = b"\0".join([str(umask).encode(), str(len(argv)).encode(), *argv, *environ])
    return b"W1" + len(body).to_bytes(4, "big") + body


def decode_request(body: bytes) -> tuple[list[bytes], list[bytes], int]:
    """(argv, environ, umask) from a request's body (pure); ValueError when malformed."""
    parts = body.split(b"\0")
    if len(parts) < 2:
        raise ValueError("short request")
    umask, argc = int(parts[0]), int(parts[1])
    if argc < 0 or len(parts) < 2 + argc:
        raise ValueError("bad argument count")
    environ = [e for e in parts[2 + argc:] if e]
    return parts[2:2 + argc], environ, umask


def frame(kind: bytes, value: int) -> bytes:
    return kind + value.to_bytes(4, "big", signed=True)


def try_warm(args: list[str], environ=None) -> int | None:
    """Run ``stackctl ARGS`` on the warm server and return its exit status, or None when it
    should run here (``environ``: the environment as bytes, by default the process's): not a warm command, STACKCTL_WARM=0, no server answering, a standard
    descriptor closed, or the server declined. Once the server has accepted the command it is
    never run twice: a server that dies midway is an error (exit 125)."""
    global tried
    env = posix.environ if environ is None else environ  # bytes keys and values
    if in_worker or tried or not args or args[0] not in WARM_COMMANDS or env.get(b"STACKCTL_WARM") == b"0":
        return None
    tried = True
    import _socket

    if b"STACKCTL_TRACE" in env:
        from stackctl.trace import mark

        mark("warm: client connects")
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            s.connect(run_socket(env.get(b"STACKCTL_RUN_DIR", b"/run/stackctl").decode("utf-8", "surrogateescape")))
        except OSError:
            return None
        return _converse(s, args, env)
    finally:
        s.close()


def _converse(s, args: list[str], environ) -> int | None:
    import _socket

    try:
        for fd in (0, 1, 2):
            posix.fstat(fd)
        cwd = posix.open(".", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError:
        return None
    umask = posix.umask(0o022)
    posix.umask(umask)
    argv = [a.encode("utf-8", "surrogateescape") for a in ["stackctl", *args]]  # as os.fsencode on Linux
    env = [k + b"=" + v for k, v in environ.items()]
    data = encode_request(argv, env, umask)
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2, cwd))
    try:
        sent = s.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        while sent < len(data):
            sent += s.send(data[sent:])
    except OSError:
        return None  # nothing was accepted yet
    finally:
        posix.close(cwd)
    buf = b""
    worker = 0
    forwarding = False
    while True:
        try:
            chunk = s.recv(64)
        except OSError:
            chunk = b""
        except KeyboardInterrupt:  # Ctrl-C before the worker's pid came: it may not have started
            if worker == 0:
                sys.stderr.write("interrupted\n")
                return 130
            continue
        if not chunk:
            if worker == 0:
                return None  # the server closed before taking the command: run it here
            sys.stderr.write("stackctl: the warm server's worker went away before the command finished "
                             f"(its log: the agent's log); the command may have run in part\n")
            return 125
        buf += chunk
        while len(buf) >= 5:
            kind, value, buf = buf[:1], int.from_bytes(buf[1:5], "big", signed=True), buf[5:]
            if kind == b"F":
                return None
            if kind == b"X":
                return value
            if kind == b"P" and not forwarding:
                worker = value
                _forward_signals(worker)
                forwarding = True


def _forward_signals(pid: int) -> None:
    import _signal

    def forward(signum, _frame) -> None:
        try:
            posix.kill(pid, signum)
        except OSError:
            pass

    for name in FORWARDED:
        _signal.signal(getattr(_signal, name), forward)
