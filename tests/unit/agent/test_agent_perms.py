"""The node's state and run directories and the agent's files are root-only (issue 9, item
8): local users must not read stacks' environment values from ``<state>/agent.db``."""

from __future__ import annotations

import os
import stat

import pytest

from stackctl.agent.daemon import InsecureStateError, secure_node_dirs
from stackctl.agent.store import Store
from stackctl.paths import NodePaths


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def paths(tmp_path) -> NodePaths:
    return NodePaths(state=str(tmp_path / "state"), run=str(tmp_path / "run"), cgroup_parent="x")


def test_new_database_is_private(paths):
    old = os.umask(0o022)
    try:
        with Store.open(paths) as store:
            store.put_stack("s", {"services": {"web": {"environment": {"PASSWORD": "x"}}}})
    finally:
        os.umask(old)
    assert mode(paths.state) == 0o700
    for name in ("agent.db", "agent.db-wal", "agent.db-shm"):
        p = os.path.join(paths.state, name)
        if os.path.exists(p):
            assert mode(p) == 0o600, name


def test_agent_start_closes_what_others_could_read(paths):
    os.makedirs(paths.state)
    os.makedirs(paths.run)
    os.chmod(paths.state, 0o755)
    os.chmod(paths.run, 0o777)
    db = os.path.join(paths.state, "agent.db")
    with open(db, "w"):
        pass
    os.chmod(db, 0o644)
    changed = secure_node_dirs(paths)
    assert mode(paths.state) == 0o700 and mode(paths.run) == 0o700 and mode(db) == 0o600
    assert len(changed) == 3
    assert secure_node_dirs(paths) == []  # idempotent


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_directory_of_another_user_is_refused(paths):
    os.makedirs(paths.state)
    os.chown(paths.state, 65534, 65534)
    with pytest.raises(InsecureStateError, match="belongs to uid 65534"):
        secure_node_dirs(paths)
