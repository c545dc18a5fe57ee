"""Network namespace files: a new netns bind-mounted on ``<paths.run>/netns/<container id>``
(what `ip netns add` does, in our own directory), joined by the runtime through
``ContainerSpec.network = "netns:<path>"``.

The directory is made a shared mount of itself (as iproute2 does with /run/netns), so that
unmounting a netns file here also unmounts its copies in mount namespaces created later.

Nothing here forks. pyroute2 makes a namespace, or a netlink socket inside one, in a forked
child process, and the agent calls this from a worker thread of a trio process: such a child
inherits the parent's Python signal handlers and locks as they were at the fork, and a signal
arriving in it ran trio's handler and hung on a lock forever, holding copies of the runtime's
lock files (a `stackctl up` that never ended). Instead, the calling *thread* enters the
namespace (a network namespace is per thread: ``unshare``/``setns`` with CLONE_NEWNET), does
what it needs there and returns (:func:`inside`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import subprocess
from collections.abc import Iterator

from stackctl.net.model import NetworkError

MNT_DETACH = 2
_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return _libc


def is_netns_file(path: str) -> bool:
    """True when ``path`` is a mounted nsfs file (a live network namespace handle)."""
    from stackctl.runtime.containers.cgroups.detect import read_mounts

    return any(mnt == path and fstype == "nsfs" for mnt, _root, fstype, _opts in read_mounts())


def create(path: str) -> str:
    """Create a network namespace and bind it on ``path`` (which must not exist yet)."""
    from stackctl.runtime.containers import linux

    if os.path.exists(path):
        if is_netns_file(path):
            raise NetworkError(f"network namespace {path} already exists")
        os.unlink(path)  # an empty mountpoint left by a crash
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
        with _own_netns() as own:
            linux.unshare(linux.CLONE_NEWNET)  # this thread only
            try:
                linux.mount("/proc/thread-self/ns/net", path, None, linux.MS_BIND)
            finally:
                linux.setns(own, linux.CLONE_NEWNET)
    except OSError as exc:
        remove(path)
        raise NetworkError(f"cannot create network namespace {path}: {exc}",
                           hint="network namespaces need root (CAP_SYS_ADMIN)") from None
    if not is_netns_file(path):
        remove(path)
        raise NetworkError(f"cannot create network namespace {path}: the bind mount did not appear")
    return path


@contextlib.contextmanager
def _own_netns() -> Iterator[int]:
    """A descriptor of the calling thread's network namespace, to return to."""
    fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def inside(path: str) -> Iterator[None]:
    """The calling thread in the network namespace bound at ``path`` for the block (sockets
    made there stay there), back in its own afterwards."""
    from stackctl.runtime.containers import linux

    with _own_netns() as own:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(target, linux.CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            linux.setns(own, linux.CLONE_NEWNET)


def remove(path: str) -> None:
    """Unmount and delete a netns file; a missing one is fine."""
    if os.path.lexists(path):
        _lib().umount2(os.fsencode(path), MNT_DETACH)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def listed(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


def exec_argv(path: str, argv: list[str]) -> list[str]:
    """argv that runs ``argv`` inside the netns at ``path`` (for tests and debugging)."""
    return ["nsenter", f"--net={path}", "--", *argv]


def run_in(path: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(exec_argv(path, argv), **kwargs)
