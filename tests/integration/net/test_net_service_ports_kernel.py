"""Service ports on the real kernel: one host port DNAT'd over the serving replicas of a
service (round robin), following set_health through a rolling update without a failed
request, keeping established connections to a drained replica, refusing when nobody serves,
and showing a remote client's real address to the server."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from stackctl.net import firewall, netns, service_ports, store
from stackctl.net import networks as nets
from stackctl.net.model import NetworkError
from stackctl.net.sandbox import Attachment, set_health, setup_container, teardown_container

from conftest import free_port, leftovers  # noqa: E402

pytestmark = pytest.mark.root

# answers GET with "<its name> <client address>"; HTTP/1.1 so a connection can be kept open
HTTP_SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name = sys.argv[1]

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"{name} {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

srv = ThreadingHTTPServer(("0.0.0.0", 8000), H)
srv.daemon_threads = True
print("ready", flush=True)
srv.serve_forever()
"""


def cid(n: int) -> str:
    return f"{n:064x}"


@pytest.fixture
def replicas(net_paths, tmp_path):
    """start(n) -> (container id, netns path) of replica web-n, serving HTTP on :8000 (not yet
    serving for the service). Every server is killed in teardown, also on failure."""
    script = tmp_path / "http_server.py"
    script.write_text(HTTP_SERVER)
    procs: dict[str, subprocess.Popen] = {}

    def start(n: int) -> str:
        c = cid(n)
        setup = setup_container(net_paths, c, name=f"web-{n}", networks=[Attachment("front")],
                                service="web", serving=False)
        p = subprocess.Popen(netns.exec_argv(setup.netns, [sys.executable, str(script), f"web-{n}"]),
                             stdout=subprocess.PIPE, text=True)
        procs[c] = p
        assert p.stdout.readline().strip() == "ready"
        return c

    def stop(c: str) -> None:
        p = procs.pop(c)
        p.kill()
        p.wait()
        teardown_container(net_paths, c)

    start.stop = stop
    yield start
    for p in procs.values():
        p.kill()
        p.wait()


def get(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=timeout) as r:
        return r.read().decode()


def test_service_port_follows_serving_replicas(net_paths, replicas, outside):
    net = nets.create(net_paths, "front")
    local, anywhere = free_port(), free_port()
    old = [replicas(n) for n in (1, 2, 3)]
    service_ports.publish(net_paths, "shop_web", "web",
                          [f"127.0.0.1:{local}:8000/tcp", f"{anywhere}:8000"], ["front"])
    # nobody serving yet: refused at once, not hanging
    t0 = time.monotonic()
    with pytest.raises(OSError) as err:
        get(local)
    assert isinstance(err.value.reason if hasattr(err.value, "reason") else err.value,
                      ConnectionRefusedError), err.value
    assert time.monotonic() - t0 < 1
    for c in old:
        set_health(net_paths, c, True)

    # round robin over the three; loopback clients are masqueraded to the gateway
    answers = [get(local).split() for _ in range(6)]
    assert sorted(name for name, _ in answers) == ["web-1", "web-1", "web-2", "web-2", "web-3", "web-3"]
    assert {client for _, client in answers} == {net.gateway}

    # another machine: the server sees its real address
    ns_path, ns_addr = outside
    code = ("import urllib.request,sys; print(urllib.request.urlopen("
            "f'http://198.51.100.1:{sys.argv[1]}/', timeout=3).read().decode())")
    out = subprocess.run(netns.exec_argv(ns_path, [sys.executable, "-c", code, str(anywhere)]),
                         capture_output=True, text=True, timeout=15)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == ns_addr

    # a rolling update (start-first, parallelism 1) while a client loops
    results: list[str] = []
    failures: list[str] = []
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            try:
                results.append(get(local).split()[0])
            except OSError as exc:
                failures.append(repr(exc))

    th = threading.Thread(target=client)
    th.start()
    try:
        time.sleep(0.2)
        for i, c in enumerate(old):
            new = replicas(11 + i)
            set_health(net_paths, new, True)  # ready: gets new connections
            set_health(net_paths, c, False)   # drained BEFORE it stops
            time.sleep(0.2)                   # the controller's drain grace
            replicas.stop(c)
        time.sleep(0.2)
    finally:
        done.set()
        th.join()
    assert failures == []
    assert len(results) > 20
    assert set(results[-3:]) <= {"web-11", "web-12", "web-13"}
    assert {get(local).split()[0] for _ in range(3)} == {"web-11", "web-12", "web-13"}

    # an established connection to a replica taken out keeps working until it stops
    conn = http.client.HTTPConnection("127.0.0.1", local, timeout=2)
    conn.request("GET", "/")
    name = conn.getresponse().read().decode().split()[0]
    drained = cid(int(name.split("-")[1]))
    set_health(net_paths, drained, False)
    for _ in range(3):
        conn.request("GET", "/")
        assert conn.getresponse().read().decode().split()[0] == name
        assert get(local).split()[0] != name  # new connections go elsewhere
    conn.close()

    # unpublish: the port is the host's again (nobody listens: refused)
    assert service_ports.unpublish(net_paths, "shop_web") is True
    with pytest.raises(OSError):
        get(local)
    assert f"dport {local}" not in subprocess.run(["nft", "list", "ruleset"], capture_output=True,
                                                  text=True).stdout

    # everything goes: no link, netns or table left
    for c in ("web-11", "web-12", "web-13"):
        replicas.stop(cid(int(c.split("-")[1])))
    nets.remove(net_paths, ["front"])
    assert leftovers(net_paths) == {"links": [], "nft": [], "iptables": [], "netns": []}
    assert ("ip", firewall.table_name(net_paths)) not in firewall.list_tables()


def test_port_in_use_is_refused_before_anything_is_made(net_paths, replicas):
    nets.create(net_paths, "front")
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with pytest.raises(NetworkError, match=f"port {port}/tcp is already in use on 127.0.0.1 "
                                               r"\(by another process\); choose another published port"):
            service_ports.publish(net_paths, "shop_web", "web", [f"127.0.0.1:{port}:8000"], ["front"])
    assert store.load(net_paths).service_ports == {}
    # a container's -p on a service's port is refused too
    service_ports.publish(net_paths, "shop_web", "web", [f"{port}:8000"], ["front"])
    with pytest.raises(NetworkError, match=f"{port}/tcp is already published"):
        setup_container(net_paths, cid(7), name="other", networks=[Attachment("front")],
                        ports=[f"{port}:80"])
    assert cid(7) not in store.load(net_paths).sandboxes


def test_gc_drops_service_ports_of_services_gone(net_paths, replicas):
    from stackctl.net import gc

    nets.create(net_paths, "front")
    c = replicas(1)
    service_ports.publish(net_paths, "shop_web", "web", [f"127.0.0.1:{free_port()}:8000"], ["front"])
    assert gc.gc_stale(net_paths, live_containers=[c]).service_ports == []
    report = gc.gc_stale(net_paths, live_containers=[])
    assert report.service_ports == ["shop_web"] and report.sandboxes == [c]
    assert store.load(net_paths).service_ports == {}
