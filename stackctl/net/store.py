"""Networking's state on disk: one JSON document, ``<paths.state>/networks/state.json``,
changed only under an exclusive ``flock`` so that concurrent CLI runs and the agent never
interleave a read-modify-write. Written atomically (temporary file + rename), so a reader (the
DNS server) never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import _thread
import os
from collections.abc import Iterator

from stackctl.net.model import NetState
from stackctl.paths import NodePaths


def net_dir(paths: NodePaths) -> str:
    return os.path.join(paths.state, "networks")


def state_file(paths: NodePaths) -> str:
    return os.path.join(net_dir(paths), "state.json")


def netns_dir(paths: NodePaths) -> str:
    return os.path.join(paths.run, "netns")


def netns_path(paths: NodePaths, container_id: str) -> str:
    return os.path.join(netns_dir(paths), container_id)


def load(paths: NodePaths) -> NetState:
    """A snapshot, without the lock (readers such as `ls`, `inspect`, the DNS server)."""
    try:
        with open(state_file(paths)) as f:
            return NetState.from_json(json.load(f))
    except FileNotFoundError:
        return NetState()


def save(paths: NodePaths, state: NetState) -> None:
    """Write the state by rename; a full disk is one DiskFullError naming the file, and no
    temporary file is left behind."""
    from stackctl.errors import writing

    path = state_file(paths)
    tmp = f"{path}.tmp{os.getpid()}.{_thread.get_ident()}"
    with writing(path):
        try:
            with open(tmp, "w") as f:
                json.dump(state.to_json(), f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


@contextlib.contextmanager
def locked(paths: NodePaths) -> Iterator[NetState]:
    """``with locked(paths) as state: ...`` — the state under the lock; whatever the block
    leaves in ``state`` is saved when it ends (also when it raises, so that a partial change
    the block already made in the kernel stays recorded and can be undone)."""
    os.makedirs(net_dir(paths), exist_ok=True)
    fd = os.open(os.path.join(net_dir(paths), ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = load(paths)
        try:
            yield state
        finally:
            save(paths, state)
    finally:
        os.close(fd)
