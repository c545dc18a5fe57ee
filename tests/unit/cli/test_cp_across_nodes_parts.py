"""The part of a copy to or from another node that is pure: how the node's (or ssh's) failure
becomes one error line (stackctl/cli/remote.py). The copy itself: tests/multinode/test_remote_cp.py."""

from __future__ import annotations

import subprocess

from stackctl.cli.remote import _failed


def _proc(code: int, stderr: bytes) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["ssh"], code, b"", stderr)


def test_the_nodes_error_line_names_the_container_and_node():
    err = _failed(_proc(1, b"error: could not find the file /nope in container: No such file or "
                           b"directory\n"), "shop-web-1 on node n2")
    assert err.lines() == ["shop-web-1 on node n2: could not find the file /nope in container: "
                           "No such file or directory"]
    assert err.exit_code == 1


def test_the_nodes_hint_is_kept():
    err = _failed(_proc(1, b"error: container x's root filesystem is read-only\nhint: do y\n"),
                  "x on node n3")
    assert err.lines() == ["x on node n3: container x's root filesystem is read-only", "hint: do y"]


def test_ssh_itself_failing_gives_its_last_line():
    err = _failed(_proc(255, b"Warning: something\nssh: connect to host 10.0.0.2 port 22: "
                             b"Connection refused\n"), "w on node n2")
    assert err.message == "w on node n2: ssh: connect to host 10.0.0.2 port 22: Connection refused"
    assert _failed(_proc(3, b""), "w on node n2").message == "w on node n2: exit status 3"
