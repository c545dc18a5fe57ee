"""The pure parts of Docker's container verbs: diff from an upper dir, port lines, update
checks, restart policies, commit's image config, cp's placement rules over a plain directory
standing for a container root, and the cgroup drivers' freeze/update on fake cgroup trees."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from stackctl.errors import StackctlError
from stackctl.runtime import container_fs as fs
from stackctl.runtime import container_ops as ops
from stackctl.runtime.records import Record
from stackctl.runtime.spec import ContainerSpec, ContainerState, Resources


def _rec(meta=None, status="running", name="web") -> Record:
    spec = ContainerSpec(id="a" * 64, name=name, image="bb", image_id="sha256:x", rootfs_layers=[], argv=["sh"])
    return Record(spec, meta or {}, ContainerState(status=status))


# --- diff ------------------------------------------------------------------------------------

def test_diff_changes_added_changed_and_opaque(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "motd").write_text("x")
    (upper / "new").mkdir()
    (upper / "new" / "f").write_text("y")
    lower = {"/etc", "/etc/motd", "/bin"}
    assert fs.diff_changes(str(upper), lambda p: p in lower) == [
        ("C", "/etc"), ("C", "/etc/motd"), ("A", "/new"), ("A", "/new/f")]


@pytest.mark.skipif(os.geteuid() != 0, reason="a whiteout is a char device: mknod needs root")
def test_diff_changes_whiteout_is_a_deletion(tmp_path):
    import stat

    upper = tmp_path / "upper"
    (upper / "bin").mkdir(parents=True)
    os.mknod(upper / "bin" / "vi", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    assert fs.diff_changes(str(upper), lambda p: True) == [("C", "/bin"), ("D", "/bin/vi")]


def test_hide_mount_points_drops_runtime_placeholders_only():
    changes = [("C", "/data"), ("A", "/data/x"), ("C", "/etc"), ("A", "/etc/hosts"), ("A", "/etc/resolv.conf"),
               ("C", "/tmp"), ("A", "/tmp/f"), ("A", "/vol")]
    assert fs.hide_mount_points(changes, {"/etc/hosts", "/etc/resolv.conf", "/vol"}) == [
        ("C", "/data"), ("A", "/data/x"), ("C", "/tmp"), ("A", "/tmp/f")]
    # a directory changed beside a placeholder stays
    assert fs.hide_mount_points([("C", "/etc"), ("A", "/etc/hosts"), ("C", "/etc/passwd")], {"/etc/hosts"}) == [
        ("C", "/etc"), ("C", "/etc/passwd")]


def test_layers_have_honours_whiteouts_and_opaque_dirs(tmp_path):
    low, top = tmp_path / "l0", tmp_path / "l1"
    (low / "a").mkdir(parents=True)
    (low / "a" / "f").write_text("")
    (top / "b").mkdir(parents=True)
    have = fs.layers_have([str(low), str(top)])
    assert have("/a/f") and have("/b") and not have("/c")


# --- port ------------------------------------------------------------------------------------

def test_port_lines_docker_shapes():
    ports = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": [{"HostIp": "", "HostPort": "5353"}],
             "443/tcp": None}
    rec = _rec({"NetworkSettings": {"Ports": ports}})
    assert ops.port_lines(rec) == ["53/udp -> 0.0.0.0:5353", "80/tcp -> 0.0.0.0:8080"]
    assert ops.port_lines(rec, "80") == ["0.0.0.0:8080"]
    assert ops.port_lines(rec, "53/udp") == ["0.0.0.0:5353"]
    with pytest.raises(StackctlError, match="no public port '443/tcp' published for web"):
        ops.port_lines(rec, "443/tcp")
    assert ops.port_lines(_rec({"NetworkSettings": {"Ports": ports}}, status="exited")) == []


# --- update ----------------------------------------------------------------------------------

def test_plan_update_values_and_docker_refusals():
    r = Resources(memory=64 << 20)
    plan = ops.plan_update(r, ops.Update(cpus=0.5, pids=-1, memory=32 << 20), auto_remove=False, host_cpus=2)
    assert plan["resources"] == {"memory": 32 << 20, "cpus": 0.5, "pids": None}
    assert plan["cgroup"] == {"memory": 32 << 20, "cpus": 0.5, "pids": -1}
    assert ops.plan_update(r, ops.Update(cpus=0), auto_remove=False, host_cpus=2)["cgroup"] == {"cpus": -1}
    with pytest.raises(StackctlError, match="minimum memory limit allowed is 6MB"):
        ops.plan_update(r, ops.Update(memory=1 << 20), auto_remove=False, host_cpus=2)
    with pytest.raises(StackctlError, match="range of CPUs is from 0.01 to 2.00"):
        ops.plan_update(r, ops.Update(cpus=3), auto_remove=False, host_cpus=2)
    with pytest.raises(StackctlError, match="larger than memory limit"):
        ops.plan_update(r, ops.Update(memory_swap=32 << 20), auto_remove=False, host_cpus=2)
    swapped = Resources(memory=64 << 20, memory_swap=128 << 20)
    with pytest.raises(StackctlError, match="smaller than already set memoryswap"):
        ops.plan_update(swapped, ops.Update(memory=256 << 20), auto_remove=False, host_cpus=2)
    with pytest.raises(StackctlError, match="AutoRemove"):
        ops.plan_update(r, ops.Update(restart="always"), auto_remove=True, host_cpus=2)
    assert ops.Update().empty() and not ops.Update(pids=1).empty()


def test_parse_restart():
    assert ops.parse_restart("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert ops.parse_restart("unless-stopped") == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    for bad in ("sometimes", "always:3", ""):
        with pytest.raises(StackctlError, match="invalid restart policy"):
            ops.parse_restart(bad)


# --- commit ----------------------------------------------------------------------------------

def test_commit_config_container_settings_then_changes():
    image = {"config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": ["sha256:a"]},
             "history": [{"created_by": "COPY"}]}
    cfg = fs.commit_config(image, {"Env": ["PATH=/bin", "X=1"], "Cmd": ["httpd"], "Labels": {}},
                           ['ENV Y=2', 'CMD ["cat", "/f"]'], author="me", comment="msg", created="T",
                           created_by="httpd", diff_id="sha256:b")
    assert cfg["config"]["Env"] == ["PATH=/bin", "X=1", "Y=2"] and cfg["config"]["Cmd"] == ["cat", "/f"]
    assert cfg["rootfs"]["diff_ids"] == ["sha256:a", "sha256:b"] and cfg["author"] == "me"
    assert cfg["history"][-1] == {"created": "T", "created_by": "httpd", "comment": "msg", "author": "me"}
    assert image["rootfs"]["diff_ids"] == ["sha256:a"]  # not changed in place
    with pytest.raises(StackctlError, match="RUN is not allowed"):
        fs.commit_config(image, {}, ["RUN true"], author="", comment="", created="T", created_by="", diff_id="x")


# --- cp --------------------------------------------------------------------------------------

def _tar(entries) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.uid, info.gid = os.getuid(), os.getgid()
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "dir").mkdir(parents=True)
    (r / "file").write_text("old")
    os.symlink("/dir", r / "abs-link")  # absolute: means the root's /dir, never the host's
    fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
    yield r, fd
    os.close(fd)


def test_cp_places_like_docker(root):
    r, fd = root
    fs.extract_archive(_tar([("f", b"1")]), fd, "/dir", keep_owner=True)  # into an existing dir
    assert (r / "dir" / "f").read_text() == "1" and oct((r / "dir" / "f").stat().st_mode & 0o777) == "0o640"
    fs.extract_archive(_tar([("f", b"2")]), fd, "/renamed", keep_owner=True)  # as DEST itself
    assert (r / "renamed").read_text() == "2"
    fs.extract_archive(_tar([("f", b"3")]), fd, "/file", keep_owner=True)  # over a file
    assert (r / "file").read_text() == "3"
    fs.extract_archive(_tar([("d", None), ("d/x", b"4")]), fd, "/newdir", keep_owner=True)
    assert (r / "newdir" / "x").read_text() == "4"
    fs.extract_archive(_tar([("g", b"5")]), fd, "/abs-link", keep_owner=True)  # the link is followed in the root
    assert (r / "dir" / "g").read_text() == "5"
    with pytest.raises(StackctlError, match="cannot copy a directory to a file"):
        fs.extract_archive(_tar([("d", None)]), fd, "/file", keep_owner=True)
    with pytest.raises(StackctlError, match="must exist"):
        fs.extract_archive(_tar([("f", b"6")]), fd, "/nodir/", keep_owner=True)
    with pytest.raises(StackctlError, match="outside the destination"):
        fs.extract_archive(_tar([("../evil", b"7")]), fd, "/dir", keep_owner=True, place=False)
    with pytest.raises(StackctlError, match="must be a directory"):
        fs.extract_archive(_tar([("f", b"8")]), fd, "/file", keep_owner=True, place=False)


def test_write_archive_names_and_scoped_links(root):
    r, fd = root
    (r / "dir" / "a").write_text("a")
    out = io.BytesIO()
    fs.write_archive(fd, "/abs-link", out, follow=True)
    assert tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames() == ["abs-link", "abs-link/a"]
    out = io.BytesIO()
    fs.write_archive(fd, "/dir", out, contents_only=True)
    assert tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames() == [".", "a"]
    with pytest.raises(StackctlError, match="could not find the file /nope"):
        fs.write_archive(fd, "/nope", io.BytesIO())


def test_cp_argument_split():
    from stackctl.cli.container_extra_cmd import _split_container_path as split

    assert split("web:/etc") == ("web", "/etc") and split("web:") == ("web", "")
    assert split("/tmp/a:b") is None and split("./x:y") is None and split("-") is None and split("plain") is None


# --- cgroup drivers on fake trees ---------------------------------------------------------

def test_v2_freeze_thaw_and_update(tmp_path):
    from stackctl.runtime.containers.cgroups.v2 import V2Cgroup

    (tmp_path / "p" / "c").mkdir(parents=True)
    (tmp_path / "p" / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "p" / "cgroup.subtree_control").write_text("cpu memory pids\n")
    d = tmp_path / "p" / "c"
    (d / "cgroup.events").write_text("populated 1\nfrozen 1\n")  # the kernel's answer to the freeze
    (d / "memory.swap.max").write_text("max\n")
    cg = V2Cgroup(str(tmp_path), "p", "c")
    cg.freeze(timeout=1)
    assert (d / "cgroup.freeze").read_text() == "1" and cg.frozen()
    cg.thaw()
    assert (d / "cgroup.freeze").read_text() == "0"
    cg.update({"memory": 64 << 20, "memory_swap": 96 << 20, "cpus": 0.5, "pids": 10})
    assert (d / "memory.max").read_text() == str(64 << 20)
    assert (d / "memory.swap.max").read_text() == str(32 << 20)
    assert (d / "cpu.max").read_text() == "50000 100000" and (d / "pids.max").read_text() == "10"
    cg.update({"cpus": -1, "pids": -1})
    assert (d / "cpu.max").read_text() == "max 100000" and (d / "pids.max").read_text() == "max"


def test_v2_freeze_times_out_with_the_file_named(tmp_path):
    from stackctl.runtime.containers.cgroups.detect import CgroupError
    from stackctl.runtime.containers.cgroups.v2 import V2Cgroup

    d = tmp_path / "p" / "c"
    d.mkdir(parents=True)
    (d / "cgroup.events").write_text("frozen 0\n")
    with pytest.raises(CgroupError, match="did not freeze"):
        V2Cgroup(str(tmp_path), "p", "c").freeze(timeout=0.05)


def test_v1_freeze_and_update(tmp_path):
    from stackctl.runtime.containers.cgroups.v1 import V1Cgroup

    mounts = {c: str(tmp_path / c) for c in ("memory", "cpu", "pids", "freezer")}
    for c in mounts:
        (tmp_path / c / "p" / "c").mkdir(parents=True)
    mem = tmp_path / "memory" / "p" / "c"
    (mem / "memory.memsw.limit_in_bytes").write_text(str(64 << 20))
    (tmp_path / "freezer" / "p" / "c" / "freezer.state").write_text("THAWED\n")
    cg = V1Cgroup(mounts, "p", "c")
    assert not cg.frozen()
    cg.update({"memory": 128 << 20, "memory_swap": 256 << 20, "cpus": 1.5, "pids": 7})
    assert (mem / "memory.limit_in_bytes").read_text() == str(128 << 20)
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == str(256 << 20)
    assert (tmp_path / "cpu" / "p" / "c" / "cpu.cfs_quota_us").read_text() == "150000"
    assert (tmp_path / "pids" / "p" / "c" / "pids.max").read_text() == "7"
    cg.thaw()
    assert (tmp_path / "freezer" / "p" / "c" / "freezer.state").read_text() == "THAWED"
