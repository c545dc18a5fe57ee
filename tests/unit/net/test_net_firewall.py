import os

from stackctl.net import firewall
from stackctl.net.model import NetState, Network
from stackctl.paths import NodePaths

from netstate import sample_state  # noqa: E402

FIX = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "net")


def rules():
    return firewall.render(sample_state(), "stackctl_t")


def chain(text, name):
    body = text.split(f"  chain {name} {{\n", 1)[1].split("  }\n", 1)[0]
    return [line.strip() for line in body.splitlines()]


def test_script_replaces_the_table_atomically():
    text = rules()
    assert text.startswith("table ip stackctl_t\ndelete table ip stackctl_t\ntable ip stackctl_t {\n")


def test_published_ports_dnat_to_first_non_internal_network():
    ports = chain(rules(), "ports")
    assert 'tcp dport 8080 dnat to 10.89.0.5:80 comment "0.0.0.0:8080->80/tcp"' in ports
    assert 'ip daddr 127.0.0.1 udp dport 5353 dnat to 10.89.0.5:53 comment "127.0.0.1:5353->53/udp"' in ports
    assert chain(rules(), "prerouting")[1:] == ["fib daddr type local jump ports", "jump vips"]


def test_vip_balances_over_healthy_replicas_only():
    vips = chain(rules(), "vips")
    assert vips == ['ip daddr 10.89.0.254 dnat to numgen random mod 2 map { 0 : 10.89.0.2, 1 : 10.89.0.3 }'
                    ' comment "vip web@front"']


def test_vip_without_replicas_is_refused():
    st = sample_state()
    for ep in st.endpoints["f" * 64].values():
        ep.healthy = False
    text = firewall.render(st, "t")
    assert chain(text, "vips") == []
    assert "ip daddr 10.89.0.254 reject" in chain(text, "input")


def test_masquerade_only_for_non_internal_networks():
    post = chain(rules(), "postrouting")
    assert 'ip saddr 10.89.0.0/24 oifname != "stk-ffffffff" masquerade' in post
    assert not any(r.startswith("ip saddr 10.89.1.0/24") for r in post)
    assert 'oifname "stk-ffffffff" ip saddr 127.0.0.0/8 masquerade' in post
    assert 'oifname "stk-ffffffff" ip saddr 10.89.0.0/24 ct status dnat masquerade' in post


def test_forward_isolation_and_internal():
    fwd = chain(rules(), "forward")
    back, front = '"stk-bbbbbbbb"', '"stk-ffffffff"'
    # same bridge first, then isolation from every other stackctl bridge
    assert fwd.index(f"iifname {back} oifname {back} accept") < fwd.index(
        f'iifname {back} oifname "stk-*" drop comment "isolation back"')
    assert f'iifname {back} drop comment "internal back"' in fwd
    assert f"oifname {back} drop" in fwd
    assert f"iifname {front} accept" in fwd
    assert f"oifname {front} ct status dnat accept" in fwd
    assert fwd[-1] == f"oifname {front} drop"
    assert f'iifname {back} ip daddr != 10.89.1.1 drop comment "internal back"' in chain(rules(), "input")


def test_table_name_per_node():
    assert firewall.table_name(NodePaths("/var/lib/stackctl", "/run/stackctl", "s")) == "stackctl"
    other = firewall.table_name(NodePaths("/tmp/node2/state", "/tmp/node2/run", "s"))
    assert other.startswith("stackctl_") and len(other) == len("stackctl_") + 8


def test_empty_state_deletes_the_table():
    assert firewall.render_delete("t") == "table ip t\ndelete table ip t\n"
    assert "  chain ports {\n  }\n" in firewall.render(NetState(), "t")


def test_parse_recorded_nft_list_tables():
    with open(os.path.join(FIX, "nft_list_tables.txt")) as f:
        tables = firewall.parse_tables(f.read())
    assert ("ip", "stackctl_36d40777") in tables and ("inet", "firewalld") in tables


def test_network_record_names():
    n = Network(id="0123456789abcdef" * 4, name="x", subnet="10.89.0.0/24", gateway="10.89.0.1")
    assert n.bridge == "stk-01234567" and len(n.bridge) <= 15
    assert n.short_id == "0123456789ab"


def test_loopback_is_dropped_from_bridges_and_for_loopback_published_ports():
    # issue 9: with route_localnet on the bridges, a hand-made packet from a container to
    # 127.0.0.1 reached the host's loopback-only services; Docker drops such packets
    raw = chain(rules(), "raw")
    assert raw[0] == "type filter hook prerouting priority raw; policy accept;"
    for br, name in (("stk-bbbbbbbb", "back"), ("stk-ffffffff", "front")):
        assert f'iifname "{br}" ip daddr 127.0.0.0/8 drop comment "loopback from {name}"' in raw
    # the port published on 127.0.0.1 (Docker 28's filterPortMappedOnLoopback)
    assert ('iifname != "lo" ip daddr 127.0.0.1 udp dport 5353 drop'
            ' comment "published on 127.0.0.1:5353/udp: from lo only"') in raw
    assert not any("dport 8080" in r for r in raw)  # published on every address
