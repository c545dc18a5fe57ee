from stackctl.net import names
from stackctl.net.model import NetState

from netstate import BACK, FRONT, sample_state  # noqa: E402


def decide(client, name, **kw):
    return names.decide(sample_state(), client, name, **kw)


def test_container_name_and_alias_on_a_shared_network():
    assert decide("10.89.0.2", "proxy").addresses == ["10.89.0.5"]
    assert decide("10.89.0.2", "GATEWAY-ALIAS.").addresses == ["10.89.0.5"]
    # from the back network, proxy is its address there
    assert decide("10.89.1.2", "proxy").addresses == ["10.89.1.4"]


def test_isolation_names_of_other_networks_are_unknown():
    assert decide("10.89.1.2", "stack-web-1").kind == "nxdomain"
    assert decide("10.89.0.2", "stack-db-1").kind == "nxdomain"


def test_container_on_two_networks_resolves_both():
    assert decide("10.89.0.5", "stack-db-2").addresses == ["10.89.1.3"]
    assert decide("10.89.1.4", "stack-web-2").addresses == ["10.89.0.3"]


def test_vip_service_name_and_tasks():
    assert decide("10.89.0.5", "web").addresses == ["10.89.0.254"]
    # tasks.<service>: all healthy replicas, never the unhealthy one
    assert decide("10.89.0.5", "tasks.web").addresses == ["10.89.0.2", "10.89.0.3"]


def test_dnsrr_rotates_over_healthy_replicas():
    a = decide("10.89.1.4", "db", rotate=0).addresses
    b = decide("10.89.1.4", "db", rotate=1).addresses
    assert sorted(a) == sorted(b) == ["10.89.1.2", "10.89.1.3"]
    assert a != b


def test_ptr_of_known_and_unknown_addresses():
    assert decide("10.89.0.2", "5.0.89.10.in-addr.arpa").ptr == ["proxy"]
    assert decide("10.89.0.2", "77.0.89.10.in-addr.arpa").kind == "nxdomain"
    assert decide("10.89.0.2", "8.8.8.8.in-addr.arpa").kind == "forward"


def test_outside_names_forward_single_labels_do_not():
    assert decide("10.89.0.2", "example.com").kind == "forward"
    assert decide("10.89.0.2", "nosuchname").kind == "nxdomain"


def test_internal_only_containers_do_not_forward():
    assert decide("10.89.1.2", "example.com").kind == "refuse"
    # but one that is also on a non-internal network does
    assert decide("10.89.1.4", "example.com").kind == "forward"


def test_containers_own_dns_servers_are_the_upstreams():
    st = sample_state()
    st.networks[BACK].internal = False
    assert names.decide(st, "10.89.1.2", "example.com").upstreams == ["192.0.2.53"]


def test_search_domains_are_stripped():
    assert decide("10.89.0.2", "proxy.corp.example", search=("corp.example",)).addresses == ["10.89.0.5"]


def test_unknown_client_gets_the_network_it_asked():
    assert decide("10.89.0.99", "proxy", via_network=FRONT).addresses == ["10.89.0.5"]
    assert decide("127.0.0.1", "proxy", via_network=BACK).addresses == ["10.89.1.4"]
    assert names.decide(NetState(), "127.0.0.1", "x").kind == "nxdomain"


def test_hosts_file():
    text = names.hosts_file("web", "10.89.0.2", ["db:10.0.0.9", "v6:fd00::1"])
    assert "10.89.0.2\tweb\n" in text
    assert "10.0.0.9\tdb\n" in text and "fd00::1\tv6\n" in text
    assert text.startswith("127.0.0.1\tlocalhost\n")


def test_default_bridge_has_no_name_resolution():
    from stackctl.net.model import DEFAULT_BRIDGE, Endpoint, Network, Sandbox

    st = sample_state()
    br = "d" * 64
    st.networks[br] = Network(id=br, name=DEFAULT_BRIDGE, subnet="10.89.9.0/24", gateway="10.89.9.1")
    for n, addr in ((7, "10.89.9.2"), (8, "10.89.9.3")):
        c = f"{n:064x}"
        st.endpoints.setdefault(br, {})[c] = Endpoint(network_id=br, container_id=c, address=addr, names=[f"c{n}"])
        st.sandboxes[c] = Sandbox(container_id=c, netns="/x", networks=[br])
    assert names.decide(st, "10.89.9.2", "c8").kind == "nxdomain"
    assert names.scope_of(st, "10.89.9.2", None)[0] == []
