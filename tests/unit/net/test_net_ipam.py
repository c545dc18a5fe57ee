from ipaddress import IPv4Address, IPv4Network

import pytest

from stackctl.net import ipam
from stackctl.net.model import NetworkError


def N(s):
    return IPv4Network(s)


def test_pick_first_free_subnet_of_default_pool():
    assert ipam.pick_subnet([]) == N("10.89.0.0/24")
    assert ipam.pick_subnet([N("10.89.0.0/24"), N("10.89.1.0/24")]) == N("10.89.2.0/24")


def test_pick_skips_host_routes_and_ignores_default_route():
    used = [N("0.0.0.0/0"), N("10.89.0.0/23"), N("10.89.2.128/25")]
    assert ipam.pick_subnet(used) == N("10.89.3.0/24")


def test_pick_never_chooses_docker_or_podman_pools():
    pools = ipam.parse_pools("172.16.0.0/12:16,10.88.0.0/15:16")
    assert ipam.pick_subnet([], pools) == N("172.16.0.0/16")
    got = ipam.pick_subnet([N("172.16.0.0/16")], pools)
    assert got == N("10.89.0.0/16")  # 172.17-31 are docker's, 10.88 is podman's


def test_pool_exhausted_is_a_clear_error():
    pools = ipam.parse_pools("10.200.0.0/30:30")
    with pytest.raises(NetworkError, match="no free subnet left.*10.200.0.0/30"):
        ipam.pick_subnet([N("10.200.0.0/30")], pools)


def test_check_subnet_names_the_overlapping_network_or_route():
    with pytest.raises(NetworkError, match="overlaps network 'front'"):
        ipam.check_subnet(N("10.89.0.128/25"), {"front": N("10.89.0.0/24")})
    with pytest.raises(NetworkError, match="overlaps the host's route to 192.0.2.0/24"):
        ipam.check_subnet(N("192.0.2.0/25"), {}, [N("192.0.2.0/24")])
    ipam.check_subnet(N("10.90.0.0/24"), {"front": N("10.89.0.0/24")}, [N("0.0.0.0/0")])


def test_parse_subnet_errors():
    with pytest.raises(NetworkError, match="invalid subnet '10.0.0.1/24'"):
        ipam.parse_subnet("10.0.0.1/24")
    with pytest.raises(NetworkError, match="IPv6"):
        ipam.parse_subnet("fd00::/64")


def test_gateway_defaults_and_checks():
    assert ipam.default_gateway(N("10.89.4.0/24")) == IPv4Address("10.89.4.1")
    assert ipam.check_gateway(N("10.89.4.0/24"), "10.89.4.254") == IPv4Address("10.89.4.254")
    with pytest.raises(NetworkError, match="not a host address"):
        ipam.check_gateway(N("10.89.4.0/24"), "10.89.5.1")
    with pytest.raises(NetworkError, match="not a host address"):
        ipam.check_gateway(N("10.89.4.0/24"), "10.89.4.255")


def test_allocate_lowest_free_address_skipping_taken():
    net = N("10.89.4.0/24")
    assert ipam.allocate(net, ["10.89.4.1"]) == IPv4Address("10.89.4.2")
    assert ipam.allocate(net, ["10.89.4.1", "10.89.4.2", "10.89.4.4"]) == IPv4Address("10.89.4.3")


def test_allocate_from_ip_range():
    net = N("10.89.4.0/24")
    assert ipam.allocate(net, ["10.89.4.1"], ip_range="10.89.4.128/25") == IPv4Address("10.89.4.129")


def test_allocate_requested_address():
    net = N("10.89.4.0/24")
    assert ipam.allocate(net, ["10.89.4.1"], requested="10.89.4.50") == IPv4Address("10.89.4.50")
    with pytest.raises(NetworkError, match="10.89.4.1 is already in use on network 'front'"):
        ipam.allocate(net, ["10.89.4.1"], requested="10.89.4.1", network_name="front")
    with pytest.raises(NetworkError, match="not a host address of network 'front'"):
        ipam.allocate(net, [], requested="10.89.5.1", network_name="front")


def test_allocate_full_subnet():
    net = N("10.89.4.0/30")
    with pytest.raises(NetworkError, match="no free address left"):
        ipam.allocate(net, ["10.89.4.1", "10.89.4.2"])
