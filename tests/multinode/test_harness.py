"""The one-machine cluster harness: what it makes, and that it removes all of it — after use,
and after failing half-way."""

from __future__ import annotations

import os
import subprocess

import pytest

from stackctl.cluster import demo
from stackctl.errors import ConflictError

pytestmark = pytest.mark.root


def _leftovers(c: demo.DemoCluster) -> dict[str, list[str]]:
    """Kernel objects and processes of cluster ``c`` that still exist (others' objects, made
    by tests running beside this one, are not looked at)."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    cgroups = []
    for base in ["/sys/fs/cgroup"] + [os.path.join("/sys/fs/cgroup", d)
                                      for d in os.listdir("/sys/fs/cgroup")]:
        if os.path.isdir(base):
            cgroups += [os.path.join(base, d) for d in os.listdir(base)
                        if d.startswith(f"stackctl-{c.name}-")]
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if c.dir in line]
    return {
        "netns": [n for n in netns.split() if n.startswith(f"stackctl-{c.name}-")],
        "links": [ln for ln in os.listdir("/sys/class/net")
                  if ln == c.bridge or ln.startswith(f"{c.bridge}n")],
        "cgroups": cgroups,
        "mounts": mounts,
        "processes": _processes_mentioning(c.dir),
        "files": [c.dir] if os.path.exists(c.dir) else [],
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
            # the node's agent starts on demand inside the node's namespaces
            info = subprocess.run(c.ssh_command(node.name, "stackctl agent serve"),
                                  capture_output=True, text=True, timeout=60)
            assert info.returncode == 0, info.stderr
        # a container on n1: its cgroups are the node's, its mounts stay in the node's own
        # mount namespace (none shows in ours)
        run = subprocess.run(c.ssh_command("n1", "stackctl image build-busybox -q && "
                                                 "stackctl run -d --name sleeper "
                                                 "stackctl/busybox sleep 1000"),
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        made = _leftovers(c)
        assert len(made["netns"]) == 2 and len(made["links"]) == 3 and made["processes"]
        assert any("stackctl-tharn-n1" in cg for cg in made["cgroups"])
        assert made["mounts"] == []
    finally:
        assert demo.down(c) == []
    assert _leftovers(c) == {k: [] for k in made}


def test_a_half_made_cluster_is_removed(tmp_path, monkeypatch):
    seen = []

    def broken(c):
        seen.append(c)
        assert _leftovers(c)["netns"]  # the nodes exist by now
        raise RuntimeError("injected failure after the nodes were made")

    monkeypatch.setattr(demo, "_write_ssh_config", broken)
    with pytest.raises(RuntimeError, match="injected"):
        demo.up(2, name="thalf", cluster_dir=str(tmp_path / "c"), warm=False)
    left = _leftovers(seen[0])
    assert left == {k: [] for k in left}


def test_a_taken_subnet_or_name_is_refused(make_cluster, tmp_path):
    c = make_cluster(1)
    with pytest.raises(ConflictError, match=f"bridge {c.bridge} exists"):
        demo.up(1, name="tother", cluster_dir=str(tmp_path / "o"), index=c.index)
    with pytest.raises(ConflictError, match=f"network namespace {c.nodes[0].netns} exists"):
        demo.up(1, name=c.name, cluster_dir=str(tmp_path / "p"))
    assert not os.path.exists(tmp_path / "o") and not os.path.exists(tmp_path / "p")
