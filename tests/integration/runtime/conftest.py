"""Fixtures of the runtime integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time

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


@pytest.fixture(params=["cold", "warm"])
def node_cli_both(request, node_cli, node_paths):
    """``node_cli``, once as it is and once with a warm server for the node (docs/warm.md), so
    that a test shows a command behaves the same either way. The server is stopped in
    teardown; its pool is gone once it has exited."""
    if request.param == "cold":
        yield node_cli
        return
    from stackctl.warm.server import running_pid

    log = open(os.path.join(node_paths.state, "warm.log"), "ab")
    server = subprocess.Popen([sys.executable, "-m", "stackctl.warm.server", node_paths.state, node_paths.run,
                               node_paths.cgroup_parent], stdout=log, stderr=log, env=node_cli.env)
    try:
        deadline = time.monotonic() + 10
        while running_pid(node_paths) != server.pid or not os.path.exists(os.path.join(node_paths.run, "warm.sock")):
            assert server.poll() is None and time.monotonic() < deadline, "the warm server did not start"
            time.sleep(0.02)
        trace = os.path.join(node_paths.state, "warm-check.trace")
        assert node_cli("ps", "-a", env=dict(node_cli.env, STACKCTL_TRACE=trace)).returncode == 0
        with open(trace) as f:
            assert "warm: worker has the request" in f.read(), "commands do not reach the warm server"
        yield node_cli
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()
