"""Network attacks from default containers: the host's loopback, other networks, the
node's DNS daemon. Each test states Docker's default; stackctl must be at least as strict."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
import uuid

import pytest

from stackctl.net import dns

pytestmark = pytest.mark.root

GW_MAC = ('gw=$(ip route | awk "/default/{print \\$3}"); ping -c1 -W1 $gw >/dev/null 2>&1; '
          'mac=$(awk -v gw=$gw "\\$1==gw{print \\$4}" /proc/net/arp); ')


@pytest.fixture
def loopback_listener():
    """A TCP server bound to the host's 127.0.0.1 only (what an admin keeps private)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield srv.getsockname()[1]
    srv.close()


def wait_for(cond, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_handmade_syn_to_host_loopback_is_dropped(sec_node, loopback_listener):
    """Docker: route_localnet stays off on its bridges (unless the userland proxy is off),
    so the kernel drops packets from a bridge to 127.0.0.0/8. stackctl keeps route_localnet
    on (for 127.0.0.1-published ports) and drops them in nft raw prerouting. A container
    with the default NET_RAW sends a hand-made SYN to the gateway's MAC with destination
    127.0.0.1: before the fix the host's loopback-only server answered."""
    p = sec_node.sh(GW_MAC + f"attack loopback-syn eth0 $mac {loopback_listener}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "loopback-syn blocked" in p.stdout


def test_loopback_published_port_works_from_the_host_only(sec_node, tmp_path):
    """Docker (28.0+, filterPortMappedOnLoopback): a port published on 127.0.0.1 answers the
    host's own clients; packets for it that arrive on any other interface are dropped (here:
    a hand-made SYN from another container)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = sec_node("run", "-d", "--name", "lo-web", "-p", f"127.0.0.1:{port}:80",
                   "stackctl-test/attack:1", "sh", "-c",
                   "mkdir -p /www && echo private > /www/index.html && httpd -f -p 80 -h /www")
    try:
        assert web.returncode == 0, web.stderr
        body = wait_for(lambda: _get(f"http://127.0.0.1:{port}/"), what="the published port")
        assert body.strip() == "private"
        p = sec_node.sh(GW_MAC + f"attack loopback-syn eth0 $mac {port}")
        assert "loopback-syn blocked" in p.stdout, p.stdout + p.stderr
    finally:
        sec_node("rm", "-f", "lo-web")


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.read().decode()
    except OSError:
        return None


def _ip(sec_node, name: str, network: str) -> str:
    out = sec_node("inspect", name, check=0).stdout
    return json.loads(out)[0]["NetworkSettings"]["Networks"][network]["IPAddress"]


def test_containers_of_another_network_are_unreachable(sec_node):
    """Docker: bridge networks are isolated from each other (DOCKER-ISOLATION chains): a
    container on one network cannot reach a container on another, by address."""
    sec_node("network", "create", "sec-a", check=0)
    sec_node("network", "create", "sec-b", check=0)
    try:
        token = uuid.uuid4().hex  # what only this server answers (other nodes' tests may serve "hi")
        sec_node("run", "-d", "--name", "iso-web", "--network", "sec-a", "stackctl-test/attack:1",
                 "sh", "-c", f"mkdir -p /www && echo {token} > /www/index.html && httpd -f -p 80 -h /www",
                 check=0)
        ip = _ip(sec_node, "iso-web", "sec-a")
        # the control, waiting for httpd to listen: reachable on its own network
        # (busybox-static's wget crashes in glibc's static resolver: nc speaks HTTP here)
        get = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 80"
        same = sec_node.sh(f"for i in $(seq 50); do {get} && exit 0; sleep 0.1; done", "--network", "sec-a")
        assert same.stdout.splitlines()[-1:] == [token], same.stdout + same.stderr
        other = sec_node.sh(f"{get}; exit 0", "--network", "sec-b")
        assert token not in other.stdout, other.stdout
        ping = sec_node.sh(f"ping -c1 -W1 {ip} >/dev/null && echo PINGED", "--network", "sec-b")
        assert "PINGED" not in ping.stdout
    finally:
        sec_node("rm", "-f", "iso-web")
        sec_node("network", "rm", "sec-a", "sec-b")


def test_dns_fuzzing_does_not_take_the_node_dns_down(sec_node):
    """Docker: the embedded DNS server (in dockerd) answers every container's names, and a
    malformed query gets FORMERR or nothing. Before the fix, one query with a non-ASCII label
    killed stackctl's DNS daemon for every container on the node. Fuzz it from a container
    (random and mutated datagrams), then a well-formed query is still answered, by the same
    daemon (no restart)."""
    sec_node("network", "create", "sec-dns", check=0)
    try:
        sec_node("run", "-d", "--name", "dns-target", "--network", "sec-dns",
                 "stackctl/busybox", "sleep", "300", check=0)
        pid_file = os.path.join(sec_node.paths.run, "net", "dns.pid")
        pid_before = open(pid_file).read().strip()
        p = sec_node.sh('gw=$(ip route | awk "/default/{print \\$3}"); attack dns-fuzz $gw 2000 9; '
                        'nslookup dns-target $gw', "--network", "sec-dns", timeout=90)
        assert "dns-fuzz sent 2000" in p.stdout, p.stdout + p.stderr
        target = _ip(sec_node, "dns-target", "sec-dns")
        assert target in p.stdout, p.stdout
        assert open(pid_file).read().strip() == pid_before  # the same daemon answered
        # and from the host, straight to the daemon: a good query after the fuzz
        gw = json.loads(sec_node("network", "inspect", "sec-dns", check=0).stdout)[0]["IPAM"]["Config"][0]["Gateway"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.sendto(dns.build_query("dns-target"), (gw, 53))
            rcode, answers = dns.parse_answers(s.recv(4096))
        assert (rcode, answers) == (0, [(1, target)])
    finally:
        sec_node("rm", "-f", "dns-target")
        sec_node("network", "rm", "sec-dns")
