"""Two CLIs starting the node's agent at the same moment (root: a real agent): the lock lets
only one agent run and both callers talk to it; a dead agent's pid file and stale socket do
not stand in the way."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from stackctl.agent.client import pid_path, socket_path
from stackctl.agent.daemon import running_pid, stop_agent

pytestmark = pytest.mark.root

CALL = """
import json, sys
from stackctl.agent.client import ensure_agent
from stackctl.paths import NodePaths
sys.stdin.readline()  # both start together
info = ensure_agent(NodePaths(state=sys.argv[1], run=sys.argv[2], cgroup_parent=sys.argv[3]), timeout=20)
print(json.dumps(info))
"""


def _agents(paths) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [ln.strip() for ln in out.splitlines() if "agent serve" in ln and paths.state in ln]


def test_two_concurrent_ensure_agent_start_one_agent(node_paths):
    os.makedirs(node_paths.run, exist_ok=True)
    # leftovers of an agent killed with -9: its pid file (a dead pid) and its socket file
    with open(pid_path(node_paths), "w") as f:
        f.write("999999\n")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(socket_path(node_paths))
    s.close()
    try:
        procs = [subprocess.Popen([sys.executable, "-c", CALL, node_paths.state, node_paths.run,
                                   node_paths.cgroup_parent], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=60) for p in procs]
        for p, (out, err) in zip(procs, results):
            assert p.returncode == 0, err
        assert all(json.loads(out)["paths"]["state"] == node_paths.state for out, _ in results)
        # the loser may still be importing when the winner answers: it exits at the lock
        agents = _wait_agents(node_paths, 1)
        assert len(agents) == 1, agents
        assert int(agents[0].split()[0]) == running_pid(node_paths)
    finally:
        stop_agent(node_paths)
    assert _wait_agents(node_paths, 0) == []


def _wait_agents(paths, n: int, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(agents := _agents(paths)) != n and time.monotonic() < deadline:
        time.sleep(0.05)  # other processes' exits: nothing to wait on but polling
    return agents
