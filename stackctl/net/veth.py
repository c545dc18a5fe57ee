"""Endpoints: a veth pair per (container, network) — or, on a plain VXLAN overlay, a macvlan
port of its VXLAN device (:func:`_add_macvlan`). The host end ``stkv<key>`` is a port of
the network's bridge; the peer is created directly inside the container's netns as ``eth0``
(``eth1``… for later networks), with the endpoint's MAC and the network's MTU, then given its
address and — for the first non-internal network only — the default route via
the gateway. ``lo`` is brought up in the netns too.

Any failure undoes what this call made (deleting the host end deletes the peer with it).
"""

from __future__ import annotations

import errno
import os

from stackctl.net.bridge import link_index, owner_alias
from stackctl.net.model import Endpoint, NetworkError, Network, veth_names


def _ipr(netns: str | None = None):
    """An IPRoute socket in the host's network namespace, or in the one bound at ``netns``
    (made there by this thread, without pyroute2's forked helper: see
    :mod:`stackctl.net.netns`)."""
    from pyroute2 import IPRoute

    if netns is None:
        return IPRoute()
    from stackctl.net import netns as nsmod

    with nsmod.inside(netns):
        return IPRoute()


def attach(netns_path: str, net: Network, ep: Endpoint, *, default_route: bool, tag: str) -> None:
    try:
        if net.macvlan:
            _add_macvlan(netns_path, net, ep)
        else:
            _add_veth(netns_path, net, ep, tag)
        with _ipr(netns_path) as ns:
            lo = link_index(ns, "lo")
            if lo is not None:
                ns.link("set", index=lo, state="up")
            idx = link_index(ns, ep.ifname)
            ns.addr("add", index=idx, address=ep.address, prefixlen=net.prefixlen)
            ns.link("set", index=idx, state="up")
            if default_route:
                ns.route("add", dst="0.0.0.0/0", gateway=net.gateway, oif=idx)
    except NetworkError:
        detach(net, ep.container_id, netns_path, ep.ifname)
        raise
    except Exception as exc:
        detach(net, ep.container_id, netns_path, ep.ifname)
        raise NetworkError(
            f"cannot attach container {ep.container_id[:12]} to network {net.name!r}: {exc}"
        ) from None


def _add_macvlan(netns_path: str, net: Network, ep: Endpoint) -> None:
    """A plain VXLAN overlay: the endpoint is a macvlan port (bridge mode) of the network's
    VXLAN device, made directly inside the netns with its name, MAC and MTU. Frames to other
    containers of the node go port to port, to other nodes straight into the VXLAN device:
    no veth, no bridge, none of br_netfilter's hooks on the way (docs/networking.md)."""
    from stackctl.net.bridge import MACVLAN_BRIDGE

    with _ipr() as ipr:
        lower = link_index(ipr, net.vxlan)
        if lower is None:
            raise NetworkError(f"VXLAN device {net.vxlan} of network {net.name!r} is missing")
        fd = os.open(netns_path, os.O_RDONLY)
        try:
            ipr.link("add", ifname=ep.ifname, kind="macvlan", link=lower,
                     macvlan_mode=MACVLAN_BRIDGE, net_ns_fd=fd, address=ep.mac, mtu=net.mtu)
        except Exception as exc:
            if getattr(exc, "code", 0) == errno.EADDRINUSE:  # a port with this MAC lives on
                raise NetworkError(
                    f"cannot attach container {ep.container_id[:12]} to network "
                    f"{net.name!r}: address {ep.address} (MAC {ep.mac}) is still held by a "
                    "network namespace on this node (a process of a removed container?)",
                    hint="find the process with `lsns -t net` and stop it") from None
            raise
        finally:
            os.close(fd)


def _add_veth(netns_path: str, net: Network, ep: Endpoint, tag: str) -> None:
    host, _peer = veth_names(net.id, ep.container_id)
    with _ipr() as ipr:
        old = link_index(ipr, host)
        if old is not None:  # left over by a crash: start clean
            ipr.link("del", index=old)
        br = link_index(ipr, net.bridge)
        if br is None:
            raise NetworkError(f"bridge {net.bridge} of network {net.name!r} is missing")
        # the peer is made inside the netns with its final name, MAC and MTU (as `ip link
        # add … peer name eth0 netns NS`): moving a made link into a netns costs ~20 ms of
        # kernel work per endpoint (it is unregistered and registered again), this ~1 ms
        fd = os.open(netns_path, os.O_RDONLY)
        try:
            ipr.link("add", ifname=host, kind="veth", mtu=net.mtu,
                     peer={"ifname": ep.ifname, "net_ns_fd": fd, "address": ep.mac,
                           "mtu": net.mtu})
        finally:
            os.close(fd)
        hidx = link_index(ipr, host)
        ipr.link("set", index=hidx,
                 ifalias=owner_alias(tag, f"endpoint {ep.container_id[:12]} {net.name}"))
        ipr.link("set", index=hidx, master=br, state="up")


def set_default_route(netns_path: str, ifname: str, gateway: str) -> None:
    """The netns's default route via ``gateway`` on ``ifname`` (replacing any), after the
    network that held it was disconnected."""
    with _ipr(netns_path) as ns:
        idx = link_index(ns, ifname)
        if idx is None:
            raise NetworkError(f"interface {ifname} is missing in {netns_path}")
        ns.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=idx)


def detach(net: Network, container_id: str, netns_path: str = "", ifname: str = "") -> None:
    """Remove the endpoint's veth pair (a missing one is fine); on a macvlan network its port
    ``ifname`` inside ``netns_path`` (a missing one, or namespace, is fine: the port goes
    with its namespace)."""
    from stackctl.net.bridge import remove_link

    if not net.macvlan:
        host, _peer = veth_names(net.id, container_id)
        remove_link(host)
        return
    if not (netns_path and ifname and os.path.exists(netns_path)):
        return
    try:
        with _ipr(netns_path) as ns:
            idx = link_index(ns, ifname)
            if idx is not None:
                ns.link("del", index=idx)
    except Exception:
        pass  # not a live namespace any more (a reboot): nothing is left to remove


def next_ifname(used: list[str]) -> str:
    i = 0
    while f"eth{i}" in used:
        i += 1
    return f"eth{i}"
