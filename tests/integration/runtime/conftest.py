"""Fixtures of the runtime integration tests."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture
def node_cli(node_paths):
    """``stackctl`` run as a subprocess on the test node: ``run(*args, timeout=30, check=None,
    **subprocess_kw)`` gives the completed process (asserting its exit status when ``check`` is
    given; ``env=`` replaces the environment); ``run.env`` is its environment, ``run.paths`` the node paths. Every container left
    is removed (with its anonymous volumes) in teardown."""
    env = dict(os.environ, STACKCTL_STATE_DIR=node_paths.state, STACKCTL_RUN_DIR=node_paths.run,
               STACKCTL_CGROUP_PARENT=node_paths.cgroup_parent)

    def run(*args, timeout=30, check=None, **kw):
        kw.setdefault("env", env)
        p = subprocess.run([sys.executable, "-m", "stackctl", *args], capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check is not None:
            assert p.returncode == check, (args, p.returncode, p.stdout, p.stderr)
        return p

    run.env = env
    run.paths = node_paths
    yield run
    ids = run("ps", "-aq", "--no-trunc").stdout.split()
    if ids:
        run("rm", "-f", "-v", *ids)
