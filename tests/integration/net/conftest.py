"""Fixtures of the networking integration tests. Everything they make — networks, netns,
veths, the firewall table, the "other machine" netns — is removed in teardown, also when a
test fails; `leftovers()` is what the tests assert is empty at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid

import pytest

from stackctl.net import firewall, gc, netns, store
from stackctl.net import networks as nets_mod
from stackctl.net import sandbox as sb_mod

SERVER = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "net", "echo_server.py")


def leftovers(paths) -> dict[str, list[str]]:
    from stackctl.net import bridge, gc as gc_mod

    # only links tagged with this node's owner (another node's agent may run meanwhile)
    prefix = bridge.owner_alias(gc_mod.tag(paths), "")
    tag = firewall.table_name(paths)
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return {
        "links": [name for name, _kind, alias in bridge.links() if alias.startswith(prefix)],
        "nft": [line for line in ruleset.splitlines() if tag in line],
        "iptables": [line for line in saved.splitlines() if "stackctl" in line.lower()],
        "netns": netns.listed(store.netns_dir(paths)),
    }


@pytest.fixture
def net_paths(node_paths):
    """Node paths whose networking is torn down completely after the test."""
    if shutil.which("nft") is None:
        pytest.skip("nftables is not installed")
    yield node_paths
    state = store.load(node_paths)
    for cid in list(state.sandboxes):
        sb_mod.teardown_container(node_paths, cid)
    if store.load(node_paths).networks:
        nets_mod.remove(node_paths, [n.id for n in store.load(node_paths).networks.values()], force=True)
    gc.gc_stale(node_paths, live_containers=[])
    subprocess.run(["nft", "delete", "table", "ip", firewall.table_name(node_paths)], capture_output=True)


@pytest.fixture
def outside(tmp_path):
    """A netns standing for another machine: veth to the host, host end 198.51.100.1/24,
    its end 198.51.100.2/24 with a default route via the host. Yields (netns path, address)."""
    from pyroute2 import IPRoute

    suffix = uuid.uuid4().hex[:6]
    host_if, peer_if = f"tsto{suffix}", f"tstp{suffix}"
    path = str(tmp_path / "outside-netns" / f"outside-{suffix}")
    netns.create(path)
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=host_if, kind="veth", peer={"ifname": peer_if})
            h = ipr.link_lookup(ifname=host_if)[0]
            p = ipr.link_lookup(ifname=peer_if)[0]
            fd = os.open(path, os.O_RDONLY)
            ipr.link("set", index=p, net_ns_fd=fd)
            os.close(fd)
            ipr.addr("add", index=h, address="198.51.100.1", prefixlen=24)
            ipr.link("set", index=h, state="up")
        with IPRoute(netns=path, flags=0) as ns:
            p = ns.link_lookup(ifname=peer_if)[0]
            ns.addr("add", index=p, address="198.51.100.2", prefixlen=24)
            ns.link("set", index=p, state="up")
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            ns.route("add", dst="0.0.0.0/0", gateway="198.51.100.1")
        yield path, "198.51.100.2"
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        netns.remove(path)


class Server:
    """A TCP echo-of-peer server inside a netns (the fixture script): answers each connection
    with the client's address and logs it to a file."""

    def __init__(self, ns_path: str, port: int, log: str):
        self.log = log
        self.proc = subprocess.Popen(netns.exec_argv(ns_path, [sys.executable, SERVER, str(port), log]),
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def clients(self) -> list[str]:
        with open(self.log) as f:
            return f.read().split()

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def servers(tmp_path):
    made = []

    def start(ns_path: str, port: int) -> Server:
        s = Server(ns_path, port, str(tmp_path / f"server-{len(made)}.log"))
        made.append(s)
        return s

    yield start
    for s in made:
        s.stop()


def fetch(ns_path: str | None, host: str, port: int, timeout: float = 2.0, resolv: str | None = None) -> str:
    """Connect from inside a netns (or the host) and return what the server said, or raise."""
    code = ("import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), "
            f"timeout={timeout}); print(s.recv(200).decode().strip())")
    argv = [sys.executable, "-c", code, host, str(port)]
    if ns_path:
        argv = netns.exec_argv(ns_path, argv)
    if resolv:
        # a private mount namespace whose /etc/resolv.conf is the container's
        inner = " ".join(f"'{a}'" for a in argv)
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                f"mount --bind {resolv} /etc/resolv.conf && exec {inner}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
    if proc.returncode != 0:
        raise ConnectionError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed")
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]
