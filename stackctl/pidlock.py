"""A node daemon's lock and pid file (the agent's, the warm server's): the lock (``flock``,
held for the daemon's whole life) says whether one runs, the pid file which one."""

from __future__ import annotations

import fcntl
import os


def holder_pid(lock_path: str, pid_path: str) -> int | None:
    """The pid in ``pid_path`` if a process holds ``lock_path``, else None."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: it runs
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
    finally:
        os.close(fd)
    try:
        with open(pid_path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def write_pid(pid_path: str) -> None:
    """This process's pid into ``pid_path``, atomically (written after the lock is taken)."""
    with open(pid_path + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(pid_path + ".tmp", pid_path)
