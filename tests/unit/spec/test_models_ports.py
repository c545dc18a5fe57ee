"""ports and expose: short and long syntax, ranges, protocol, host_ip, mode."""

from __future__ import annotations

import pytest
from spec_models_help import errors, service, svc_text


def ports(*items) -> list[dict]:
    body = "ports:\n" + "".join(f"  - {item}\n" for item in items)
    return [p.dump() for p in service(svc_text(body)).ports]


def test_short_forms():
    assert ports('"80"') == [{"target": 80, "protocol": "tcp", "mode": "ingress"}]
    assert ports('"8080:80"') == [{"target": 80, "published": "8080", "protocol": "tcp",
                                   "mode": "ingress"}]
    assert ports('"127.0.0.1:8080:80/udp"') == [{"target": 80, "published": "8080",
                                                 "host_ip": "127.0.0.1", "protocol": "udp",
                                                 "mode": "ingress"}]
    assert ports('"[::1]:8080:80"')[0]["host_ip"] == "::1"
    assert ports('"127.0.0.1::80"')[0] == {"target": 80, "host_ip": "127.0.0.1",
                                           "protocol": "tcp", "mode": "ingress"}
    assert ports("80")[0]["target"] == 80


def test_ranges_expand_one_entry_per_container_port():
    out = ports('"8000-8002:80-82"')
    assert [(p["published"], p["target"]) for p in out] == [("8000", 80), ("8001", 81),
                                                            ("8002", 82)]
    assert [p["target"] for p in ports('"3000-3001"')] == [3000, 3001]


def test_host_range_for_one_container_port_is_kept():
    assert ports('"8000-8010:80"') == [{"target": 80, "published": "8000-8010",
                                        "protocol": "tcp", "mode": "ingress"}]


def test_long_syntax():
    out = ports("{target: 80, published: 8080, protocol: udp, mode: host, host_ip: 0.0.0.0, "
                "name: web}")
    assert out == [{"target": 80, "published": "8080", "host_ip": "0.0.0.0", "protocol": "udp",
                    "mode": "host", "name": "web"}]


@pytest.mark.parametrize("item,message", [
    ('"8000-8002:80-81"', "have different lengths"),
    ('"8080:80-81"', "cannot publish the container port range"),
    ('"70000"', "ports are 1 to 65535"),
    ('"80/xyz"', "expected one of: tcp, udp, sctp"),
    ('"abc:80"', "invalid published port"),
    ("{published: 80}", "required key is missing"),
    ("{target: 80, mode: bridge}", 'expected one of: ingress, host; got "bridge"'),
    ("{target: 80, host_ip: nope}", 'expected an IP address, got "nope"'),
    ("[1]", "expected a port spec"),
])
def test_invalid_ports(item, message):
    errs = errors(svc_text(f"ports:\n  - {item}\n"))
    assert len(errs) == 1 and message in errs[0], errs


def test_expose():
    svc = service(svc_text('expose: ["3000", 4000, "5000-5002", "53/udp"]'))
    assert svc.expose == ["3000", "4000", "5000-5002", "53/udp"]
    assert "expected a port" in errors(svc_text("expose: [{a: 1}]"))[0]
