"""The records networking keeps: networks, endpoints (a container's attachment to one network),
sandboxes (a container's network namespace and its published ports). Plain data with JSON
round-trips; no I/O here.

Naming of kernel objects (all at most 15 characters, the kernel's IFNAMSIZ - 1):

- bridge of a network:        ``stk-<network id[:8]>``
- host end of an endpoint:    ``stkv<sha256(network id, container id)[:10]>``
- peer:                       made inside the netns as ``eth0``, ``eth1``… (``stkp<same 10 hex>``
  names it only where a temporary host-side name is wanted)
- network namespace file:     ``<paths.run>/netns/<container id>``
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from stackctl.errors import StackctlError

BRIDGE_PREFIX = "stk-"
VXLAN_PREFIX = "stkx"  # the VXLAN device of an overlay network: stkx<network id[:8]>
VETH_PREFIX = "stkv"
PEER_PREFIX = "stkp"
DEFAULT_MTU = 1500
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# Names that mean a mode, not a user network (docker refuses them too).
RESERVED_NAMES = frozenset({"none", "host", "bridge", "default"})
# Docker's default network: made on first use by `run` without --network (see
# stackctl.net.networks.ensure_default_bridge); no name resolution on it, as in Docker.
DEFAULT_BRIDGE = "bridge"

Protocol = Literal["tcp", "udp"]


class NetworkError(StackctlError):
    """A networking operation failed (kernel, firewall, or a bad request)."""


def new_id() -> str:
    return secrets.token_hex(32)


def bridge_name(network_id: str) -> str:
    return f"{BRIDGE_PREFIX}{network_id[:8]}"


def endpoint_key(network_id: str, container_id: str) -> str:
    return hashlib.sha256(f"{network_id}/{container_id}".encode()).hexdigest()[:10]


def veth_names(network_id: str, container_id: str) -> tuple[str, str]:
    """(host end, temporary peer name) for the endpoint of a container on a network."""
    key = endpoint_key(network_id, container_id)
    return f"{VETH_PREFIX}{key}", f"{PEER_PREFIX}{key}"


def mac_for(address: str) -> str:
    """A stable, locally administered MAC derived from the IPv4 address (as Docker: 02:42:…),
    so a re-used address never meets a stale ARP entry with another MAC."""
    octets = [int(o) for o in address.split(".")]
    return "02:42:" + ":".join(f"{o:02x}" for o in octets)


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise NetworkError(
            f"invalid network name {name!r}: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)"
        )
    if name in RESERVED_NAMES:
        raise NetworkError(f"network name {name!r} is reserved (it is a network mode)",
                           hint="choose another name")


@dataclass
class Network:
    id: str
    name: str
    subnet: str  # "10.89.3.0/24"
    gateway: str  # "10.89.3.1"
    driver: str = "bridge"
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    mtu: int = DEFAULT_MTU
    ip_range: str = ""  # allocate container addresses only from this range, if set
    created: str = ""
    # overlay networks (driver "overlay", stackctl/net/overlay.py): set by the manager's sync
    vni: int = 0  # VXLAN network identifier, the same on every node
    vtep: str = ""  # this node's VXLAN endpoint (its address towards the other nodes)
    node_address: str = ""  # this node's own address on the overlay (SNAT towards peers)
    encrypted: bool = False  # VXLAN between nodes in IPsec ESP (stackctl/net/xfrm.py)
    # how an overlay's frames cross nodes: "vxlan", "ipsec" (VXLAN in ESP), or
    # "userspace-aes-gcm" (a TAP and a tunnel process, stackctl/net/tunnel.py), and why
    datapath: str = ""
    datapath_reason: str = ""
    #: how containers join a plain VXLAN overlay, fixed when the network is first made here:
    #: "macvlan" (a macvlan port of the VXLAN device each, and one for the node itself, named
    #: like a bridge: no bridge, no veth on the path — docs/networking.md, "Overlay: data
    #: path"), or "" (a veth on the bridge, as every bridge network and encrypted overlay)
    attach: str = ""

    @property
    def overlay(self) -> bool:
        return self.driver == "overlay"

    @property
    def vxlan(self) -> str:
        return f"{VXLAN_PREFIX}{self.id[:8]}"

    @property
    def macvlan(self) -> bool:
        return self.attach == "macvlan"

    @property
    def userspace_tunnel(self) -> bool:
        return self.datapath == "userspace-aes-gcm"

    @property
    def bridge(self) -> str:
        return bridge_name(self.id)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.split("/")[1])

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Network:
        return cls(**data)


@dataclass
class Endpoint:
    """A container on a network: its address there and the names others find it by."""

    network_id: str
    container_id: str
    address: str
    ifname: str = "eth0"  # inside the container
    names: list[str] = field(default_factory=list)  # container name, hostname, aliases
    service: str = ""  # stack service, for service-name and tasks.<service> lookups
    endpoint_mode: Literal["vip", "dnsrr"] = "vip"
    healthy: bool = True
    # an endpoint on another node of an overlay network (pushed by the manager): no sandbox
    # or veth here, reached through the VXLAN device at that node's VTEP
    vtep: str = ""
    node: str = ""

    @property
    def remote(self) -> bool:
        return bool(self.vtep)

    @property
    def mac(self) -> str:
        return mac_for(self.address)

    @property
    def host_ifname(self) -> str:
        return veth_names(self.network_id, self.container_id)[0]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        return cls(**data)


@dataclass
class PortBinding:
    """One published port, fully resolved: host_port is never 0 here."""

    host_ip: str  # "" = every host address
    host_port: int
    container_port: int
    protocol: Protocol = "tcp"

    def __str__(self) -> str:
        ip = self.host_ip or "0.0.0.0"
        return f"{ip}:{self.host_port}->{self.container_port}/{self.protocol}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PortBinding:
        return cls(**data)


@dataclass
class Sandbox:
    """A container's network namespace, the networks it is on (in attach order) and its ports."""

    container_id: str
    netns: str  # path of the bind-mounted nsfs file
    networks: list[str] = field(default_factory=list)  # network ids, first = default route
    ports: list[PortBinding] = field(default_factory=list)
    name: str = ""
    dns: list[str] = field(default_factory=list)  # upstream resolvers asked by the user

    def to_json(self) -> dict[str, Any]:
        return {
            "container_id": self.container_id,
            "netns": self.netns,
            "networks": list(self.networks),
            "ports": [p.to_json() for p in self.ports],
            "name": self.name,
            "dns": list(self.dns),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sandbox:
        return cls(
            container_id=data["container_id"],
            netns=data["netns"],
            networks=list(data.get("networks", [])),
            ports=[PortBinding.from_json(p) for p in data.get("ports", [])],
            name=data.get("name", ""),
            dns=list(data.get("dns", [])),
        )


@dataclass
class ServicePorts:
    """A stack service's published ports (Swarm's ``mode: ingress``): each host port is
    DNAT'd to the service's serving replicas on ``networks`` (see
    :mod:`stackctl.net.service_ports`). ``key`` is ``<stack>_<service>``."""

    key: str
    service: str  # as in Endpoint.service
    networks: list[str] = field(default_factory=list)  # network ids, in order of preference
    ports: list[PortBinding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "service": self.service, "networks": list(self.networks),
                "ports": [p.to_json() for p in self.ports]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServicePorts:
        return cls(key=data["key"], service=data["service"],
                   networks=list(data.get("networks", [])),
                   ports=[PortBinding.from_json(p) for p in data.get("ports", [])])


@dataclass
class NetState:
    """Everything networking knows on one node; persisted as one JSON document."""

    networks: dict[str, Network] = field(default_factory=dict)  # id -> network
    endpoints: dict[str, dict[str, Endpoint]] = field(default_factory=dict)  # net id -> cid -> ep
    vips: dict[str, dict[str, str]] = field(default_factory=dict)  # net id -> service -> VIP
    sandboxes: dict[str, Sandbox] = field(default_factory=dict)  # container id -> sandbox
    ip_forward_was: str | None = None  # the host's value before we turned forwarding on
    service_ports: dict[str, ServicePorts] = field(default_factory=dict)  # key -> ports

    def find(self, name_or_id: str) -> Network | None:
        """By exact name, full id, or unique id prefix (as docker does)."""
        for net in self.networks.values():
            if net.name == name_or_id or net.id == name_or_id:
                return net
        matches = [n for n in self.networks.values() if name_or_id and n.id.startswith(name_or_id)]
        return matches[0] if len(matches) == 1 else None

    def endpoints_of(self, network_id: str) -> list[Endpoint]:
        return list(self.endpoints.get(network_id, {}).values())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "networks": {k: v.to_json() for k, v in self.networks.items()},
            "endpoints": {
                nid: {cid: ep.to_json() for cid, ep in eps.items()}
                for nid, eps in self.endpoints.items()
            },
            "vips": {k: dict(v) for k, v in self.vips.items()},
            "sandboxes": {k: v.to_json() for k, v in self.sandboxes.items()},
            "ip_forward_was": self.ip_forward_was,
            "service_ports": {k: v.to_json() for k, v in self.service_ports.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetState:
        return cls(
            networks={k: Network.from_json(v) for k, v in data.get("networks", {}).items()},
            endpoints={
                nid: {cid: Endpoint.from_json(ep) for cid, ep in eps.items()}
                for nid, eps in data.get("endpoints", {}).items()
            },
            vips={k: dict(v) for k, v in data.get("vips", {}).items()},
            sandboxes={k: Sandbox.from_json(v) for k, v in data.get("sandboxes", {}).items()},
            ip_forward_was=data.get("ip_forward_was"),
            service_ports={k: ServicePorts.from_json(v)
                           for k, v in data.get("service_ports", {}).items()},
        )
