"""An agent that cannot be reached: a hung agent (its socket accepts, nothing answers) gives a
bounded wait and one clear error naming the socket and what to do; a stale socket file or a
dead agent's pid file are not mistaken for a running agent."""

from __future__ import annotations

import fcntl
import os
import socket
import time

import pytest

from stackctl.agent import client
from stackctl.agent.daemon import running_pid
from stackctl.paths import NodePaths


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "r").mkdir()
    return NodePaths(state=str(tmp_path / "s"), run=str(tmp_path / "r"), cgroup_parent="stackctl-test-none")


@pytest.fixture
def hung_agent(paths):
    """A listening socket nobody answers on, and the agent lock held (a hung agent)."""
    lock = os.open(client.lock_path(paths), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    with open(client.pid_path(paths), "w") as f:
        f.write(f"{os.getpid()}\n")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(client.socket_path(paths))
    srv.listen(8)
    yield srv
    srv.close()
    os.close(lock)


def test_hung_agent_call_times_out_with_a_clear_message(paths, hung_agent):
    start = time.monotonic()
    with pytest.raises(client.AgentUnavailable) as err:
        with client.AgentClient(paths, timeout=0.3) as c:
            c.call("agent.info")
    assert time.monotonic() - start < 3
    assert client.socket_path(paths) in err.value.message and "did not answer" in err.value.message
    assert "stackctl agent status" in err.value.hint and client.log_path(paths) in err.value.hint


def test_ensure_agent_with_a_hung_agent_is_bounded(paths, hung_agent, monkeypatch):
    # the agent it starts finds the lock held and exits: no second agent, a bounded wait
    monkeypatch.setattr(client, "serve_command", lambda p: ["sh", "-c", "echo 'error: an agent already runs'; exit 1"])
    start = time.monotonic()
    with pytest.raises(client.AgentUnavailable) as err:
        client.ensure_agent(paths, timeout=1.0)
    assert time.monotonic() - start < 8
    assert client.socket_path(paths) in err.value.message
    assert "stackctl agent status" in err.value.hint and client.log_path(paths) in err.value.hint


def test_stale_socket_and_dead_pid_file_mean_no_agent(paths):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(client.socket_path(paths))
    srv.close()  # the file stays, nothing listens (an agent killed with -9)
    with open(client.pid_path(paths), "w") as f:
        f.write("999999\n")
    open(client.lock_path(paths), "w").close()
    assert client.try_info(paths, timeout=0.5) is None
    assert running_pid(paths) is None
    with pytest.raises(client.AgentUnavailable) as err:
        client.AgentClient(paths, timeout=0.5).connect()
    assert client.socket_path(paths) in err.value.message
