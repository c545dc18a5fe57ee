"""Service ports (mode: ingress) without root: the rules rendered from data, conflicts,
idempotency of publish/unpublish (state file in a temp dir; the firewall commit recorded),
what gc drops."""

import pytest

from stackctl.net import firewall, service_ports, store
from stackctl.net.model import NetState, NetworkError, PortBinding, ServicePorts
from stackctl.paths import NodePaths

from netstate import BACK, FRONT, cid, sample_state  # noqa: E402


def chain(text, name):
    body = text.split(f"  chain {name} {{\n", 1)[1].split("  }\n", 1)[0]
    return [line.strip() for line in body.splitlines()]


def with_service_port(st: NetState, service="web", ip="127.0.0.1", port=18080, target=80,
                      networks=(FRONT,)) -> NetState:
    st.service_ports["shop_web"] = ServicePorts("shop_web", service, list(networks),
                                                [PortBinding(ip, port, target, "tcp")])
    return st


def service_rules(st):
    text = firewall.render(st, "t")
    return ([r for r in chain(text, "ports") if "service" in r],
            [r for r in chain(text, "input") if "service" in r])


def test_three_serving_replicas_round_robin():
    st = with_service_port(sample_state())
    st.endpoints[FRONT][cid(3)].healthy = True
    dnat, refuse = service_rules(st)
    assert dnat == ["ip daddr 127.0.0.1 tcp dport 18080 dnat to numgen inc mod 3 map "
                    "{ 0 : 10.89.0.2, 1 : 10.89.0.3, 2 : 10.89.0.4 } : 80"
                    ' comment "service shop_web 127.0.0.1:18080/tcp"']
    assert refuse == []


def test_only_serving_replicas_are_backends():
    st = with_service_port(sample_state())  # replica 3 is not serving
    dnat, _ = service_rules(st)
    assert "map { 0 : 10.89.0.2, 1 : 10.89.0.3 } : 80" in dnat[0]
    assert firewall.service_backends(st, st.service_ports["shop_web"]) == ["10.89.0.2", "10.89.0.3"]


def test_one_replica_is_a_plain_dnat():
    st = with_service_port(sample_state(), ip="")
    st.endpoints[FRONT][cid(2)].healthy = False
    dnat, refuse = service_rules(st)
    assert dnat == ['tcp dport 18080 dnat to 10.89.0.2:80 comment "service shop_web 0.0.0.0:18080/tcp"']
    assert refuse == []


def test_no_serving_replica_refuses_new_connections():
    st = with_service_port(sample_state())
    for ep in st.endpoints[FRONT].values():
        ep.healthy = False
    st.service_ports["shop_web"].ports.append(PortBinding("", 5353, 53, "udp"))
    dnat, refuse = service_rules(st)
    assert dnat == []
    assert refuse == [
        "ct state new ip daddr 127.0.0.1 tcp dport 18080 reject with tcp reset"
        ' comment "service shop_web 127.0.0.1:18080/tcp: no serving replica"',
        'ct state new udp dport 5353 reject comment "service shop_web 0.0.0.0:5353/udp: no serving replica"',
    ]


def test_each_container_counts_once_at_its_first_network_and_internal_is_skipped():
    st = with_service_port(sample_state(), service="db", networks=(BACK, FRONT))
    # db replicas are only on the internal network: nothing can reach them
    assert firewall.service_backends(st, st.service_ports["shop_web"]) == []
    st.endpoints[FRONT][cid(6)].service = "db"
    st.endpoints[BACK][cid(6)].service = "db"
    assert firewall.service_backends(st, st.service_ports["shop_web"]) == ["10.89.0.5"]


def test_state_round_trip_and_old_files():
    st = with_service_port(sample_state())
    assert NetState.from_json(st.to_json()).service_ports == st.service_ports
    old = st.to_json()
    del old["service_ports"]
    assert NetState.from_json(old).service_ports == {}


# --- bindings and conflicts (pure) ---------------------------------------------------------

def test_bindings_expand_ranges_and_refuse_what_cannot_be_balanced():
    assert service_ports.bindings("web", ["127.0.0.1:8000-8001:80-81/udp"]) == [
        PortBinding("127.0.0.1", 8000, 80, "udp"), PortBinding("127.0.0.1", 8001, 81, "udp")]
    with pytest.raises(NetworkError, match="no published port"):
        service_ports.bindings("web", ["80"])
    with pytest.raises(NetworkError, match="as long as the target range"):
        service_ports.bindings("web", ["8000-8002:80"])
    with pytest.raises(NetworkError, match="8080/tcp is published twice"):
        service_ports.bindings("web", ["8080:80", "127.0.0.1:8080:81"])


def test_conflict_with_a_container_port():
    st = sample_state()  # container 6 publishes 0.0.0.0:8080/tcp
    with pytest.raises(NetworkError) as err:
        service_ports.check(st, "shop_web", [PortBinding("127.0.0.1", 8080, 80, "tcp")])
    assert err.value.message == (
        "port 8080/tcp is already in use on 127.0.0.1 (published by container "
        f"{cid(6)[:12]}); choose another published port")
    # another protocol, or another address than the one held, is fine
    service_ports.check(st, "shop_web", [PortBinding("", 8080, 80, "udp")])
    service_ports.check(st, "shop_web", [PortBinding("127.0.0.2", 5353, 53, "udp")])


def test_conflict_with_another_service_but_not_with_itself():
    st = with_service_port(sample_state())
    mine = [PortBinding("", 18080, 80, "tcp")]
    service_ports.check(st, "shop_web", mine)
    with pytest.raises(NetworkError, match=r"18080/tcp is already in use .*published by service shop_web"):
        service_ports.check(st, "shop_api", mine)


def test_stale_service_ports():
    st = with_service_port(sample_state())
    assert service_ports.stale(st) == []
    for ep in st.endpoints[FRONT].values():
        ep.healthy = False  # not serving is not gone
    assert service_ports.stale(st) == []
    st.service_ports["shop_gone"] = ServicePorts("shop_gone", "gone", [FRONT], [])
    st.service_ports["shop_nonet"] = ServicePorts("shop_nonet", "web", ["0" * 64], [])
    assert service_ports.stale(st) == ["shop_gone", "shop_nonet"]


# --- publish / unpublish on a state file ---------------------------------------------------

@pytest.fixture
def node(tmp_path, monkeypatch):
    paths = NodePaths(state=str(tmp_path / "state"), run=str(tmp_path / "run"), cgroup_parent="x")
    with store.locked(paths) as st:
        sample = sample_state()
        st.networks, st.endpoints, st.sandboxes = sample.networks, sample.endpoints, sample.sandboxes
    commits = []
    monkeypatch.setattr(service_ports, "commit", lambda p, s: commits.append(s.to_json()))
    return paths, commits


def test_publish_is_idempotent_and_unpublish_too(node):
    paths, commits = node
    asked = []

    def free(ip, port, proto):
        asked.append((ip, port, proto))
        return True

    out = service_ports.publish(paths, "shop_web", "web", ["127.0.0.1:18080:80/tcp"], ["front"],
                                is_free=free)
    assert out == [PortBinding("127.0.0.1", 18080, 80, "tcp")]
    assert asked == [("127.0.0.1", 18080, "tcp")] and len(commits) == 1
    sp = store.load(paths).service_ports["shop_web"]
    assert (sp.service, sp.networks) == ("web", [FRONT])
    # again: nothing new is bound, nothing re-applied
    service_ports.publish(paths, "shop_web", "web", ["127.0.0.1:18080:80/tcp"], [FRONT],
                          is_free=free)
    assert len(asked) == 1 and len(commits) == 1
    # other ports for the same key replace the old ones
    service_ports.publish(paths, "shop_web", "web", ["18081:80"], ["front"], is_free=free)
    assert store.load(paths).service_ports["shop_web"].ports == [PortBinding("", 18081, 80, "tcp")]
    assert len(commits) == 2
    assert service_ports.unpublish(paths, "shop_web") is True
    assert service_ports.unpublish(paths, "shop_web") is False
    assert store.load(paths).service_ports == {} and len(commits) == 3


def test_port_used_by_a_process_is_refused_before_anything_is_made(node):
    paths, commits = node
    with pytest.raises(NetworkError) as err:
        service_ports.publish(paths, "shop_web", "web", ["8081:80", "9090:90/udp"], ["front"],
                              is_free=lambda ip, port, proto: port != 9090)
    assert err.value.message == ("port 9090/udp is already in use on 0.0.0.0 (by another process); "
                                 "choose another published port")
    assert store.load(paths).service_ports == {} and commits == []


def test_publish_refuses_internal_only_and_no_network(node):
    paths, commits = node
    with pytest.raises(NetworkError, match="internal network back"):
        service_ports.publish(paths, "shop_db", "db", ["5432:5432"], ["back"], is_free=lambda *a: True)
    with pytest.raises(NetworkError, match="need a network"):
        service_ports.publish(paths, "shop_db", "db", ["5432:5432"], [], is_free=lambda *a: True)
    assert commits == []


def test_container_ports_see_service_ports_as_taken(node):
    from stackctl.net import ports as ports_mod
    from stackctl.net.sandbox import _published

    paths, _ = node
    service_ports.publish(paths, "shop_web", "web", ["18080:80"], ["front"], is_free=lambda *a: True)
    with pytest.raises(NetworkError, match="18080/tcp is already published by another container or service"):
        ports_mod.resolve([ports_mod.parse("127.0.0.1:18080:80")], is_free=lambda *a: True,
                          published=_published(store.load(paths)))
