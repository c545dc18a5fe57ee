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


def test_compressed_names_are_followed():
    # a question name followed by a second name using a pointer into the first
    msg = dns.build_query("a.example")
    name, off = dns._read_name(msg + b"\x01b\xc0\x0c", len(msg))
    assert name == "b.a.example"


@pytest.mark.parametrize("raw", [b"", b"\x00" * 11, dns.build_query("x")[:-3],
                                 b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c"])
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
