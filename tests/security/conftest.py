"""The attack suite's node: one private node (state, run dir, cgroup parent) for the whole
session, with the base image and an ``attack`` image (busybox + a static C helper built from
``attack.c`` at test time), and a CLI runner. Everything is removed at the end, also when a
test fails: containers, networks, the DNS daemon, nft table, mounts and cgroups.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from stackctl.paths import NodePaths

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from kernel_cleanup import remove_cgroups, remove_networking, unmount_under  # noqa: E402

HERE = os.path.dirname(__file__)
ATTACK_IMAGE = "stackctl-test/attack:1"


class Node:
    def __init__(self, paths: NodePaths) -> None:
        self.paths = paths
        self.env = dict(os.environ, STACKCTL_STATE_DIR=paths.state, STACKCTL_RUN_DIR=paths.run,
                        STACKCTL_CGROUP_PARENT=paths.cgroup_parent, STACKCTL_WARM="0")

    def __call__(self, *args: str, timeout: float = 60, check: int | None = None, **kw):
        kw.setdefault("env", self.env)
        p = subprocess.run([sys.executable, "-m", "stackctl", *args], capture_output=True,
                           text=True, timeout=timeout, **kw)
        if check is not None:
            assert p.returncode == check, (args, p.returncode, p.stdout, p.stderr)
        return p

    def sh(self, script: str, *run_opts: str, image: str = ATTACK_IMAGE, timeout: float = 60):
        """``stackctl run --rm [run_opts] IMAGE sh -c SCRIPT`` (default options otherwise)."""
        return self("run", "--rm", *run_opts, image, "sh", "-c", script, timeout=timeout)


@pytest.fixture(scope="session")
def sec_node(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the attack suite needs root")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (scripts/setup installs gcc and libc6-dev)")
    base = tmp_path_factory.mktemp("secnode")
    paths = NodePaths(state=str(base / "state"), run=str(base / "run"),
                      cgroup_parent=f"stackctl-sec-{uuid.uuid4().hex[:8]}")
    node = Node(paths)
    try:
        ctx = base / "attack-ctx"
        ctx.mkdir()
        subprocess.run([cc, "-static", "-O1", "-o", str(ctx / "attack"), os.path.join(HERE, "attack.c")],
                       check=True, capture_output=True)
        (ctx / "Dockerfile").write_text("FROM stackctl/busybox\nCOPY attack /bin/attack\n")
        node("image", "build-busybox", check=0, timeout=120)
        node("image", "build", "-t", ATTACK_IMAGE, str(ctx), check=0, timeout=120)
        yield node
    finally:
        ids = node("ps", "-aq", "--no-trunc").stdout.split()
        if ids:
            node("rm", "-f", "-v", *ids)
        for net in node("network", "ls", "-q").stdout.split():
            node("network", "rm", net)
        remove_networking(paths)
        unmount_under(str(base))
        remove_cgroups(paths.cgroup_parent)


@pytest.fixture(scope="session")
def syscall_attempts(sec_node) -> dict[str, str]:
    """Every syscall-level attack of ``attack all``, tried once in one default container:
    name -> "blocked EPERM 1" or "ALLOWED". The ptrace and process_vm_readv targets are this
    test process (a host process)."""
    p = sec_node("run", "--rm", ATTACK_IMAGE, "attack", "all", str(os.getpid()), check=0)
    out = {}
    for line in p.stdout.splitlines():
        name, _, result = line.partition(" ")
        out[name] = result
    assert len(out) >= 40, p.stdout + p.stderr
    return out
