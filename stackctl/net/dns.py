"""The DNS wire format, sans-IO: parse a query, build answers (A, PTR), empty answers
(NODATA), NXDOMAIN, SERVFAIL, FORMERR; frame messages for TCP. Bytes in, bytes out — the
server (:mod:`stackctl.net.dnsserver`) does the sockets, :mod:`stackctl.net.names` decides what
a name means. Parsing and packing are dnslib's.

Any datagram is safe to hand to :func:`parse_query`: it raises :class:`DNSFormatError` for
anything that is not a plain query (and never anything else), and the work it does is bounded
— a query may carry one question and at most one additional record (EDNS), no answer or
authority records, so dnslib decodes at most two names, whose compression pointers can only
point backwards. Replies reuse the question exactly as it came (its raw labels), so a name
with bytes that are not ASCII is answered, never re-encoded from text.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from dnslib import PTR, QTYPE, RR, A, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

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
MAX_MESSAGE = 65535
MAX_NAME = 253


class DNSFormatError(ValueError):
    """A message that is not valid DNS."""


@dataclass(frozen=True, slots=True)
class Question:
    name: str  # lower case, no trailing dot; bytes that are not printable ASCII as \ddd
    qtype: int
    qclass: int = CLASS_IN


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    question: Question
    raw: bytes  # the whole message, for forwarding unchanged
    record: DNSRecord | None = None  # dnslib's parse (its question is reused in replies)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rd(self) -> bool:
        return bool(self.flags & 0x0100)


def _text(label: DNSLabel) -> str:
    parts = []
    for raw in label.label:
        parts.append("".join(chr(b) if 0x21 <= b < 0x7F and b not in (0x2E, 0x5C) else f"\\{b:03d}"
                             for b in raw))
    return ".".join(parts).lower()


def parse_query(msg: bytes) -> Query:
    """The question of a query message; DNSFormatError for anything else."""
    if len(msg) < 12:
        raise DNSFormatError("message shorter than a DNS header")
    if len(msg) > MAX_MESSAGE:
        raise DNSFormatError("message longer than 65535 bytes")
    _qid, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    if flags & 0x8000:
        raise DNSFormatError("not a query (QR set)")
    if qd != 1:
        raise DNSFormatError(f"a query has one question, not {qd}")
    if an or ns or ar > 1:
        raise DNSFormatError("a query carries no answer or authority records and at most one "
                             "additional record")
    try:
        rec = DNSRecord.parse(msg)
    except Exception as exc:  # noqa: BLE001 - dnslib raises several kinds (and RecursionError)
        raise DNSFormatError(f"malformed message: {type(exc).__name__}") from None
    if not rec.questions:
        raise DNSFormatError("no question")
    q = rec.q
    name = _text(q.qname)
    if len(name) > MAX_NAME * 4:
        raise DNSFormatError("name too long")
    return Query(rec.header.id, flags, Question(name, q.qtype, q.qclass), msg, rec)


def _reply(query: Query, rcode: int, *, authoritative: bool) -> DNSRecord:
    h = DNSHeader(id=query.id, qr=1, opcode=query.opcode, rd=int(query.rd), ra=1,
                  aa=int(authoritative), rcode=rcode & 0xF)
    q = query.record.q if query.record is not None else DNSQuestion(
        query.question.name, query.question.qtype, query.question.qclass)
    return DNSRecord(h, q=q)


def answer(query: Query, *, a: list[str] = (), ptr: list[str] = (), ttl: int = DEFAULT_TTL,
           max_size: int = 0) -> bytes:
    """A NOERROR response with A and/or PTR records (none at all = NODATA). With
    ``max_size`` (UDP), records that do not fit are dropped and TC is set."""
    reply = _reply(query, NOERROR, authoritative=True)
    owner = reply.q.qname
    rrs = [RR(owner, QTYPE.A, rdata=A(str(ipaddress.IPv4Address(x))), ttl=ttl) for x in a]
    rrs += [RR(owner, QTYPE.PTR, rdata=PTR(x), ttl=ttl) for x in ptr]
    reply.rr = rrs
    packed = reply.pack()
    if not max_size or len(packed) <= max_size:
        return packed
    lo, hi = 0, len(rrs)  # the most records that fit: lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        reply.rr = rrs[:mid]
        if len(reply.pack()) <= max_size:
            lo = mid
        else:
            hi = mid
    reply.rr = rrs[:lo]
    reply.header.tc = 1
    return reply.pack()


def error(query: Query, rcode: int, *, authoritative: bool = True) -> bytes:
    return _reply(query, rcode, authoritative=authoritative).pack()


def error_for_raw(msg: bytes, rcode: int = FORMERR) -> bytes | None:
    """A header-only error reply to a query we could not parse; None for what deserves no
    reply at all (not even a header, or a response: answering responses could loop two
    servers into each other)."""
    if len(msg) < 12:
        return None
    qid, flags = struct.unpack("!HH", msg[:4])
    if flags & 0x8000:
        return None
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
    rec = DNSRecord.parse(msg)
    out = []
    for rr in rec.rr:
        if rr.rtype == TYPE_A:
            out.append((rr.rtype, str(rr.rdata)))
        elif rr.rtype == TYPE_PTR:
            out.append((rr.rtype, str(rr.rdata.label).rstrip(".").lower()))
        else:
            out.append((rr.rtype, rr.rdata.pack().hex() if hasattr(rr.rdata, "pack") else str(rr.rdata)))
    return rec.header.rcode, out


def build_query(name: str, qtype: int = TYPE_A, qid: int = 0x1234) -> bytes:
    """A standard recursive query (for tests and health checks)."""
    return DNSRecord(DNSHeader(id=qid, rd=1), q=DNSQuestion(name, qtype)).pack()


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
