"""The client side of a container's attach socket (``<run>/containers/<id>/attach.sock``).

Frames, both ways (the framing is the monitor's, see docs/containers.md): an 8-byte header
``[type u8, 0, 0, 0, length u32 big-endian]`` and the payload. Types: 0 stdin (an empty
payload closes stdin), 1 stdout, 2 stderr, 3 resize (rows u16, cols u16), 4 exit (code i32),
5 error (code i32 + message: the command could not be executed after the attach; raised as
:class:`AttachedStartError` with that exit code).

:func:`stream` copies the container's output to our stdout/stderr, our stdin to it (``-i``),
our terminal size to its pty (``-t``, on SIGWINCH), and returns the exit code from the exit
frame (None if the socket closed without one).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import time

from stackctl.errors import StackctlError

STDIN, STDOUT, STDERR, RESIZE, EXIT, ERROR = 0, 1, 2, 3, 4, 5
_HDR = struct.Struct(">BxxxI")


class AttachedStartError(StackctlError):
    """The container's command could not be executed (reported after the attach); its exit
    code is the container's (126 cannot execute, 127 not found), as Docker's run gives it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code
        self.container_exit_code = code


def socket_path(paths, cid: str) -> str:
    return os.path.join(paths.run, "containers", cid, "attach.sock")


def frame(kind: int, payload: bytes = b"") -> bytes:
    return _HDR.pack(kind, len(payload)) + payload


def parse_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete frames in ``buf`` and the rest (pure; tested without a socket)."""
    out = []
    while len(buf) >= _HDR.size:
        kind, n = _HDR.unpack_from(buf)
        if len(buf) < _HDR.size + n:
            break
        out.append((kind, buf[_HDR.size:_HDR.size + n]))
        buf = buf[_HDR.size + n:]
    return out, buf


def connect(path: str, timeout: float = 2.0, give_up=lambda: False) -> socket.socket | None:
    """Connect to the attach socket; None if it does not appear within ``timeout`` or once
    ``give_up()`` says so (the start failed)."""
    deadline = time.monotonic() + timeout
    dirfd = -1
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            target = path
            if len(path.encode()) >= 104:  # sun_path holds 108 bytes: go through the directory fd
                if dirfd < 0:
                    dirfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
                target = f"/proc/self/fd/{dirfd}/{os.path.basename(path)}"
            s.connect(target)
            if dirfd >= 0:
                os.close(dirfd)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.monotonic() >= deadline or give_up():
                if dirfd >= 0:
                    os.close(dirfd)
                return None
            time.sleep(0.005)


def _winsize() -> bytes | None:
    import fcntl
    import termios

    for fd in (0, 1, 2):
        try:
            rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
            return struct.pack(">HH", rows, cols)
        except OSError:
            continue
    return None


def stream(sock: socket.socket, *, stdin: bool, tty: bool) -> int | None:
    out_fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
    sys.stdout.flush()
    sys.stderr.flush()
    wake_r = wake_w = -1
    old_winch = None
    if tty:
        ws = _winsize()
        if ws:
            sock.sendall(frame(RESIZE, ws))
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        old_winch = signal.signal(signal.SIGWINCH, lambda *_: os.write(wake_w, b"w"))
    in_fd = 0 if stdin else -1
    buf = b""
    try:
        while True:
            rlist = [sock] + ([in_fd] if in_fd >= 0 else []) + ([wake_r] if wake_r >= 0 else [])
            try:
                ready, _, _ = select.select(rlist, [], [])
            except InterruptedError:
                continue
            if wake_r in ready:
                try:
                    os.read(wake_r, 64)
                except BlockingIOError:
                    pass
                ws = _winsize()
                if ws:
                    sock.sendall(frame(RESIZE, ws))
            if in_fd >= 0 and in_fd in ready:
                data = os.read(in_fd, 65536)
                try:
                    sock.sendall(frame(STDIN, data))
                except OSError:
                    pass
                if not data:
                    in_fd = -1
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    return None
                frames, buf = parse_frames(buf + data)
                for kind, payload in frames:
                    if kind == STDOUT:
                        _write_all(out_fd, payload)
                    elif kind == STDERR:
                        _write_all(err_fd, payload)
                    elif kind == EXIT:
                        return struct.unpack(">i", payload[:4])[0]
                    elif kind == ERROR:
                        code = struct.unpack(">i", payload[:4])[0]
                        raise AttachedStartError(payload[4:].decode(errors="replace"), code)
    finally:
        sock.close()
        if tty:
            signal.signal(signal.SIGWINCH, old_winch)
            os.close(wake_r)
            os.close(wake_w)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return
        view = view[n:]
