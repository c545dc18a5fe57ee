"""A plain VXLAN overlay on one node, on the real kernel: containers are macvlan ports of the
network's VXLAN device (no bridge, no veth), the node's own link of the bridge's name is one
too, and they all reach each other; connect/disconnect and teardown remove the ports (an
address is free again at once); a network made before ports were macvlans keeps its bridge.
The cross-node behaviour (names, VIPs, published ports, isolation) is
tests/multinode/test_overlay.py's."""

from __future__ import annotations

import random

import pytest

from stackctl.net import networks as nets
from stackctl.net import overlay, store
from stackctl.net.sandbox import (Attachment, connect_container, disconnect_container,
                                  setup_container, teardown_container)

from conftest import fetch, leftovers  # noqa: E402

pytestmark = pytest.mark.root

SUBNET = "10.231.7"


def cid(n: int) -> str:
    return f"{n:064x}"


def view(name: str, vni: int, *, attachable: bool = True) -> overlay.OverlaySync:
    """This node ("a", VTEP 127.0.0.1) and one other ("b"), with a replica there."""
    return overlay.OverlaySync.from_json({
        "network": name, "vni": vni, "subnet": f"{SUBNET}.0/24", "gateway": f"{SUBNET}.1",
        "node": "a", "attachable": attachable,
        "nodes": [{"node": "a", "vtep": "127.0.0.1", "address": f"{SUBNET}.2"},
                  {"node": "b", "vtep": "127.0.0.2", "address": f"{SUBNET}.3"}],
        "peers": [{"ip": f"{SUBNET}.20", "node": "b", "vtep": "127.0.0.2", "names": ["far"],
                   "container": cid(99)}]})


def kinds(ns_path: str | None = None) -> dict[str, str]:
    """name -> link kind in the host's netns or the one at ``ns_path``."""
    from pyroute2 import IPRoute

    from stackctl.net import netns

    def read(ipr):
        out = {}
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            out[link.get_attr("IFLA_IFNAME")] = (info.get_attr("IFLA_INFO_KIND") or "") if info else ""
        return out

    if ns_path is None:
        with IPRoute() as ipr:
            return read(ipr)
    with netns.inside(ns_path):
        ipr = IPRoute()
    with ipr:
        return read(ipr)


def test_containers_are_macvlan_ports_of_the_vxlan_device(net_paths, servers):
    vni = random.randrange(5_000_000, 6_000_000)
    overlay.sync(net_paths, view("ovm", vni))
    net = nets.get(net_paths, "ovm")
    assert net.macvlan and net.datapath == "vxlan"
    host = kinds()
    assert host[net.bridge] == "macvlan" and host[net.vxlan] == "vxlan"
    # the remote replica's entries sit on the VXLAN device as with a bridge
    fdb, neigh = overlay.kernel_entries(net.vxlan)
    assert (f"{SUBNET}.20", net_mac(f"{SUBNET}.20")) in neigh
    assert (net_mac(f"{SUBNET}.20"), "127.0.0.2") in fdb

    a = setup_container(net_paths, cid(1), name="alpha",
                        networks=[Attachment("ovm", ipv4_address=f"{SUBNET}.10")])
    b = setup_container(net_paths, cid(2), name="beta",
                        networks=[Attachment("ovm", ipv4_address=f"{SUBNET}.11")])
    assert kinds(a.netns)["eth0"] == "macvlan"
    assert not [n for n, k in kinds().items() if k == "veth" and n.startswith("stkv")]
    # container to container on the node (port to port), and to the node's own address
    srv = servers(b.netns, 8000)
    assert fetch(a.netns, f"{SUBNET}.11", 8000) == f"{SUBNET}.10"
    assert srv.clients() == [f"{SUBNET}.10"]

    # disconnect takes the port out of the netns; connect puts one back
    disconnect_container(net_paths, cid(2), "ovm", name="beta")
    assert "eth0" not in kinds(b.netns)
    with pytest.raises(ConnectionError):
        fetch(a.netns, f"{SUBNET}.11", 8000, timeout=0.5)
    connect_container(net_paths, cid(2), Attachment("ovm", ipv4_address=f"{SUBNET}.11"),
                      name="beta")
    assert kinds(b.netns)["eth0"] == "macvlan"
    assert fetch(a.netns, f"{SUBNET}.11", 8000) == f"{SUBNET}.10"

    # a removed container's port (and MAC) is gone at once: its address can be taken again
    teardown_container(net_paths, cid(1))
    c = setup_container(net_paths, cid(3), name="gamma",
                        networks=[Attachment("ovm", ipv4_address=f"{SUBNET}.10")])
    assert fetch(c.netns, f"{SUBNET}.11", 8000) == f"{SUBNET}.10"

    for n in (2, 3):
        teardown_container(net_paths, cid(n))
    nets.remove(net_paths, ["ovm"])
    overlay.remove_kernel(net)
    assert leftovers(net_paths)["links"] == []
    assert net.bridge not in kinds() and net.vxlan not in kinds()


def test_the_node_reaches_its_containers_over_its_own_port(net_paths, servers):
    vni = random.randrange(6_000_000, 7_000_000)
    overlay.sync(net_paths, view("ovn", vni))
    a = setup_container(net_paths, cid(4), name="alpha",
                        networks=[Attachment("ovn", ipv4_address=f"{SUBNET}.10")])
    servers(a.netns, 8000)
    # from the host's netns: routed out of the node's macvlan port (source: the gateway)
    assert fetch(None, f"{SUBNET}.10", 8000) in (f"{SUBNET}.1", f"{SUBNET}.2")
    teardown_container(net_paths, cid(4))


def test_a_network_made_before_macvlan_ports_keeps_its_bridge(net_paths, servers):
    vni = random.randrange(7_000_000, 8_000_000)
    v = view("ovo", vni)
    nets.create(net_paths, "ovo", subnet=v.subnet, gateway=v.gateway, attachable=True,
                mtu=1450, driver="overlay")
    with store.locked(net_paths) as state:  # as a record written before `attach` existed
        net = nets.get(net_paths, "ovo", state)
        net.vni, net.datapath = vni, "vxlan"
        nets.commit(net_paths, state)
    overlay.sync(net_paths, v)
    net = nets.get(net_paths, "ovo")
    assert not net.macvlan
    assert kinds()[net.bridge] == "bridge"
    a = setup_container(net_paths, cid(5), name="alpha",
                        networks=[Attachment("ovo", ipv4_address=f"{SUBNET}.10")])
    b = setup_container(net_paths, cid(6), name="beta",
                        networks=[Attachment("ovo", ipv4_address=f"{SUBNET}.11")])
    assert kinds(a.netns)["eth0"] == "veth"
    servers(b.netns, 8000)
    assert fetch(a.netns, f"{SUBNET}.11", 8000) == f"{SUBNET}.10"


def net_mac(address: str) -> str:
    from stackctl.net.model import mac_for

    return mac_for(address)
