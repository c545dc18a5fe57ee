"""Paths inside a container's root, resolved by the kernel: ``openat2(2)`` with
``RESOLVE_IN_ROOT`` treats the root as ``/`` for every ``..`` and every absolute symlink on the
way, so no symlink in the container (even one swapped in while we work) can lead a copy
outside it; ``RESOLVE_NO_MAGICLINKS`` refuses ``/proc/*/fd``-style jumps. What is opened here
is then used only through its file descriptor (``*at`` calls with ``O_NOFOLLOW``).
"""

from __future__ import annotations

import ctypes
import errno
import os

SYS_OPENAT2 = 437  # the same number on x86_64 and aarch64
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

_libc = None


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _syscall():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc.syscall


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """``path`` (absolute or not: both mean from the root) opened below ``root_fd``; raises
    OSError (ENOENT, ENOTDIR, ELOOP, EXDEV…) with the path in it."""
    rel = path.lstrip("/") or "."
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _syscall()(SYS_OPENAT2, ctypes.c_int(root_fd), rel.encode("utf-8", "surrogateescape"), ctypes.byref(how),
                    ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "/" + rel.lstrip("./") if rel != "." else "/")
    return int(fd)


def exists_in_root(root_fd: int, path: str, *, follow: bool = False) -> bool:
    try:
        fd = open_in_root(root_fd, path, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise
    os.close(fd)
    return True
