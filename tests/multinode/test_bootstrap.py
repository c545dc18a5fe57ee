"""`node bootstrap` on the one-machine cluster: it installs this stackctl into each node's own
prefix over SSH and starts the node's agent from there; the manager's key reaches a node's
agent protocol and nothing else; bootstrapping again upgrades in place, restarting the agent
with the new version while a container keeps running (the same process)."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time

import pytest

from stackctl.agent.client import AgentClient
from stackctl.cluster import bootstrap as B
from stackctl.cluster import inventory as I
from stackctl.cluster import nodeside
from stackctl.paths import NodePaths
from stackctl.transport import protocol as P

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def snapshot_source(dest: str, version: str | None = None) -> str:
    """A copy of this checkout's sources (others may edit the tree while the test runs), its
    version changed when asked: what an upgrade ships."""
    os.makedirs(dest)
    for rel in B._source_files(REPO):
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(os.path.join(REPO, rel), os.path.join(dest, rel))
    if version:
        init = os.path.join(dest, "stackctl", "__init__.py")
        with open(init) as f:
            text = f.read()
        with open(init, "w") as f:
            f.write("\n".join(f'__version__ = "{version}"' if line.startswith("__version__") else line
                              for line in text.splitlines()) + "\n")
    return dest


def inventory_for(c, path: str, names: list[str]) -> I.Inventory:
    inv = I.Inventory(path=path)
    for name in names:
        inv.add(I.Node(name=name, url=c.node(name).url, identity=c.client_key,
                       known_hosts=c.known_hosts))
    I.save_inventory(inv)
    return inv


def node_paths(c, name: str) -> NodePaths:
    n = c.node(name)
    return NodePaths(state=n.state, run=n.run, cgroup_parent=n.cgroup_parent)


def prefix_of(c, name: str) -> str:
    return os.path.join(c.node(name).dir, "prefix")


def agent_info(c, name: str) -> dict:
    # one filesystem: the test reaches a node's agent socket directly
    with AgentClient(node_paths(c, name), timeout=10) as agent:
        return agent.call("agent.info")


def ssh(c, name: str, command: str, *, key: str | None = None, input: bytes = b"",
        timeout: float = 60) -> subprocess.CompletedProcess:
    if key:  # that key alone (no ssh_config, whose IdentityFile would be tried too)
        argv = ["ssh", "-F", "/dev/null", "-T", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={c.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-i", key, "-l", "root", c.node(name).address]
    else:
        argv = ["ssh", "-F", c.ssh_config, "-T", "-o", "BatchMode=yes", name]
    return subprocess.run([*argv, command], input=input, capture_output=True, timeout=timeout)


def agent_exchange(c, name: str, key: str, method: str, timeout: float = 30) -> list:
    """Over ``ssh -i key`` (asking for a command that is not dial-stdio): our hello and one
    request, then the events read until its response (stdin stays open meanwhile: the
    client's EOF is its leaving)."""
    conn = P.Connection(P.CLIENT)
    argv = ["ssh", "-F", "/dev/null", "-T", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={c.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-i", key, "-l", "root", c.node(name).address, "echo not a shell"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    events: list = []
    try:
        proc.stdin.write(conn.send_hello({"pid": os.getpid()}) + conn.send_request(1, method, {}))
        proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while not events or not isinstance(events[-1], (P.Response, P.ConnectionClosed)):
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no answer within {timeout} s; got {events}"
            conn.receive_data(os.read(proc.stdout.fileno(), 65536))
            while (ev := conn.next_event()) is not P.NEED_DATA:
                events.append(ev)
                if isinstance(ev, P.ConnectionClosed):
                    break
    finally:
        proc.stdin.close()
        proc.wait(timeout=timeout)
        proc.stdout.close()
        proc.stderr.close()
    return events


@pytest.fixture(scope="module")
def booted(shared_cluster, tmp_path_factory):
    """n1 (the manager) and n2 bootstrapped from a snapshot of this checkout."""
    c = shared_cluster
    tmp = tmp_path_factory.mktemp("bootstrap")
    src = snapshot_source(str(tmp / "src"))
    cache = str(tmp / "cache")
    inv = inventory_for(c, str(tmp / "nodes.yml"), ["n1", "n2"])
    lines: list[str] = []
    # the worker named first: the manager is done first all the same (its key is made there)
    results = B.bootstrap_nodes(inv, [inv.get("n2"), inv.get("n1")], echo=lines.append,
                                root=src, cache=cache)
    assert not [r for r in results.values() if isinstance(r, Exception)], results
    assert lines.index(next(x for x in lines if x.startswith("n1: manager key"))) < \
        lines.index(next(x for x in lines if x.startswith("n2: manager key authorized")))
    return c, inv, results, lines, tmp, cache


def test_bootstrap_installs_into_the_nodes_prefix_and_starts_its_agent(booted):
    c, inv, results, lines, _tmp, _cache = booted
    for name in ("n1", "n2"):
        prefix = prefix_of(c, name)
        assert os.access(os.path.join(prefix, "bin", "stackctl"), os.X_OK)
        with open(os.path.join(prefix, nodeside.BUILD_FILE)) as f:
            build = json.load(f)
        assert build["source_hash"] == results[name]["install"]["build"]["source_hash"]
        info = agent_info(c, name)
        assert info["pid"] == results[name]["agent"]["new"]["pid"]
        with open(f"/proc/{info['pid']}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert argv[0].decode().startswith(prefix + "/bin/python"), argv  # the venv's agent
        assert results[name]["probe"]["missing_packages"] == []  # the harness has them all
    # the wheel was built once and shipped to both nodes
    assert [line.split(":")[0].endswith("built") for line in lines if line.startswith("wheel ")] == [True]


def test_manager_key_reaches_the_agent_protocol_only(booted):
    c, inv, results, _lines, _tmp, _cache = booted
    key = results["n1"]["manager_key"]["key"]
    assert key == os.path.join(c.node("n1").state, nodeside.MANAGER_KEY_NAME)
    # a shell command asked with the manager's key runs the forced dial-stdio instead
    out = ssh(c, "n2", "sh -c id", key=key)
    assert b"uid=" not in out.stdout and b"uid=" not in out.stderr
    # and what it does run speaks the agent protocol: hello, then agent.info of n2's agent
    events = agent_exchange(c, "n2", key, "agent.info")
    assert isinstance(events[0], P.Hello), events
    assert isinstance(events[-1], P.Response), events
    assert events[-1].result["pid"] == agent_info(c, "n2")["pid"]
    # exactly one entry, forced and restricted, after bootstrapping twice (n2 again here)
    B.bootstrap_node(inv, inv.get("n2"), echo=lambda line: None, root=str(booted[4] / "src"),
                     cache=booted[5])
    with open(results["n2"]["manager_key"]["authorize"]["authorized_keys"]) as f:
        entries = [line for line in f if "stackctl-manager" in line]
    assert len(entries) == 1
    assert entries[0].startswith(f'command="{prefix_of(c, "n2")}/bin/stackctl agent dial-stdio",restrict ')
    # the manager trusts n2's host key, as the CLI's known_hosts has it
    with open(os.path.join(c.node("n1").state, "known_hosts")) as f:
        manager_known = f.read().split()
    with open(c.known_hosts) as f:
        n2_key = next(line for line in f if line.startswith(c.node("n2").address + " ")).split()[2]
    assert n2_key in manager_known


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it has stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_bootstrap_again_upgrades_and_no_container_stops(booted):
    c, inv, _results, _lines, tmp, cache = booted
    exe = os.path.join(prefix_of(c, "n2"), "bin", "stackctl")
    out = ssh(c, "n2", f"{exe} image build-busybox -q && "
                       f"{exe} run -d --name keep stackctl/busybox sleep 100000 && "
                       f"{exe} inspect -f '{{{{.State.Pid}}}}' keep", timeout=120)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[-1])
    before = agent_info(c, "n2")

    src2 = snapshot_source(str(tmp / "src2"), version="0.1.0.post7")
    result = B.bootstrap_node(inv, inv.get("n2"), echo=lambda line: None, root=src2, cache=cache)

    after = agent_info(c, "n2")
    assert result["agent"]["old"]["pid"] == before["pid"]
    assert after["pid"] != before["pid"] and after["version"] == "0.1.0.post7"
    # the old agent has stopped (on a loaded machine its exit may lag the new one's start)
    deadline = time.monotonic() + 15
    while _alive(before["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(before["pid"])
    out = ssh(c, "n2", f"{exe} inspect -f '{{{{.State.Pid}}}} {{{{.State.Status}}}}' keep")
    assert out.stdout.decode().split() == [str(pid), "running"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"100000"]
    assert ssh(c, "n2", f"{exe} --version").stdout.decode().strip() == "stackctl version 0.1.0.post7"
