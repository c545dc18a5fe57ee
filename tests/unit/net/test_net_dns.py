import os

import pytest

from stackctl.net import dns

FIX = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "net")


def recorded(name):
    with open(os.path.join(FIX, name)) as f:
        text = "".join(line.split("#")[0] for line in f)
    return bytes.fromhex("".join(text.split()))


def test_parse_recorded_dig_query_with_edns():
    q = dns.parse_query(recorded("dig_query_example_com.hex"))
    assert q.id == 0x1A2B
    assert q.rd
    assert q.question == dns.Question("example.com", dns.TYPE_A, dns.CLASS_IN)


def test_answer_a_records_roundtrip():
    q = dns.parse_query(dns.build_query("Web", dns.TYPE_A, qid=7))
    assert q.question.name == "web"
    reply = dns.answer(q, a=["10.89.0.2", "10.89.0.3"])
    assert reply[:2] == b"\x00\x07"
    flags = int.from_bytes(reply[2:4], "big")
    assert flags & 0x8000 and flags & 0x0400 and flags & 0x0100 and flags & 0x0080
    assert dns.parse_answers(reply) == (0, [(1, "10.89.0.2"), (1, "10.89.0.3")])


def test_answer_ptr_and_nxdomain_and_nodata():
    q = dns.parse_query(dns.build_query("2.0.89.10.in-addr.arpa", dns.TYPE_PTR))
    assert dns.parse_answers(dns.answer(q, ptr=["web"])) == (0, [(12, "web")])
    assert dns.parse_answers(dns.error(q, dns.NXDOMAIN)) == (3, [])
    assert dns.parse_answers(dns.answer(q)) == (0, [])


def test_udp_truncation_sets_tc():
    q = dns.parse_query(dns.build_query("tasks.web"))
    many = [f"10.89.{i // 250}.{i % 250 + 1}" for i in range(60)]
    reply = dns.answer(q, a=many, max_size=512)
    assert len(reply) <= 512
    assert reply[2] & 0x02
    assert len(dns.parse_answers(reply)[1]) < 60


def test_non_ascii_label_is_answered_not_raised():
    # issue 9: one query whose label held non-ASCII bytes raised in the name encoder and
    # killed the node's DNS daemon
    raw = bytes.fromhex("123401000001000000000000") + b"\x03\xc3\xa9x\x03lan\x00\x00\x01\x00\x01"
    q = dns.parse_query(raw)
    assert q.question.name == "\\195\\169x.lan"
    reply = dns.error(q, dns.NXDOMAIN)
    assert reply[:2] == b"\x12\x34" and dns.response_rcode(reply) == dns.NXDOMAIN
    assert b"\x03\xc3\xa9x\x03lan\x00" in reply  # the question as it came
    assert dns.parse_answers(dns.answer(q, a=["10.0.0.1"]))[1] == [(1, "10.0.0.1")]


def test_compressed_answer_names_are_followed():
    q = dns.parse_query(dns.build_query("a.example"))
    reply = dns.answer(q, a=["10.0.0.1"])
    assert b"\xc0\x0c" in reply  # the answer's owner points at the question
    assert dns.parse_answers(reply) == (0, [(1, "10.0.0.1")])


@pytest.mark.parametrize("raw", [
    b"", b"\x00" * 11, dns.build_query("x")[:-3],
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c",  # pointer to itself
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x20" + b"\x00" * 40,  # forward pointer
    b"\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00" + b"\x00\x00\x01\x00\x01" * 2,  # 2 questions
    b"\x12\x34\x01\x00\x00\x01\xff\xff\x00\x00\x00\x00\x00\x00\x01\x00\x01",  # answers in a query
    b"\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",  # a response
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x7f" + b"a" * 20,  # label type 01
])
def test_malformed_queries_raise_format_error(raw):
    with pytest.raises(dns.DNSFormatError):
        dns.parse_query(raw)


def test_formerr_for_garbage_with_a_header():
    reply = dns.error_for_raw(b"\xab\xcd" + b"\x01\x00" + b"\x00" * 8)
    assert reply[:2] == b"\xab\xcd" and dns.response_rcode(reply) == dns.FORMERR


def test_reverse_names():
    assert dns.reverse_name_to_ip("4.3.2.10.in-addr.arpa") == "10.2.3.4"
    assert dns.reverse_name_to_ip("3.2.10.in-addr.arpa") is None
    assert dns.reverse_name_to_ip("example.com") is None


def test_parse_recorded_resolv_conf():
    with open(os.path.join(FIX, "resolv.conf")) as f:
        servers, search, options = dns.parse_resolv_conf(f.read())
    assert servers == ["10.255.255.53", "192.0.2.53", "fd00::53"]
    assert search == ["corp.example", "lab.example"]
    assert options == ["ndots:2", "timeout:1"]


def test_tcp_frame():
    assert dns.tcp_frame(b"abc") == b"\x00\x03abc"


def test_no_reply_to_responses_or_headerless_garbage():
    assert dns.error_for_raw(b"\x12\x34\x81\x80" + b"\x00" * 8) is None
    assert dns.error_for_raw(b"\x01\x02") is None


def test_any_datagram_parses_or_raises_format_error():
    """Random and mutated datagrams: parse_query raises DNSFormatError or returns a query
    whose error reply packs (bounded: each parse is one message of at most 4 KiB)."""
    import random

    rng = random.Random(9)
    seeds = [dns.build_query("web"), dns.build_query("tasks.web", dns.TYPE_A),
             dns.build_query("2.0.89.10.in-addr.arpa", dns.TYPE_PTR)]
    for i in range(3000):
        if i % 3 == 0:
            raw = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        else:
            raw = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 6)):
                raw[rng.randrange(len(raw))] = rng.getrandbits(8)
            raw = bytes(raw[:rng.randrange(1, len(raw) + 1)]) if i % 7 == 0 else bytes(raw)
        try:
            q = dns.parse_query(raw)
        except dns.DNSFormatError:
            continue
        for reply in (dns.error(q, dns.NXDOMAIN), dns.answer(q, a=["10.0.0.1"], ptr=["web"], max_size=512)):
            assert reply[:2] == raw[:2]
