"""The execution core against the real kernel: namespaces, overlay, cgroups, monitor.

Each test starts containers through a fixture that calls ``cleanup_container`` for every one
of them, also when the test fails; ``node_paths`` then removes mounts and cgroups under the
test's own directories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from stackctl.runtime.spec import ContainerSpec, Mount, Resources

pytestmark = pytest.mark.root


@pytest.fixture
def run(node_paths, busybox_rootfs):
    from stackctl.runtime.containers import api

    started: list[str] = []

    def make(argv, **kw) -> ContainerSpec:
        kw.setdefault("env", ["PATH=/bin"])
        spec = ContainerSpec(id=uuid.uuid4().hex * 2, name=kw.pop("name", "t"), image="bb", image_id="sha256:x",
                             rootfs_layers=[busybox_rootfs], argv=argv, **kw)
        return spec

    def start(argv, attach=False, **kw):
        spec = make(argv, **kw)
        started.append(spec.id)
        return spec, api.start_container(node_paths, spec, attach=attach)

    start.make = make
    start.started = started
    yield start
    for cid in started:
        api.cleanup_container(node_paths, cid)


def log_lines(paths, cid):
    with open(os.path.join(paths.containers, cid, f"{cid}-json.log")) as f:
        return [json.loads(line) for line in f]


def output(paths, cid) -> str:
    return "".join(ln["log"] for ln in log_lines(paths, cid))


def host_mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(root)]


def cgroup_dirs(paths, cid):
    return [d for d in (f"/sys/fs/cgroup/{c}/{paths.cgroup_parent}/{cid}" for c in os.listdir("/sys/fs/cgroup")) if os.path.isdir(d)]


def test_pid1_hostname_and_root(node_paths, run, busybox_rootfs):
    from stackctl.runtime.containers import api

    spec, st = run(["sh", "-c", "echo $$; hostname; ls /"], hostname="box1")
    assert st.status == "running" and st.pid > 0
    final = api.wait_container(node_paths, spec.id, timeout=10)
    assert final.exit_code == 0 and final.status == "exited" and final.finished_at.endswith("Z")
    lines = output(node_paths, spec.id).split()
    assert lines[0] == "1" and lines[1] == "box1"
    assert set(os.listdir(busybox_rootfs)) <= set(lines[2:])
    # nothing left: no mount on the host, no cgroup, no monitor, no socket
    assert host_mounts_under(os.path.dirname(node_paths.state)) == []
    assert cgroup_dirs(node_paths, spec.id) == []
    assert not os.path.exists(f"/proc/{final.monitor_pid}") or open(f"/proc/{final.monitor_pid}/stat").read().split()[2] == "Z"
    assert not os.path.exists(os.path.join(node_paths.run, "containers", spec.id))


def test_memory_hog_is_oom_killed(node_paths, run):
    from stackctl.runtime.containers import api

    spec, _ = run(["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"], resources=Resources(memory=32 << 20))
    final = api.wait_container(node_paths, spec.id, timeout=30)
    assert final.oom_killed is True
    assert final.exit_code == 137


def test_limits_written_and_pids_enforced(node_paths, run):
    from stackctl.runtime.containers import api

    spec, _ = run(["sleep", "30"], resources=Resources(cpus=0.5, pids=8, memory=64 << 20))
    base = f"/sys/fs/cgroup/cpu/{node_paths.cgroup_parent}/{spec.id}"
    assert open(f"{base}/cpu.cfs_quota_us").read().strip() == "50000"
    assert open(f"/sys/fs/cgroup/pids/{node_paths.cgroup_parent}/{spec.id}/pids.max").read().strip() == "8"
    stats = api.container_stats(node_paths, spec.id)
    assert stats["memory_limit"] == 64 << 20 and stats["pids_limit"] == 8 and stats["pids_current"] == 1
    assert api.container_pids(node_paths, spec.id) == [api.read_state(node_paths, spec.id).pid]
    assert api.stop_container(node_paths, spec.id, timeout=0.2).exit_code == 137  # sleep as PID 1 ignores TERM

    spec2, _ = run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done"], resources=Resources(pids=8))
    final = api.wait_container(node_paths, spec2.id, timeout=20)
    assert final.exit_code != 0 and "can't fork" in output(node_paths, spec2.id)


def test_container_outlives_its_starter(node_paths, run, busybox_rootfs):
    from stackctl.runtime.containers import api

    spec = run.make(["sleep", "30"])
    run.started.append(spec.id)
    code = (
        "import sys, json; from stackctl.paths import NodePaths; from stackctl.runtime.spec import ContainerSpec;"
        "from stackctl.runtime.containers import api;"
        f"p = NodePaths({node_paths.state!r}, {node_paths.run!r}, {node_paths.cgroup_parent!r});"
        "s = ContainerSpec.from_json(json.loads(sys.stdin.read())); print(api.start_container(p, s).pid)"
    )
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(spec.to_json()), capture_output=True, text=True,
                         timeout=20, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    assert out.returncode == 0, out.stderr
    st = api.read_state(node_paths, spec.id)
    assert st.status == "running" and st.pid == int(out.stdout)
    assert os.path.exists(f"/proc/{st.pid}") and os.path.exists(f"/proc/{st.monitor_pid}")


def test_stop_uses_stop_signal_then_kill(node_paths, run):
    from stackctl.runtime.containers import api

    spec, _ = run(["sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.05; done"])
    time.sleep(0.1)
    assert api.stop_container(node_paths, spec.id, timeout=5).exit_code == 3
    spec2, _ = run(["sh", "-c", "trap '' TERM; while true; do sleep 0.05; done"])
    t = time.monotonic()
    final = api.stop_container(node_paths, spec2.id, timeout=0.5)
    assert final.exit_code == 137 and 0.4 < time.monotonic() - t < 5


def test_exec_joins_the_container(node_paths, run, tmp_path, capfd):
    from stackctl.runtime.containers import api
    from stackctl.runtime.containers.exec import ExecError, exec_in_container

    spec, st = run(["sleep", "30"], hostname="exechost")
    code = exec_in_container(node_paths, spec.id, ["sh", "-c", "hostname; cat /proc/1/comm; echo $$; grep CapEff /proc/self/status"])
    out = capfd.readouterr().out.split()
    assert code == 0 and out[0] == "exechost" and out[1] == "sleep" and int(out[2]) > 1
    assert out[4] == "00000000a80425fb"
    with pytest.raises(ExecError, match="executable file not found"):
        exec_in_container(node_paths, spec.id, ["nope"])
    api.stop_container(node_paths, spec.id, timeout=0.2)
    with pytest.raises(ExecError, match="not running"):
        exec_in_container(node_paths, spec.id, ["true"])


def test_isolation_defaults(node_paths, run):
    from stackctl.runtime.containers import api

    script = (
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
        "grep -E 'CapEff|NoNewPrivs|Seccomp:' /proc/self/status; "
        "touch /proc/sys/kernel/x 2>/dev/null && echo rw-sys || echo ro-sys; "
        "unshare -m true 2>/dev/null && echo unshare-ok || echo unshare-denied; "
        "ls /dev | tr '\\n' ' '"
    )
    spec, _ = run(["sh", "-c", script])
    assert api.wait_container(node_paths, spec.id, timeout=10).exit_code == 0
    out = output(node_paths, spec.id).split("\n")
    assert out[0].strip() == "0" and out[1].strip() == "0"
    assert "00000000a80425fb" in out[2] and out[3].split() == ["NoNewPrivs:", "1"] and out[4].split() == ["Seccomp:", "2"]
    assert out[5] == "ro-sys" and out[6] == "unshare-denied"
    assert set(out[7].split()) >= {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd", "stdin"}


def test_cap_drop_user_and_read_only(node_paths, run, tmp_path):
    from stackctl.runtime.containers import api

    vol = tmp_path / "vol"
    vol.mkdir()
    spec, _ = run(["sh", "-c", "grep CapEff /proc/self/status; id -u; touch /x 2>/dev/null || echo ro; echo v > /data/f; touch /scratch/y && echo tmp-ok"],
                  cap_drop=["ALL"], read_only=True,
                  mounts=[Mount(type="bind", source=str(vol), target="/data"), Mount(type="tmpfs", target="/scratch")])
    assert api.wait_container(node_paths, spec.id, timeout=10).exit_code == 0
    out = output(node_paths, spec.id).split("\n")
    assert out[0].split()[1] == "0000000000000000" and out[1] == "0" and out[2] == "ro" and out[3] == "tmp-ok"
    assert (vol / "f").read_text() == "v\n"
    spec2, _ = run(["id"], user="nobody")
    api.wait_container(node_paths, spec2.id, timeout=10)
    assert output(node_paths, spec2.id).startswith("uid=65534(nobody) gid=65534")


def test_failed_start_leaves_nothing(node_paths, run):
    from stackctl.runtime.containers import api

    with pytest.raises(api.ContainerStartError) as e:
        run(["nope"])
    assert 'exec: "nope": executable file not found in $PATH' in str(e.value)
    assert e.value.container_exit_code == 127
    cid = run.started[-1]
    st = api.read_state(node_paths, cid)
    assert st.status == "exited" and st.exit_code == 127
    assert cgroup_dirs(node_paths, cid) == []
    assert host_mounts_under(os.path.dirname(node_paths.state)) == []
    with pytest.raises(api.ContainerStartError, match="bind source path does not exist"):
        run(["true"], mounts=[Mount(type="bind", source="/nonexistent-src", target="/x")])


def test_attach_streams_and_tty(node_paths, run):
    from stackctl.runtime.containers import api, attach

    for tty in (False, True):
        spec, _ = run(["sh", "-c", "read x; echo got $x; tty; echo err >&2; exit 5"], attach=True, stdin_open=True, tty=tty)
        s = attach.connect(node_paths, spec.id)
        s.sendall(attach.encode(attach.STDIN, b"hello\n"))
        dec, frames = attach.FrameDecoder(), []
        while data := s.recv(65536):
            frames += dec.feed(data)
        s.close()
        text = b"".join(p for k, p in frames if k in (1, 2)).replace(b"\r", b"")
        assert b"got hello\n" in text and b"err\n" in text
        assert (b"/dev/pts/0" in text) == tty
        assert frames[-1] == (attach.EXIT, b"\0\0\0\x05")
        assert api.wait_container(node_paths, spec.id, timeout=10).exit_code == 5


def test_auto_remove_and_cleanup_is_idempotent(node_paths, run):
    from stackctl.runtime.containers import api

    spec, st = run(["true"], auto_remove=True)
    api.wait_container(node_paths, spec.id, timeout=10)
    assert not os.path.exists(os.path.join(node_paths.containers, spec.id))
    # its directory was set aside before the exit was told, and removed once the monitor ended
    assert os.listdir(os.path.join(node_paths.state, "removing")) == []
    spec2, st2 = run(["sleep", "30"])
    api.cleanup_container(node_paths, spec2.id)
    api.cleanup_container(node_paths, spec2.id)
    assert not os.path.exists(f"/proc/{st2.pid}/ns") and cgroup_dirs(node_paths, spec2.id) == []
    assert api.read_state(node_paths, spec2.id).status == "exited"


def _root_mount_options(pid: int) -> str:
    with open(f"/proc/{pid}/mountinfo") as f:
        return next(ln for ln in f if ln.split()[4] == "/")


def test_auto_remove_overlay_is_volatile(node_paths, run):
    """An --rm container's overlay is mounted volatile (no sync of the upper filesystem when the
    container's last process exits and the overlay goes); any other container's is not."""
    from stackctl.runtime.containers import api

    spec, st = run(["sleep", "30"], auto_remove=True)
    spec2, st2 = run(["sleep", "30"])
    try:
        assert "volatile" in _root_mount_options(st.pid)
        assert "volatile" not in _root_mount_options(st2.pid)
    finally:
        api.cleanup_container(node_paths, spec.id)
        api.cleanup_container(node_paths, spec2.id)


def test_volatile_overlay_mounts_again(tmp_path):
    """A volatile overlay leaves a mark in its work directory that makes the kernel refuse the
    same directories; mount_overlay clears it (a container started again)."""
    for d in ("lower", "upper", "work", "mnt"):
        (tmp_path / d).mkdir()
    code = (
        "import sys; from stackctl.runtime.containers import linux, rootfs\n"
        "linux.unshare(linux.CLONE_NEWNS); rootfs.make_private()\n"
        "t, lo, up, wo = sys.argv[1:5]\n"
        "for _ in range(2):\n"
        "    rootfs.mount_overlay(t, [lo], up, wo, rootfs.VOLATILE)\n"
        "    opts = [ln for ln in open('/proc/self/mountinfo') if ln.split()[4] == t][0]\n"
        "    assert 'volatile' in opts, opts\n"
        "    linux.umount2(t, 0)\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "mnt"), str(tmp_path / "lower"),
                        str(tmp_path / "upper"), str(tmp_path / "work")], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
                           os.path.dirname(os.path.abspath(__file__)))))))
    assert p.returncode == 0, p.stderr


def test_init_reaps_as_pid1(node_paths, run):
    from stackctl.runtime.containers import api, process

    if process.find_init() is None:
        pytest.skip("catatonit/tini not installed")
    spec, _ = run(["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$"], init=True)
    assert api.wait_container(node_paths, spec.id, timeout=10).exit_code == 0
    first, second = output(node_paths, spec.id).splitlines()[:2]
    assert first.startswith("/dev/init") and second != "1"


def test_oneshot_writes_into_upper(node_paths, busybox_rootfs, tmp_path):
    from stackctl.runtime.containers.oneshot import run_oneshot

    upper = tmp_path / "upper"
    r, w = os.pipe()
    code = run_oneshot(node_paths, lower_dirs=[busybox_rootfs], upper_dir=str(upper),
                       argv=["sh", "-c", "echo $$; echo built > /etc/made; exit 4"], env=["PATH=/bin"], stdout=w)
    os.close(w)
    assert code == 4 and os.read(r, 100) == b"1\n"
    assert (upper / "etc" / "made").read_text() == "built\n"
    assert not os.path.exists(str(upper) + ".work")
    assert run_oneshot(node_paths, lower_dirs=[busybox_rootfs], upper_dir=str(upper), argv=["nope"], env=[], stderr=os.open("/dev/null", os.O_WRONLY)) == 127


def test_oneshot_upper_is_a_plain_layer(node_paths, busybox_rootfs, tmp_path):
    """index/redirect_dir/metacopy off: renaming a lower dir or chowning a lower file leaves
    plain entries in the upper dir, never overlay redirect/metacopy xattrs."""
    from stackctl.runtime.containers.oneshot import run_oneshot

    os.makedirs(os.path.join(busybox_rootfs, "data", "d"))
    with open(os.path.join(busybox_rootfs, "data", "d", "f"), "w") as f:
        f.write("x\n")
    with open(os.path.join(busybox_rootfs, "data", "g"), "w") as f:
        f.write("y\n")
    upper = tmp_path / "upper"
    code = run_oneshot(node_paths, lower_dirs=[busybox_rootfs], upper_dir=str(upper),
                       argv=["sh", "-c", "mv /data/d /data/e && chown 1000 /data/g && cat /data/e/f"], env=["PATH=/bin"],
                       stdout=os.open("/dev/null", os.O_WRONLY))
    assert code == 0
    assert (upper / "data" / "e" / "f").read_text() == "x\n"
    assert os.stat(upper / "data" / "g").st_size == 2  # a full copy, not a metacopy stub
    for root, dirs, files in os.walk(upper):
        for name in dirs + files:
            p = os.path.join(root, name)
            bad = [x for x in os.listxattr(p, follow_symlinks=False)
                   if x in ("trusted.overlay.redirect", "trusted.overlay.metacopy")]
            assert bad == [], (p, bad)
