"""IP address management, pure: choose a subnet for a new network and addresses inside it.

Inputs are plain data (subnets in use, addresses taken); the caller gathers them from the
state file and the host's routing table. Nothing here touches the kernel.

Default pool: 10.89.0.0/16 in /24s. Docker's default pools (172.17.0.0/16 … 172.31.0.0/16,
192.168.0.0/16 in /20s) and podman's default 10.88.0.0/16 are never chosen automatically, so
stackctl networks can live next to theirs; every subnet the host routes (any interface, other
than the default route) and every existing stackctl network is skipped as well.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from stackctl.net.model import NetworkError


@dataclass(frozen=True, slots=True)
class Pool:
    base: IPv4Network
    size: int  # prefix length of the subnets carved from base


DEFAULT_POOLS: tuple[Pool, ...] = (Pool(IPv4Network("10.89.0.0/16"), 24),)

# Never picked automatically: other engines' defaults.
FOREIGN_POOLS: tuple[IPv4Network, ...] = (
    IPv4Network("172.17.0.0/16"),  # docker0
    IPv4Network("172.18.0.0/15"),  # docker's user networks: 172.18 … 172.31
    IPv4Network("172.20.0.0/14"),
    IPv4Network("172.24.0.0/13"),
    IPv4Network("192.168.0.0/16"),  # docker's second pool, in /20s
    IPv4Network("10.88.0.0/16"),  # podman's default network
)


def parse_pools(spec: str) -> tuple[Pool, ...]:
    """``"10.89.0.0/16:24,10.90.0.0/16:26"`` -> pools (for a node's configuration)."""
    pools = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        base, _, size = part.partition(":")
        try:
            net = IPv4Network(base, strict=True)
        except ValueError as exc:
            raise NetworkError(f"invalid address pool {part!r}: {exc}") from None
        n = int(size) if size else 24
        if not net.prefixlen <= n <= 30:
            raise NetworkError(f"invalid address pool {part!r}: size must be /{net.prefixlen}…/30")
        pools.append(Pool(net, n))
    return tuple(pools)


def pick_subnet(
    used: Iterable[IPv4Network],
    pools: Iterable[Pool] = DEFAULT_POOLS,
    avoid: Iterable[IPv4Network] = FOREIGN_POOLS,
) -> IPv4Network:
    """The first subnet of the pools that overlaps nothing in ``used`` or ``avoid``."""
    blocked = [n for n in list(used) + list(avoid) if n.prefixlen > 0]  # never the default route
    pools = list(pools)
    for pool in pools:
        for candidate in pool.base.subnets(new_prefix=pool.size):
            if not any(candidate.overlaps(b) for b in blocked):
                return candidate
    bases = ", ".join(str(p.base) for p in pools)
    raise NetworkError(
        f"no free subnet left in the address pools ({bases})",
        hint="remove unused networks (`stackctl network prune`) or give --subnet",
    )


def check_subnet(
    subnet: IPv4Network,
    networks: dict[str, IPv4Network],
    host_routes: Iterable[IPv4Network] = (),
) -> None:
    """Refuse a requested subnet that overlaps another network or a route of the host.

    ``networks`` maps network names to their subnets."""
    if subnet.prefixlen > 30:
        raise NetworkError(f"subnet {subnet} is too small: it needs room for a gateway and hosts")
    for name, other in networks.items():
        if subnet.overlaps(other):
            raise NetworkError(
                f"subnet {subnet} overlaps network {name!r} ({other})",
                hint="choose another --subnet, or leave it out to get a free one",
            )
    for route in host_routes:
        if route.prefixlen > 0 and subnet.overlaps(route):
            raise NetworkError(
                f"subnet {subnet} overlaps the host's route to {route}",
                hint="choose a subnet the host does not route elsewhere",
            )


def parse_subnet(text: str) -> IPv4Network:
    try:
        return IPv4Network(text, strict=True)
    except ValueError as exc:
        if ":" in text:
            raise NetworkError(f"invalid subnet {text!r}: IPv6 networks are not supported yet") from None
        raise NetworkError(f"invalid subnet {text!r}: {exc}") from None


def default_gateway(subnet: IPv4Network) -> IPv4Address:
    return subnet.network_address + 1


def check_gateway(subnet: IPv4Network, gateway: str) -> IPv4Address:
    try:
        gw = IPv4Address(gateway)
    except ValueError:
        raise NetworkError(f"invalid gateway {gateway!r}: not an IPv4 address") from None
    if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
        raise NetworkError(f"gateway {gw} is not a host address of subnet {subnet}")
    return gw


def allocate(
    subnet: IPv4Network,
    taken: Iterable[str | IPv4Address],
    *,
    requested: str | None = None,
    ip_range: str = "",
    network_name: str = "",
) -> IPv4Address:
    """An address for a new endpoint: the requested one (checked), else the lowest free host
    address of ``ip_range`` (or the subnet). ``taken`` includes the gateway and VIPs."""
    taken_set = {IPv4Address(str(a)) for a in taken}
    label = f"network {network_name!r}" if network_name else f"subnet {subnet}"
    if requested:
        try:
            addr = IPv4Address(requested)
        except ValueError:
            raise NetworkError(f"invalid ipv4_address {requested!r}") from None
        if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
            raise NetworkError(f"ipv4_address {addr} is not a host address of {label} ({subnet})")
        if addr in taken_set:
            raise NetworkError(f"ipv4_address {addr} is already in use on {label}",
                               hint="choose another address or leave ipv4_address out")
        return addr
    pool = IPv4Network(ip_range) if ip_range else subnet
    for addr in pool.hosts() if pool.prefixlen < 31 else pool:
        if addr in subnet and addr != subnet.broadcast_address and addr not in taken_set:
            return addr
    raise NetworkError(f"no free address left on {label} ({pool})",
                       hint="remove containers from it or create a network with a larger subnet")


def ip_in(address: str, subnet: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
