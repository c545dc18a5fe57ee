"""Linux bridges of networks, through netlink (pyroute2), and the few sysctls they need.
(A plain VXLAN overlay has a macvlan port of its VXLAN device in the bridge's place: same
name, same addresses, no bridge — see :func:`ensure_bridge`.)

A network's bridge ``stk-<id[:8]>`` carries the gateway address (``<gateway>/<prefix>``) and
the network's service VIPs (as /32s, so containers reach them through the host, where the
firewall balances them over replicas). Its ifalias records which node and network own it, so
that :mod:`stackctl.net.gc` removes only its own leftovers.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable

from stackctl.net.model import NetworkError, Network

SYSCTL_ROOT = "/proc/sys"


def owner_alias(tag: str, what: str) -> str:
    return f"stackctl {tag} {what}"


def _ipr():
    from pyroute2 import IPRoute

    return IPRoute()


def link_index(ipr, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


#: MACVLAN_MODE_BRIDGE (linux/if_link.h): ports of one lower device reach each other directly
MACVLAN_BRIDGE = 4


def link_kind(ipr, idx: int) -> str:
    info = ipr.get_links(idx)[0].get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") if info is not None else "") or ""


def ensure_bridge(net: Network, tag: str, vips: Iterable[str] = ()) -> None:
    """Create the bridge if missing (idempotent) and make its addresses exactly the gateway
    plus ``vips``; bring it up; allow loopback-sourced traffic for published ports.

    On a plain VXLAN overlay whose containers are macvlan ports (``net.macvlan``) the node's
    own link of that name is a macvlan port of the VXLAN device too (bridge mode: it and the
    containers reach each other without leaving the node), made after the VXLAN device."""
    if net.macvlan:
        from stackctl.net import overlay

        overlay.ensure_vxlan(net, tag)
    kind = "macvlan" if net.macvlan else "bridge"
    try:
        with _ipr() as ipr:
            idx = link_index(ipr, net.bridge)
            if idx is not None and link_kind(ipr, idx) != kind:
                ipr.link("del", index=idx)  # the other kind (a network made before `attach`)
                idx = None
            if idx is None:
                if net.macvlan:
                    ipr.link("add", ifname=net.bridge, kind="macvlan",
                             link=link_index(ipr, net.vxlan), macvlan_mode=MACVLAN_BRIDGE,
                             mtu=net.mtu)
                else:
                    ipr.link("add", ifname=net.bridge, kind="bridge", mtu=net.mtu)
                idx = link_index(ipr, net.bridge)
            ipr.link("set", index=idx, ifalias=owner_alias(tag, f"network {net.name}"))
            want = {(net.gateway, net.prefixlen)} | {(v, 32) for v in vips}
            if net.node_address:  # an overlay network: this node's own address on it
                want.add((net.node_address, 32))
                from stackctl.net.model import mac_for

                mac = mac_for(net.node_address)
                link = ipr.get_links(idx)[0]
                if link.get_attr("IFLA_ADDRESS") != mac:
                    ipr.link("set", index=idx, address=mac)
            have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                    for a in ipr.get_addr(index=idx, family=socket.AF_INET)}
            for address, plen in sorted(have - want):
                ipr.addr("del", index=idx, address=address, prefixlen=plen)
            for address, plen in sorted(want - have):
                ipr.addr("add", index=idx, address=address, prefixlen=plen)
            ipr.link("set", index=idx, state="up")
    except NetworkError:
        raise
    except Exception as exc:  # pyroute2 raises NetlinkError / OSError
        raise NetworkError(f"cannot set up bridge {net.bridge} of network {net.name!r}: {exc}",
                           hint="bridges need root (CAP_NET_ADMIN)") from None
    write_sysctl(f"net/ipv4/conf/{net.bridge}/route_localnet", "1")
    write_sysctl(f"net/ipv6/conf/{net.bridge}/disable_ipv6", "1", missing_ok=True)
    if net.vni and not net.macvlan:
        from stackctl.net import overlay

        overlay.ensure_vxlan(net, tag)


def remove_link(ifname: str) -> bool:
    """Delete a link by name; False if it was not there."""
    with _ipr() as ipr:
        idx = link_index(ipr, ifname)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except Exception as exc:
            if "No such device" in str(exc):
                return False
            raise NetworkError(f"cannot remove link {ifname}: {exc}") from None
        return True


def links() -> list[tuple[str, str, str]]:
    """(name, kind, ifalias) of every link of the host's netns."""
    out = []
    with _ipr() as ipr:
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else ""
            out.append((link.get_attr("IFLA_IFNAME"), kind or "", link.get_attr("IFLA_IFALIAS") or ""))
    return out


def host_routes() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination the host routes (main table), other than the default route."""
    out = []
    with _ipr() as ipr:
        for r in ipr.get_routes(family=socket.AF_INET):
            dst = r.get_attr("RTA_DST")
            if dst is None or r["dst_len"] == 0:
                continue
            out.append(ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False))
    return out


# --- sysctls ----------------------------------------------------------------------------

def read_sysctl(key: str) -> str:
    with open(os.path.join(SYSCTL_ROOT, key)) as f:
        return f.read().strip()


def write_sysctl(key: str, value: str, *, missing_ok: bool = False) -> None:
    try:
        with open(os.path.join(SYSCTL_ROOT, key), "w") as f:
            f.write(value)
    except FileNotFoundError:
        if not missing_ok:
            raise NetworkError(f"sysctl {key.replace('/', '.')} does not exist") from None
    except OSError as exc:
        raise NetworkError(f"cannot set sysctl {key.replace('/', '.')}={value}: {exc}") from None
