"""Wake up when a container's ``state.json`` changes: inotify through ctypes, waited on with
trio (``wait_readable``), so that an exit is seen within tens of milliseconds (the supervisor
coalesces a burst for 20 ms) with no polling cost.

Why inotify rather than polling mtimes: a restart policy and a rolling update react to exits,
and a 0.5 s poll would add up to 0.5 s to every reaction (and N stats per tick for nothing).
The watch is only a *wake-up*: the supervisor then re-reads every record (reconcile by
re-reading), and rescans every few seconds anyway, which covers what inotify cannot see (a
monitor killed with SIGKILL writes no file: ``read_state`` then reports ``dead``).

Watched: ``<state>/containers`` (a container appears or goes) and each container directory
(the monitor replaces ``state.json`` by rename: ``IN_MOVED_TO``). Without inotify (ctypes or the
syscall unavailable) :class:`DirWatcher` degrades to a timer of :data:`FALLBACK_POLL` seconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

import trio

log = logging.getLogger("stackctl.agent")

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ONLYDIR
FALLBACK_POLL = 0.5


class DirWatcher:
    """Watches directories; :meth:`wait_changed` returns when any of them changed."""

    def __init__(self) -> None:
        self._fd = -1
        self._watched: dict[str, int] = {}
        self._libc = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        except (OSError, AttributeError) as exc:
            log.warning("inotify unavailable (%s): polling every %gs", exc, FALLBACK_POLL)
            return
        self._libc = libc
        self._fd = fd

    @property
    def uses_inotify(self) -> bool:
        return self._fd >= 0

    def watch(self, path: str) -> None:
        """Add ``path`` (a directory); a missing one is skipped (it is watched once it
        exists and ``watch`` is called again)."""
        if self._fd < 0 or path in self._watched:
            return
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), MASK)
        if wd >= 0:
            self._watched[path] = wd

    def keep_only(self, paths: set[str]) -> None:
        """Forget watches of directories not in ``paths`` (the kernel drops a watch when its
        directory is deleted; this keeps our table in step)."""
        for p in [p for p in self._watched if p not in paths]:
            wd = self._watched.pop(p)
            if self._fd >= 0:
                self._libc.inotify_rm_watch(self._fd, wd)  # EINVAL if already gone: fine

    async def wait_changed(self, timeout: float) -> bool:
        """Wait until something changed (True) or ``timeout`` passed (False)."""
        if self._fd < 0:
            await trio.sleep(min(timeout, FALLBACK_POLL))
            return True
        with trio.move_on_after(timeout):
            await trio.lowlevel.wait_readable(self._fd)
            self._drain()
            return True
        return False

    def _drain(self) -> None:
        while True:
            try:
                if not os.read(self._fd, 65536):
                    return
            except BlockingIOError:
                return

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            trio.lowlevel.notify_closing(fd)
            os.close(fd)
