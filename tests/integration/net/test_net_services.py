"""Service discovery on the real kernel: a VIP balanced over replicas by nftables, DNS round
robin, tasks.<service>, health, and the DNS server forwarding other names."""

from __future__ import annotations

import pytest

from stackctl.net import dnsserver, store
from stackctl.net import networks as nets
from stackctl.net.sandbox import Attachment, set_health, setup_container

from conftest import fetch  # noqa: E402

pytestmark = pytest.mark.root


def cid(n: int) -> str:
    return f"{n:064x}"


def ask(server_ip: str, name: str, ns_path: str) -> list[str]:
    """Ask the embedded DNS server from inside a netns (UDP, like a container's libc)."""
    import subprocess
    import sys

    code = ("import socket,sys; from stackctl.net import dns; s=socket.socket(2,2); s.settimeout(3);"
            "s.sendto(dns.build_query(sys.argv[2]), (sys.argv[1], 53));"
            "print(' '.join(v for t, v in dns.parse_answers(s.recv(4096))[1]))")
    from stackctl.net import netns

    out = subprocess.run(netns.exec_argv(ns_path, [sys.executable, "-c", code, server_ip, name]),
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_vip_balances_over_healthy_replicas(net_paths, servers):
    net = nets.create(net_paths, "svc")
    reps = [setup_container(net_paths, cid(i), name=f"web-{i}", networks=[Attachment("svc")],
                            service="web") for i in (1, 2)]
    client = setup_container(net_paths, cid(9), name="client", networks=[Attachment("svc")])
    logs = [servers(r.netns, 80) for r in reps]
    vip = store.load(net_paths).vips[net.id]["web"]
    thread, stop = dnsserver.start_in_thread(net_paths)
    try:
        assert ask(net.gateway, "web", client.netns) == [vip]
        assert sorted(ask(net.gateway, "tasks.web", client.netns)) == sorted(
            r.addresses["svc"] for r in reps)
        # through the VIP both replicas answer (random balancing: 40 tries miss one with p=2^-39)
        for _ in range(40):
            # replicas see the gateway (the VIP is DNAT'd and masqueraded on the host)
            assert fetch(client.netns, vip, 80, timeout=2) == net.gateway
            if all(log.clients() for log in logs):
                break
        assert all(log.clients() for log in logs)
        # an unhealthy replica leaves tasks.web and the VIP's backends
        set_health(net_paths, cid(1), False)
        assert ask(net.gateway, "tasks.web", client.netns) == [reps[1].addresses["svc"]]
        before = len(logs[0].clients())
        for _ in range(5):
            fetch(client.netns, vip, 80)
        assert len(logs[0].clients()) == before
    finally:
        stop.set()
        thread.join()


def test_dnsrr_service_answers_replicas(net_paths):
    net = nets.create(net_paths, "rr")
    reps = [setup_container(net_paths, cid(i), name=f"db-{i}", networks=[Attachment("rr")],
                            service="db", endpoint_mode="dnsrr") for i in (1, 2)]
    assert store.load(net_paths).vips.get(net.id, {}) == {}
    thread, stop = dnsserver.start_in_thread(net_paths)
    try:
        firsts = {ask(net.gateway, "db", reps[0].netns)[0] for _ in range(4)}
        assert firsts == {r.addresses["rr"] for r in reps}  # the order rotates
    finally:
        stop.set()
        thread.join()
