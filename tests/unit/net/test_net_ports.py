import pytest

from stackctl.net import ports
from stackctl.net.model import NetworkError, PortBinding


def always_free(ip, port, proto):
    return True


@pytest.mark.parametrize("text, expected", [
    ("8080:80", ("", (8080, 8080), (80, 80), "tcp")),
    ("127.0.0.1:8080:80/udp", ("127.0.0.1", (8080, 8080), (80, 80), "udp")),
    ("80", ("", None, (80, 80), "tcp")),
    ("127.0.0.1::80", ("127.0.0.1", None, (80, 80), "tcp")),
    ("0.0.0.0:8080:80", ("", (8080, 8080), (80, 80), "tcp")),
    ("8000-8002:9000-9002/TCP", ("", (8000, 8002), (9000, 9002), "tcp")),
    ("8000-8010:80", ("", (8000, 8010), (80, 80), "tcp")),
])
def test_parse(text, expected):
    s = ports.parse(text)
    assert (s.host_ip, s.host, s.container, s.protocol) == expected


@pytest.mark.parametrize("text, message", [
    ("http", "expected \\[IP:\\]\\[HOST:\\]CONTAINER"),
    ("8080:80/sctp", "protocol must be tcp or udp"),
    ("70000:80", "host port must be 1-65535"),
    ("8000-8002:80-81", "differ in length"),
    ("9000-8000:80", "ends before it starts"),
    ("300.1.1.1:80:80", "not an IPv4 address"),
])
def test_parse_errors(text, message):
    with pytest.raises(NetworkError, match=message):
        ports.parse(text)


def test_resolve_fixed_and_ranges():
    specs = [ports.parse("8080:80"), ports.parse("9000-9001:90-91/udp")]
    got = ports.resolve(specs, is_free=always_free)
    assert got == [PortBinding("", 8080, 80, "tcp"), PortBinding("", 9000, 90, "udp"),
                   PortBinding("", 9001, 91, "udp")]


def test_resolve_port_in_use_by_a_process_is_a_clear_error():
    busy = lambda ip, port, proto: not (port == 8080 and proto == "tcp")  # noqa: E731
    with pytest.raises(NetworkError) as exc:
        ports.resolve([ports.parse("8080:80")], is_free=busy)
    assert str(exc.value) == ("port 8080/tcp is already in use on 0.0.0.0 (by another process); "
                              "choose another host port")
    # the same port over UDP is fine
    assert ports.resolve([ports.parse("8080:80/udp")], is_free=busy)[0].host_port == 8080


def test_resolve_port_published_by_another_container():
    other = [PortBinding("127.0.0.1", 8080, 80, "tcp")]
    with pytest.raises(NetworkError, match="8080/tcp is already published by another container"):
        ports.resolve([ports.parse("8080:81")], is_free=always_free, published=other)
    # another address on the host does not clash with a 127.0.0.1-only binding
    got = ports.resolve([ports.parse("192.0.2.9:8080:81")], is_free=always_free, published=other)
    assert got[0].host_port == 8080


def test_resolve_picks_free_ephemeral_ports_and_never_twice():
    busy = lambda ip, port, proto: port != 50000  # noqa: E731
    specs = [ports.parse("80"), ports.parse("81")]
    got = ports.resolve(specs, is_free=busy, ephemeral=(50000, 50003))
    assert [g.host_port for g in got] == [50001, 50002]


def test_resolve_host_range_single_container_port_takes_first_free():
    busy = lambda ip, port, proto: port >= 8003  # noqa: E731 - 8000-8002 held by processes
    got = ports.resolve([ports.parse("8000-8005:80")], is_free=busy,
                        published=[PortBinding("", 8003, 1, "tcp")])
    assert got == [PortBinding("", 8004, 80, "tcp")]
    with pytest.raises(NetworkError, match="no free host port in 8000-8001/tcp"):
        ports.resolve([ports.parse("8000-8001:80")], is_free=lambda *a: False)


def test_port_is_free_binds_for_real():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert ports.port_is_free("127.0.0.1", port, "tcp") is False
        assert ports.port_is_free("", port, "tcp") is False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        assert ports.port_is_free("127.0.0.1", u.getsockname()[1], "udp") is False


def test_port_is_free_on_foreign_address_explains():
    with pytest.raises(NetworkError, match="not an address of this host"):
        ports.port_is_free("203.0.113.77", 8080, "tcp")
