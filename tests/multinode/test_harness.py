"""The one-machine cluster harness: what it makes, and that it removes all of it — after use,
and after failing half-way."""

from __future__ import annotations

import os
import subprocess

import pytest

from stackctl.cluster import demo
from stackctl.errors import ConflictError

pytestmark = pytest.mark.root


def _snapshot() -> dict[str, set[str]]:
    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout

    cgroups = set()
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if root.count("/") > 5:  # the top levels of each hierarchy are enough
            dirs[:] = []
        cgroups.update(os.path.join(root, d) for d in dirs if d.startswith("stackctl-t"))
    return {
        "netns": set(run("ip", "netns", "list").split()),
        "links": set(os.listdir("/sys/class/net")),
        "mounts": set(open("/proc/self/mountinfo").read().splitlines()),
        "cgroups": cgroups,
    }


def _processes_mentioning(text: str) -> list[str]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append(f"{pid}: {cmd}")
    return out


def test_nodes_are_reachable_with_their_own_paths_and_down_leaves_nothing(tmp_path):
    before = _snapshot()
    c = demo.up(2, name="tharn", cluster_dir=str(tmp_path / "c"), warm=False)
    try:
        assert c.subnet.startswith("10.213.") and os.path.exists(f"/sys/class/net/{c.bridge}")
        for node in c.nodes:
            out = subprocess.run(
                c.ssh_command(node.name, 'echo "$(hostname) $STACKCTL_STATE_DIR '
                                         '$STACKCTL_CGROUP_PARENT $STACKCTL_NODE_NAME"; '
                                         'command -v stackctl; ip -4 -o addr show eth0'),
                capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            lines = out.stdout.splitlines()
            assert lines[0] == f"{node.name} {node.state} {node.cgroup_parent} {node.name}"
            assert lines[1] == os.path.join(c.dir, "bin", "stackctl")
            assert f"inet {node.address}/24" in lines[2]
            # the node's agent starts on demand (dial-stdio) inside the node's namespaces
            info = subprocess.run(c.ssh_command(node.name, "stackctl agent serve"),
                                  capture_output=True, text=True, timeout=60)
            assert info.returncode == 0, info.stderr
        assert _processes_mentioning(c.dir), "the nodes' agents should run now"
    finally:
        assert demo.down(c) == []
    after = _snapshot()
    assert not os.path.exists(c.dir)
    assert _processes_mentioning(c.dir) == []
    for key in before:
        assert after[key] - before[key] == set(), key


def test_a_half_made_cluster_is_removed(tmp_path, monkeypatch):
    before = _snapshot()

    def broken(_c):
        raise RuntimeError("injected failure after the nodes were made")

    monkeypatch.setattr(demo, "_write_ssh_config", broken)
    with pytest.raises(RuntimeError, match="injected"):
        demo.up(2, name="thalf", cluster_dir=str(tmp_path / "c"), warm=False)
    after = _snapshot()
    assert not os.path.exists(tmp_path / "c")
    assert _processes_mentioning(str(tmp_path / "c")) == []
    for key in before:
        assert after[key] - before[key] == set(), key


def test_a_taken_subnet_or_name_is_refused(make_cluster, tmp_path):
    c = make_cluster(1)
    with pytest.raises(ConflictError, match=f"bridge {c.bridge} exists"):
        demo.up(1, name="tother", cluster_dir=str(tmp_path / "o"), index=c.index)
    with pytest.raises(ConflictError, match=f"network namespace {c.nodes[0].netns} exists"):
        demo.up(1, name=c.name, cluster_dir=str(tmp_path / "p"))
    assert not os.path.exists(tmp_path / "o") and not os.path.exists(tmp_path / "p")
