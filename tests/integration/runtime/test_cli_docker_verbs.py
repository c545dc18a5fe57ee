"""Docker's container verbs end to end, as root: commit, cp, diff, export, pause/unpause, port,
rename, update — each compared with what Docker documents (quoted per test). The containers
sit on the default bridge (``run`` without ``--network``); the node's networking goes with
the ``node_paths`` fixture."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
import time

import pytest

pytestmark = pytest.mark.root

IMG = "bb:latest"
LOOP = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]


@pytest.fixture
def cli(node_cli, node_paths, busybox_rootfs):
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore

    os.makedirs(os.path.join(busybox_rootfs, "www"), exist_ok=True)
    with open(os.path.join(busybox_rootfs, "www", "index.html"), "w") as f:
        f.write("hello\n")
    with open(os.path.join(busybox_rootfs, "etc", "motd"), "w") as f:
        f.write("original\n")
    import_rootfs(ImageStore(node_paths.images), busybox_rootfs, IMG, changes=['CMD ["sh"]'])
    return node_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _cgroup_file(paths, cid: str, controller: str, name: str) -> str:
    from stackctl.runtime.containers.cgroups import detect

    lay = detect.layout()
    base = lay["v1"][controller] if lay["version"] == 1 else lay["v2"]
    with open(os.path.join(base, paths.cgroup_parent, cid, name)) as f:
        return f.read().strip()


def test_commit_new_layer_in_history_and_runs_with_the_change(cli):
    # docs.docker.com/reference/cli/docker/container/commit: "It can be useful to commit a
    # container's file changes or settings into a new image"; `docker history` then lists the
    # new layer on top, CREATED BY the container's command, COMMENT the -m message.
    cli("run", "--name", "c1", IMG, "sh", "-c", "echo changed > /etc/motd; rm /www/index.html", check=0)
    before = cli("history", "-q", IMG, check=0).stdout.split()
    image_id = cli("commit", "-m", "motd changed", "-a", "tester", "-c", "ENV STAGE=two",
                   "-c", 'CMD ["cat", "/etc/motd"]', "c1", "bb:committed", check=0).stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    hist = cli("history", "--format", "json", "bb:committed", check=0).stdout.splitlines()
    top = json.loads(hist[0])
    assert len(hist) == len(before) + 1
    assert top["Comment"] == "motd changed" and "echo changed" in top["CreatedBy"]
    assert cli("run", "--rm", "bb:committed", check=0).stdout == "changed\n"  # the -c CMD
    p = cli("run", "--rm", "bb:committed", "sh", "-c", "echo $STAGE; ls /www", check=0)
    assert p.stdout == "two\n"  # ENV from -c; the deleted file stays deleted (a whiteout)
    assert cli("run", "--rm", IMG, "cat", "/etc/motd", check=0).stdout == "original\n"
    p = cli("commit", "-c", "RUN true", "c1")
    assert p.returncode == 1 and "RUN is not allowed" in p.stderr


def test_diff_lists_added_changed_deleted(cli):
    # docs.docker.com/reference/cli/docker/container/diff:
    #   "A  A file or directory was added / D  A file or directory was deleted /
    #    C  A file or directory was changed", e.g.
    #   C /run
    #   A /run/nginx.pid
    cli("run", "--name", "d1", IMG, "sh", "-c", "echo x >> /etc/motd; mkdir /new; touch /new/f; rm /bin/vi", check=0)
    lines = cli("diff", "d1", check=0).stdout.splitlines()
    assert lines == ["C /bin", "D /bin/vi", "C /etc", "C /etc/motd", "A /new", "A /new/f"]


def test_cp_both_directions_modes_owners_archives_and_symlinks(cli, tmp_path):
    # docs.docker.com/reference/cli/docker/container/cp: "SRC_PATH specifies a directory /
    # DEST_PATH does not exist: DEST_PATH is created as a directory and the contents of the
    # source directory are copied into this directory"; "Use '-' as the SRC_PATH to stream a
    # tar archive from STDIN"; "-a: Archive mode (copy all uid/gid information)"; without it
    # files are "created with the UID:GID of the root user"; "-L: Always follow symbol link".
    cli("run", "-d", "--name", "cp1", IMG, *LOOP, check=0)
    cli("exec", "cp1", "sh", "-c", "mkdir -p /srv/d; echo one > /srv/d/f; chmod 600 /srv/d/f; "
        "chown 7:8 /srv/d/f; ln -s /etc/motd /srv/link; ln -s ../../../../etc/motd /srv/up", check=0)
    dest = tmp_path / "out"
    cli("cp", "cp1:/srv/d", str(dest), check=0)
    st = os.stat(dest / "f")
    assert (dest / "f").read_text() == "one\n" and oct(st.st_mode & 0o777) == "0o600" and (st.st_uid, st.st_gid) == (7, 8)
    # a symlink is copied as a link; -L follows it — inside the container's root, never the host's
    cli("cp", "cp1:/srv/link", str(tmp_path / "link"), check=0)
    assert os.readlink(tmp_path / "link") == "/etc/motd"
    cli("cp", "-L", "cp1:/srv/up", str(tmp_path / "up"), check=0)
    assert (tmp_path / "up").read_text() == "original\n"
    # to stdout as a tar
    p = subprocess.run([*_stackctl(), "cp", "cp1:/srv/d", "-"], env=cli.env, capture_output=True, timeout=30)
    assert p.returncode == 0
    names = tarfile.open(fileobj=io.BytesIO(p.stdout)).getnames()
    assert names == ["d", "d/f"]
    # into the container: root-owned without -a, the owner kept with -a, mode always kept
    src = tmp_path / "in.txt"
    src.write_text("in\n")
    os.chmod(src, 0o640)
    os.chown(src, 1234, 55)
    cli("cp", str(src), "cp1:/srv/", check=0)
    cli("cp", "-a", str(src), "cp1:/srv/kept.txt", check=0)
    out = cli("exec", "cp1", "sh", "-c", "stat -c '%a %u:%g %n' /srv/in.txt /srv/kept.txt", check=0).stdout
    assert out.splitlines() == ["640 0:0 /srv/in.txt", "640 1234:55 /srv/kept.txt"]
    # a tar from stdin into a directory, also into a stopped container
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("fromtar/x")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"tar"))
    cli("stop", "-t", "1", "cp1", check=0)
    p = subprocess.run([*_stackctl(), "cp", "-", "cp1:/srv"], env=cli.env, input=buf.getvalue(), capture_output=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    cli("start", "cp1", check=0)
    assert cli("exec", "cp1", "cat", "/srv/fromtar/x", check=0).stdout == "tar"
    # a tar entry that climbs out is refused, and nothing lands on the host
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as tar:
        info = tarfile.TarInfo("../../../../tmp/escaped-by-cp")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    p = subprocess.run([*_stackctl(), "cp", "-", "cp1:/srv"], env=cli.env, input=bad.getvalue(), capture_output=True,
                       timeout=30)
    assert p.returncode == 1 and b"outside the destination" in p.stderr
    assert not os.path.exists("/tmp/escaped-by-cp")
    p = cli("cp", "cp1:/nonexistent", str(tmp_path / "x"))
    assert p.returncode == 1 and p.stderr.startswith("error: could not find the file /nonexistent")


def _stackctl():
    import sys

    return [sys.executable, "-m", "stackctl"]


def test_export_is_the_containers_filesystem(cli, tmp_path):
    # docs.docker.com/reference/cli/docker/container/export: "Export a container's filesystem
    # as a tar archive"; "docker export red_panda > latest.tar" or "-o latest.tar"; "does not
    # export the contents of volumes associated with the container".
    cli("run", "--name", "e1", "-v", "vol:/data", IMG, "sh", "-c", "echo exported > /etc/motd; echo v > /data/v", check=0)
    out = tmp_path / "e1.tar"
    cli("export", "-o", str(out), "e1", check=0)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert tar.extractfile("etc/motd").read() == b"exported\n"
    assert {"bin/busybox", "www/index.html", "etc/motd"} <= names
    assert "data/v" not in names
    p = subprocess.run([*_stackctl(), "export", "e1"], env=cli.env, capture_output=True, timeout=30)
    assert p.returncode == 0 and set(tarfile.open(fileobj=io.BytesIO(p.stdout)).getnames()) == names
    cli("rm", "-v", "e1", check=0)
    cli("volume", "rm", "vol", check=0)


def test_pause_unpause_freezes_the_cgroup(cli):
    # docs.docker.com/reference/cli/docker/container/pause: "suspends all processes in the
    # specified containers. On Linux, this uses the freezer cgroup"; `docker ps` shows
    # "Up 2 minutes (Paused)"; inspect: "State.Status": "paused", "Paused": true.
    cid = cli("run", "-d", "--name", "p1", IMG, "sh", "-c", "while true; do date +%s%N > /tmp/tick; sleep 0.05; done",
              check=0).stdout.strip()
    assert cli("pause", "p1", check=0).stdout == "p1\n"
    from stackctl.runtime.containers.cgroups import detect

    lay = detect.layout()
    if lay["version"] == 1:
        assert _cgroup_file(cli.paths, cid, "freezer", "freezer.state") == "FROZEN"
    else:
        assert "frozen 1" in _cgroup_file(cli.paths, cid, "", "cgroup.events")
    row = json.loads(cli("ps", "--format", "json", check=0).stdout)
    assert row["State"] == "paused" and row["Status"].endswith("(Paused)")
    state = json.loads(cli("inspect", "p1", check=0).stdout)[0]["State"]
    assert state["Status"] == "paused" and state["Paused"] is True and state["Running"] is True
    assert cli("ps", "-q", "--filter", "status=paused", check=0).stdout.strip() == cid[:12]
    p = cli("pause", "p1")
    assert p.returncode == 1 and "already paused" in p.stderr
    p = cli("exec", "p1", "true")
    assert p.returncode == 1 and "unpause the container before exec" in p.stderr
    cli("unpause", "p1", check=0)
    assert json.loads(cli("inspect", "p1", check=0).stdout)[0]["State"]["Status"] == "running"
    t1 = cli("exec", "p1", "cat", "/tmp/tick", check=0).stdout
    _wait(lambda: cli("exec", "p1", "cat", "/tmp/tick", check=0).stdout != t1)  # it runs again
    p = cli("unpause", "p1")
    assert p.returncode == 1 and "is not paused" in p.stderr
    # a paused container still stops (the signal lands once thawed), as Docker's stop
    cli("pause", "p1", check=0)
    cli("stop", "-t", "5", "p1", check=0)
    assert json.loads(cli("inspect", "p1", check=0).stdout)[0]["State"]["Status"] == "exited"


def test_port_lists_docker_lines(cli):
    # docs.docker.com/reference/cli/docker/container/port:
    #   $ docker port test
    #   7890/tcp -> 0.0.0.0:4321
    #   9876/tcp -> 0.0.0.0:1234
    #   $ docker port test 7890/tcp
    #   0.0.0.0:4321
    #   $ docker port test 7890/udp
    #   Error: No public port '7890/udp' published for test
    a, b = _free_port(), _free_port()
    cli("run", "-d", "--name", "test", "-p", f"{a}:7890", "-p", f"127.0.0.1:{b}:9876", IMG, *LOOP, check=0)
    assert cli("port", "test", check=0).stdout.splitlines() == [f"7890/tcp -> 0.0.0.0:{a}",
                                                                 f"9876/tcp -> 127.0.0.1:{b}"]
    assert cli("port", "test", "7890/tcp", check=0).stdout == f"0.0.0.0:{a}\n"
    assert cli("port", "test", "9876", check=0).stdout == f"127.0.0.1:{b}\n"
    p = cli("port", "test", "7890/udp")
    assert p.returncode == 1 and "no public port '7890/udp' published for test" in p.stderr


def test_rename_keeps_the_container_and_frees_the_name(cli):
    # docs.docker.com/reference/cli/docker/container/rename: "The docker rename command
    # renames a container" (`docker rename my_container my_new_container`, no output).
    cid = cli("run", "-d", "--name", "old", IMG, *LOOP, check=0).stdout.strip()
    cli("create", "--name", "other", IMG, "true", check=0)
    assert cli("rename", "old", "new", check=0).stdout == ""
    assert cli("inspect", "-f", "{{.Id}} {{.Name}}", "new", check=0).stdout.strip() == f"{cid} /new"
    assert cli("inspect", "old").returncode == 1
    assert "new" in cli("exec", "new", "cat", "/etc/hosts", check=0).stdout.split()
    p = cli("rename", "new", "other")
    assert p.returncode == 1 and 'the container name "/other" is already in use' in p.stderr
    p = cli("rename", "new", "new")
    assert p.returncode == 1 and "same name" in p.stderr
    cli("run", "-d", "--name", "old", IMG, *LOOP, check=0)  # the old name is free again


def test_update_writes_live_cgroup_limits(cli):
    # docs.docker.com/reference/cli/docker/container/update: "dynamically update container
    # configuration"; "docker update --cpu-shares 512 -m 300M abebf7571666 hopeful_morse"
    # prints each container given; "--pids-limit", "--memory-swap", "--restart".
    cid = cli("run", "-d", "--name", "u1", "-m", "64m", IMG, *LOOP, check=0).stdout.strip()
    assert cli("update", "--cpus", "0.5", "-m", "48m", "--memory-swap", "96m", "--pids-limit", "20",
               "--restart", "on-failure:3", "u1", check=0).stdout == "u1\n"
    from stackctl.runtime.containers.cgroups import detect

    if detect.layout()["version"] == 1:
        assert _cgroup_file(cli.paths, cid, "cpu", "cpu.cfs_quota_us") == "50000"
        assert _cgroup_file(cli.paths, cid, "memory", "memory.limit_in_bytes") == str(48 << 20)
        assert _cgroup_file(cli.paths, cid, "pids", "pids.max") == "20"
        if os.path.exists(f"/sys/fs/cgroup/memory/{cli.paths.cgroup_parent}/{cid}/memory.memsw.limit_in_bytes"):
            assert _cgroup_file(cli.paths, cid, "memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
    else:
        assert _cgroup_file(cli.paths, cid, "", "cpu.max") == "50000 100000"
        assert _cgroup_file(cli.paths, cid, "", "memory.max") == str(48 << 20)
        assert _cgroup_file(cli.paths, cid, "", "pids.max") == "20"
    hc = json.loads(cli("inspect", "u1", check=0).stdout)[0]["HostConfig"]
    assert hc["NanoCpus"] == 500_000_000 and hc["Memory"] == 48 << 20 and hc["PidsLimit"] == 20
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    # the pids limit holds at once: forking past it fails inside
    p = cli("exec", "u1", "sh", "-c", "for i in $(seq 40); do sleep 5 & done; wait")
    assert p.returncode != 0 and "fork" in (p.stderr + p.stdout).lower()
    # and after a restart (recorded, not only written into the cgroup)
    cli("restart", "-t", "1", "u1", check=0)
    hc = json.loads(cli("inspect", "u1", check=0).stdout)[0]["HostConfig"]
    assert hc["PidsLimit"] == 20
    p = cli("update", "-m", "1m", "u1")
    assert p.returncode == 1 and "minimum memory limit allowed is 6MB" in p.stderr
    p = cli("update", "u1")
    assert p.returncode == 2


def test_attach_streams_output_and_returns_the_exit_code(cli):
    # docs.docker.com/reference/cli/docker/container/attach: "Attach local standard input,
    # output, and error streams to a running container"; "--no-stdin", "--sig-proxy"; when
    # the container exits, attach returns its exit code.
    cli("run", "-d", "--name", "a1", IMG, "sh", "-c",
        "trap 'echo bye; exit 3' TERM; while true; do echo tick; sleep 0.1; done", check=0)
    proc = subprocess.Popen([*_stackctl(), "attach", "--no-stdin", "a1"], env=cli.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "tick\n"  # live output, not the log's past
        cli("stop", "-t", "5", "a1", check=0)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.rstrip().endswith("bye") and proc.returncode == 3, (out, err)
    p = cli("attach", "a1")
    assert p.returncode == 1 and "start it first" in p.stderr


def test_info_version_and_image_shortcuts(cli):
    # docs.docker.com/reference/cli/docker/system/info: "Containers: 14 / Running: 3 /
    # Paused: 1 / Stopped: 10 / Images: 52 / Server Version: …"; --format '{{json .}}'.
    cli("run", "-d", "--name", "i1", IMG, *LOOP, check=0)
    cli("create", "--name", "i2", IMG, "true", check=0)
    info = json.loads(cli("info", "--format", "{{json .}}", check=0).stdout)
    assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"], info["Images"]) == (2, 1, 1, 1)
    assert info["Driver"] == "overlay" and info["CgroupVersion"] in ("1", "2")
    text = cli("info", check=0).stdout
    assert " Containers: 2\n  Running: 1\n  Paused: 0\n  Stopped: 1\n Images: 1\n" in text
    assert cli("version", "-f", "{{.Client.Version}}", check=0).stdout.strip()
    # docker images / tag / rmi / history are `image ls / tag / rm / history`
    cli("tag", IMG, "bb:other", check=0)
    rows = cli("images", "--format", "{{.Repository}}:{{.Tag}}", check=0).stdout.split()
    assert sorted(rows) == ["bb:latest", "bb:other"]
    assert cli("rmi", "bb:other", check=0).stdout.strip() == "Untagged: bb:other"
    assert cli("history", "-q", IMG, check=0).stdout.strip()
