"""The warm path's client side and pure pieces (no root, no server)."""

from __future__ import annotations

import os
import socket

import pytest

from stackctl.paths import NodePaths
from stackctl.runtime.containers import pool
from stackctl.warm import client


def test_request_round_trip():
    argv = [b"stackctl", b"run", b"--rm", b"bb", b"sh", b"-c", b"echo 'a b'"]
    env = [b"PATH=/bin", b"EMPTY=", b"X=1=2"]
    data = client.encode_request(argv, env, 0o027)
    assert data[:2] == b"W1" and int.from_bytes(data[2:6], "big") == len(data) - 6
    assert client.decode_request(data[6:]) == (argv, env, 0o027)


def test_request_keeps_empty_arguments():
    argv = [b"stackctl", b"run", b"-e", b"", b"bb"]
    assert client.decode_request(client.encode_request(argv, [], 18)[6:])[0] == argv


@pytest.mark.parametrize("body", [b"", b"18", b"18\x005\x00a\x00b", b"x\x001\x00a", b"18\x00-1"])
def test_malformed_requests_are_refused(body):
    with pytest.raises(ValueError):
        client.decode_request(body)


def test_frames():
    assert client.frame(b"X", 3) == b"X\x00\x00\x00\x03"
    assert int.from_bytes(client.frame(b"X", -1)[1:], "big", signed=True) == -1


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(client, "tried", False)


def _env(tmp_path, **extra):
    return {b"STACKCTL_RUN_DIR": str(tmp_path).encode(), **{k.encode(): v.encode() for k, v in extra.items()}}


def test_socket_path_follows_the_run_dir():
    assert client.socket_path({"STACKCTL_RUN_DIR": "/tmp/n1"}) == "/tmp/n1/warm.sock"
    assert client.socket_path({}) == "/run/stackctl/warm.sock"


def test_only_warm_commands_go_to_the_server(tmp_path):
    assert client.try_warm(["ps"], _env(tmp_path)) is None
    assert client.try_warm([], _env(tmp_path)) is None
    # no server: the command runs here
    assert client.try_warm(["run", "bb", "true"], _env(tmp_path)) is None


def test_a_process_tries_once_and_can_opt_out(tmp_path, monkeypatch):
    pid = _serve_once(tmp_path, client.frame(b"X", 4))
    try:
        assert client.try_warm(["run", "bb", "true"], _env(tmp_path, STACKCTL_WARM="0")) is None
        monkeypatch.setattr(client, "_forward_signals", lambda pid: None)
        assert client.try_warm(["run", "bb", "true"], _env(tmp_path)) == 4
        assert client.try_warm(["run", "bb", "true"], _env(tmp_path)) is None  # tried already
    finally:
        os.waitpid(pid, 0)


def test_a_stale_socket_means_run_here(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(tmp_path / "warm.sock"))
    s.close()  # the file stays, nobody listens: ECONNREFUSED
    assert client.try_warm(["run", "bb", "true"], _env(tmp_path)) is None


def _serve_once(tmp_path, reply: bytes):
    """A listener that accepts one client, reads its request and answers ``reply``."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(tmp_path / "warm.sock"))
    srv.listen(1)
    pid = os.fork()
    if pid == 0:
        try:
            conn, _ = srv.accept()
            msg, fds, _f, _a = socket.recv_fds(conn, 65536, 4)
            for fd in fds:
                os.close(fd)
            conn.sendall(reply)
            conn.close()
        finally:
            os._exit(0)
    srv.close()
    return pid


@pytest.mark.parametrize(("reply", "expected"), [
    (client.frame(b"P", 1) + client.frame(b"X", 7), 7),  # the command's status
    (client.frame(b"F", 0), None),  # declined: run here
    (b"", None),  # closed before taking it: run here
    (client.frame(b"P", 1), 125),  # taken, then lost: never run twice
])
def test_client_follows_the_server(tmp_path, monkeypatch, reply, expected):
    monkeypatch.setattr(client, "_forward_signals", lambda pid: None)
    pid = _serve_once(tmp_path, reply)
    try:
        assert client.try_warm(["run", "bb", "true"], _env(tmp_path)) == expected
    finally:
        os.waitpid(pid, 0)


def test_worker_does_not_hand_commands_back(tmp_path, monkeypatch):
    monkeypatch.setattr(client, "in_worker", True)
    pid = _serve_once(tmp_path, client.frame(b"X", 9))
    try:
        assert client.try_warm(["run", "bb", "true"], _env(tmp_path)) is None
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


class _Spec:
    def __init__(self, **kw):
        self.tty = kw.get("tty", False)
        self.stdin_open = kw.get("stdin_open", False)
        self.privileged = kw.get("privileged", False)


def test_a_slot_fits_plain_containers_of_its_node():
    paths = NodePaths("/s", "/r", "p")
    slot = pool.Slot(paths, "pool-1", 10, 11, 12)
    assert slot.fits(paths, _Spec(), attach=True)
    assert slot.fits(paths, _Spec(), attach=False)
    assert not slot.fits(NodePaths("/other", "/r", "p"), _Spec(), attach=False)
    for kw in ({"tty": True}, {"stdin_open": True}, {"privileged": True}):
        assert not slot.fits(paths, _Spec(**kw), attach=False)


def test_a_process_without_slots_claims_nothing():
    pool.hold([])
    assert pool.claim(NodePaths("/s", "/r", "p"), _Spec(), False) is None


def test_the_client_loads_nothing_but_itself():
    """The launcher script imports stackctl.launcher, whose launch() imports the client,
    before anything else: every module they load is paid by every command, warm ones too
    (``os`` alone is ~1.5 ms of a ~35 ms warm run)."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    code = ("import sys; before = set(sys.modules); sys.path.insert(0, %r); "
            "import stackctl.launcher, stackctl.warm.client; print(' '.join(sorted(set(sys.modules) - before)))" % root)
    out = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["stackctl", "stackctl.launcher", "stackctl.warm", "stackctl.warm.client"]
