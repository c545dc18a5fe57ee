"""What a name means to a container, pure: from the networking state, the querying client's
address and the name asked, decide the answer — addresses, a PTR name, NXDOMAIN, or "forward
to the upstream resolvers".

Scope: a container resolves the names of every network it is attached to (as in Docker). A
client that is no container (the host itself, say) gets the network whose gateway it asked.

- ``tasks.<service>``: the addresses of all healthy replicas.
- ``<service>``: the service VIP (``endpoint_mode: vip``), else all healthy replicas in
  rotated order (``dnsrr``: DNS round robin).
- a container name, hostname or alias: that container's address on the shared network.
- ``d.c.b.a.in-addr.arpa`` of a known address: the container's name.
- anything else with a dot is forwarded (not from internal-only containers); a single label
  that is none of the above is NXDOMAIN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stackctl.net.dns import reverse_name_to_ip
from stackctl.net.ipam import ip_in
from stackctl.net.model import DEFAULT_BRIDGE, Endpoint, NetState, Network


@dataclass(frozen=True)
class Decision:
    kind: str  # "answer" | "nxdomain" | "forward" | "refuse"
    addresses: list[str] = field(default_factory=list)
    ptr: list[str] = field(default_factory=list)
    upstreams: list[str] = field(default_factory=list)  # the client's own `dns`, if any


def scope_of(state: NetState, client_ip: str, via_network: str | None) -> tuple[list[Network], str | None]:
    """(networks the client may resolve on, the client's container id or None). The default
    ``bridge`` network is never in scope: Docker gives it no name resolution."""
    nets, cid = _scope_of(state, client_ip, via_network)
    return [n for n in nets if n.name != DEFAULT_BRIDGE], cid


def _scope_of(state: NetState, client_ip: str, via_network: str | None) -> tuple[list[Network], str | None]:
    for nid, eps in state.endpoints.items():
        for cid, ep in eps.items():
            if ep.address == client_ip and nid in state.networks:
                sb = state.sandboxes.get(cid)
                nids = sb.networks if sb else [nid]
                return [state.networks[n] for n in nids if n in state.networks], cid
    if via_network and via_network in state.networks:
        return [state.networks[via_network]], None
    return [n for n in state.networks.values() if ip_in(client_ip, n.subnet)], None


def _rotate(items: list[str], by: int) -> list[str]:
    if not items:
        return items
    k = by % len(items)
    return items[k:] + items[:k]


def _addr_key(a: str) -> tuple[int, ...]:
    return tuple(int(o) for o in a.split("."))


def decide(
    state: NetState,
    client_ip: str,
    name: str,
    *,
    via_network: str | None = None,
    search: tuple[str, ...] = (),
    rotate: int = 0,
) -> Decision:
    """Decide the A/PTR answer for ``name`` asked by ``client_ip``."""
    name = name.lower().rstrip(".")
    nets, cid = scope_of(state, client_ip, via_network)
    upstreams = list(state.sandboxes[cid].dns) if cid and cid in state.sandboxes else []
    can_forward = cid is None or any(not n.internal for n in nets) or not nets

    ip = reverse_name_to_ip(name)
    if ip is not None:
        for net in nets:
            for ep in state.endpoints_of(net.id):
                if ep.address == ip and ep.names:
                    return Decision("answer", ptr=[ep.names[0]])
            if ip_in(ip, net.subnet):
                return Decision("nxdomain")
        return Decision("forward", upstreams=upstreams) if can_forward else Decision("refuse")

    for candidate in [name] + [name[: -len(s) - 1] for s in search if name.endswith("." + s)]:
        found = _lookup(state, nets, candidate, rotate)
        if found is not None:
            return Decision("answer", addresses=found)
    if "." not in name:
        return Decision("nxdomain")
    return Decision("forward", upstreams=upstreams) if can_forward else Decision("refuse")


def _lookup(state: NetState, nets: list[Network], name: str, rotate: int) -> list[str] | None:
    if name.startswith("tasks."):
        svc = name[len("tasks."):]
        replicas = _replicas(state, nets, svc)
        if replicas is not None:
            return sorted({ep.address for ep in replicas if ep.healthy}, key=_addr_key)
    replicas = _replicas(state, nets, name)
    if replicas is not None:
        for net in nets:
            vip = state.vips.get(net.id, {}).get(name)
            if vip and any(ep.endpoint_mode == "vip" for ep in replicas):
                return [vip]
        healthy = sorted({ep.address for ep in replicas if ep.healthy}, key=_addr_key)
        return _rotate(healthy, rotate)
    for net in nets:
        for ep in sorted(state.endpoints_of(net.id), key=lambda e: _addr_key(e.address)):
            if name in (n.lower() for n in ep.names):
                return [ep.address]
    return None


def _replicas(state: NetState, nets: list[Network], service: str) -> list[Endpoint] | None:
    """The endpoints of ``service`` on the scope networks; None when no such service."""
    if not service:
        return None
    found = [ep for net in nets for ep in state.endpoints_of(net.id) if ep.service.lower() == service]
    return found or None


def hosts_file(hostname: str, address: str, extra_hosts: list[str]) -> str:
    """/etc/hosts of a container (for runtimes that want it rendered): localhost, its own
    name, then ``extra_hosts`` ("name:ip")."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if address and hostname:
        lines.append(f"{address}\t{hostname}")
    for item in extra_hosts:
        host, _, ip = item.partition(":")
        if host and ip:
            lines.append(f"{ip}\t{host}")
    return "\n".join(lines) + "\n"
