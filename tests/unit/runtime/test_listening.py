"""Listening TCP ports from /proc/<pid>/net/tcp{,6} (recorded under tests/fixtures/proc/) and
the readiness decision built on them."""

from pathlib import Path

import pytest

from stackctl.runtime.listening import listening_tcp_ports, parse_proc_net_tcp
from stackctl.scheduler.observed import (
    ContainerInfo,
    format_listen_ports,
    parse_listen_ports,
    ports_ready,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "proc"


def test_parse_recorded_tcp():
    # 0.0.0.0:8080 listens; 127.0.0.1:9090 is loopback only; the established 8080 pair and
    # the ephemeral client port are not LISTEN
    assert parse_proc_net_tcp((FIXTURES / "net_tcp.txt").read_text()) == {8080}


def test_parse_recorded_tcp6():
    # [::]:8443 listens; [::1]:9443 is loopback only
    assert parse_proc_net_tcp((FIXTURES / "net_tcp6.txt").read_text()) == {8443}


@pytest.mark.parametrize("line, ports", [
    ("   0: 0A01A8C0:0050 00000000:0000 0A 0 0 0 0 0 1 1", {80}),  # 192.168.1.10:80
    ("   0: 0100007F:0050 00000000:0000 0A 0 0 0 0 0 1 1", set()),  # 127.0.0.1
    ("   0: 7E00007F:0050 00000000:0000 0A 0 0 0 0 0 1 1", set()),  # 127.0.0.126
    ("   0: 0100007E:0050 00000000:0000 0A 0 0 0 0 0 1 1", {80}),  # 126.0.0.1
    ("   0: 00000000:0050 00000000:0000 06 0 0 0 0 0 1 1", set()),  # TIME_WAIT
    # ::ffff:127.0.0.1 and ::ffff:10.0.0.2
    ("   0: 0000000000000000FFFF00000100007F:1F90 " + "0" * 32 + ":0000 0A 0 0", set()),
    ("   0: 0000000000000000FFFF00000200000A:1F90 " + "0" * 32 + ":0000 0A 0 0", {8080}),
    ("   0: 00000000:zz50 00000000:0000 0A", set()),  # garbage
    ("  sl  local_address rem_address   st", set()),
    ("   0: 00000000", set()),  # truncated
])
def test_parse_lines(line, ports):
    assert parse_proc_net_tcp(line) == ports


def test_read_from_a_proc_root(tmp_path):
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text((FIXTURES / "net_tcp.txt").read_text())
    assert listening_tcp_ports(42, str(tmp_path)) == {8080}  # no tcp6 (no IPv6): fine
    (net / "tcp6").write_text((FIXTURES / "net_tcp6.txt").read_text())
    assert listening_tcp_ports(42, str(tmp_path)) == {8080, 8443}
    assert listening_tcp_ports(43, str(tmp_path)) is None  # the process is gone


def test_read_own_namespace():
    import os
    import socket

    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    try:
        assert s.getsockname()[1] in listening_tcp_ports(os.getpid())
    finally:
        s.close()


def test_listen_ports_label():
    assert parse_listen_ports("80,443") == (80, 443)
    assert parse_listen_ports(" 80, x, 0, 70000, 80") == (80,)
    assert parse_listen_ports("") == ()
    assert format_listen_ports([443, 80, 80]) == "80,443"


def test_ports_ready_decision():
    assert ports_ready((), None)  # nothing to wait for
    assert not ports_ready((80,), None)  # not read: not ready
    assert not ports_ready((80, 443), frozenset({80}))
    assert ports_ready((80, 443), frozenset({80, 443, 9000}))


def test_container_ready():
    labels = {"com.stackctl.listen-ports": "80"}
    base = dict(id="a", name="web", labels=labels, state="running")
    assert not ContainerInfo(**base, listening=frozenset()).ready
    assert ContainerInfo(**base, listening=frozenset({80})).ready
    assert not ContainerInfo(**{**base, "state": "exited"}, listening=frozenset({80})).ready
    # with a health check, health decides (the label is not set then, but if it were)
    assert not ContainerInfo(**base, health="starting", listening=frozenset({80})).ready
    # no label (an older container, or no published ports): running is ready
    assert ContainerInfo("b", "web", {}, "running").ready
    assert ContainerInfo(**base, listening=frozenset()).missing_ports() == [80]
