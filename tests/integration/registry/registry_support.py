"""Constants and helpers shared by the registry tests and their fixtures (a module of its own:
``import conftest`` could find another directory's conftest when the whole suite runs)."""

from __future__ import annotations

import socket

USER, PASSWORD = "alice", "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
