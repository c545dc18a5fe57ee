"""The userspace encrypted data path of an encrypted overlay network, where the kernel cannot
do IPsec ESP (no ``CONFIG_INET_ESP``, or no AES): the pure parts. The process that moves the
frames is :mod:`stackctl.net.tunneld`.

Per node and encrypted network, a TAP device ``stkt<id[:8]>`` takes the place of the VXLAN
device on the network's bridge. The tunnel process reads each Ethernet frame the bridge sends
to the TAP, seals it with AES-256-GCM and sends it in one UDP datagram to the node that owns
the destination MAC (the same MAC -> VTEP knowledge the VXLAN FDB entries are programmed
from); broadcast, multicast and unknown destinations go to every other node. It answers ARP
requests for remote addresses itself, from the manager's neighbour entries (what ``proxy``
does on a VXLAN device), so nothing floods for ARP and nothing waits for it.

One datagram (UDP, port :func:`port_for` of the VNI, the same on every node)::

    0      1      2          6                 14                             len-16    len
    | ver  | gen  | sender   | counter (64 bit) | AES-256-GCM(vnet hdr + frame) | tag (128) |

The plaintext is what the TAP hands over with ``IFF_VNET_HDR``: a 10-byte virtio_net_hdr
and an Ethernet frame — a TCP segment of up to 64 KB when the kernel offloads segmentation
to the TAP (as for a VM), so one read, one seal and one datagram (IP-fragmented on the wire)
carry what would be dozens of frames; the receiving TAP takes it back with its header.

- ``sender`` is the sending node's VTEP (IPv4, 4 bytes); the 96-bit nonce is ``sender ||
  counter``. A sender's counter starts at the wall clock in nanoseconds (and above what it
  reserved before, :class:`Counter`) and goes up by one per datagram, so a restarted tunnel
  never reuses a nonce with the same key.
- ``gen`` is the key generation (low 8 bits): the manager's keys, rotated as for IPsec; the
  sender uses the primary key, a receiver accepts every key it holds.
- The additional data is the header, the receiver's VTEP and the VNI: a datagram replayed to
  another node, another network or back to its sender does not open.
- A receiver keeps, per sender, a sliding window of :data:`WINDOW` counters
  (:class:`ReplayWindow`, RFC 4303's scheme), updated only after a datagram opened: replays
  and forgeries are dropped and counted.
- The key is HKDF-SHA256 of the manager's key (32 random bytes per generation), the VNI and
  the generation: each network and generation has its own AES key.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from stackctl.net.model import NetworkError

DATAPATH = "userspace-aes-gcm"
VERSION = 1
HEADER = struct.Struct("!BB4sQ")  # version, key generation, sender VTEP, counter
TAG = 16
KEY_BYTES = 32  # the manager's key per generation (AES-256 after HKDF)
VNET_HDR = 10  # the TAP's virtio_net_hdr, sealed with each frame (see below)
#: outer IPv4 (20) + UDP (8) + our header (14) + GCM tag (16) + virtio_net_hdr (10) + inner
#: Ethernet (14): a full frame that is no GSO segment still fits one 1500-byte packet
OVERHEAD = 20 + 8 + HEADER.size + TAG + VNET_HDR + 14
#: the UDP ports of the tunnels: PORT_BASE + (VNI - 4096) % PORT_SPAN (below the ephemeral range)
PORT_BASE = 24790
PORT_SPAN = 4000
WINDOW = 1024
#: counters a tunnel reserves at a time (written down before use, so a restart starts above)
RESERVE = 1 << 24
TAP_PREFIX = "stkt"
#: what is sealed: the TAP's virtio_net_hdr (10 bytes: GSO type and size, checksum offsets)
#: and the Ethernet frame, which may be a TCP segment of up to 64 KB (IP-fragmented between
#: the nodes: one seal and one datagram for what would be up to 45 frames on the wire)
MAX_DATAGRAM = 65507
BROADCAST = "ff:ff:ff:ff:ff:ff"


class TunnelError(NetworkError):
    """The userspace tunnel cannot be set up."""


def mtu(base: int = 1500) -> int:
    """The inner MTU of a network on this data path: 1416 under a 1500-byte outer MTU."""
    return (base - OVERHEAD) // 4 * 4


def port_for(vni: int) -> int:
    return PORT_BASE + (int(vni) - 4096) % PORT_SPAN


def tap_name(network_id: str) -> str:
    return f"{TAP_PREFIX}{network_id[:8]}"


def derive_key(key_hex: str, vni: int, gen: int) -> bytes:
    """The AES-256 key of one network and key generation (HKDF-SHA256)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"stackctl overlay tunnel v1",
                info=f"aes-256-gcm vni={int(vni)} gen={int(gen)}".encode()).derive(
                    bytes.fromhex(key_hex))


def _ip4(a: str) -> bytes:
    return ipaddress.IPv4Address(a).packed


# --------------------------------------------------------------------------------------------
# Sealing and opening one datagram


class Sealer:
    """The AEAD objects of a network's keys: seals with the primary, opens with any."""

    def __init__(self, vni: int, keys: Iterable[Mapping[str, Any]]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.vni = int(vni)
        self.aead: dict[int, Any] = {}
        keys = list(keys)
        if not keys:
            raise TunnelError("an encrypted overlay network without a key")
        for k in keys:
            self.aead[int(k["gen"]) & 0xFF] = AESGCM(derive_key(str(k["key"]), self.vni,
                                                                int(k["gen"])))
        # as the IPsec path (xfrm.plan): the primary key, else the newest
        primary = int(next((k for k in keys if k.get("primary")), keys[-1])["gen"]) & 0xFF
        self.primary = primary

    def _aad(self, header: bytes, dst: bytes) -> bytes:
        return header + dst + self.vni.to_bytes(3, "big")

    def seal(self, frame: bytes, sender: bytes, dst: bytes, counter: int) -> bytes:
        header = HEADER.pack(VERSION, self.primary, sender, counter)
        return header + self.aead[self.primary].encrypt(header[2:], frame,
                                                       self._aad(header, dst))

    def open(self, data: bytes, me: bytes) -> tuple[bytes, int, bytes]:
        """(frame, counter, sender) of a datagram addressed to ``me``; InvalidTag, KeyError or
        ValueError when it does not open (forged, another key, truncated)."""
        if len(data) < HEADER.size + TAG:
            raise ValueError("short datagram")
        version, gen, sender, counter = HEADER.unpack_from(data)
        if version != VERSION:
            raise ValueError(f"version {version}")
        header = data[:HEADER.size]
        frame = self.aead[gen].decrypt(header[2:], data[HEADER.size:], self._aad(header, me))
        return frame, counter, sender


def nonce(sender: bytes, counter: int) -> bytes:
    """The 96-bit nonce of a datagram: its sender's VTEP and its counter (header bytes 2-14)."""
    return sender + counter.to_bytes(8, "big")


class ReplayWindow:
    """RFC 4303's anti-replay window over one sender's counters (pure)."""

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self.top = -1  # highest counter accepted
        self.bits = 0  # bit i: top - i was seen

    def fresh(self, counter: int) -> bool:
        """Whether ``counter`` may be accepted (not seen, not older than the window)."""
        if counter > self.top:
            return True
        age = self.top - counter
        return age < self.size and not (self.bits >> age) & 1

    def accept(self, counter: int) -> None:
        """Record ``counter`` (after its datagram opened)."""
        if counter > self.top:
            shift = counter - self.top
            self.bits = ((self.bits << shift) | 1) & ((1 << self.size) - 1) if shift < \
                self.size else 1
            self.top = counter
        else:
            self.bits |= 1 << (self.top - counter)


class Counter:
    """A sender's datagram counter: starts at max(now in ns, what it reserved before) and
    reserves :data:`RESERVE` counters at a time through ``save`` (called with the new floor
    before any counter of it is used)."""

    def __init__(self, floor: int, save, now_ns: int | None = None) -> None:
        self.value = max(int(now_ns if now_ns is not None else time.time_ns()), int(floor))
        self.save = save
        self.reserved = self.value
        self._reserve()

    def _reserve(self) -> None:
        self.reserved = self.value + RESERVE
        self.save(self.reserved)

    def next(self) -> int:
        self.value += 1
        if self.value >= self.reserved:
            self._reserve()
        return self.value


# --------------------------------------------------------------------------------------------
# Where a frame goes


def is_multi(mac: bytes) -> bool:
    """Broadcast or multicast (the group bit of the first octet)."""
    return bool(mac[0] & 1)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


@dataclass
class TunnelConfig:
    """What a tunnel process needs (written by the agent, 0600, in the run directory)."""

    network: str
    network_id: str
    ifname: str
    vni: int
    local: str  # this node's VTEP (bound; the sender id)
    port: int
    peers: list[str] = field(default_factory=list)  # the other nodes' VTEPs
    macs: dict[str, str] = field(default_factory=dict)  # remote MAC -> its node's VTEP
    arp: dict[str, str] = field(default_factory=dict)  # remote IP -> MAC
    keys: list[dict[str, Any]] = field(default_factory=list)
    mtu: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TunnelConfig:
        return cls(**dict(data))


def config_for(network: str, network_id: str, vni: int, local: str, mtu_: int,
               nodes: Iterable[str], fdb: Iterable[tuple[str, str]],
               neigh: Iterable[tuple[str, str]], keys: list[dict[str, Any]]) -> TunnelConfig:
    """The tunnel's configuration from the same entries the VXLAN device would get (pure):
    ``fdb`` {(MAC, VTEP)}, ``neigh`` {(IP, MAC)}, ``nodes`` every node's VTEP."""
    return TunnelConfig(
        network=network, network_id=network_id, ifname=tap_name(network_id), vni=int(vni),
        local=local, port=port_for(vni), mtu=mtu_,
        peers=sorted({n for n in nodes if n and n != local}),
        macs={m.lower(): v for m, v in sorted(fdb) if v != local},
        arp={ip: m.lower() for ip, m in sorted(neigh)},
        keys=[{k: v for k, v in key.items() if k in ("gen", "key", "primary")}
              for key in keys])


class Router:
    """Destination MAC -> the peer VTEPs a frame goes to (pure)."""

    def __init__(self, cfg: TunnelConfig) -> None:
        self.peers = [(p, _ip4(p)) for p in cfg.peers]
        by = dict(self.peers)
        self.macs = {mac_bytes(m): (v, by.get(v) or _ip4(v)) for m, v in cfg.macs.items()}
        self.arp = {_ip4(ip): mac_bytes(m) for ip, m in cfg.arp.items()}

    def route(self, frame: bytes) -> list[tuple[str, bytes]]:
        """[(VTEP, VTEP packed)] for ``frame``: its MAC's node, else every peer."""
        dst = frame[:6]
        if not is_multi(dst):
            hit = self.macs.get(dst)
            if hit is not None:
                return [hit]
        return list(self.peers)

    def arp_reply(self, frame: bytes) -> bytes | None:
        """The reply to an ARP request for a remote address (as a VXLAN device's ``proxy``);
        None for any other frame."""
        if len(frame) < 42 or frame[12:14] != b"\x08\x06":
            return None
        htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
        if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 1):
            return None
        sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
        mac = self.arp.get(tpa)
        if mac is None:
            return None
        return (sha + mac + b"\x08\x06" +
                struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac + tpa + sha + spa)
