"""A prepared start's setup child on cgroup v2, against a fake unified tree (no root): it joins
the container's cgroup before it has its configuration, and a configuration pipe closed
without data (a cancelled start) makes it report ``C`` and exit 0 without doing anything else."""

from __future__ import annotations

import os

from stackctl.runtime.containers import process
from stackctl.runtime.containers.cgroups import detect


def _fake_v2(root) -> dict:
    (root / "stackctl").mkdir()
    (root / "stackctl" / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "stackctl" / "cgroup.subtree_control").write_text("")
    return {"version": 2, "v1": {}, "v2": str(root)}


def _fork_setup_child(cfg_r: int, cfg_w: int, err_w: int, procs: list[str]) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os.close(cfg_w)
            process.setup_and_exec(cfg_r, err_w, None, None, cgroup_procs=procs)
        finally:
            os._exit(99)  # never reached: setup_and_exec execs or exits
    return pid


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    return data


def test_cancelled_setup_child_joined_the_v2_cgroup_first(tmp_path):
    cg = detect.open_cgroup(_fake_v2(tmp_path), "stackctl", "c1")
    assert cg.version == 2
    cg.create({"memory": 32 << 20})
    procs = cg.procs_files()
    assert procs == [str(tmp_path / "stackctl" / "c1" / "cgroup.procs")]
    (tmp_path / "stackctl" / "c1" / "cgroup.procs").write_text("")  # the kernel makes it with the directory
    cfg_r, cfg_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = _fork_setup_child(cfg_r, cfg_w, err_w, procs)
    os.close(cfg_r)
    os.close(err_w)
    os.close(cfg_w)  # cancel: no configuration ever comes
    assert _read_all(err_r) == b"C"
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    # the join ("0" = the writer itself) happened although no configuration came
    assert (tmp_path / "stackctl" / "c1" / "cgroup.procs").read_text() == "0"


def test_setup_child_reports_a_cgroup_it_cannot_join(tmp_path):
    cg = detect.open_cgroup(_fake_v2(tmp_path), "stackctl", "c1")
    # not created: the launcher's cg.create failed or the cgroup was removed meanwhile
    cfg_r, cfg_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = _fork_setup_child(cfg_r, cfg_w, err_w, cg.procs_files())
    os.close(cfg_r)
    os.close(err_w)
    try:
        msg = _read_all(err_r)  # it fails before reading the configuration: no need to send one
    finally:
        os.close(cfg_w)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 125
    assert msg.startswith(b"E125\n") and b"c1/cgroup.procs" in msg
