"""Small file helpers shared by the v1 and v2 cgroup drivers."""

from __future__ import annotations

import errno
import os
import signal
import time

from stackctl.runtime.containers.cgroups.detect import CgroupError


def write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise CgroupError(f"write {value!r} to {path}: {e.strerror}") from e


def read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def read_int(path: str, default: int = 0) -> int:
    text = read(path).strip()
    if text == "max":
        return -1
    try:
        return int(text)
    except ValueError:
        return default


def keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.events, memory.oom_control, cpu.stat) → dict."""
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def pids_in(d: str) -> list[int]:
    return [int(p) for p in read(os.path.join(d, "cgroup.procs")).split()]


def kill_pids(d: str, attempts: int = 100) -> None:
    for _ in range(attempts):
        pids = pids_in(d)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def rmdir_retry(d: str, attempts: int = 200) -> None:
    """rmdir a cgroup directory; EBUSY while the last tasks are being released is retried."""
    for i in range(attempts):
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise CgroupError(f"remove cgroup {d}: {e.strerror}") from e
            time.sleep(0.001 if i < 20 else 0.01)
    raise CgroupError(f"remove cgroup {d}: still busy (processes left: {pids_in(d)})")


def wait_for(cond, timeout: float, what: str) -> None:
    """Poll ``cond()`` (a kernel state change with no event to wait on) until it holds;
    CgroupError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not cond():
        if time.monotonic() >= deadline:
            raise CgroupError(f"{what} within {timeout:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
