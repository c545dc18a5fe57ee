"""The userspace encrypted data path of encrypted overlays, its pure parts (no root): the
datagram format (sealing, opening, what does not open), the replay window, the counter's
reservations, MAC -> peer routing, the ARP answers, its configuration from the VXLAN entries,
and the manager's choice of data path."""

from __future__ import annotations

import struct

import pytest
from cryptography.exceptions import InvalidTag

from stackctl.controller import overlay as mgr
from stackctl.net import firewall, overlay, tunnel
from stackctl.net.model import NetState, Network, mac_for

A, B, C = "192.0.2.1", "192.0.2.2", "192.0.2.3"
PA, PB, PC = (bytes(map(int, x.split("."))) for x in (A, B, C))
KEY1 = {"gen": 1, "key": "11" * 32, "primary": True}
KEY2 = {"gen": 2, "key": "22" * 32, "primary": False}


def _frame(dst: str, src: str = "02:42:0a:00:01:0a", payload: bytes = b"hello") -> bytes:
    return tunnel.mac_bytes(dst) + tunnel.mac_bytes(src) + b"\x08\x00" + payload


def test_a_sealed_frame_opens_only_at_its_receiver_with_its_key_and_hides_its_payload():
    s = tunnel.Sealer(4096, [KEY1])
    frame = _frame("02:42:0a:00:01:0b", payload=b"PLAIN-MARKER" * 20)
    data = s.seal(frame, PA, PB, 7)
    assert b"PLAIN-MARKER" not in data
    assert len(data) == len(frame) + tunnel.HEADER.size + tunnel.TAG
    assert data[:6] == bytes([1, 1]) + PA  # version, generation, sender
    assert s.open(data, PB) == (frame, 7, PA)
    with pytest.raises(InvalidTag):  # redirected to another node
        s.open(data, PC)
    with pytest.raises(InvalidTag):  # the same key bytes on another network
        tunnel.Sealer(4097, [KEY1]).open(data, PB)
    for i in (1, 5, 13, 20, len(data) - 1):  # any bit changed: header, body or tag
        bad = bytearray(data)
        bad[i] ^= 0x40
        with pytest.raises((InvalidTag, KeyError, ValueError)):
            s.open(bytes(bad), PB)
    with pytest.raises(ValueError):
        s.open(data[:20], PB)


def test_nonces_differ_per_sender_and_counter_and_keys_per_network_and_generation():
    assert tunnel.nonce(PA, 1) != tunnel.nonce(PB, 1) != tunnel.nonce(PA, 2)
    assert len(tunnel.nonce(PA, 2 ** 64 - 1)) == 12
    keys = {tunnel.derive_key("11" * 32, v, g) for v in (4096, 4097) for g in (1, 2)}
    assert len(keys) == 4 and all(len(k) == 32 for k in keys)


def test_during_a_rotation_the_new_key_opens_and_the_primary_seals():
    old = tunnel.Sealer(4096, [KEY1])  # a node that has not got generation 2 yet
    both = tunnel.Sealer(4096, [KEY1, KEY2])
    assert both.primary == 1
    assert both.open(old.seal(b"x" * 20, PA, PB, 1), PB)[0] == b"x" * 20
    new = tunnel.Sealer(4096, [{**KEY1, "primary": False}, {**KEY2, "primary": True}])
    sealed = new.seal(b"y" * 20, PA, PB, 2)
    assert sealed[1] == 2 and both.open(sealed, PB)[0] == b"y" * 20
    with pytest.raises(KeyError):  # generation 2 unknown there: dropped
        old.open(sealed, PB)
    assert tunnel.Sealer(4096, [KEY1, {**KEY2, "primary": None}]).primary == 1
    assert tunnel.Sealer(4096, [{**KEY1, "primary": False}, KEY2]).primary == 2  # newest
    with pytest.raises(tunnel.TunnelError):
        tunnel.Sealer(4096, [])


def test_the_replay_window_takes_each_counter_once_and_nothing_older_than_the_window():
    w = tunnel.ReplayWindow(size=64)
    for n in (100, 102, 101, 90):
        assert w.fresh(n)
        w.accept(n)
        assert not w.fresh(n)
    assert w.fresh(99) and w.fresh(103)
    w.accept(200)  # a jump: the old ones are out of the window now
    assert not w.fresh(136) and w.fresh(137) and not w.fresh(100)
    w.accept(137)
    assert not w.fresh(137) and w.fresh(138)
    w.accept(200 + 10_000)  # a jump beyond the window clears it
    assert w.top == 10_200 and not w.fresh(200) and w.fresh(10_199)


def test_a_restarted_sender_counts_on_above_what_it_reserved():
    saved = []
    c = tunnel.Counter(0, saved.append, now_ns=1_000)
    assert saved == [1_000 + tunnel.RESERVE] and c.next() == 1_001
    c.value = saved[-1] - 1
    assert c.next() == saved[-2] and saved[-1] == saved[-2] + tunnel.RESERVE
    # the clock went back: the reservation still wins
    again = tunnel.Counter(saved[-1], saved.append, now_ns=5)
    assert again.next() > c.value


def _cfg() -> tunnel.TunnelConfig:
    net = Network(id="cd" * 32, name="s_sec", subnet="10.0.1.0/24", gateway="10.0.1.1",
                  driver="overlay", vni=4100, vtep=A, node_address="10.0.1.2",
                  encrypted=True, datapath=tunnel.DATAPATH)
    view = overlay.OverlaySync.from_json({
        "network": "s_sec", "vni": 4100, "subnet": "10.0.1.0/24", "gateway": "10.0.1.1",
        "node": "a", "encrypted": True, "datapath": tunnel.DATAPATH,
        "nodes": [{"node": "a", "vtep": A, "address": "10.0.1.2"},
                  {"node": "b", "vtep": B, "address": "10.0.1.3"},
                  {"node": "c", "vtep": C, "address": "10.0.1.4"}],
        "peers": [{"ip": "10.0.1.10", "node": "b", "vtep": B, "container": "c1"},
                  {"ip": "10.0.1.11", "node": "c", "vtep": C, "container": "c2"}]})
    state = NetState(networks={net.id: net})
    overlay.merge_peers(state, net, view)
    fdb, neigh = overlay.desired_entries(state, net, view)
    return tunnel.config_for(net.name, net.id, net.vni, A, 1416,
                             [n.vtep for n in view.nodes], fdb, neigh, [KEY1])


def test_the_tunnel_gets_the_entries_a_vxlan_device_would():
    cfg = _cfg()
    assert cfg.ifname == "stktcdcdcdcd" and cfg.port == tunnel.port_for(4100) == 24794
    assert cfg.peers == [B, C]
    assert cfg.macs == {mac_for("10.0.1.10"): B, mac_for("10.0.1.11"): C,
                        mac_for("10.0.1.3"): B, mac_for("10.0.1.4"): C}
    assert cfg.arp["10.0.1.11"] == mac_for("10.0.1.11") and "10.0.1.2" not in cfg.arp
    assert cfg.keys == [KEY1]
    assert tunnel.TunnelConfig.from_json(cfg.to_json()) == cfg


def test_a_frame_goes_to_its_macs_node_and_broadcast_or_unknown_to_every_peer():
    r = tunnel.Router(_cfg())
    assert r.route(_frame(mac_for("10.0.1.11"))) == [(C, PC)]
    assert r.route(_frame(mac_for("10.0.1.3"))) == [(B, PB)]  # node b's own address
    assert r.route(_frame(tunnel.BROADCAST)) == [(B, PB), (C, PC)]
    assert r.route(_frame("01:00:5e:00:00:fb")) == [(B, PB), (C, PC)]  # multicast
    assert r.route(_frame("02:42:0a:00:01:63")) == [(B, PB), (C, PC)]  # unknown unicast
    assert tunnel.is_multi(b"\x33\x33\0\0\0\1") and not tunnel.is_multi(b"\x02\x42\0\0\0\1")


def _arp(op: int, sha: str, spa: str, tpa: str) -> bytes:
    ip = lambda a: bytes(map(int, a.split(".")))  # noqa: E731
    return (tunnel.mac_bytes(tunnel.BROADCAST) + tunnel.mac_bytes(sha) + b"\x08\x06" +
            struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + tunnel.mac_bytes(sha) + ip(spa) +
            b"\0" * 6 + ip(tpa))


def test_arp_for_a_remote_address_is_answered_here_and_anything_else_is_not():
    r = tunnel.Router(_cfg())
    me = "02:42:0a:00:01:05"
    reply = r.arp_reply(_arp(1, me, "10.0.1.5", "10.0.1.11"))
    remote = tunnel.mac_bytes(mac_for("10.0.1.11"))
    assert reply is not None and len(reply) == 42
    assert reply[:6] == tunnel.mac_bytes(me) and reply[6:12] == remote  # to the asker
    assert struct.unpack_from("!H", reply, 20)[0] == 2  # a reply
    assert reply[22:28] == remote and reply[28:32] == bytes([10, 0, 1, 11])
    assert reply[32:38] == tunnel.mac_bytes(me) and reply[38:42] == bytes([10, 0, 1, 5])
    assert r.arp_reply(_arp(1, me, "10.0.1.5", "10.0.1.99")) is None  # unknown: it floods
    assert r.arp_reply(_arp(2, me, "10.0.1.5", "10.0.1.11")) is None  # not a request
    assert r.arp_reply(_frame(tunnel.BROADCAST, payload=b"\0" * 40)) is None


def test_mtu_of_the_userspace_path_leaves_room_for_its_header_and_tag():
    assert overlay.overlay_mtu(True, algo="userspace") == tunnel.mtu() == 1416
    # a full frame (no GSO segment) with its virtio header, sealed, in one 1500-byte packet
    assert 20 + 8 + tunnel.HEADER.size + tunnel.VNET_HDR + 14 + 1416 + tunnel.TAG <= 1500


def test_the_firewall_marks_no_vxlan_of_a_network_on_the_userspace_path():
    net = Network(id="cd" * 32, name="s_sec", subnet="10.0.1.0/24", gateway="10.0.1.1",
                  driver="overlay", vni=4100, vtep=A, node_address="10.0.1.2",
                  encrypted=True, datapath=tunnel.DATAPATH)
    text = firewall.render(NetState(networks={net.id: net}), "stackctl_t")
    assert "ipsec" not in text and "4789" not in text


ESP = {"xfrm": True, "gcm": True, "cbc": True}
NO_ESP = {"xfrm": True, "gcm": False, "cbc": False,
          "esp_reason": "CONFIG_INET_ESP, CONFIG_CRYPTO_GCM not set in the kernel"}


def test_the_manager_prefers_ipsec_falls_back_to_the_tunnel_and_else_refuses():
    user = {"userspace": True, "userspace_reason": ""}
    assert mgr.pick_datapath("s_sec", {"a": {**ESP, **user}, "b": {**ESP, **user}})[:2] == \
        ("gcm", "ipsec")
    assert mgr.pick_datapath("s_sec", {"a": {**ESP, "gcm": False}, "b": ESP})[:2] == \
        ("cbc", "ipsec")
    algo, path, why = mgr.pick_datapath("s_sec", {"a": {**ESP, **user}, "b": {**NO_ESP, **user}})
    assert (algo, path) == ("userspace", "userspace-aes-gcm")
    assert "node(s) b cannot do IPsec ESP (CONFIG_INET_ESP" in why
    with pytest.raises(mgr.OverlayError) as e:
        mgr.pick_datapath("s_sec", {"a": {**ESP, **user},
                                    "b": {**NO_ESP, "userspace": False,
                                          "userspace_reason": "no cryptography"}})
    assert "node(s) b cannot do IPsec ESP" in e.value.message
    assert "no cryptography" in e.value.message and "in clear" in e.value.message
    keys, _ = mgr.rotate_keys([], 0.0, 3600.0, "userspace")
    assert len(bytes.fromhex(keys[0]["key"])) == tunnel.KEY_BYTES


def test_why_a_kernel_cannot_do_esp_is_read_from_its_config():
    from stackctl.net import xfrm

    cfg = "CONFIG_XFRM=y\n# CONFIG_INET_ESP is not set\nCONFIG_CRYPTO_GCM=m\nCONFIG_TUN=y\n"
    assert xfrm.kernel_gaps(cfg) == ["CONFIG_INET_ESP"]
    assert xfrm.kernel_gaps("CONFIG_XFRM=y\nCONFIG_INET_ESP=m\nCONFIG_CRYPTO_GCM=y\n") == []
    assert xfrm.kernel_gaps("") == ["CONFIG_XFRM", "CONFIG_INET_ESP", "CONFIG_CRYPTO_GCM"]


def test_a_tunnel_is_known_by_its_module_and_configuration_and_one_of_a_gone_network_ends(
        tmp_path):
    from stackctl.net import tunneld
    from stackctl.paths import NodePaths

    paths = NodePaths(state=str(tmp_path / "state"), run=str(tmp_path / "run"),
                      cgroup_parent="t")
    cfg = _cfg()
    config = tunneld._file(paths, cfg.network_id, "json")
    argv = f"python3\0-m\0{tunneld.MODULE}\0{config}\0007".encode()
    assert tunneld.is_tunnel_cmdline(argv, config)
    assert not tunneld.is_tunnel_cmdline(argv, config.replace("cd", "ef"))
    assert not tunneld.is_tunnel_cmdline(b"python3\0-m\0stackctl.net.dnsd\0" + config.encode(),
                                         config)
    # files of a network that is no more: no process runs (a stale pid file), all go
    import os

    os.makedirs(tunneld.tunnel_dir(paths))
    for ext, text in (("json", "{}"), ("pid", "999999999\n"), ("ctr", "5\n")):
        with open(tunneld._file(paths, cfg.network_id, ext), "w") as f:
            f.write(text)
    assert tunneld.running_pid(paths, cfg.network_id) is None
    assert tunneld.ensure_all(paths, set()) == [cfg.network_id]
    assert sorted(os.listdir(tunneld.tunnel_dir(paths))) == ["lock"]
