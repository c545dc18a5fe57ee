"""Renaming a container's cgroup with its processes in it (what claiming a pool slot does)."""

from __future__ import annotations

import os
import subprocess

import pytest

from stackctl.runtime.containers.cgroups import detect
from stackctl.runtime.containers.cgroups.detect import CgroupError

pytestmark = pytest.mark.root


def test_rename_keeps_the_processes_and_takes_limits(node_paths):
    lay = detect.layout()
    cg = detect.open_cgroup(lay, node_paths.cgroup_parent, "pool-test")
    cg.create({"privileged": False})
    p = subprocess.Popen(["sleep", "30"])
    try:
        for f in cg.procs_files():
            with open(f, "w") as fh:
                fh.write(str(p.pid))
        old_dirs = set(cg.dirs.values())
        if lay["version"] == 2:  # cgroup2 has no rename: the caller starts the ordinary way
            with pytest.raises(CgroupError):
                cg.rename("c" * 64)
            return
        cg.rename("c" * 64)
        assert cg.id == "c" * 64
        assert not any(os.path.exists(d) for d in old_dirs)
        assert p.pid in cg.pids()
        assert all(os.path.basename(d) == "c" * 64 for d in cg.dirs.values())
        cg.set_limits({"memory": 64 << 20, "pids": 10})
        assert detect.open_cgroup(lay, node_paths.cgroup_parent, "c" * 64).stats()["memory_limit"] == 64 << 20
        assert cg.stats()["pids_limit"] == 10
    finally:
        p.kill()
        p.wait()
        cg.kill_all()
        cg.remove()
    assert not cg.exists()


def test_a_failed_rename_changes_nothing(node_paths):
    lay = detect.layout()
    if lay["version"] != 1:
        pytest.skip("cgroup v1 only")
    a = detect.open_cgroup(lay, node_paths.cgroup_parent, "a")
    b = detect.open_cgroup(lay, node_paths.cgroup_parent, "b")
    a.create({})
    # "b" exists in one hierarchy only: renaming "a" there fails after others succeeded
    last = sorted(set(b.dirs.values()))[-1]
    os.makedirs(last)
    try:
        with pytest.raises(CgroupError):
            a.rename("b")
        assert all(os.path.isdir(d) for d in set(a.dirs.values()))
        assert a.id == "a"
    finally:
        a.remove()
        os.rmdir(last)
