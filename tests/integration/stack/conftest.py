"""Fixtures of the end-to-end stack tests (helpers in stackenv.py): a private node, the busybox
image, and a teardown that runs `down -v` for every stack, stops the agent by PID and fails on
anything left behind (containers, networks, volumes, mounts, cgroups, processes)."""

from __future__ import annotations

import os
import signal

import pytest

# stackenv holds assertions too (check_update_loses_no_request): rewrite them like a test's
pytest.register_assert_rewrite("stackenv")

from stackenv import IMAGE, Node, processes_mentioning


@pytest.fixture
def node(node_paths, tmp_path):
    n = Node(node_paths, tmp_path)
    n.cli("image", "build-busybox", "-q", "-t", IMAGE, timeout=120)
    try:
        yield n
    finally:
        failures = []
        for name in sorted(n.projects):
            p = n.cli("down", "-v", "-p", name, check=False, timeout=90)
            if p.returncode != 0:
                failures.append(f"down -v -p {name}: {p.returncode} {p.stderr.strip()[-500:]}")
        n.stop_agent()
        left = n.leftovers()
        # the node_paths fixture removes what is left either way; a leak is still a failure
        for pid in processes_mentioning(str(tmp_path)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if failures or left:
            pytest.fail(f"teardown: {failures} leftovers: {left}")
