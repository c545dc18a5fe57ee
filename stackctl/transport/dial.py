"""``stackctl agent dial-stdio``: this node's agent socket on stdin/stdout, for whoever runs the
command over SSH (the manager's asyncssh channel, the CLI's ``ssh -T``) — the way
``docker system dial-stdio`` serves ``docker -H ssh://``.

The bytes are not looked at. Each direction is moved by ``splice(2)`` when its one side is a
pipe (sshd gives a command pipes), else by ``os.read``/``write`` of 64 KiB: no Python work per
byte, two syscalls per chunk. When the client closes stdin, the socket is half-closed, which
the agent takes as the client leaving (it cancels the client's open requests and closes); when
the agent's side closes, we exit.

stdout carries nothing but protocol bytes: on entry fd 1 is moved aside and fd 1 becomes
stderr, so a stray ``print`` or a child's output cannot corrupt the stream.
"""

from __future__ import annotations

import errno
import os
import select
import socket

from stackctl.agent.client import AgentUnavailable, ensure_agent, short_address, socket_path
from stackctl.paths import NodePaths

CHUNK = 65536
_NO_SPLICE = (errno.EINVAL, errno.ENOSYS, errno.EBADF, errno.EOPNOTSUPP)


def connect_agent(paths: NodePaths, *, start_timeout: float = 10.0) -> socket.socket:
    """A blocking socket to this node's agent, starting the agent when none answers."""
    try:
        return _connect(socket_path(paths))
    except OSError:
        pass
    ensure_agent(paths, timeout=start_timeout)
    try:
        return _connect(socket_path(paths))
    except OSError as exc:
        raise AgentUnavailable(f"the agent does not answer on {socket_path(paths)}: "
                               f"{exc.strerror or exc}") from None


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        with short_address(path) as addr:
            sock.connect(addr)
    except OSError:
        sock.close()
        raise
    return sock


class _Pipe:
    """One direction: ``src`` fd to ``dst`` fd."""

    def __init__(self, src: int, dst: int, *, dst_sock: socket.socket | None = None) -> None:
        self.src = src
        self.dst = dst
        self.dst_sock = dst_sock
        self.splice = hasattr(os, "splice")
        self.eof = False

    def pump(self) -> bool:
        """Move what is readable now; False at end of input (or a closed destination)."""
        if self.splice:
            try:
                n = os.splice(self.src, self.dst, CHUNK)
                return n > 0
            except OSError as exc:
                if exc.errno not in _NO_SPLICE:
                    if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                        return False
                    raise
                self.splice = False  # neither side is a pipe: plain reads and writes
        try:
            data = os.read(self.src, CHUNK)
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                return False
            raise
        if not data:
            return False
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.dst, view):]
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                return False
            raise
        return True


def bridge(sock: socket.socket, stdin: int, stdout: int) -> None:
    """Copy stdin to ``sock`` and ``sock`` to stdout until the agent side closes (or stdout's
    reader goes away). stdin's end half-closes the socket."""
    up = _Pipe(stdin, sock.fileno())
    down = _Pipe(sock.fileno(), stdout)
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    poller.register(sock.fileno(), select.POLLIN)
    while True:
        for fd, _mask in poller.poll():
            if fd == sock.fileno():
                if not down.pump():
                    return
            elif fd == stdin and not up.eof:
                if not up.pump():
                    up.eof = True
                    poller.unregister(stdin)
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        return


def dial_stdio(paths: NodePaths) -> None:
    """The command's body: protect stdout, reach (or start) the agent, bridge."""
    out = os.dup(1)
    os.dup2(2, 1)  # from here on fd 1 is stderr: only the bridge writes to `out`
    try:
        sock = connect_agent(paths)
        with sock:
            bridge(sock, 0, out)
    finally:
        os.close(out)
