"""The DNS server over real sockets on loopback (no root): names answered from the state file,
everything else forwarded to a fake upstream resolver; the state is re-read when it changes."""

import os
import socket
import threading

import pytest

from stackctl.net import dns, dnsserver, store

from netstate import FRONT, sample_state  # noqa: E402


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t.bind(("127.0.0.1", port))
        return port


@pytest.fixture
def upstream():
    """A fake resolver on 127.0.0.3 that answers every A query with 198.51.100.7."""
    port = free_port()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.3", port))
    sock.settimeout(0.2)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                raw, addr = sock.recvfrom(4096)
            except socket.timeout:
                continue
            sock.sendto(dns.answer(dns.parse_query(raw), a=["198.51.100.7"]), addr)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield port
    stop.set()
    t.join()
    sock.close()


@pytest.fixture
def server(node_paths, upstream, tmp_path):

    os.makedirs(store.net_dir(node_paths), exist_ok=True)
    store.save(node_paths, sample_state())
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.3\n")
    port = free_port()
    t, stop = dnsserver.start_in_thread(
        node_paths, port=port, listen=lambda st: {"127.0.0.1": FRONT} if st.networks else {},
        resolv_conf=str(resolv), upstream_port=upstream)
    yield port
    stop.set()
    t.join(5)


def ask_udp(port, name, qtype=dns.TYPE_A):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(dns.build_query(name, qtype), ("127.0.0.1", port))
        return dns.parse_answers(s.recv(4096))


def ask_tcp(port, name):
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(dns.tcp_frame(dns.build_query(name)))
        head = s.recv(2)
        n = int.from_bytes(head, "big")
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
        return dns.parse_answers(data)


def test_names_of_the_network_over_udp_and_tcp(server):
    assert ask_udp(server, "proxy") == (0, [(1, "10.89.0.5")])
    assert ask_udp(server, "web") == (0, [(1, "10.89.0.254")])
    assert ask_tcp(server, "tasks.web") == (0, [(1, "10.89.0.2"), (1, "10.89.0.3")])
    assert ask_udp(server, "proxy", dns.TYPE_AAAA) == (0, [])
    assert ask_udp(server, "nosuch") == (3, [])
    assert ask_udp(server, "5.0.89.10.in-addr.arpa", dns.TYPE_PTR) == (0, [(12, "proxy")])


def test_other_names_are_forwarded(server):
    assert ask_udp(server, "example.com") == (0, [(1, "198.51.100.7")])


def test_state_changes_are_picked_up(server, node_paths):
    st = store.load(node_paths)
    st.endpoints[FRONT]["9" * 64] = type(next(iter(st.endpoints[FRONT].values())))(
        network_id=FRONT, container_id="9" * 64, address="10.89.0.77", names=["newcomer"])
    store.save(node_paths, st)
    for _ in range(40):
        rcode, answers = ask_udp(server, "newcomer")
        if answers:
            break
        threading.Event().wait(0.05)
    assert answers == [(1, "10.89.0.77")]


def test_bad_datagrams_cost_one_message_not_the_server(server):
    """issue 9: a label with non-ASCII bytes killed the server; now every datagram gets a
    reply or nothing, and names still resolve afterwards."""
    bad = [bytes.fromhex("123401000001000000000000") + b"\x03\xc3\xa9x\x00\x00\x01\x00\x01",
           b"\xff" * 3, b"\x12\x34\x01\x00" + b"\xff" * 8 + b"\xc0\x0c" * 100,
           b"\x12\x34\x81\x80" + b"\x00" * 8]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        for raw in bad:
            s.sendto(raw, ("127.0.0.1", server))
        s.sendto(bad[0], ("127.0.0.1", server))
        reply = s.recv(4096)  # the non-ASCII name is looked up like any other: forwarded
        assert reply[:2] == b"\x12\x34"
    assert ask_udp(server, "proxy") == (0, [(1, "10.89.0.5")])
    assert ask_tcp(server, "tasks.web") == (0, [(1, "10.89.0.2"), (1, "10.89.0.3")])


def test_a_failing_answer_gets_servfail_and_the_server_goes_on(server, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(dnsserver.names, "decide", broken)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(dns.build_query("proxy", qid=0x4242), ("127.0.0.1", server))
        reply = s.recv(4096)
    assert reply[:2] == b"\x42\x42" and dns.response_rcode(reply) == dns.SERVFAIL
    monkeypatch.undo()
    assert ask_udp(server, "proxy") == (0, [(1, "10.89.0.5")])
