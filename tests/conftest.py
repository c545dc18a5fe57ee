"""Shared fixtures.

Tests marked ``root`` need root and a kernel that allows namespaces, overlayfs and cgroups;
they skip themselves otherwise. Every fixture that makes a kernel object removes it again in
its teardown, also when the test fails.
"""

from __future__ import annotations

import os
import shutil
import sys
import subprocess
import uuid

import pytest

from stackctl.paths import NodePaths

sys.path.insert(0, os.path.dirname(__file__))
from kernel_cleanup import (kill_processes_mentioning, remove_cgroups,  # noqa: E402
                            remove_networking, unmount_under)


def _can_run_root_tests() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/proc/self/ns/pid"):
        return "needs namespaces"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """``async def`` tests run under ``trio.run`` (no pytest-trio needed)."""
    import functools
    import inspect

    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    import trio

    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    trio.run(functools.partial(pyfuncitem.obj, **kwargs))
    return True


def pytest_collection_modifyitems(config, items):
    reason = _can_run_root_tests()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def node_paths(tmp_path) -> NodePaths:
    """A private state dir, run dir and cgroup parent for one test.

    The cgroup parent is unique per test (``stackctl-test-<hex>``) and removed afterwards
    together with anything below it, on v1 and v2.
    """
    state = tmp_path / "state"
    run = tmp_path / "run"
    state.mkdir()
    run.mkdir()
    paths = NodePaths(state=str(state), run=str(run), cgroup_parent=f"stackctl-test-{uuid.uuid4().hex[:8]}")
    try:
        yield paths
    finally:
        # each step runs even if one before it failed: a test's node leaves nothing behind
        try:
            # its daemons (agent, DNS server, warm server) end with the test, whatever the
            # test's own teardown managed
            kill_processes_mentioning(str(state))
        finally:
            try:
                remove_networking(paths)
            finally:
                try:
                    unmount_under(str(tmp_path))
                finally:
                    remove_cgroups(paths.cgroup_parent)


@pytest.fixture
def busybox_rootfs(tmp_path) -> str:
    """A minimal root filesystem: Debian's static busybox and its applet links."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("busybox-static is not installed (scripts/setup installs it)")
    root = tmp_path / "rootfs"
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "var"):
        (root / d).mkdir(parents=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for name in applets:
        if name != "busybox":
            os.symlink("busybox", root / "bin" / name)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return str(root)


def _kernel_leftovers() -> set[str]:
    """Our bridges/links in the host's netns and our nft tables (cheap: a directory listing
    and one `nft list tables`)."""
    import subprocess

    links = {f"link {n}" for n in os.listdir("/sys/class/net") if n.startswith("stk")}
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return links | {f"nft {t.split()[-1]}" for t in tables.splitlines() if "stackctl" in t}


@pytest.fixture(autouse=True)
def _report_kernel_leftovers(request):
    """``STACKCTL_TEST_LEAKS=1``: name every test after which a link or nft table of ours is
    left in the host's netns that was not there before it (what leaked it). Off by default:
    another session's agent may make some meanwhile."""
    if not os.environ.get("STACKCTL_TEST_LEAKS") or os.geteuid() != 0:
        yield
        return
    before = _kernel_leftovers()
    yield
    new = _kernel_leftovers() - before
    if new:
        with open(os.environ.get("STACKCTL_TEST_LEAKS_LOG", "/tmp/stackctl-test-leaks.log"), "a") as f:
            f.write(f"{request.node.nodeid}: {' '.join(sorted(new))}\n")
