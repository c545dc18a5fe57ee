"""The DNS wire format, sans-IO (RFC 1035): parse a query, build answers (A, AAAA, PTR),
empty answers (NODATA), NXDOMAIN, SERVFAIL; frame messages for TCP. Bytes in, bytes out —
the server (:mod:`stackctl.net.dnsserver`) does the sockets, :mod:`stackctl.net.names` decides
what a name means.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TYPE_A = 1
TYPE_PTR = 12
TYPE_AAAA = 28
TYPE_ANY = 255
CLASS_IN = 1

NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

DEFAULT_TTL = 600  # as Docker's embedded DNS
MAX_UDP = 512


class DNSFormatError(ValueError):
    """A message that is not valid DNS."""


@dataclass(frozen=True, slots=True)
class Question:
    name: str  # lower case, no trailing dot
    qtype: int
    qclass: int = CLASS_IN


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    question: Question
    raw: bytes  # the whole message, for forwarding unchanged

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rd(self) -> bool:
        return bool(self.flags & 0x0100)


def _read_name(msg: bytes, off: int) -> tuple[str, int]:
    """Read a (possibly compressed) name at ``off``: (name, offset after it)."""
    labels: list[str] = []
    end = None
    jumps = 0
    while True:
        if off >= len(msg):
            raise DNSFormatError("name runs past the end of the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise DNSFormatError("truncated compression pointer")
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            jumps += 1
            if jumps > 32:
                raise DNSFormatError("compression pointer loop")
            continue
        if n & 0xC0:
            raise DNSFormatError("bad label type")
        off += 1
        if n == 0:
            break
        label = msg[off:off + n]
        if len(label) != n:
            raise DNSFormatError("truncated label")
        labels.append(label.decode("ascii", "replace"))
        off += n
    name = ".".join(labels).lower()
    if len(name) > 253:
        raise DNSFormatError("name too long")
    return name, (end if end is not None else off)


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in filter(None, name.rstrip(".").split(".")):
        raw = label.encode("ascii")
        if len(raw) > 63:
            raise ValueError(f"DNS label too long: {label!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def parse_query(msg: bytes) -> Query:
    """The first question of a query message."""
    if len(msg) < 12:
        raise DNSFormatError("message shorter than a DNS header")
    qid, flags, qd, _an, _ns, _ar = struct.unpack("!6H", msg[:12])
    if flags & 0x8000:
        raise DNSFormatError("not a query (QR set)")
    if qd < 1:
        raise DNSFormatError("no question")
    name, off = _read_name(msg, 12)
    if off + 4 > len(msg):
        raise DNSFormatError("truncated question")
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    return Query(qid, flags, Question(name, qtype, qclass), msg)


def _header(query: Query, rcode: int, ancount: int, *, authoritative: bool) -> bytes:
    flags = 0x8000 | (query.flags & 0x7900)  # QR, copy opcode and RD
    flags |= 0x0080  # RA: we recurse by forwarding
    if authoritative:
        flags |= 0x0400
    flags |= rcode & 0xF
    return struct.pack("!6H", query.id, flags, 1, ancount, 0, 0)


def _question(q: Question) -> bytes:
    return encode_name(q.name) + struct.pack("!HH", q.qtype, q.qclass)


def _rr(rtype: int, rdata: bytes, ttl: int) -> bytes:
    # the owner name is the question's: a pointer to offset 12
    return struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, ttl, len(rdata)) + rdata


def answer(query: Query, *, a: list[str] = (), ptr: list[str] = (), ttl: int = DEFAULT_TTL,
           max_size: int = 0) -> bytes:
    """A NOERROR response with A and/or PTR records (none at all = NODATA). With
    ``max_size`` (UDP), records that do not fit are dropped and TC is set."""
    rrs = [_rr(TYPE_A, ipaddress.IPv4Address(x).packed, ttl) for x in a]
    rrs += [_rr(TYPE_PTR, encode_name(x), ttl) for x in ptr]
    head_q = _question(query.question)
    out_rrs: list[bytes] = []
    size = 12 + len(head_q)
    truncated = False
    for rr in rrs:
        if max_size and size + len(rr) > max_size:
            truncated = True
            break
        out_rrs.append(rr)
        size += len(rr)
    header = bytearray(_header(query, NOERROR, len(out_rrs), authoritative=True))
    if truncated:
        header[2] |= 0x02  # TC
    return bytes(header) + head_q + b"".join(out_rrs)


def error(query: Query, rcode: int, *, authoritative: bool = True) -> bytes:
    return _header(query, rcode, 0, authoritative=authoritative) + _question(query.question)


def error_for_raw(msg: bytes, rcode: int = FORMERR) -> bytes | None:
    """A header-only error reply to a message we could not parse (None if not even a header)."""
    if len(msg) < 12:
        return None
    qid, flags = struct.unpack("!HH", msg[:4])
    flags = 0x8000 | (flags & 0x7900) | 0x0080 | (rcode & 0xF)
    return struct.pack("!6H", qid, flags, 0, 0, 0, 0)


def reverse_name_to_ip(name: str) -> str | None:
    """``"4.3.2.10.in-addr.arpa"`` -> ``"10.2.3.4"``; None for anything else."""
    suffix = ".in-addr.arpa"
    if not name.endswith(suffix):
        return None
    parts = name[: -len(suffix)].split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return None
    return ".".join(reversed(parts))


def response_rcode(msg: bytes) -> int:
    return struct.unpack("!H", msg[2:4])[0] & 0xF


def parse_answers(msg: bytes) -> tuple[int, list[tuple[int, str]]]:
    """(rcode, [(type, value)]) of a response — for tests and diagnostics: A as dotted quad,
    PTR as a name, other types as hex."""
    _id, flags, qd, an, _ns, _ar = struct.unpack("!6H", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = _read_name(msg, off)
        off += 4
    out = []
    for _ in range(an):
        _, off = _read_name(msg, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        if rtype == TYPE_A:
            out.append((rtype, str(ipaddress.IPv4Address(rdata))))
        elif rtype == TYPE_PTR:
            out.append((rtype, _read_name(msg, off)[0]))
        else:
            out.append((rtype, rdata.hex()))
        off += rdlen
    return flags & 0xF, out


def build_query(name: str, qtype: int = TYPE_A, qid: int = 0x1234) -> bytes:
    """A standard recursive query (for tests and health checks)."""
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def tcp_frame(msg: bytes) -> bytes:
    return struct.pack("!H", len(msg)) + msg


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    servers, search, options = [], [], []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            servers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            search = parts[1:]
        elif parts[0] == "options":
            options += parts[1:]
    return servers, search, options
