"""Thin ctypes wrappers over the Linux syscalls Python 3.11 does not expose.

Only ``ctypes``, ``os`` and ``errno`` are imported: this module is loaded by the per-container
monitor and by the container's setup child, where every import costs start latency and memory.
Every wrapper raises :class:`SyscallError` (an ``OSError`` that names the call and its
arguments) on failure.
"""

from __future__ import annotations

import ctypes
import errno
import os


_libc = ctypes.CDLL(None, use_errno=True)

# clone / unshare / setns flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# prctl
PR_SET_PDEATHSIG = 1
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_MODE_FILTER = 2

MACHINE = os.uname().machine
# syscall numbers we call through syscall(2) (no glibc wrapper)
_SYSCALLS = {
    "x86_64": {"pivot_root": 155},
    "aarch64": {"pivot_root": 41},
}


class SyscallError(OSError):
    """A syscall failed; ``str()`` names the call, its arguments and the errno text."""


def _fail(what: str) -> SyscallError:
    err = ctypes.get_errno()
    return SyscallError(err, f"{what}: {os.strerror(err)} ({errno.errorcode.get(err, err)})")


def _b(s: str | bytes | None) -> bytes | None:
    if s is None:
        return None
    return s if isinstance(s, bytes) else os.fsencode(s)


def unshare(flags: int) -> None:
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        raise _fail(f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        raise _fail(f"setns({fd}, {nstype:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)) != 0:
        raise _fail(f"mount {fstype or ''} {source or ''} on {target} (flags {flags:#x}, {data or ''})")


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), ctypes.c_int(flags)) != 0:
        raise _fail(f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    nr = _SYSCALLS.get(MACHINE, {}).get("pivot_root")
    if nr is None:
        raise SyscallError(errno.ENOSYS, f"pivot_root: unsupported architecture {MACHINE}")
    if _libc.syscall(ctypes.c_long(nr), _b(new_root), _b(put_old)) != 0:
        raise _fail(f"pivot_root({new_root}, {put_old})")


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    ret = _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(a2), ctypes.c_ulong(a3), ctypes.c_ulong(a4), ctypes.c_ulong(a5))
    if ret < 0:
        raise _fail(f"prctl({option}, {a2})")
    return ret


def sethostname(name: str) -> None:
    b = name.encode()
    if _libc.sethostname(b, ctypes.c_size_t(len(b))) != 0:
        raise _fail(f"sethostname({name!r})")


def setdomainname(name: str) -> None:
    b = name.encode()
    if _libc.setdomainname(b, ctypes.c_size_t(len(b))) != 0:
        raise _fail(f"setdomainname({name!r})")


# --- capabilities (capset(2), version 3: two 32-bit words per set) ---

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        sh = 32 * i
        data[i].effective = (effective >> sh) & 0xFFFFFFFF
        data[i].permitted = (permitted >> sh) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> sh) & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(hdr), data) != 0:
        raise _fail("capset")


def cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def drop_bounding(cap: int) -> None:
    if _libc.prctl(ctypes.c_int(PR_CAPBSET_DROP), ctypes.c_ulong(cap), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        if err != errno.EINVAL:  # a capability this kernel does not know
            raise _fail(f"prctl(PR_CAPBSET_DROP, {cap})")


# --- seccomp ---


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter(program: bytes) -> None:
    """Install a classic-BPF seccomp filter (``program`` is packed ``struct sock_filter``s)."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if _libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog), 0, 0) != 0:
        raise _fail("prctl(PR_SET_SECCOMP)")


# --- terminals ---

TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGWINSZ = 0x5413
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
