"""Where a node's warm server keeps its lock, pid file and socket, and whether one runs —
what the CLI (``agent status``), the runtime's pool (borrowing a slot) and the server itself
share. Imports neither the CLI nor the server, so none of them imports the other for this."""

from __future__ import annotations

import os

from stackctl.paths import NodePaths
from stackctl.pidlock import holder_pid

#: the socket's name in the node's run directory (the client, which imports nothing of
#: stackctl, spells it again: tests/unit/warm checks they agree)
SOCKET_NAME = "warm.sock"


def lock_path(paths: NodePaths) -> str:
    return os.path.join(paths.run, "warm.lock")


def pid_path(paths: NodePaths) -> str:
    return os.path.join(paths.run, "warm.pid")


def socket_path(paths: NodePaths) -> str:
    return os.path.join(paths.run, SOCKET_NAME)


def running_pid(paths: NodePaths) -> int | None:
    """The pid of this node's warm server if one holds its lock, else None."""
    return holder_pid(lock_path(paths), pid_path(paths))
