"""The container CLI end to end, as root: real namespaces, overlay, cgroups, monitor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.root

IMG = "bb:latest"


@pytest.fixture
def cli(node_cli_both, node_paths, busybox_rootfs):
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore

    os.makedirs(os.path.join(busybox_rootfs, "data"), exist_ok=True)
    with open(os.path.join(busybox_rootfs, "data", "seed"), "w") as f:
        f.write("seeded\n")
    import_rootfs(ImageStore(node_paths.images), busybox_rootfs, IMG, changes=['CMD ["sh"]'])
    return node_cli_both


def _leftovers(paths, cid):
    out = []
    with open("/proc/self/mountinfo") as f:
        out += [line for line in f if cid in line]
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        out += [os.path.join(root, d) for d in dirs if cid in d]
        if root.count("/") > 6:
            dirs[:] = []
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    out += [line for line in ps.splitlines() if cid in line]
    if os.path.exists(os.path.join(paths.containers, cid)):
        out.append(os.path.join(paths.containers, cid))
    return out


def test_run_rm_pid1_hostname_root(cli):
    p = cli("run", "--rm", IMG, "sh", "-c", "echo $$; hostname; ls /", check=0)
    lines = p.stdout.split()
    assert lines[0] == "1"
    assert len(lines[1]) == 12
    assert {"bin", "etc", "proc", "data"} <= set(lines[2:])
    assert cli("ps", "-aq").stdout == ""


def test_exit_codes_and_errors(cli):
    assert cli("run", "--rm", IMG, "sh", "-c", "exit 3").returncode == 3
    p = cli("run", "--rm", IMG, "nonexist")
    assert p.returncode == 127 and p.stderr.count("\n") == 1 and "nonexist" in p.stderr
    p = cli("run", "--rm", "nope:latest", "true")
    assert p.returncode == 125 and p.stderr.startswith("error: ") and "nope" in p.stderr
    p = cli("run", "--rm", "--mount", "type=bind,source=/no/such/src,target=/x", IMG, "true")
    assert p.returncode == 125 and "/no/such/src" in p.stderr
    cli("container", "create", "--name", "taken", IMG, "true", check=0)
    p = cli("run", "--name", "taken", IMG, "true")
    assert p.returncode == 125 and 'the container name "/taken" is already in use' in p.stderr
    p = cli("exec", "taken", "true")
    assert p.returncode == 1 and p.stderr.strip() == "error: container taken is not running"
    assert cli("ps", "-aq").stdout.count("\n") == 1  # only "taken": nothing half-made
    assert cli("volume", "ls", "-q").stdout == ""


def test_oom_kill_reported(cli):
    p = cli("run", "--name", "hog", "--memory", "32m", IMG, "sh", "-c", 'x=a; while true; do x="$x$x"; done', timeout=60)
    assert p.returncode == 137
    state = json.loads(cli("inspect", "hog", check=0).stdout)[0]["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137 and state["Status"] == "exited"


def test_named_volume_survives_rm(cli):
    p = cli("run", "--rm", "-v", "keep:/data", IMG, "sh", "-c", "cat /data/seed; echo mine > /data/f", check=0)
    assert p.stdout == "seeded\n"  # first mount of an empty volume copies the image's content
    p = cli("run", "--rm", "-v", "keep:/data", IMG, "cat", "/data/f", check=0)
    assert p.stdout == "mine\n"
    p = cli("volume", "rm", "keep", check=0)
    assert cli("volume", "ls", "-q").stdout == ""


def test_detached_lifecycle_and_no_leftovers(cli):
    cid = cli("run", "-d", "--name", "svc", IMG, "sh", "-c",
              'trap "echo bye; exit 0" TERM; echo hello; while true; do sleep 0.1; done', check=0).stdout.strip()
    assert len(cid) == 64
    table = cli("ps", check=0).stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert table[1].startswith(cid[:12]) and table[1].endswith("svc") and "Up " in table[1]
    rows = [json.loads(x) for x in cli("ps", "--format", "json", check=0).stdout.splitlines()]
    assert rows[0]["Names"] == "svc" and rows[0]["State"] == "running"
    top = cli("top", "svc", check=0).stdout.splitlines()
    assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"] and len(top) >= 2
    stats = cli("stats", "--no-stream", check=0).stdout.splitlines()
    assert stats[0].startswith("CONTAINER ID") and "svc" in stats[1]
    # logs -f follows until the container stops
    follower = subprocess.Popen([sys.executable, "-m", "stackctl", "logs", "-f", "svc"], env=cli.env,
                                stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    t0 = time.monotonic()
    cli("stop", "-t", "5", "svc", check=0)
    assert time.monotonic() - t0 < 4  # the trap ends it well within the grace period
    out, _ = follower.communicate(timeout=10)
    assert out == "hello\nbye\n" and follower.returncode == 0
    assert cli("inspect", "-f", "{{.State.ExitCode}}", "svc", check=0).stdout.strip() == "0"
    assert cli("wait", "svc", check=0).stdout.strip() == "0"
    cli("start", "svc", check=0)
    cli("rm", "-f", "svc", check=0)
    deadline = time.monotonic() + 5
    while _leftovers(cli.paths, cid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftovers(cli.paths, cid) == []


def test_stop_grace_period_then_kill(cli):
    cli("run", "-d", "--name", "stubborn", IMG, "sh", "-c", 'trap "" TERM; while true; do sleep 0.1; done', check=0)
    t0 = time.monotonic()
    cli("stop", "-t", "1", "stubborn", check=0)
    took = time.monotonic() - t0
    assert 0.9 < took < 5
    assert cli("inspect", "-f", "{{.State.ExitCode}}", "stubborn", check=0).stdout.strip() == "137"


def test_foreground_run_forwards_sigterm(cli):
    p = subprocess.Popen([sys.executable, "-m", "stackctl", "run", "--rm", IMG, "sh", "-c",
                          'trap "echo term; exit 42" TERM; echo ready; while true; do sleep 0.1; done'],
                         env=cli.env, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert out == "term\n" and p.returncode == 42
