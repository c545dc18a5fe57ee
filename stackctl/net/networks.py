"""Network lifecycle: create, list, inspect, remove, prune — and :func:`commit`, which makes
the host's shared pieces (firewall table, ip_forward) match the state after every change.

Every change runs under the state lock (:func:`stackctl.net.store.locked`); a failure undoes
what the call made in the kernel before the error reaches the caller.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from stackctl.errors import ConflictError, NotFoundError
from stackctl.net import bridge, firewall, ipam, store
from stackctl.net.model import (
    BRIDGE_PREFIX, DEFAULT_BRIDGE, DEFAULT_MTU, NetState, Network, NetworkError, check_name, new_id,
)
from stackctl.paths import NodePaths

IP_FORWARD = "net/ipv4/ip_forward"


def tag(paths: NodePaths) -> str:
    """The owner tag of this node's kernel objects (same as its firewall table's name)."""
    return firewall.table_name(paths)


def commit(paths: NodePaths, state: NetState) -> None:
    """Firewall and ip_forward as ``state`` needs them. Forwarding is turned on only while a
    non-internal network exists; the host's previous value is recorded and restored when the
    last one goes (unless bridges of another stackctl node still exist)."""
    firewall.apply(paths, state)
    needs_forward = any(not n.internal for n in state.networks.values())
    current = bridge.read_sysctl(IP_FORWARD)
    if needs_forward and current != "1":
        if state.ip_forward_was is None:
            state.ip_forward_was = current
        bridge.write_sysctl(IP_FORWARD, "1")
    elif not needs_forward and state.ip_forward_was is not None:
        others = [name for name, kind, _ in bridge.links()
                  if kind == "bridge" and name.startswith(BRIDGE_PREFIX)]
        if not others:
            bridge.write_sysctl(IP_FORWARD, state.ip_forward_was)
        state.ip_forward_was = None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def get(paths: NodePaths, name_or_id: str, state: NetState | None = None) -> Network:
    state = store.load(paths) if state is None else state
    net = state.find(name_or_id)
    if net is None:
        raise NotFoundError(f"network {name_or_id!r} not found",
                            hint="list networks with `stackctl network ls`")
    return net


def list_networks(paths: NodePaths) -> list[Network]:
    return sorted(store.load(paths).networks.values(), key=lambda n: n.name)


def create(
    paths: NodePaths,
    name: str,
    *,
    subnet: str | None = None,
    gateway: str | None = None,
    ip_range: str | None = None,
    internal: bool = False,
    attachable: bool = False,
    labels: dict[str, str] | None = None,
    mtu: int = DEFAULT_MTU,
    driver: str = "bridge",
    pools: tuple[ipam.Pool, ...] = ipam.DEFAULT_POOLS,
    predefined: bool = False,
) -> Network:
    """Create a bridge network: state record, bridge with gateway address, firewall rules.
    ``predefined``: the default ``bridge`` network (its name is reserved for users)."""
    if not (predefined and name == DEFAULT_BRIDGE):
        check_name(name)
    if driver not in ("bridge", "overlay"):
        raise NetworkError(f"network driver {driver!r} is not supported (only 'bridge', and "
                           "'overlay' made by the manager of a cluster)")
    if not 68 <= mtu <= 65535:
        raise NetworkError(f"invalid MTU {mtu}: must be 68-65535")
    with store.locked(paths) as state:
        if any(n.name == name for n in state.networks.values()):
            raise ConflictError(f"network with name {name!r} already exists",
                                hint="choose another name or remove the existing network")
        routes = bridge.host_routes()
        ours = {n.name: ipam.parse_subnet(n.subnet) for n in state.networks.values()}
        bridges = {n.bridge for n in state.networks.values()}
        foreign_routes = [r for r in routes if not any(r == s for s in ours.values())]
        if subnet:
            net_addr = ipam.parse_subnet(subnet)
            ipam.check_subnet(net_addr, ours, foreign_routes)
        else:
            net_addr = ipam.pick_subnet(list(ours.values()) + routes, pools)
        gw = ipam.check_gateway(net_addr, gateway) if gateway else ipam.default_gateway(net_addr)
        if ip_range:
            rng = ipam.parse_subnet(ip_range)
            if not rng.subnet_of(net_addr):
                raise NetworkError(f"ip range {rng} is not inside subnet {net_addr}")
        net = Network(
            id=new_id(), name=name, subnet=str(net_addr), gateway=str(gw), driver=driver,
            internal=internal, attachable=attachable, labels=dict(labels or {}), mtu=mtu,
            ip_range=ip_range or "", created=_now(),
        )
        while net.bridge in bridges:  # 32 bits of id: a clash is rare, but cheap to avoid
            net.id = new_id()
        state.networks[net.id] = net
        state.endpoints[net.id] = {}
        try:
            if not net.overlay:  # an overlay's links come with its first view (overlay.sync)
                bridge.ensure_bridge(net, tag(paths))
            commit(paths, state)
        except BaseException:
            del state.networks[net.id]
            state.endpoints.pop(net.id, None)
            bridge.remove_link(net.bridge)
            _safe_commit(paths, state)
            raise
        return net


def ensure_default_bridge(paths: NodePaths) -> Network:
    """Docker's default ``bridge`` network, made on first use (``run`` without ``--network``):
    NAT out, published ports, containers reach each other by address, and no name resolution
    on it (their resolv.conf is the host's, as Docker's default bridge). Safe against a
    concurrent first use: the loser of the race finds the winner's network."""
    net = store.load(paths).find(DEFAULT_BRIDGE)
    if net is not None and net.name == DEFAULT_BRIDGE:
        return net
    try:
        return create(paths, DEFAULT_BRIDGE, predefined=True)
    except ConflictError:
        return get(paths, DEFAULT_BRIDGE)


def is_default_bridge(net: Network) -> bool:
    return net.name == DEFAULT_BRIDGE


def _safe_commit(paths: NodePaths, state: NetState) -> None:
    try:
        commit(paths, state)
    except NetworkError:
        pass  # the original error matters more; gc_stale finishes the job


def remove(paths: NodePaths, names: list[str], *, force: bool = False) -> list[str]:
    """Remove networks by name or id. A network with containers on it is refused (unless
    ``force``, used by gc, which detaches them first). Returns the names removed."""
    removed = []
    with store.locked(paths) as state:
        for name in names:
            net = get(paths, name, state)
            if is_default_bridge(net) and not force:
                raise ConflictError(f"{net.name} is a pre-defined network and cannot be removed")
            # endpoints on other nodes (overlay) are the manager's view, not users of this node
            eps = [e for e in state.endpoints_of(net.id) if not e.remote]
            if eps and not force:
                who = ", ".join(sorted(e.names[0] if e.names else e.container_id[:12] for e in eps))
                raise ConflictError(
                    f"network {net.name!r} has active endpoints ({who})",
                    hint="stop and remove those containers first",
                )
            for ep in eps:
                from stackctl.net import veth

                sb = state.sandboxes.get(ep.container_id)
                veth.detach(net, ep.container_id, sb.netns if sb else "", ep.ifname)
                if sb and net.id in sb.networks:
                    sb.networks.remove(net.id)
            if net.overlay:
                from stackctl.net import overlay

                overlay.remove_kernel(net, paths)
            bridge.remove_link(net.bridge)
            del state.networks[net.id]
            state.endpoints.pop(net.id, None)
            state.vips.pop(net.id, None)
            removed.append(net.name)
        commit(paths, state)
    return removed


def prune(paths: NodePaths) -> list[str]:
    """Remove every network no container is attached to."""
    state = store.load(paths)
    unused = [n.name for n in state.networks.values() if not state.endpoints_of(n.id) and not is_default_bridge(n)]
    return remove(paths, unused) if unused else []


def reapply(paths: NodePaths) -> None:
    """After a reboot or crash: recreate missing bridges and reload the firewall from state."""
    with store.locked(paths) as state:
        for net in state.networks.values():
            bridge.ensure_bridge(net, tag(paths), state.vips.get(net.id, {}).values())
        commit(paths, state)


def inspect(paths: NodePaths, net: Network, state: NetState | None = None) -> dict[str, Any]:
    """Docker's `network inspect` shape."""
    state = store.load(paths) if state is None else state
    containers = {}
    for ep in state.endpoints_of(net.id):
        if ep.remote:
            continue
        containers[ep.container_id] = {
            "Name": ep.names[0] if ep.names else "",
            "EndpointID": ep.host_ifname,
            "MacAddress": ep.mac,
            "IPv4Address": f"{ep.address}/{net.prefixlen}",
            "IPv6Address": "",
        }
    config: dict[str, str] = {"Subnet": net.subnet, "Gateway": net.gateway}
    if net.ip_range:
        config["IPRange"] = net.ip_range
    return {
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Scope": "swarm" if net.overlay else "local",
        "Driver": net.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [config]},
        "Internal": net.internal,
        "Attachable": net.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": {
            "com.docker.network.bridge.name": net.bridge,
            "com.docker.network.driver.mtu": str(net.mtu),
            **({"encrypted": ""} if net.encrypted else {}),
            **({"com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true"} if is_default_bridge(net) else {}),
        },
        "Labels": dict(net.labels),
        "Services": {s: {"VIP": v} for s, v in sorted(state.vips.get(net.id, {}).items())},
        **({"Overlay": _overlay_inspect(paths, net)} if net.overlay else {}),
    }


def _overlay_inspect(paths: NodePaths, net: Network) -> dict[str, Any]:
    """An overlay network's data path on this node (which, why; the tunnel's counters)."""
    out: dict[str, Any] = {"VNI": net.vni, "VTEP": net.vtep, "NodeAddress": net.node_address,
                           "Encrypted": net.encrypted,
                           "DataPath": net.datapath or ("ipsec" if net.encrypted else "vxlan"),
                           "DataPathReason": net.datapath_reason}
    if net.userspace_tunnel:
        from stackctl.net import tunneld

        out["Tunnel"] = tunneld.summary(paths, net)
    return out
