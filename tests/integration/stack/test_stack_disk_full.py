"""`up` through the agent when the state directory's disk is full: one clear line naming the
file, a running stack and its volume data untouched, and the same `up` works once there is
room again."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest
from stackenv import Node, wait_for

pytestmark = pytest.mark.root

DISK_FULL = "no space left on device while writing"

KEEP = """\
name: keep
services:
  db:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "echo precious > /data/f; exec sleep 1000"]
    stop_grace_period: 1s
    volumes: ["data:/data"]
volumes:
  data:
"""

GROW = """\
name: grow
services:
  web:
    image: stackctl/busybox:latest
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    deploy:
      replicas: 2
    volumes: ["cache:/cache"]
volumes:
  cache:
"""


@pytest.fixture
def small_node(node_paths, tmp_path):
    """A node whose state directory is a 48 MiB tmpfs (the busybox image is built into it);
    its stacks brought down, agent stopped and tmpfs unmounted afterwards."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", node_paths.state],
                   check=True)
    node = Node(node_paths, tmp_path)
    try:
        node.cli("image", "build-busybox", "-q", "-t", "stackctl/busybox:latest", timeout=120)
        yield node
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(node_paths.state, "filler"))
        for name in sorted(node.projects):
            node.cli("down", "-v", "-p", name, check=False, timeout=90)
        node.stop_agent()
        left = node.leftovers()
        mounts = [m for m in left.pop("mounts", []) if m != node_paths.state]  # the tmpfs: ours
        if mounts:
            left["mounts"] = mounts
        subprocess.run(["umount", "-l", node_paths.state], check=False)
        assert left == {}, left


def _fill(path: str) -> str:
    """Write a file in ``path`` until the disk is full; its name."""
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 64 << 10, 4 << 10, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def test_up_on_a_full_disk_says_so_and_loses_nothing(small_node):
    node = small_node
    keep = node.write_stack(KEEP, "keep.yml")
    node.up(keep, "-d", "--wait")
    db = node.running("keep", "db")
    assert len(db) == 1
    grow = node.write_stack(GROW, "grow.yml")

    filler = _fill(node.paths.state)
    try:
        p = node.up(grow, "-d", "--wait", check=False)
        errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
        assert p.returncode == 1, (p.stdout[-2000:], p.stderr[-2000:])
        assert "Traceback" not in p.stderr and len(errors) == 1, p.stderr[-3000:]
        assert DISK_FULL in errors[0] and node.paths.state in errors[0], errors
        # the running stack runs on, and the agent still answers
        assert [c["ID"] for c in node.running("keep", "db")] == [db[0]["ID"]]
        assert node.cli("agent", "status").returncode == 0
    finally:
        os.unlink(filler)
    # room again: the same `up` goes through, and the other stack's volume kept its data
    node.up(grow, "-d", "--wait")
    wait_for(lambda: len(node.running("grow", "web")) == 2, 30, "grow's replicas")
    assert node.cli("exec", "-f", keep, "db", "cat", "/data/f").stdout == "precious\n"
