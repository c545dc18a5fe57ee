"""Overlay mounts the image code needs itself (build steps that write files, reading a
stage's root filesystem). Containers get their overlays from the execution core.

Build overlays are mounted with ``index=off,redirect_dir=off,metacopy=off`` so that the upper
directory holds plain files, directories and whiteouts only — exactly what a layer tar can say.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import tempfile
from typing import Iterator

from stackctl.errors import StackctlError

MS_RDONLY = 1
MNT_DETACH = 2
_libc = None


class MountError(StackctlError):
    """An overlay for a build step could not be mounted."""


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    if _lib().mount(source.encode(), target.encode(), fstype.encode(), ctypes.c_ulong(flags), data.encode()) != 0:
        err = ctypes.get_errno()
        raise MountError(f"mount {fstype} on {target} failed: {os.strerror(err)}",
                         hint="building images needs root and overlayfs (modprobe overlay)")


def umount(target: str) -> None:
    if _lib().umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise MountError(f"umount {target} failed: {os.strerror(err)}")


def overlay_options(lower: list[str], upper: str = "", work: str = "") -> str:
    """``lower`` bottom -> top, as :meth:`Image.layer_dirs` gives them."""
    for d in lower + [upper, work]:
        if any(c in d for c in ",:"):
            raise MountError(f"overlay path {d!r} contains ',' or ':'", hint="use a state directory without them")
    opts = "lowerdir=" + ":".join(reversed(lower))
    if upper:
        opts += f",upperdir={upper},workdir={work}"
    return opts + ",index=off,redirect_dir=off,metacopy=off"


@contextlib.contextmanager
def writable_root(lower: list[str], upper: str, scratch_dir: str) -> Iterator[str]:
    """Mount ``lower`` + ``upper`` (read-write) and yield the merged directory.

    ``scratch_dir`` (on the same filesystem as ``upper``) holds the work dir and the mount
    point; an empty lower dir stands in when there are no layers (``FROM scratch``).
    """
    import shutil

    work = tempfile.mkdtemp(dir=scratch_dir, prefix="work-")
    target = tempfile.mkdtemp(dir=scratch_dir, prefix="mnt-")
    empty = ""
    if not lower:
        empty = tempfile.mkdtemp(dir=scratch_dir, prefix="empty-")
        lower = [empty]
    try:
        mount("overlay", target, "overlay", 0, overlay_options(lower, upper, work))
    except BaseException:
        for d in (work, target, empty):
            if d:
                shutil.rmtree(d, ignore_errors=True)
        raise
    try:
        yield target
    finally:
        umount(target)
        os.rmdir(target)
        shutil.rmtree(work, ignore_errors=True)
        if empty:
            os.rmdir(empty)


@contextlib.contextmanager
def readonly_root(lower: list[str], scratch_dir: str) -> Iterator[str]:
    """The merged view of ``lower`` (read-only); one layer is used as it is."""
    if not lower:
        empty = tempfile.mkdtemp(dir=scratch_dir, prefix="empty-")
        yield empty
        os.rmdir(empty)
        return
    if len(lower) == 1:
        yield lower[0]
        return
    target = tempfile.mkdtemp(dir=scratch_dir, prefix="ro-")
    mount("overlay", target, "overlay", MS_RDONLY, overlay_options(lower))
    try:
        yield target
    finally:
        umount(target)
        os.rmdir(target)


def remove_unless_mounted(path: str) -> bool:
    """``rm -rf path``, but never through a mount point left below it; says if it removed."""
    import shutil

    from stackctl.runtime.containers.cgroups.detect import read_mounts

    mounted = [mnt for mnt, _root, _fstype, _opts in read_mounts()]
    if any(m == path or m.startswith(path.rstrip("/") + "/") for m in mounted):
        return False
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return True
