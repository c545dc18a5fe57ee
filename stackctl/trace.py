"""Opt-in timing marks for the start path (``STACKCTL_TRACE``); off by default and then free
but for one dictionary lookup at import.

- ``STACKCTL_TRACE=1``: the CLI prints, at exit, one line per mark to stderr: milliseconds
  since the interpreter started, and since the previous mark.
- ``STACKCTL_TRACE=/path/file``: every process on the path (CLI, launcher, setup child,
  monitor) appends ``<boottime ns> <pid> <mark>`` lines to that file, to see the overlap
  (``sort -n FILE``).

Marks use CLOCK_BOOTTIME, the same clock in every process and the one /proc's process start
times count in (in clock ticks, so "since start" is only good to ~10 ms). Only ``os`` and ``time``
are imported: the monitor and the setup child load this module too.
"""

from __future__ import annotations

import os
import time

_DEST = os.environ.get("STACKCTL_TRACE", "")
ENABLED = bool(_DEST) and _DEST != "0"
_marks: list[tuple[str, int]] = []
_fd = -1


def configure(environ) -> None:
    """Take STACKCTL_TRACE from ``environ`` afresh (a warm server's worker serves a client
    whose environment is not the one this module was imported under)."""
    global _DEST, ENABLED, _fd
    _DEST = environ.get("STACKCTL_TRACE", "")
    ENABLED = bool(_DEST) and _DEST != "0"
    _marks.clear()
    _fd = -1


def report_now() -> None:
    """Print the marks of ``STACKCTL_TRACE=1`` now (for a process that leaves by
    ``os._exit``, which skips the atexit report)."""
    if _marks:
        _report()
        _marks.clear()


def mark(name: str) -> None:
    """Record that ``name`` happened now (a no-op unless tracing)."""
    if not ENABLED:
        return
    t = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    if _DEST.startswith("/"):
        global _fd
        try:
            if _fd < 0:  # kept open: a forked child inherits it, and marks after pivot_root
                _fd = os.open(_DEST, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.write(_fd, f"{t} {os.getpid()} {name}\n".encode())
        except OSError:
            pass
    else:
        if not _marks:
            import atexit

            atexit.register(_report)
        _marks.append((name, t))


def _process_start_ns() -> int | None:
    """When this process started, on CLOCK_BOOTTIME (from /proc, in clock ticks)."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _report() -> None:
    import sys

    start = _process_start_ns()
    prev = start if start is not None else _marks[0][1]
    lines = []
    for name, t in _marks:
        since = f"{(t - start) / 1e6:8.1f}" if start is not None else "       -"
        lines.append(f"trace {since} ms  +{(t - prev) / 1e6:6.1f}  {name}")
        prev = t
    sys.stderr.write("\n".join(lines) + "\n")
