"""``stackctl exec`` end to end, as root: namespaces, env/workdir/user, exit codes, and a
real pty for ``exec -it`` / ``run -it`` (the CLI runs under ``pty.fork``)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time

import pytest

pytestmark = pytest.mark.root

IMG = "bb:latest"


@pytest.fixture
def cli(node_cli_both, node_paths, busybox_rootfs):
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore

    with open(os.path.join(busybox_rootfs, "etc", "passwd"), "a") as f:
        f.write("app:x:1000:1000:app:/home/app:/bin/sh\n")
    with open(os.path.join(busybox_rootfs, "etc", "group"), "a") as f:
        f.write("app:x:1000:\n")
    import_rootfs(ImageStore(node_paths.images), busybox_rootfs, IMG, changes=['CMD ["sh"]'])
    return node_cli_both


@pytest.fixture
def box(cli):
    cid = cli("run", "-d", "--name", "box", "--hostname", "boxhost", IMG, "sleep", "600", check=0).stdout.strip()
    return cid


def test_exec_joins_the_container(cli, box):
    p = cli("exec", "box", "sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$", check=0)
    host, cmdline, pid = p.stdout.splitlines()
    assert host == "boxhost"
    assert cmdline.strip() == "sleep 600"  # PID 1 of its pid namespace is the container's process
    assert int(pid) > 1


def test_exec_env_workdir_user(cli, box):
    p = cli("exec", "-e", "FOO=bar", "-w", "/tmp", "-u", "app", "box", "sh", "-c", 'echo $FOO; pwd; id -u; id -g',
            check=0)
    assert p.stdout.split() == ["bar", "/tmp", "1000", "1000"]
    p = cli("exec", "-u", "1234:5678", "box", "sh", "-c", "id -u; id -g", check=0)
    assert p.stdout.split() == ["1234", "5678"]


def test_exec_exit_codes(cli, box):
    assert cli("exec", "box", "sh", "-c", "exit 7").returncode == 7
    p = cli("exec", "box", "nosuchcmd")
    assert p.returncode == 127 and p.stderr.startswith("error: ") and "nosuchcmd" in p.stderr
    p = cli("exec", "box", "/etc/passwd")
    assert p.returncode == 126, p.stderr
    p = cli("exec", "-w", "relative", "box", "true")
    assert p.returncode == 2


def test_exec_stdin_and_detach(cli, box):
    p = cli("exec", "-i", "box", "cat", input="through stdin\n", check=0)
    assert p.stdout == "through stdin\n"
    p = cli("exec", "box", "cat", input="ignored\n", check=0)  # no -i: stdin is /dev/null
    assert p.stdout == ""
    cli("exec", "-d", "box", "sh", "-c", "echo done > /tmp/detached", check=0)
    deadline = time.monotonic() + 10
    while cli("exec", "box", "cat", "/tmp/detached").stdout != "done\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    p = cli("exec", "-d", "box", "nosuchcmd")
    assert p.returncode == 127 and "nosuchcmd" in p.stderr


def test_exec_into_stopped_container(cli):
    cli("container", "create", "--name", "idle", IMG, "true", check=0)
    p = cli("exec", "idle", "true")
    assert p.returncode == 1
    assert [line for line in p.stderr.splitlines() if line.startswith("error:")] == [p.stderr.splitlines()[0]]
    assert len(p.stderr.splitlines()) == 1 and "not running" in p.stderr
    cli("run", "--name", "gone", IMG, "true", check=0)
    p = cli("exec", "gone", "true")
    assert p.returncode == 1 and p.stderr.count("error:") == 1


# --- with a real terminal -------------------------------------------------------------------

def _under_pty(argv: list[str], env: dict[str, str], script: list[tuple[str, bytes]], *, rows=33, cols=101,
               timeout=30.0) -> tuple[int, bytes]:
    """Run argv with a new pty as its controlling terminal. ``script`` is a list of
    (expected output, bytes to send once it appeared). Returns (exit code, all output)."""
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    out = b""
    deadline = time.monotonic() + timeout
    steps = list(script)
    try:
        while True:
            if steps and steps[0][0].encode() in out:
                os.write(master, steps.pop(0)[1])
                continue
            r, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                raise AssertionError(f"timed out; output so far: {out!r}")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            out += data
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), out
    finally:
        os.close(master)
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_exec_it_real_pty(cli, box):
    argv = [sys.executable, "-m", "stackctl", "exec", "-it", "box", "sh"]
    code, out = _under_pty(argv, cli.env, [("#", b"stty size; tty; echo hi\n"), ("hi\r\n", b"exit 3\n")])
    assert code == 3, out
    assert b"33 101" in out  # the outer terminal's size reached the container's pty
    assert b"/dev/pts/" in out and b"hi\r\n" in out


def test_run_it_real_pty(cli):
    argv = [sys.executable, "-m", "stackctl", "run", "--rm", "-it", IMG, "sh"]
    code, out = _under_pty(argv, cli.env, [("#", b"stty size; echo hi $((40+2))\n"), ("hi 42", b"exit 4\n")],
                           rows=21, cols=77)
    assert code == 4, out
    assert b"21 77" in out
