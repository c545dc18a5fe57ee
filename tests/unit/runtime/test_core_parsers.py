"""Pure parts of the execution core: mountinfo/cgroup detection, passwd/group resolution,
capability sets, the seccomp BPF program, /etc files, ulimits, framing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stackctl.runtime.containers import attach, caps, etcfiles, process, rootfs, seccomp, users
from stackctl.runtime.containers.cgroups import detect
from stackctl.runtime.containers.monitor import LogWriter, to_json

FIX = Path(__file__).parents[2] / "fixtures" / "runtime"


# --- cgroup detection ---------------------------------------------------------------------

def test_detect_hybrid_uses_v1_controllers():
    lay = detect.layout_from_mountinfo((FIX / "mountinfo-hybrid-v1.txt").read_text())
    assert lay["version"] == 1
    assert lay["v1"]["memory"] == "/sys/fs/cgroup/memory"
    assert lay["v1"]["pids"] == "/sys/fs/cgroup/pids"
    assert lay["v2"] == "/sys/fs/cgroup/unified"


def test_detect_unified_v2():
    lay = detect.layout_from_mountinfo((FIX / "mountinfo-v2.txt").read_text())
    assert lay == {"version": 2, "v1": {}, "v2": "/sys/fs/cgroup"}


def test_detect_comounted_cpu_cpuacct():
    text = "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    lay = detect.layout_from_mountinfo(text)
    assert lay["v1"] == {"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}


def test_cgroup_parent_must_stay_relative():
    lay = {"version": 1, "v1": {"memory": "/x"}, "v2": None}
    for bad in ("", "/abs", "a/../../b"):
        with pytest.raises(detect.CgroupError):
            detect.open_cgroup(lay, bad, "id")


def test_v2_driver_on_a_fake_tree(tmp_path):
    from stackctl.runtime.containers.cgroups.v2 import V2Cgroup

    root = tmp_path
    (root / "stackctl").mkdir()
    (root / "stackctl" / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "stackctl" / "cgroup.subtree_control").write_text("")
    cg = V2Cgroup(str(root), "stackctl", "c1")
    cg.create({"memory": 32 << 20, "cpus": 1.5, "pids": 50, "memory_reservation": 1 << 20})
    d = root / "stackctl" / "c1"
    assert (d / "memory.max").read_text() == str(32 << 20)
    assert (d / "cpu.max").read_text() == "150000 100000"
    assert (d / "pids.max").read_text() == "50"
    assert (d / "memory.low").read_text() == str(1 << 20)
    assert (root / "stackctl" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.oom_kills() == 1
    assert cg.procs_files() == [str(d / "cgroup.procs")]


def test_v2_refuses_undelegated_controllers(tmp_path):
    from stackctl.runtime.containers.cgroups.v2 import V2Cgroup

    (tmp_path / "stackctl").mkdir()
    (tmp_path / "stackctl" / "cgroup.controllers").write_text("cpu\n")
    with pytest.raises(detect.CgroupError, match="memory"):
        V2Cgroup(str(tmp_path), "stackctl", "c1").create({"memory": 1 << 20})
    assert not (tmp_path / "stackctl" / "c1").exists()


# --- users --------------------------------------------------------------------------------

PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n"
GROUP = "root:x:0:\nwww:x:33:\nbob:x:1000:\nadm:x:4:bob,www\naudio:x:29:bob\n"


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("", (0, 0, (), "/root")),
        ("bob", (1000, 1000, (4, 29), "/home/bob")),
        ("1000", (1000, 1000, (4, 29), "/home/bob")),
        ("bob:www", (1000, 33, (), "/home/bob")),
        ("bob:4242", (1000, 4242, (), "/home/bob")),
        ("5000", (5000, 0, (), "/")),
        ("5000:5000", (5000, 5000, (), "/")),
        ("www:adm", (33, 4, (), "/var/www")),
    ],
)
def test_resolve_user(spec, expected):
    u = users.resolve_user(spec, PASSWD, GROUP)
    assert (u.uid, u.gid, u.groups, u.home) == expected


def test_resolve_user_errors():
    with pytest.raises(users.UserLookupError, match="unable to find user nobody"):
        users.resolve_user("nobody", PASSWD, GROUP)
    with pytest.raises(users.UserLookupError, match="unable to find group staff"):
        users.resolve_user("bob:staff", PASSWD, GROUP)
    assert users.resolve_user("0:0", None, None).uid == 0


# --- capabilities -------------------------------------------------------------------------

def test_default_caps_mask_is_dockers():
    assert caps.format_mask(caps.to_mask(caps.effective_set([], []))) == "00000000a80425fb"


def test_cap_add_drop_and_all():
    s = caps.effective_set(["net_admin"], ["CAP_CHOWN"])
    assert "NET_ADMIN" in s and "CHOWN" not in s
    assert caps.effective_set([], ["ALL"]) == frozenset()
    assert caps.effective_set(["KILL"], ["ALL"]) == frozenset({"KILL"})
    assert len(caps.effective_set(["ALL"], [])) == 41
    assert caps.effective_set([], [], privileged=True, last_cap=40) == frozenset(caps.CAPS)
    with pytest.raises(caps.CapabilityError):
        caps.effective_set(["NOPE"], [])


# --- seccomp ------------------------------------------------------------------------------

X86 = seccomp.AUDIT_ARCH["x86_64"]
NR = seccomp.SYSCALL_NUMBERS["x86_64"]
DENY = seccomp.RET_ERRNO | seccomp.EPERM


def test_seccomp_denies_the_dangerous_and_allows_the_rest():
    prog = seccomp.build_filter("x86_64", caps.effective_set([], []))
    for name in ("unshare", "mount", "keyctl", "bpf", "kexec_load", "pidfd_getfd", "setns", "init_module"):
        assert seccomp.evaluate(prog, arch=X86, nr=NR[name]) == DENY, name
    for nr in (0, 1, 2, 59, 60, 231):  # read write open execve exit exit_group
        assert seccomp.evaluate(prog, arch=X86, nr=nr) == seccomp.RET_ALLOW
    assert seccomp.evaluate(prog, arch=X86, nr=NR["clone"], args=(0x01200011,)) == seccomp.RET_ALLOW  # fork
    assert seccomp.evaluate(prog, arch=X86, nr=NR["clone"], args=(0x20000000 | 17,)) == DENY  # CLONE_NEWPID
    assert seccomp.evaluate(prog, arch=X86, nr=NR["clone3"]) == seccomp.RET_ERRNO | seccomp.ENOSYS
    assert seccomp.evaluate(prog, arch=0x40000003, nr=0) == DENY  # i386 compat
    assert seccomp.evaluate(prog, arch=X86, nr=0x40000000 | 1) == DENY  # x32


def test_seccomp_follows_capabilities():
    prog = seccomp.build_filter("x86_64", caps.effective_set(["SYS_PTRACE", "SYS_ADMIN"], []))
    assert seccomp.evaluate(prog, arch=X86, nr=NR["pidfd_getfd"]) == seccomp.RET_ALLOW
    assert seccomp.evaluate(prog, arch=X86, nr=NR["mount"]) == seccomp.RET_ALLOW
    assert seccomp.evaluate(prog, arch=X86, nr=NR["keyctl"]) == DENY


def test_seccomp_aarch64_builds():
    prog = seccomp.build_filter("aarch64", frozenset())
    arch = seccomp.AUDIT_ARCH["aarch64"]
    assert seccomp.evaluate(prog, arch=arch, nr=97) == DENY  # unshare
    assert seccomp.evaluate(prog, arch=arch, nr=63) == seccomp.RET_ALLOW  # read


# --- /etc files, ulimits, paths -------------------------------------------------------------

def test_hosts_and_resolv():
    hosts = etcfiles.hosts_file("web", ["db:10.0.0.2"], network="none")
    assert hosts.startswith("127.0.0.1\tlocalhost\n") and hosts.endswith("10.0.0.2\tdb\n")
    host_resolv = "nameserver 127.0.0.53\nsearch lan\noptions edns0\n"
    assert etcfiles.resolv_file(host_resolv, dns=[], dns_search=[], dns_options=[], network="none") == \
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch lan\noptions edns0\n"
    assert etcfiles.resolv_file(host_resolv, dns=["1.1.1.1"], dns_search=["x"], dns_options=[], network="none") == \
        "nameserver 1.1.1.1\nsearch x\noptions edns0\n"
    assert "127.0.0.53" in etcfiles.resolv_file(host_resolv, dns=[], dns_search=[], dns_options=[], network="host")


def test_clamp_ulimits():
    out, warns = process.clamp_ulimits({"nofile": (1048576, 1048576), "nproc": (100, 200)}, {"nofile": 20000, "nproc": -1})
    assert out == {"nofile": (20000, 20000), "nproc": (100, 200)}
    assert len(warns) == 1 and "20000" in warns[0]
    with pytest.raises(ValueError):
        process.clamp_ulimits({"bogus": (1, 1)}, {})


def test_secure_join_keeps_links_inside(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../etc", root / "rel")
    assert rootfs.secure_join(str(root), "/abs/hosts") == str(root / "etc" / "hosts")
    assert rootfs.secure_join(str(root), "/rel/hosts") == str(root / "etc" / "hosts")
    assert rootfs.secure_join(str(root), "../../x") == str(root / "x")


def test_overlay_options_order_and_long_paths():
    data, base = rootfs.overlay_options(["/l/a", "/l/b"], "/c/up", "/c/work")
    assert data == "lowerdir=/l/b:/l/a,upperdir=/c/up,workdir=/c/work" and base is None
    many = [f"/var/lib/stackctl/images/layers/{i:064d}" for i in range(40)]
    data, base = rootfs.overlay_options(many, "/var/lib/stackctl/c/up", "/var/lib/stackctl/c/work")
    assert base == "/var/lib/stackctl" and len(data) < 4000
    data, base = rootfs.overlay_options(many, "/var/lib/stackctl/c/up", "/var/lib/stackctl/c/work", "index=off")
    assert data.endswith(",workdir=c/work,index=off") and len(data) < 4000
    data, _ = rootfs.overlay_options(["/l/a"], "/c/up", "/c/work", "index=off,metacopy=off")
    assert data == "lowerdir=/l/a,upperdir=/c/up,workdir=/c/work,index=off,metacopy=off"


def test_plain_overlay_options_only_what_the_kernel_knows():
    assert rootfs.plain_overlay_options(["index", "metacopy", "redirect_dir", "xino_auto"]) == \
        "index=off,redirect_dir=off,metacopy=off"
    assert rootfs.plain_overlay_options(["redirect_dir"]) == "redirect_dir=off"
    assert rootfs.plain_overlay_options([]) == ""


def test_tmpfs_options():
    from stackctl.runtime.containers import linux

    flags, data = rootfs.parse_tmpfs_options(["size=1m", "mode=1777", "exec"], read_only=True)
    assert data == "size=1m,mode=1777"
    assert flags & linux.MS_RDONLY and not flags & linux.MS_NOEXEC and flags & linux.MS_NOSUID


def test_look_path_errors(tmp_path):
    with pytest.raises(process.ExecFailure) as e:
        process.look_path("nope", str(tmp_path))
    assert e.value.code == 127 and 'exec: "nope": executable file not found in $PATH' == e.value.message
    f = tmp_path / "notexec"
    f.write_text("x")
    f.chmod(0o644)
    if os.geteuid() != 0:
        with pytest.raises(process.ExecFailure) as e:
            process.look_path(str(f), "")
        assert e.value.code == 126


# --- monitor output -----------------------------------------------------------------------

def test_state_json_and_log_lines(tmp_path):
    data = {"a": 'q"\\\n\t\x01é', "b": None, "c": True, "d": 5}
    assert json.loads(to_json(data)) == data
    log = tmp_path / "x-json.log"
    w = LogWriter(str(log))
    w.feed("stdout", b"one\ntw")
    w.feed("stdout", b"o\n")
    w.feed("stderr", b"partial")
    w.flush()
    lines = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert [(ln["log"], ln["stream"]) for ln in lines] == [("one\n", "stdout"), ("two\n", "stdout"), ("partial", "stderr")]
    assert lines[0]["time"].endswith("Z") and "T" in lines[0]["time"]


def test_attach_framing():
    dec = attach.FrameDecoder()
    wire = attach.encode(attach.STDOUT, b"hi") + attach.encode_resize(24, 80) + attach.encode(attach.EXIT, b"\0\0\0\x89")
    assert dec.feed(wire[:5]) == []
    assert dec.feed(wire[5:]) == [(1, b"hi"), (3, b"\x00\x18\x00\x50"), (4, b"\0\0\0\x89")]
