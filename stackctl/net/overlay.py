"""Overlay networks on one node: one network across hosts, as the manager describes it.

An overlay network is, on each node, an ordinary network of ours (bridge ``stk-<id>``, the
same subnet and gateway on every node, nft rules, the embedded DNS server) plus:

- a VXLAN device ``stkx<id[:8]>`` (VNI of the network, UDP 4789, local address = this node's
  VTEP) enslaved to the bridge, with **learning off and proxy on**: nothing is learnt from
  the wire and nothing floods. The manager's view is programmed statically: one forwarding
  entry (FDB, ``NTF_SELF``) per remote MAC -> its node's VTEP, and one permanent neighbour
  entry per remote IP -> MAC on the VXLAN device, from which the kernel answers the
  containers' ARP requests itself (``proxy``);
- the remote endpoints as :class:`~stackctl.net.model.Endpoint` records with ``vtep`` set, so
  that names, aliases, ``tasks.<service>``, VIPs and service ports (the DNS server and
  :mod:`stackctl.net.firewall`) treat replicas on other nodes like local ones;
- a node address of its own on the overlay (``Network.node_address``, on the bridge as a /32,
  the bridge's MAC derived from it): traffic this node DNATs to a replica on another node (a
  VIP, a published port without a local replica) is SNAT'd to it, so the reply comes back
  here.

Addresses (containers' and nodes') and VNIs are allocated by the manager
(:mod:`stackctl.controller.overlay`); the node only applies them. :func:`sync` is idempotent:
the manager sends the whole view of a network each time, and this makes the node exactly it.
:func:`merge_peers` and :func:`desired_entries` are the pure parts.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from stackctl.errors import ConflictError, NotFoundError
from stackctl.net import store
from stackctl.net.model import Endpoint, NetState, Network, NetworkError, mac_for
from stackctl.paths import NodePaths

VXLAN_PORT = 4789
#: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14), as Docker's vxlanEncap
VXLAN_OVERHEAD = 50
#: ESP in transport mode with AES-GCM: SPI+seq (8) + IV (8) + ICV (8) + trailer (<= 2 + pad)
ESP_OVERHEAD = 26
OVERLAY_MTU = 1500 - VXLAN_OVERHEAD  # 1450
ENCRYPTED_MTU = (OVERLAY_MTU - ESP_OVERHEAD) // 4 * 4  # 1424


def overlay_mtu(encrypted: bool, base: int = 1500, *, algo: str = "gcm") -> int:
    """1450 for plain VXLAN; 1424 encrypted with AES-GCM (Docker's numbers); 1392 with the
    AES-CBC + HMAC fallback (:mod:`stackctl.net.xfrm`); 1416 on the userspace tunnel
    (:mod:`stackctl.net.tunnel`: no VXLAN header, its own 30 bytes)."""
    if encrypted and algo == "userspace":
        from stackctl.net import tunnel

        return tunnel.mtu(base)
    mtu = base - VXLAN_OVERHEAD
    if not encrypted:
        return mtu
    overhead = ESP_OVERHEAD if algo == "gcm" else 57
    return (mtu - overhead) // 4 * 4


@dataclass
class Peer:
    """A container on the overlay network, anywhere in the cluster."""

    ip: str
    node: str
    vtep: str
    names: list[str] = field(default_factory=list)  # container name, aliases
    service: str = ""
    endpoint_mode: str = "vip"
    serving: bool = True
    container: str = ""  # its id (the key of its endpoint record here)

    @property
    def mac(self) -> str:
        return mac_for(self.ip)


@dataclass
class NodeAddress:
    """A node's own place on the network: its VTEP and its overlay address."""

    node: str
    vtep: str
    address: str


@dataclass
class OverlaySync:
    """What ``node.overlay.sync`` carries: one network as the manager sees it (complete)."""

    network: str
    vni: int
    subnet: str
    gateway: str
    node: str  # the receiving node's name
    internal: bool = False
    attachable: bool = False
    encrypted: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeAddress] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)  # encrypted: see net/xfrm.py
    mtu: int = 0  # 0: overlay_mtu(encrypted)
    #: "vxlan", "ipsec" or "userspace-aes-gcm" (the manager's choice for every node) and why
    datapath: str = ""
    datapath_reason: str = ""

    @property
    def userspace(self) -> bool:
        return self.encrypted and self.datapath == "userspace-aes-gcm"

    def me(self) -> NodeAddress:
        for n in self.nodes:
            if n.node == self.node:
                return n
        raise NetworkError(f"overlay network {self.network}: node {self.node} is not in the "
                           "view the manager sent")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OverlaySync:
        try:
            d = dict(data)
            d["nodes"] = [NodeAddress(**n) for n in d.get("nodes") or []]
            d["peers"] = [Peer(**p) for p in d.get("peers") or []]
            d["labels"] = dict(d.get("labels") or {})
            d["keys"] = [dict(k) for k in d.get("keys") or []]
            out = cls(**d)
            ipaddress.IPv4Network(out.subnet)
            if not 1 <= int(out.vni) < 2 ** 24:
                raise ValueError(f"VNI {out.vni} out of range")
            return out
        except (TypeError, ValueError) as exc:
            raise NetworkError(f"an overlay view that does not decode: {exc}") from None


# --------------------------------------------------------------------------------------------
# Pure parts


def _ip_key(a: str) -> tuple[int, ...]:
    return tuple(int(o) for o in a.split("."))


def merge_peers(state: NetState, net: Network, view: OverlaySync) -> bool:
    """Make ``state``'s remote endpoints on ``net`` exactly the peers of ``view`` that run on
    other nodes; give every service with a ``vip`` endpoint a VIP here (a node whose only
    clients are local needs the VIP of a service whose replicas are all elsewhere); drop VIPs
    no endpoint uses any more. True when something changed."""
    eps = state.endpoints.setdefault(net.id, {})
    before = {cid: ep.to_json() for cid, ep in eps.items() if ep.remote}
    for cid in list(before):
        del eps[cid]
    local_addresses = {ep.address for ep in eps.values()}
    for p in view.peers:
        if p.node == view.node or p.ip in local_addresses:
            continue
        key = p.container or f"peer-{p.ip}"
        eps[key] = Endpoint(network_id=net.id, container_id=key, address=p.ip,
                            ifname="", names=list(p.names), service=p.service,
                            endpoint_mode="dnsrr" if p.endpoint_mode == "dnsrr" else "vip",
                            healthy=bool(p.serving), vtep=p.vtep, node=p.node)
    after = {cid: ep.to_json() for cid, ep in eps.items() if ep.remote}
    changed = before != after
    vips = state.vips.setdefault(net.id, {})
    services = {ep.service for ep in eps.values() if ep.service and ep.endpoint_mode == "vip"}
    for service in sorted(services - set(vips)):
        from stackctl.net.sandbox import _ensure_vip

        _ensure_vip(state, net, service)
        changed = True
    for service in sorted(set(vips) - {ep.service for ep in eps.values()}):
        del vips[service]
        changed = True
    return changed


def desired_entries(state: NetState, net: Network,
                    view: OverlaySync) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(FDB entries {(MAC, VTEP)}, neighbour entries {(IP, MAC)}) the VXLAN device of ``net``
    needs: every remote endpoint, and every other node's own overlay address."""
    fdb: set[tuple[str, str]] = set()
    neigh: set[tuple[str, str]] = set()
    for ep in state.endpoints_of(net.id):
        if ep.remote:
            fdb.add((ep.mac, ep.vtep))
            neigh.add((ep.address, ep.mac))
    for n in view.nodes:
        if n.node != view.node and n.address:
            fdb.add((mac_for(n.address), n.vtep))
            neigh.add((n.address, mac_for(n.address)))
    return fdb, neigh


def remote_addresses(state: NetState, net: Network) -> list[str]:
    """Addresses on ``net`` that live on other nodes (SNAT targets), sorted."""
    return sorted({ep.address for ep in state.endpoints_of(net.id) if ep.remote}, key=_ip_key)


# --------------------------------------------------------------------------------------------
# Kernel


def _ipr():
    from pyroute2 import IPRoute

    return IPRoute()


def ensure_vxlan(net: Network, tag: str) -> None:
    """The network's VXLAN device, on its bridge (or, ``net.macvlan``, the lower device of the
    node's and the containers' macvlan ports), up (idempotent; recreated when its VNI or
    local address differ — which takes the macvlan ports with it). A UDP port 4789 another
    program holds is one clear error."""
    from stackctl.net.bridge import link_index, owner_alias

    if not net.vni or not net.vtep:
        return
    if net.userspace_tunnel:  # a TAP on the bridge instead (stackctl/net/tunneld.py)
        from stackctl.net import tunneld

        remove_link_quietly(net.vxlan)
        tunneld.ensure_tap(net, tag)
        return
    try:
        with _ipr() as ipr:
            idx = link_index(ipr, net.vxlan)
            if idx is not None:
                link = ipr.get_links(idx)[0]
                data = link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
                if data is None or data.get_attr("IFLA_VXLAN_ID") != net.vni or \
                        data.get_attr("IFLA_VXLAN_LOCAL") != net.vtep:
                    ipr.link("del", index=idx)
                    idx = None
            if idx is None:
                ipr.link("add", ifname=net.vxlan, kind="vxlan", vxlan_id=net.vni,
                         vxlan_local=net.vtep, vxlan_port=VXLAN_PORT, vxlan_learning=0,
                         vxlan_proxy=1, vxlan_ttl=64, vxlan_udp_csum=1, mtu=net.mtu)
                idx = link_index(ipr, net.vxlan)
            ipr.link("set", index=idx, ifalias=owner_alias(tag, f"vxlan {net.name}"))
            if net.macvlan:  # the node's and the containers' macvlan ports hang on it
                ipr.link("set", index=idx, mtu=net.mtu)
            else:
                ipr.link("set", index=idx, master=link_index(ipr, net.bridge), mtu=net.mtu)
            try:
                ipr.link("set", index=idx, state="up")
            except Exception as exc:  # the UDP socket is bound when the device goes up
                if "in use" in str(exc) or getattr(exc, "code", 0) == 98:
                    ipr.link("del", index=idx)
                    raise NetworkError(
                        f"overlay network {net.name!r}: UDP port {VXLAN_PORT} (VXLAN) is "
                        "already in use on this node by another program",
                        hint=f"free port {VXLAN_PORT}/udp on this node (`ss -ulpn sport = "
                        f":{VXLAN_PORT}`)") from None
                raise
    except NetworkError:
        raise
    except Exception as exc:
        raise NetworkError(f"cannot set up VXLAN device {net.vxlan} of network "
                           f"{net.name!r}: {exc}", hint="needs root (CAP_NET_ADMIN) and the "
                           "vxlan kernel module") from None


def remove_link_quietly(ifname: str) -> None:
    from stackctl.net.bridge import remove_link

    try:
        remove_link(ifname)
    except NetworkError:
        pass


def kernel_entries(ifname: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(FDB {(MAC, dst)}, permanent neighbours {(IP, MAC)}) of a VXLAN device now."""
    fdb: set[tuple[str, str]] = set()
    neigh: set[tuple[str, str]] = set()
    with _ipr() as ipr:
        from stackctl.net.bridge import link_index

        idx = link_index(ipr, ifname)
        if idx is None:
            return fdb, neigh
        for msg in ipr.fdb("dump", ifindex=idx):
            if msg["ifindex"] != idx:
                continue
            dst = msg.get_attr("NDA_DST")
            mac = msg.get_attr("NDA_LLADDR")
            if dst and mac and mac != "00:00:00:00:00:00":
                fdb.add((mac, dst))
        for msg in ipr.get_neighbours(family=socket.AF_INET, ifindex=idx):
            mac = msg.get_attr("NDA_LLADDR")
            if mac:
                neigh.add((msg.get_attr("NDA_DST"), mac))
    return fdb, neigh


def program(net: Network, fdb: set[tuple[str, str]], neigh: set[tuple[str, str]]) -> None:
    """Make the VXLAN device's static entries exactly ``fdb`` and ``neigh``."""
    from stackctl.net.bridge import link_index

    have_fdb, have_neigh = kernel_entries(net.vxlan)
    with _ipr() as ipr:
        idx = link_index(ipr, net.vxlan)
        if idx is None:
            return
        for mac, dst in sorted(have_fdb - fdb):
            try:
                ipr.fdb("del", ifindex=idx, lladdr=mac, dst=dst)
            except Exception:
                pass
        for ip, mac in sorted(have_neigh - neigh):
            try:
                ipr.neigh("del", ifindex=idx, dst=ip, lladdr=mac)
            except Exception:
                pass
        for mac, dst in sorted(fdb - have_fdb):
            ipr.fdb("append", ifindex=idx, lladdr=mac, dst=dst, state=0x80)  # permanent
        for ip, mac in sorted(neigh - have_neigh):
            ipr.neigh("replace", ifindex=idx, dst=ip, lladdr=mac, state=0x80)


def sync(paths: NodePaths, view: OverlaySync) -> dict[str, Any]:
    """:func:`apply_view`, its errors naming this node (the manager relays them)."""
    try:
        return apply_view(paths, view)
    except NetworkError as exc:
        if exc.message.startswith(f"node {view.node}:"):
            raise
        raise NetworkError(f"node {view.node}: {exc.message}", hint=exc.hint) from None


def apply_view(paths: NodePaths, view: OverlaySync) -> dict[str, Any]:
    """Make this node's part of overlay network ``view.network`` what ``view`` says
    (idempotent): the network (created if missing, with the manager's subnet), its VXLAN
    device, the remote endpoints, the FDB and neighbour entries, IPsec for an encrypted one,
    and the firewall. Returns a small summary (peers, entries)."""
    from stackctl.net import bridge, networks, tunnel, tunneld, xfrm

    me = view.me()
    mtu = view.mtu or overlay_mtu(view.encrypted)
    if view.userspace:
        ok, why = tunneld.available()
        if not ok:
            raise NetworkError(f"overlay network {view.network!r} is encrypted, but this node "
                               f"cannot run its userspace tunnel: {why}; refusing to send its "
                               "traffic in clear", hint="install the `cryptography` package "
                               "and make /dev/net/tun available (CONFIG_TUN)")
    elif view.encrypted:
        xfrm.check_available(view.network, (view.keys[-1].get("algo") if view.keys else None)
                             or "gcm")
    try:
        networks.get(paths, view.network)
    except NotFoundError:
        try:
            networks.create(paths, view.network, subnet=view.subnet, gateway=view.gateway,
                            internal=view.internal, attachable=view.attachable,
                            labels=view.labels, mtu=mtu, driver="overlay")
        except ConflictError:
            pass  # made by a concurrent sync
    with store.locked(paths) as state:
        net = networks.get(paths, view.network, state)
        if net.driver != "overlay" or net.subnet != str(ipaddress.IPv4Network(view.subnet)):
            raise ConflictError(
                f"node {view.node}: network {view.network!r} exists there as a "
                f"{net.driver} network on {net.subnet}, not the overlay on {view.subnet}",
                hint="remove it on that node (`stackctl network rm`) and deploy again")
        first = not net.vni
        net.vni, net.vtep, net.node_address = int(view.vni), me.vtep, me.address
        net.encrypted = view.encrypted
        net.datapath = view.datapath or ("ipsec" if view.encrypted else "vxlan")
        if first and net.datapath == "vxlan":
            net.attach = "macvlan"  # fixed for the network's life here (containers hang on it)
        net.datapath_reason = view.datapath_reason
        merge_peers(state, net, view)
        try:
            bridge.ensure_bridge(net, networks.tag(paths), state.vips.get(net.id, {}).values())
            fdb, neigh = desired_entries(state, net, view)
            if net.userspace_tunnel:  # the same entries, to the tunnel process
                tunneld.ensure(paths, tunnel.config_for(
                    net.name, net.id, net.vni, me.vtep, net.mtu,
                    [n.vtep for n in view.nodes], fdb, neigh, view.keys))
            else:
                program(net, fdb, neigh)
            if view.encrypted and not net.userspace_tunnel:
                xfrm.apply(net, me, [n for n in view.nodes if n.node != view.node], view.keys)
        finally:
            networks.commit(paths, state)
        return {"network": net.name, "peers": len(remote_addresses(state, net)),
                "fdb": len(fdb), "neigh": len(neigh)}


def forget_node(paths: NodePaths, node: str) -> int:
    """Drop every remote endpoint of ``node`` on every overlay network (the node left); the
    entries follow at the next :func:`sync`. Returns how many went."""
    gone = 0
    with store.locked(paths) as state:
        for eps in state.endpoints.values():
            for cid in [c for c, ep in eps.items() if ep.remote and ep.node == node]:
                del eps[cid]
                gone += 1
        if gone:
            from stackctl.net import networks

            networks.commit(paths, state)
    return gone


def remove_kernel(net: Network, paths: NodePaths | None = None) -> None:
    """What an overlay network has beyond a bridge: the VXLAN device (its FDB and neighbour
    entries go with it) and its IPsec states and policies — or, on the userspace data path,
    its tunnel process (and files) and its TAP device."""
    from stackctl.net import bridge, tunnel, tunneld, xfrm

    if net.userspace_tunnel:
        if paths is not None:
            tunneld.stop(paths, net.id)
        bridge.remove_link(tunnel.tap_name(net.id))
    bridge.remove_link(net.vxlan)
    if (net.encrypted or net.vni) and not net.userspace_tunnel:
        xfrm.remove(net)
