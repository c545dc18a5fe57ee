"""Overlay networks, the pure parts (no root): the node's merge of the manager's view, the
VXLAN entries it needs, the firewall rules for remote replicas, IPsec commands, and the
manager's allocation and per-node views."""

from __future__ import annotations

import re

import pytest

from stackctl.controller import overlay as mgr
from stackctl.net import firewall, overlay, xfrm
from stackctl.net.model import Endpoint, NetState, Network, NetworkError, ServicePorts, \
    PortBinding, mac_for
from stackctl.scheduler.observed import ContainerInfo


def _net(**kw) -> Network:
    base = dict(id="ab" * 32, name="s_front", subnet="10.0.1.0/24", gateway="10.0.1.1",
                driver="overlay", mtu=1450, vni=4096, vtep="192.0.2.1",
                node_address="10.0.1.2")
    base.update(kw)
    return Network(**base)


def _view(**kw) -> overlay.OverlaySync:
    data = {"network": "s_front", "vni": 4096, "subnet": "10.0.1.0/24",
            "gateway": "10.0.1.1", "node": "a",
            "nodes": [{"node": "a", "vtep": "192.0.2.1", "address": "10.0.1.2"},
                      {"node": "b", "vtep": "192.0.2.2", "address": "10.0.1.3"}],
            "peers": [{"ip": "10.0.1.10", "node": "a", "vtep": "192.0.2.1", "names": ["s-api-1"],
                       "service": "api", "container": "c1"},
                      {"ip": "10.0.1.11", "node": "b", "vtep": "192.0.2.2",
                       "names": ["s-api-2", "api", "backend"], "service": "api",
                       "container": "c2", "serving": True}]}
    data.update(kw)
    return overlay.OverlaySync.from_json(data)


def _state(net: Network) -> NetState:
    st = NetState(networks={net.id: net})
    st.endpoints[net.id] = {"c1": Endpoint(net.id, "c1", "10.0.1.10", names=["s-api-1"],
                                           service="api")}
    return st


def test_merge_keeps_local_endpoints_adds_remote_ones_and_gives_their_service_a_vip():
    net = _net()
    st = _state(net)
    assert overlay.merge_peers(st, net, _view())
    eps = st.endpoints[net.id]
    assert set(eps) == {"c1", "c2"} and not eps["c1"].remote
    assert eps["c2"].remote and eps["c2"].vtep == "192.0.2.2" and eps["c2"].node == "b"
    assert "api" in st.vips[net.id]
    assert not overlay.merge_peers(st, net, _view())  # idempotent
    # the peer leaves: its endpoint goes, the local replica keeps the VIP
    view = _view(peers=[])
    assert overlay.merge_peers(st, net, view)
    assert set(st.endpoints[net.id]) == {"c1"} and "api" in st.vips[net.id]


def test_a_node_with_only_remote_replicas_gets_the_vip_and_loses_it_when_they_go():
    net = _net()
    st = NetState(networks={net.id: net}, endpoints={net.id: {}})
    overlay.merge_peers(st, net, _view())
    assert "api" in st.vips[net.id]
    overlay.merge_peers(st, net, _view(peers=[]))
    assert "api" not in st.vips.get(net.id, {})


def test_entries_are_one_fdb_and_one_neighbour_per_remote_container_and_node():
    net = _net()
    st = _state(net)
    view = _view()
    overlay.merge_peers(st, net, view)
    fdb, neigh = overlay.desired_entries(st, net, view)
    assert fdb == {(mac_for("10.0.1.11"), "192.0.2.2"), (mac_for("10.0.1.3"), "192.0.2.2")}
    assert neigh == {("10.0.1.11", mac_for("10.0.1.11")), ("10.0.1.3", mac_for("10.0.1.3"))}


def test_a_view_that_does_not_decode_is_one_error():
    with pytest.raises(NetworkError, match="does not decode"):
        overlay.OverlaySync.from_json({"network": "x", "vni": 0, "subnet": "10.0.1.0/24",
                                       "gateway": "10.0.1.1", "node": "a"})
    with pytest.raises(NetworkError, match="not in the view"):
        _view(nodes=[]).me()


def test_mtu_accounts_for_vxlan_and_esp():
    assert overlay.overlay_mtu(False) == 1450
    assert overlay.overlay_mtu(True) == 1424
    assert overlay.overlay_mtu(True, algo="cbc") == 1392


def test_firewall_prefers_local_replicas_and_snats_what_goes_to_other_nodes():
    net = _net()
    st = _state(net)
    overlay.merge_peers(st, net, _view())
    st.service_ports["s_api"] = ServicePorts("s_api", "api", [net.id],
                                             [PortBinding("", 8080, 80)])
    sp = st.service_ports["s_api"]
    assert firewall.service_backends(st, sp) == ["10.0.1.10"]  # the local one only
    st.endpoints[net.id]["c1"].healthy = False
    assert firewall.service_backends(st, sp) == ["10.0.1.11"]  # none here: across
    st.endpoints[net.id]["c1"].healthy = True
    assert firewall.vip_backends(st, net.id, "api") == ["10.0.1.10", "10.0.1.11"]
    text = firewall.render(st, "t")
    assert (f'oifname "{net.bridge}" ip daddr {{ 10.0.1.11 }} ct status dnat snat to '
            "10.0.1.2") in text
    assert "xfrm_mark" not in text and "ipsec" not in text


def test_vxlan_and_frames_bridged_between_containers_skip_conntrack_and_routed_ones_not():
    net = _net()
    st = _state(net)
    overlay.merge_peers(st, net, _view())
    text = firewall.render(st, "t")
    raw = text[text.index("chain raw {"):text.index("chain prerouting")]
    assert 'udp dport 4789 notrack' in raw  # outer VXLAN, in and (raw_out) out
    assert "type filter hook output priority raw" in raw
    rule = next(line for line in raw.splitlines() if "bridged" in line)
    assert f'iifname "{net.bridge}" ip saddr 10.0.1.0/24 ip daddr {{ 10.0.1.10, 10.0.1.11 }} ' \
        "notrack" in rule  # the containers, here and on node b
    for local in ("10.0.1.1", "10.0.1.2", *st.vips[net.id].values()):  # gateway, node, VIP
        assert local not in re.findall(r"\d+\.\d+\.\d+\.\d+", rule.split("daddr")[1])
    plain = _net(vni=0, driver="bridge", node_address="")
    assert "notrack" not in firewall.render(_state(plain), "t")


def test_an_encrypted_network_marks_its_vxlan_and_drops_it_in_clear():
    net = _net(encrypted=True)
    text = firewall.render(_state(net), "t")
    assert "udp dport 4789 @th,96,24 4096 meta ipsec missing drop" in text
    assert f"udp dport 4789 @th,96,24 4096 meta mark set {xfrm.mark_of(4096):#x}" in text
    assert "type route hook output" in text


def test_xfrm_plan_has_sas_both_ways_per_key_and_one_policy_on_the_primary():
    net = _net(encrypted=True)
    keys = [{"gen": 1, "algo": "gcm", "key": "aa" * 20, "primary": True},
            {"gen": 2, "algo": "gcm", "key": "bb" * 20, "primary": False}]
    cmds = xfrm.plan(net, "192.0.2.1", ["192.0.2.2"], keys)
    states = [c for c in cmds if c[0] == "state"]
    policies = [c for c in cmds if c[0] == "policy"]
    assert len(states) == 4 and len(policies) == 1
    assert "rfc4106(gcm(aes))" in states[0] and "transport" in states[0]
    spi1 = f"{xfrm.spi('192.0.2.1', '192.0.2.2', 4096, 1):#x}"
    assert spi1 in policies[0] and f"{xfrm.mark_of(4096):#x}" in policies[0]
    # both ends compute the same SPI for a direction; directions differ
    assert xfrm.spi("a", "b", 1, 1) == xfrm.spi("a", "b", 1, 1) != xfrm.spi("b", "a", 1, 1)
    cbc = xfrm.plan(net, "192.0.2.1", ["192.0.2.2"],
                    [{"gen": 1, "algo": "cbc", "key": "cc" * 48, "primary": True}])
    assert "cbc(aes)" in cbc[0] and "hmac(sha256)" in cbc[0]


def test_xfrm_policy_listing_parses():
    text = """src 192.0.2.1/32 dst 192.0.2.2/32 proto udp dport 4789
	dir out priority 0 
	mark 0xe001000/0xffffffff 
	tmpl src 192.0.2.1 dst 192.0.2.2
		proto esp spi 0x1234 reqid 4096 mode transport
"""
    [p] = xfrm.parse_policies(text)
    assert p == {"src": "192.0.2.1", "dst": "192.0.2.2", "dir": "out", "mark": "0xe001000",
                 "reqid": "4096"}


# --- the manager -------------------------------------------------------------------------


def test_subnets_skip_taken_ones_and_those_holding_a_node_address():
    assert mgr.pick_subnet([], []) == "10.0.1.0/24"
    assert mgr.pick_subnet(["10.0.1.0/24"], ["10.0.2.7"]) == "10.0.3.0/24"


def test_addresses_are_the_lowest_free_and_a_requested_one_is_checked():
    used = {"10.0.1.2": {}, "10.0.1.3": {}}
    assert mgr.next_address("10.0.1.0/24", "10.0.1.1", used) == "10.0.1.4"
    assert mgr.next_address("10.0.1.0/24", "10.0.1.1", used, "10.0.1.50") == "10.0.1.50"
    with pytest.raises(mgr.OverlayError, match="already in use"):
        mgr.next_address("10.0.1.0/24", "10.0.1.1", used, "10.0.1.2")
    with pytest.raises(mgr.OverlayError, match="not in the overlay subnet"):
        mgr.next_address("10.0.1.0/24", "10.0.1.1", used, "10.9.0.2")


def _c(cid: str, node: str, task: str, state: str = "running") -> ContainerInfo:
    return ContainerInfo(id=cid, name=f"s-api-{cid}", state=state, node=node,
                         labels={"com.stackctl.task-id": task, "com.stackctl.stack": "s"})


def test_views_give_every_node_all_running_peers_with_their_serving_state():
    nets = {"s_front": {"vni": 4096, "subnet": "10.0.1.0/24", "gateway": "10.0.1.1",
                        "addresses": {"10.0.1.2": {"owner": "node:a"},
                                      "10.0.1.3": {"owner": "node:b"},
                                      "10.0.1.4": {"owner": "t1", "service": "api",
                                                   "names": ["api", "backend"]},
                                      "10.0.1.5": {"owner": "t2", "service": "api"},
                                      "10.0.1.6": {"owner": "t3", "service": "api"}}}}
    containers = [_c("c1", "a", "t1"), _c("c2", "b", "t2"), _c("c3", "b", "t3", "exited")]
    out = mgr.views(nets, containers, lambda c: c.id != "c2",
                    {"a": "192.0.2.1", "b": "192.0.2.2"}, ["a", "b"])
    assert set(out) == {"a", "b"}
    [va] = out["a"]
    assert va["node"] == "a" and [n["address"] for n in va["nodes"]] == ["10.0.1.2", "10.0.1.3"]
    peers = {p["ip"]: p for p in va["peers"]}
    assert set(peers) == {"10.0.1.4", "10.0.1.5"}  # the exited one is no peer
    assert peers["10.0.1.4"]["names"] == ["s-api-c1", "api", "backend"]
    assert peers["10.0.1.4"]["serving"] and not peers["10.0.1.5"]["serving"]
    assert peers["10.0.1.5"]["vtep"] == "192.0.2.2"
    assert out["b"][0]["peers"] == va["peers"]


def test_keys_rotate_add_first_then_primary_and_keep_three():
    keys, changed = mgr.rotate_keys([], 0.0, 100.0, "gcm")
    assert changed and len(keys) == 1 and keys[0]["primary"] and len(keys[0]["key"]) == 40
    keys, changed = mgr.rotate_keys(keys, 50.0, 100.0, "gcm")
    assert not changed
    keys, changed = mgr.rotate_keys(keys, 150.0, 100.0, "gcm")  # added, not primary yet
    assert changed and [k["primary"] for k in keys] == [True, False]
    keys, changed = mgr.rotate_keys(keys, 151.0, 100.0, "gcm")  # now primary
    assert changed and [k["primary"] for k in keys] == [False, True]
    for t in (300.0, 301.0, 500.0, 501.0):
        keys, _ = mgr.rotate_keys(keys, t, 100.0, "gcm")
    assert len(keys) == 3 and keys[-1]["primary"]


def test_allocations_persist_0600_and_a_restarted_manager_hands_out_nothing_twice(tmp_path):
    o = mgr.Overlay(str(tmp_path))
    o.networks["s_front"] = {"stack": "s", "vni": 4096, "subnet": "10.0.1.0/24",
                             "gateway": "10.0.1.1", "addresses": {}}

    class Req:
        def __init__(self, task):
            from stackctl.net.sandbox import Attachment
            from stackctl.runtime.imageconfig import RunOptions
            self.opts = RunOptions(image="x", labels={"com.stackctl.task-id": task})
            self.networks = [Attachment("s_front", ["api"])]
            self.endpoint_mode = "vip"

    r1 = Req("t1")
    o.prepare("s", "api", "a", r1)
    assert r1.networks[0].ipv4_address == "10.0.1.2"
    import os
    assert os.stat(tmp_path / "overlay.json").st_mode & 0o777 == 0o600
    again = mgr.Overlay(str(tmp_path))
    r2 = Req("t2")
    again.prepare("s", "api", "b", r2)
    assert r2.networks[0].ipv4_address == "10.0.1.3"
    r1b = Req("t1")  # the same task again (a retried create): the same address
    again.prepare("s", "api", "a", r1b)
    assert r1b.networks[0].ipv4_address == "10.0.1.2"


def test_a_node_that_joins_gets_an_address_and_one_that_leaves_gives_it_back(tmp_path):
    o = mgr.Overlay(str(tmp_path))
    o.networks["s_front"] = {"stack": "s", "vni": 4096, "subnet": "10.0.1.0/24",
                             "gateway": "10.0.1.1",
                             "addresses": {"10.0.1.2": {"owner": "node:a"},
                                           "10.0.1.3": {"owner": "node:b"}}}
    assert o._members_changed({"a": "192.0.2.1", "c": "192.0.2.3"})
    owners = {ip: a["owner"] for ip, a in o.networks["s_front"]["addresses"].items()}
    assert owners == {"10.0.1.2": "node:a", "10.0.1.3": "node:c"}
    assert not o._members_changed({"a": "192.0.2.1", "c": "192.0.2.3"})
    # the views no longer hold the node that left: every node drops its entries
    out = mgr.views(o.networks, [], lambda c: True, {"a": "192.0.2.1", "c": "192.0.2.3"},
                    ["a", "c"])
    assert [n["node"] for n in out["a"][0]["nodes"]] == ["a", "c"]


def test_push_sends_only_changes_and_everything_again_to_a_reconnected_node(tmp_path):
    import trio

    class Node:
        def __init__(self):
            self.got = []

        async def overlay_sync(self, view):
            self.got.append(view)
            return {}

    class Members:
        entries = [{"name": "a", "url": "ssh://root@192.0.2.1"},
                   {"name": "b", "url": "ssh://root@192.0.2.2"}]

    class Cluster:
        members = {"a": Node(), "b": Node()}

    class Ctx:
        node = Cluster()
        serving: dict = {}
        draining: set = set()

    o = mgr.Overlay(str(tmp_path), Members())
    o.networks["s_front"] = {"stack": "s", "vni": 4096, "subnet": "10.0.1.0/24",
                             "gateway": "10.0.1.1",
                             "addresses": {"10.0.1.5": {"owner": "t1", "service": "api"}}}
    ctx = Ctx()
    c1 = _c("c1", "b", "t1")

    async def main():
        await o.refresh(ctx, [c1])
        assert len(ctx.node.members["a"].got) == 1 and len(ctx.node.members["b"].got) == 1
        await o.refresh(ctx, [c1])  # nothing changed: nothing sent
        assert len(ctx.node.members["a"].got) == 1
        ctx.serving["c1"] = False  # taken out: both nodes hear it
        await o.serving_changed(ctx)
        assert not ctx.node.members["a"].got[-1]["peers"][0]["serving"]
        assert len(ctx.node.members["b"].got) == 2
        ctx.node.members["b"] = Node()  # a reconnect: a new connection object
        await o.serving_changed(ctx)
        assert len(ctx.node.members["b"].got) == 1 and len(ctx.node.members["a"].got) == 2

    trio.run(main)
