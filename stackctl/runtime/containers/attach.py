"""Client side of a container's attach socket (``<run>/containers/<id>/attach.sock``).

Frames in both directions: an 8-byte header ``[type u8, 0, 0, 0, length u32 big-endian]`` then
``length`` bytes (Docker's stdcopy header). Types: 0 stdin (client → monitor; an empty frame
closes stdin), 1 stdout, 2 stderr (monitor → client), 3 resize (client → monitor; payload rows
u16, cols u16, big-endian), 4 exit (monitor → client; payload the exit code, i32), 5 error
(monitor → client: the command could not be executed after the client attached; payload the
exit code, i32, and the message). The monitor closes the connection after an exit or error frame. Pure framing here plus :func:`connect`.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from stackctl.errors import StackctlError
from stackctl.paths import NodePaths

STDIN, STDOUT, STDERR, RESIZE, EXIT, ERROR = 0, 1, 2, 3, 4, 5


def encode(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BxxxI", kind, len(payload)) + payload


def encode_resize(rows: int, cols: int) -> bytes:
    return encode(RESIZE, struct.pack(">HH", rows, cols))


class FrameDecoder:
    """Bytes in, ``(type, payload)`` frames out (sans-IO)."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out = []
        while len(self.buf) >= 8:
            kind, n = struct.unpack(">BxxxI", self.buf[:8])
            if len(self.buf) < 8 + n:
                break
            out.append((kind, self.buf[8 : 8 + n]))
            self.buf = self.buf[8 + n :]
        return out


def connect(paths: NodePaths, cid: str, timeout: float = 2.0) -> socket.socket:
    """Connect to the container's attach socket (waiting up to ``timeout`` for the monitor to
    create it). The path is reached through /proc/self/fd so its length does not matter."""
    d = os.path.join(paths.run, "containers", cid)
    deadline = time.monotonic() + timeout
    while True:
        try:
            dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(f"/proc/self/fd/{dfd}/attach.sock")
                    return s
                except OSError:
                    s.close()
                    raise
            finally:
                os.close(dfd)
        except OSError:
            if time.monotonic() > deadline:
                raise StackctlError(f"cannot attach to container {cid[:12]}: it is not running") from None
            time.sleep(0.005)
