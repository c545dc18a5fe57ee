"""The warm path end to end, as root: a real warm server, its pool of prepared starts, and
`stackctl run` clients that hand their commands to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.root

IMG = "bb:latest"


def _pool_cgroups(paths) -> list[str]:
    out = []
    for ctrl in os.listdir("/sys/fs/cgroup"):
        top = os.path.join("/sys/fs/cgroup", ctrl, paths.cgroup_parent)
        if os.path.isdir(top):
            out += [os.path.join(top, d) for d in os.listdir(top) if d.startswith("pool-")]
    return out


def _processes_of(paths) -> list[str]:
    """Processes whose command line names this node's directories (server, workers, slots)."""
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if paths.run in line and "ps -eo" not in line]


def _wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def warm(node_cli, node_paths, busybox_rootfs):
    """A warm server for the test node (pool of 2), stopped in teardown; afterwards no slot,
    worker or pool cgroup of it may remain."""
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore

    import_rootfs(ImageStore(node_paths.images), busybox_rootfs, IMG)
    log = open(os.path.join(node_paths.state, "warm.log"), "ab")
    server = subprocess.Popen([sys.executable, "-m", "stackctl.warm.server", node_paths.state, node_paths.run,
                               node_paths.cgroup_parent], stdout=log, stderr=log, env=dict(node_cli.env, STACKCTL_WARM_POOL="2"))
    node_cli.server = server
    try:
        _wait_for(lambda: os.path.exists(os.path.join(node_paths.run, "warm.sock")), what="the warm socket")
        _wait_for(lambda: len({os.path.basename(d) for d in _pool_cgroups(node_paths)}) == 2, what="the pool")
        yield node_cli
    finally:
        for s in {server, node_cli.server}:  # a test may have replaced it
            if s.poll() is None:
                s.terminate()
                s.wait(timeout=10)
        log.close()
        # the slots remove themselves once their holder is gone
        _wait_for(lambda: not _pool_cgroups(node_paths), what="the pool's cgroups to go")
        _wait_for(lambda: not [p for p in _processes_of(node_paths) if "warm.server" in p],
                  what="the server's processes to go")


def _traced(cli, *args, env=None, **kw):
    trace = os.path.join(cli.paths.state, f"trace-{time.monotonic_ns()}")
    p = cli(*args, env=dict(env or cli.env, STACKCTL_TRACE=trace), **kw)
    with open(trace) as f:
        marks = [line.split(None, 2)[2].strip() for line in f]
    return p, marks


def test_run_through_the_server_is_the_same_run(warm):
    p, marks = _traced(warm, "run", "--rm", IMG, "sh", "-c", "echo $$; hostname; echo oops >&2; exit 3")
    assert "warm: worker has the request" in marks and "core: pool slot claimed" in marks
    lines = p.stdout.split()
    assert p.returncode == 3 and lines[0] == "1" and len(lines[1]) == 12
    assert p.stderr == "oops\n"
    assert warm("ps", "-aq").stdout == ""
    # errors come out as they would cold, with the same status
    p = warm("run", "--rm", "nope:latest", "true")
    assert p.returncode == 125 and p.stderr.startswith("error: ") and "nope" in p.stderr
    cold = warm("run", "--rm", "nope:latest", "true", env=dict(warm.env, STACKCTL_WARM="0"))
    assert (cold.returncode, cold.stderr) == (p.returncode, p.stderr)


def test_stdin_cwd_and_environment_are_the_clients(warm, tmp_path):
    (tmp_path / "app.env").write_text("FROM_FILE=yes\n")
    p, marks = _traced(warm, "run", "--rm", "-i", "-e", "PASSED", "--env-file", "app.env", IMG,
                       "sh", "-c", "cat; echo $PASSED $FROM_FILE", input="piped in\n", cwd=str(tmp_path))
    assert "warm: worker has the request" in marks
    assert (p.returncode, p.stdout) == (0, "piped in\nyes\n"), p.stderr


def test_client_environment_reaches_the_run(warm, tmp_path):
    (tmp_path / "app.env").write_text("FROM_FILE=yes\n")
    p = warm("run", "--rm", "-e", "PASSED", "--env-file", "app.env", IMG, "sh", "-c", "echo $PASSED $FROM_FILE",
             cwd=str(tmp_path), env=dict(warm.env, PASSED="from-client"))
    assert (p.returncode, p.stdout) == (0, "from-client yes\n"), p.stderr


def test_limits_apply_to_a_claimed_slot(warm):
    p, marks = _traced(warm, "run", "--name", "hog", "--memory", "32m", IMG, "sh", "-c",
                       'x=a; while true; do x="$x$x"; done', timeout=60)
    assert "core: pool slot claimed" in marks
    assert p.returncode == 137
    assert warm("inspect", "-f", "{{.State.OOMKilled}}", "hog").stdout.strip() == "true"


def _start_client(cli, *args):
    return subprocess.Popen([sys.executable, "-m", "stackctl", *args], env=cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _running(cli, name):
    return cli("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "running"


def test_signals_to_the_client_reach_the_container(warm):
    # PID 1 ignores signals it has no handler for: the container's shell traps TERM
    c = _start_client(warm, "run", "--rm", "--name", "sleeper", IMG, "sh", "-c",
                      'trap "exit 7" TERM; echo ready; while true; do sleep 0.1; done')
    try:
        assert c.stdout.readline() == "ready\n"
        c.send_signal(signal.SIGTERM)
        assert c.wait(timeout=10) == 7
    finally:
        if c.poll() is None:
            c.kill()
        c.communicate()
    _wait_for(lambda: warm("ps", "-aq").stdout == "", what="--rm to remove it")


def test_a_killed_worker_is_reported_and_its_container_kept(warm):
    c = _start_client(warm, "run", "--name", "orphan", IMG, "sleep", "30")
    try:
        _wait_for(lambda: _running(warm, "orphan"), what="the container")
        spare_and_workers = [int(line.split()[0]) for line in subprocess.run(
            ["ps", "-o", "pid=,args=", "--ppid", str(warm.server.pid)], capture_output=True, text=True).stdout.splitlines()]
        worker = next(pid for pid in spare_and_workers if _has_child_connection(pid, c.pid))
        os.kill(worker, signal.SIGKILL)
        assert c.wait(timeout=10) == 137
    finally:
        if c.poll() is None:
            c.kill()
        c.communicate()
    assert _running(warm, "orphan")  # its monitor owns it, as when a cold client is killed


def _has_child_connection(pid: int, client_pid: int) -> bool:
    """Whether ``pid`` holds the client's stdout (the worker serving that client does)."""
    try:
        mine = os.readlink(f"/proc/{client_pid}/fd/1")
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == mine for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_without_a_server_the_run_is_cold(warm):
    warm.server.terminate()
    warm.server.wait(timeout=10)
    assert not os.path.exists(os.path.join(warm.paths.run, "warm.sock"))
    # a socket file nobody listens on (a server that was SIGKILLed) does not matter either
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(os.path.join(warm.paths.run, "warm.sock"))
    s.close()
    p, marks = _traced(warm, "run", "--rm", IMG, "echo", "cold")
    assert (p.returncode, p.stdout) == (0, "cold\n")
    assert "warm: worker has the request" not in marks


def test_a_new_server_takes_over(warm):
    old = warm.server
    log = open(os.path.join(warm.paths.state, "warm2.log"), "ab")
    new = subprocess.Popen([sys.executable, "-m", "stackctl.warm.server", warm.paths.state, warm.paths.run,
                            warm.paths.cgroup_parent], stdout=log, stderr=log, env=warm.env)
    try:
        assert old.wait(timeout=10) == 0
        from stackctl.warm.server import running_pid

        _wait_for(lambda: running_pid(warm.paths) == new.pid, what="the new server")
        p = warm("run", "--rm", IMG, "echo", "hi")
        assert (p.returncode, p.stdout) == (0, "hi\n")
    finally:
        warm.server = new  # the fixture stops it
        log.close()


def test_a_killed_server_leaves_nothing(warm):
    """SIGKILL: no shutdown code runs; the spare sees its control socket close and the slots
    their pipes, and each goes by itself."""
    assert warm("run", "--rm", IMG, "true").returncode == 0  # a worker came and went
    warm.server.kill()
    warm.server.wait(timeout=10)
    _wait_for(lambda: not _pool_cgroups(warm.paths), what="the pool's cgroups to go")
    _wait_for(lambda: not [p for p in _processes_of(warm.paths) if "warm.server" in p],
              what="the spare and the slots to go")
    p = warm("run", "--rm", IMG, "echo", "cold")  # the socket file is left: the client runs cold
    assert (p.returncode, p.stdout) == (0, "cold\n")


def _pool_names(paths) -> set[str]:
    return {os.path.basename(d) for d in _pool_cgroups(paths)}


def test_commands_that_start_nothing_give_their_slot_back(warm):
    before = _pool_names(warm.paths)
    for _ in range(3):
        p, marks = _traced(warm, "ps", "-a")
        assert p.returncode == 0 and "warm: worker has the request" in marks
    time.sleep(0.3)  # past the refill's quiet time: a lost slot would have been replaced by now
    assert _pool_names(warm.paths) == before
    p, marks = _traced(warm, "run", "--rm", IMG, "true")
    assert "core: pool slot claimed" in marks


def test_a_silent_client_holds_up_nobody(warm):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(warm.paths.run, "warm.sock"))  # and never says anything
    try:
        t0 = time.monotonic()
        p, marks = _traced(warm, "run", "--rm", IMG, "echo", "next")
        assert (p.returncode, p.stdout) == (0, "next\n") and "warm: worker has the request" in marks
        assert time.monotonic() - t0 < 5  # well under the silent one's 10 s request timeout
    finally:
        s.close()


def test_a_start_outside_the_server_borrows_a_slot(warm):
    """The agent's own starts (a stack's tasks) and a cold CLI borrow a prepared start from
    the server rather than making one."""
    env = dict(warm.env, STACKCTL_WARM="0")
    p, marks = _traced(warm, "run", "--rm", IMG, "echo", "borrowed", env=env)
    assert (p.returncode, p.stdout) == (0, "borrowed\n")
    assert "warm: worker has the request" not in marks and "core: pool slot claimed" in marks
    # a slot for another node's paths is refused (and removes itself)
    from stackctl.paths import NodePaths
    from stackctl.runtime.containers import pool

    other = NodePaths(state=warm.paths.state + "-other", run=warm.paths.run, cgroup_parent=warm.paths.cgroup_parent)
    _wait_for(lambda: len(_pool_names(warm.paths)) == 2, what="the pool to refill")
    assert pool.borrow(other) is None
    slot = pool.borrow(warm.paths)
    assert slot is not None and slot.name in _pool_names(warm.paths)
    slot.close()
    _wait_for(lambda: slot.name not in _pool_names(warm.paths), what="the given-up slot to go")
