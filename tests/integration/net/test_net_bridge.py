"""Bridge networks on the real kernel: reachability by name, isolation, internal networks,
published ports, and that nothing is left behind."""

from __future__ import annotations

import subprocess

import pytest

from stackctl.errors import ConflictError
from stackctl.net import dnsserver, gc, netns, store
from stackctl.net import networks as nets
from stackctl.net.model import NetworkError
from stackctl.net.sandbox import Attachment, setup_container, teardown_container

from conftest import fetch, free_port, leftovers  # noqa: E402

pytestmark = pytest.mark.root


def cid(n: int) -> str:
    return f"{n:064x}"


def test_two_containers_reach_each_other_by_name_another_network_cannot(net_paths, servers, tmp_path):
    front = nets.create(net_paths, "front")
    other = nets.create(net_paths, "other")
    assert front.subnet != other.subnet
    a = setup_container(net_paths, cid(1), name="alpha", networks=[Attachment("front", aliases=["api"])])
    b = setup_container(net_paths, cid(2), name="beta", networks=[Attachment("front")])
    c = setup_container(net_paths, cid(3), name="gamma", networks=[Attachment("other")])
    assert b.dns == [front.gateway]
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("".join(f"nameserver {s}\n" for s in b.dns))
    resolv_c = tmp_path / "resolv-c.conf"
    resolv_c.write_text("".join(f"nameserver {s}\n" for s in c.dns))

    srv = servers(a.netns, 8000)
    thread, stop = dnsserver.start_in_thread(net_paths)
    try:
        # by name (the libc resolver inside b asks the embedded DNS server), and by alias
        assert fetch(b.netns, "alpha", 8000, resolv=str(resolv)) == b.addresses["front"]
        assert fetch(b.netns, "api", 8000, resolv=str(resolv)) == b.addresses["front"]
        assert srv.clients() == [b.addresses["front"]] * 2
        # gamma: the name does not resolve there, and the address is unreachable
        with pytest.raises(ConnectionError, match="Name or service not known|not known"):
            fetch(c.netns, "alpha", 8000, resolv=str(resolv_c))
        with pytest.raises(ConnectionError):
            fetch(c.netns, a.addresses["front"], 8000, timeout=1)
    finally:
        stop.set()
        thread.join()


def test_published_port_from_loopback_and_from_another_machine(net_paths, servers, outside):
    out_ns, out_addr = outside
    nets.create(net_paths, "pub")
    port = free_port()
    web = setup_container(net_paths, cid(1), name="web", networks=[Attachment("pub")],
                          ports=[f"{port}:80"])
    assert [str(p) for p in web.ports] == [f"0.0.0.0:{port}->80/tcp"]
    srv = servers(web.netns, 80)
    # from the host's loopback: the server sees the bridge's gateway (loopback is masqueraded)
    assert fetch(None, "127.0.0.1", port) == nets.get(net_paths, "pub").gateway
    # from "another machine": the server sees that machine's own address
    assert fetch(out_ns, "198.51.100.1", port) == out_addr
    assert srv.clients()[-1] == out_addr
    # the container gets out to that machine through NAT (its source is masqueraded)
    other = servers(out_ns, 9000)
    assert fetch(web.netns, out_addr, 9000) == "198.51.100.1"
    assert other.clients() == ["198.51.100.1"]


def test_port_in_use_is_refused_before_anything_is_made(net_paths):
    import socket

    nets.create(net_paths, "pub")
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(NetworkError) as exc:
            setup_container(net_paths, cid(1), name="web", networks=[Attachment("pub")],
                            ports=[f"{port}:80"])
    assert str(exc.value) == (f"port {port}/tcp is already in use on 0.0.0.0 (by another process); "
                              "choose another host port")
    assert store.load(net_paths).sandboxes == {}
    assert netns.listed(store.netns_dir(net_paths)) == []


def test_internal_network_has_no_route_out(net_paths, servers, outside):
    out_ns, out_addr = outside
    nets.create(net_paths, "sealed", internal=True)
    box = setup_container(net_paths, cid(1), name="box", networks=[Attachment("sealed")])
    routes = subprocess.run(netns.exec_argv(box.netns, ["ip", "route"]), capture_output=True, text=True).stdout
    assert "default" not in routes
    servers(out_ns, 9000)
    with pytest.raises(ConnectionError, match="unreachable"):
        fetch(box.netns, out_addr, 9000, timeout=1)
    # even with a route added by hand, the firewall drops the way out
    subprocess.run(netns.exec_argv(box.netns, ["ip", "route", "add", "default", "via",
                                               nets.get(net_paths, "sealed").gateway]), check=True)
    with pytest.raises(ConnectionError):
        fetch(box.netns, out_addr, 9000, timeout=1)


def test_container_on_two_networks(net_paths, servers):
    nets.create(net_paths, "one")
    nets.create(net_paths, "two", internal=True)
    both = setup_container(net_paths, cid(1), name="both", networks=[Attachment("one"), Attachment("two")])
    only2 = setup_container(net_paths, cid(2), name="only2", networks=[Attachment("two", ipv4_address=None)])
    links = subprocess.run(netns.exec_argv(both.netns, ["ip", "-o", "-4", "addr"]), capture_output=True, text=True).stdout
    assert "eth0" in links and "eth1" in links
    routes = subprocess.run(netns.exec_argv(both.netns, ["ip", "route"]), capture_output=True, text=True).stdout
    assert f"default via {nets.get(net_paths, 'one').gateway} dev eth0" in routes
    servers(only2.netns, 7000)
    assert fetch(both.netns, only2.addresses["two"], 7000) == both.addresses["two"]


def test_requested_address_and_remove_refused_while_in_use(net_paths):
    nets.create(net_paths, "fixed", subnet="10.123.45.0/24")
    box = setup_container(net_paths, cid(1), name="box",
                          networks=[Attachment("fixed", ipv4_address="10.123.45.99")])
    assert box.addresses == {"fixed": "10.123.45.99"}
    with pytest.raises(NetworkError, match="already in use on network 'fixed'"):
        setup_container(net_paths, cid(2), name="dup", networks=[Attachment("fixed", ipv4_address="10.123.45.99")])
    with pytest.raises(ConflictError, match="has active endpoints \\(box\\)"):
        nets.remove(net_paths, ["fixed"])


def test_everything_is_gone_after_removal(net_paths, servers):
    nets.create(net_paths, "a")
    nets.create(net_paths, "b", internal=True)
    port = free_port()
    setup_container(net_paths, cid(1), name="x", networks=[Attachment("a"), Attachment("b")],
                    ports=[f"127.0.0.1:{port}:80/udp"], service="svc")
    setup_container(net_paths, cid(2), name="y", networks=[Attachment("a")], service="svc")
    assert leftovers(net_paths)["links"]
    teardown_container(net_paths, cid(1))
    teardown_container(net_paths, cid(2))
    nets.remove(net_paths, ["a", "b"])
    assert leftovers(net_paths) == {"links": [], "nft": [], "iptables": [], "netns": []}


def test_gc_removes_what_a_crash_left(net_paths):
    nets.create(net_paths, "crashy")
    box = setup_container(net_paths, cid(1), name="box", networks=[Attachment("crashy")])
    # a crash: the netns vanished (as after a reboot) but state and veth remain;
    # and a bridge of ours that no network explains
    netns.remove(box.netns)
    subprocess.run(["ip", "link", "add", "stk-0dead0ff", "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", "stk-0dead0ff", "alias", f"stackctl {nets.tag(net_paths)} network ghost"], check=True)
    report = gc.gc_stale(net_paths)
    assert report.sandboxes == [cid(1)]
    assert "stk-0dead0ff" in report.links
    left = leftovers(net_paths)["links"]
    assert left == [nets.get(net_paths, "crashy").bridge]  # only the live network's bridge
    assert gc.gc_stale(net_paths).links == []  # twice is safe
