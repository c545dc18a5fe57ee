"""A running container's cgroup, changed in place: freeze and thaw it (``pause`` /
``unpause``) and write new limits (``update``). v1 uses the freezer hierarchy
(``freezer.state``), v2 ``cgroup.freeze`` / ``cgroup.events``; both wait until the kernel
reports every task frozen.

A paused container keeps status ``running`` in its monitor's record; the mark
``<container dir>/paused`` (written after the freeze, removed before the thaw) lets readers
say ``paused`` with one ``stat`` and no cgroup read. The cgroup is the truth:
:func:`is_frozen` reads it.
"""

from __future__ import annotations

import contextlib
import os

from stackctl.errors import ConflictError, StackctlError
from stackctl.paths import NodePaths
from stackctl.runtime.containers.api import _cgroup, _running_state, container_dir

PAUSED_MARK = "paused"


class CgroupControlError(StackctlError):
    """The kernel refused a freeze, thaw or limit change; the message names the file."""


def paused_mark(paths: NodePaths, cid: str) -> str:
    return os.path.join(container_dir(paths, cid), PAUSED_MARK)


def is_marked_paused(paths: NodePaths, cid: str) -> bool:
    return os.path.exists(paused_mark(paths, cid))


def is_frozen(paths: NodePaths, cid: str) -> bool:
    return bool(_cgroup(paths, cid).frozen())


def _cg(paths: NodePaths, cid: str, what: str):
    _running_state(paths, cid, what)
    return _cgroup(paths, cid)


def freeze_container(paths: NodePaths, cid: str) -> None:
    """Freeze every process of the running container (Docker's ``pause``)."""
    from stackctl.runtime.containers.cgroups.detect import CgroupError

    cg = _cg(paths, cid, "pause")
    if is_marked_paused(paths, cid) or cg.frozen():
        raise ConflictError(f"container {cid[:12]} is already paused", hint=f"stackctl unpause {cid[:12]}")
    try:
        cg.freeze()
    except CgroupError as exc:
        with contextlib.suppress(CgroupError):
            cg.thaw()
        raise CgroupControlError(f"cannot pause container {cid[:12]}: {exc}") from None
    with open(paused_mark(paths, cid), "w"):
        pass


def thaw_container(paths: NodePaths, cid: str, *, strict: bool = True) -> None:
    """Thaw the container (``unpause``). ``strict=False`` (after a signal to a paused
    container, which must reach it) thaws whatever the mark says and never fails on a
    container that has just exited."""
    from stackctl.runtime.containers.cgroups.detect import CgroupError

    marked = is_marked_paused(paths, cid)
    if strict:
        cg = _cg(paths, cid, "unpause")
        if not marked and not cg.frozen():
            raise ConflictError(f"container {cid[:12]} is not paused")
    else:
        cg = _cgroup(paths, cid)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paused_mark(paths, cid))
    try:
        if cg.exists():
            cg.thaw()
    except CgroupError as exc:
        if strict:
            raise CgroupControlError(f"cannot unpause container {cid[:12]}: {exc}") from None


def update_limits(paths: NodePaths, cid: str, resources: dict) -> None:
    """Write ``resources`` (memory, memory_swap, memory_reservation, cpus, pids; a key absent
    or None is left as it is; cpus -1: no limit) into the running container's cgroup."""
    from stackctl.runtime.containers.cgroups.detect import CgroupError

    cg = _cg(paths, cid, "update")
    try:
        cg.update({k: v for k, v in resources.items() if v is not None})
    except CgroupError as exc:
        raise CgroupControlError(f"cannot update container {cid[:12]}: {exc}") from None
