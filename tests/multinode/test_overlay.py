"""Overlay networks across three nodes (issue 11's must-shows), on the one-machine harness
(stackctl/cluster/demo.py): three network namespaces on a bridge, an sshd and an agent each.
The CLI runs here and reaches the manager (n1) over OpenSSH; the manager pushes every node
its view of each overlay network (stackctl/controller/overlay.py, stackctl/net/overlay.py).

Every stack is brought down in its test's teardown; the cluster goes with the module (also on
failure)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

pytestmark = [pytest.mark.root, pytest.mark.multinode]

IMAGE = "stackctl/busybox:latest"
#: ~1 MB of deterministic content, the same on every replica
BIG = "seq 1 150000 > /www/big"
BIG_MD5 = hashlib.md5("".join(f"{i}\n" for i in range(1, 150001)).encode()).hexdigest()

API = """services:
  api:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && """ + BIG + """ && exec httpd -f -vv -p 80 -h /www"]
    stop_signal: SIGKILL
    ports: ["{port}:80"]
    networks:
      front:
        aliases: [backend]
    deploy:
      replicas: 2
      placement:
        constraints: ["node.hostname != n1"]
        max_replicas_per_node: 1
  client:
    image: stackctl/busybox:latest
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    networks: [front]
    deploy:
      placement:
        constraints: ["node.hostname == n1"]
networks:
  front: {{}}
"""

POLL = r'''
import json, socket, subprocess, sys, time
from dnslib import DNSRecord
gw, name, ip, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
print("ready", flush=True)
t0 = time.time(); dns = vip = None
def answers():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
    try:
        s.sendto(DNSRecord.question(name).pack(), (gw, 53))
        return [str(a.rdata) for a in DNSRecord.parse(s.recv(4096)).rr]
    except OSError:
        return [ip]
    finally:
        s.close()
while time.time() - t0 < timeout and (dns is None or vip is None):
    if dns is None and ip not in answers():
        dns = time.time()
    if vip is None:
        rules = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
        if not any(ip in l for l in rules.splitlines() if "dnat to" in l and "vip " in l):
            vip = time.time()
    time.sleep(0.02)
print(json.dumps({"dns": dns, "vip": vip}), flush=True)
'''


class Harness:
    def __init__(self, demo, tmp) -> None:
        self.demo = demo
        self.dir = tmp
        self.inventory = os.path.join(tmp, "nodes.yml")
        self.stacks: list[str] = []

    def ssh(self, node: str, *argv: str, input: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(self.demo.ssh_command(node, *argv), input=input,
                           capture_output=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"ssh {node} {argv}: {p.returncode} {p.stderr.decode()}")
        return p

    def cli(self, *argv: str, check: bool = True,
            timeout: float = 180) -> subprocess.CompletedProcess:
        env = {**os.environ, "STACKCTL_WARM": "0", "STACKCTL_NODES": self.inventory}
        p = subprocess.run([sys.executable, "-m", "stackctl", *argv], capture_output=True,
                           text=True, timeout=timeout, env=env, cwd=self.dir)
        if check and p.returncode != 0:
            raise AssertionError(f"stackctl {argv}: {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def write_stack(self, text: str) -> tuple[str, str]:
        name = f"o{uuid.uuid4().hex[:6]}"
        path = os.path.join(self.dir, f"{name}.yml")
        with open(path, "w") as f:
            f.write(f"name: {name}\n" + text)
        self.stacks.append(path)
        return name, path

    def exec(self, path: str, service: str, *argv: str,
             check: bool = True) -> subprocess.CompletedProcess:
        return self.cli("exec", "-f", path, service, *argv, check=check, timeout=60)

    def netns(self, node: str) -> str:
        return f"/run/netns/{self.demo.node(node).netns}"

    def in_node(self, node: str, *argv: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--net={self.netns(node)}", "--", *argv],
                              capture_output=True, text=True, timeout=60, **kw)

    def address(self, node: str) -> str:
        return self.demo.node(node).address

    def node_state(self, node: str) -> dict:
        d = self.demo.node(node).state
        with open(os.path.join(d, "networks", "state.json")) as f:
            return json.load(f)

    def overlay_of(self, node: str, network: str) -> dict:
        for net in self.node_state(node)["networks"].values():
            if net["name"] == network:
                return net
        raise AssertionError(f"no network {network} on {node}")


@pytest.fixture(scope="module")
def harness(shared_cluster, tmp_path_factory):
    d = shared_cluster
    h = Harness(d, str(tmp_path_factory.mktemp("overlay")))
    h.ssh("n1", "stackctl", "image", "build-busybox", "-q")
    image = h.ssh("n1", "stackctl", "image", "save", IMAGE).stdout
    for n in ("n2", "n3"):
        h.ssh(n, "stackctl", "image", "load", "-q", input=image)
    with open(h.inventory, "w") as f:
        f.write("nodes:\n")
        for node in d.nodes:
            f.write(f"  - name: {node.name}\n    url: ssh://root@{node.address}\n"
                    f"    identity: {d.client_key}\n    known_hosts: {d.known_hosts}\n")
    return h


@pytest.fixture
def stacks(harness):
    harness.stacks.clear()
    yield harness
    for path in harness.stacks:
        harness.cli("down", "-v", "-f", path, check=False)


def _get(ip: str, port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=5) as r:
        return r.read().decode()


def _hostnames(h: Harness, path: str) -> dict[str, str]:
    """container id[:12] (= hostname) -> node, of the stack's api replicas"""
    rows = [json.loads(line) for line in h.cli("ps", "-f", path, "--format", "json")
            .stdout.splitlines() if line.startswith("{")]
    return {r["ID"][:12]: r["Node"] for r in rows if r["Service"] == "api"}


def test_replicas_on_two_nodes_answer_a_client_on_the_third_by_name_alias_vip_and_tasks(stacks):
    h = stacks
    name, path = h.write_stack(API.format(port=18081))
    h.cli("up", "-d", "--wait", "-f", path)
    replicas = _hostnames(h, path)
    assert sorted(replicas.values()) == ["n2", "n3"], replicas

    # the network is one overlay: same VNI and subnet everywhere, MTU 1450, learning off
    nets = [h.overlay_of(n, f"{name}_front") for n in ("n1", "n2", "n3")]
    assert len({(n["vni"], n["subnet"]) for n in nets}) == 1 and nets[0]["vni"] >= 4096, nets
    assert all(n["mtu"] == 1450 for n in nets)
    link = h.in_node("n1", "ip", "-d", "link", "show", "stkx" + nets[0]["id"][:8]).stdout
    assert "nolearning" in link and "proxy" in link and "dstport 4789" in link, link
    mtu = h.exec(path, "client", "cat", "/sys/class/net/eth0/mtu").stdout.strip()
    assert mtu == "1450"

    # by name (the VIP), by alias, through the VIP's address, and tasks.<name>
    vip = h.exec(path, "client", "nslookup", "api").stdout.split("Address")[-1]
    vip = re.search(r"\d+\.\d+\.\d+\.\d+", vip).group(0)
    tasks = re.findall(r"Address: (\d+\.\d+\.\d+\.\d+)",
                       h.exec(path, "client", "nslookup", "tasks.api").stdout)
    assert len(tasks) == 2 and vip not in tasks, tasks
    seen = set()
    for target in ["api"] * 6 + ["backend", vip, vip, vip, vip]:
        seen.add(h.exec(path, "client", "wget", "-qO-", f"http://{target}/").stdout.strip())
    assert seen == set(replicas), (seen, replicas)  # both replicas, on n2 and n3, answered
    for ip in tasks:
        assert h.exec(path, "client", "wget", "-qO-", f"http://{ip}/").stdout.strip() \
            in replicas
    # a 1 MB body crosses the nodes intact (MTU: nothing stalls, nothing is cut)
    out = h.exec(path, "client", "sh", "-c",
                 "wget -qO /tmp/big http://api/big && md5sum /tmp/big").stdout
    assert out.split()[0] == BIG_MD5, out

    # a one-off task of the stack (`run --rm`) gets its overlay address from the manager too
    out = h.cli("run", "-f", path, "--rm", "client", "wget", "-qO-", "http://api/").stdout
    assert out.strip() in replicas, out

    # published port: every node answers, including n1 which runs no replica
    for node in ("n1", "n2", "n3"):
        answered = {_get(h.address(node), 18081).strip() for _ in range(4)}
        assert answered <= set(replicas) and answered, (node, answered)
        if node != "n1":  # a node with a local replica serves it there
            assert answered == {k for k, v in replicas.items() if v == node}, (node, answered)
    # ... and its server logs the client's real address (no SNAT on a local replica)
    client = h.demo.gateway
    p = h.cli("logs", "-f", path, "api")
    logs = p.stdout + p.stderr  # httpd logs on its stderr
    assert re.search(rf"\b{re.escape(client)}\]?:\d+: url:/", logs), logs[-2000:]


def test_a_second_stack_cannot_reach_the_first_and_internal_has_no_way_out(stacks):
    h = stacks
    name1, path1 = h.write_stack(API.format(port=18082))
    h.cli("up", "-d", "--wait", "-f", path1)
    tasks = re.findall(r"Address: (\d+\.\d+\.\d+\.\d+)",
                       h.exec(path1, "client", "nslookup", "tasks.api").stdout)
    assert len(tasks) == 2
    name2, path2 = h.write_stack("""services:
  intruder:
    image: stackctl/busybox:latest
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    networks: [front]
    deploy:
      placement:
        constraints: ["node.hostname == n1"]
  sealed:
    image: stackctl/busybox:latest
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    networks: [inside]
    deploy:
      mode: global
networks:
  front: {}
  inside:
    internal: true
""")
    h.cli("up", "-d", "--wait", "-f", path2)
    n1 = h.overlay_of("n1", f"{name1}_front")
    n2 = h.overlay_of("n1", f"{name2}_front")
    assert n1["vni"] != n2["vni"] and n1["subnet"] != n2["subnet"]
    # not by name, not by address (the first stack's replicas and VIP)
    assert h.exec(path2, "intruder", "nslookup", "api", check=False).returncode != 0
    for ip in tasks:
        p = h.exec(path2, "intruder", "timeout", "3", "wget", "-qO-", f"http://{ip}/",
                   check=False)
        assert p.returncode != 0 and not p.stdout.strip(), (ip, p.stdout)
    # internal: on every node, neither the node's own address nor another node's, nor the
    # harness's gateway, is reachable (sshd listens on each node's address, port 22)
    rows = [json.loads(line) for line in h.cli("ps", "-f", path2, "--format", "json")
            .stdout.splitlines() if line.startswith("{")]
    sealed = {r["Node"]: f"{r['Service']}.{r['Slot']}" for r in rows if r["Service"] == "sealed"}
    assert sorted(sealed) == ["n1", "n2", "n3"], sealed
    for node, task in sealed.items():
        for target in (h.address(node), h.address("n2" if node != "n2" else "n3")):
            p = h.exec(path2, task, "nc", "-w", "2", target, "22", check=False)
            assert "SSH-" not in p.stdout, (node, target, p.stdout)
    # the control: the same from a non-internal overlay reaches sshd
    p = h.exec(path2, "intruder", "sh", "-c", f"echo | nc -w 2 {h.address('n2')} 22",
               check=False)
    assert "SSH-" in p.stdout, p.stdout + p.stderr


def test_a_replica_stopped_on_one_node_leaves_dns_and_vip_of_the_others_within_a_second(stacks):
    h = stacks
    name, path = h.write_stack(API.format(port=18083))
    h.cli("up", "-d", "--wait", "-f", path)
    rows = [json.loads(line) for line in h.cli("ps", "-f", path, "--format", "json")
            .stdout.splitlines() if line.startswith("{")]
    victim = next(r for r in rows if r["Service"] == "api" and r["Node"] == "n2")
    net = h.overlay_of("n1", f"{name}_front")
    ip = next(e["address"] for e in h.node_state("n1")["endpoints"][net["id"]].values()
              if victim["Name"] in e["names"])
    pollers = {}
    for node in ("n1", "n3"):
        p = subprocess.Popen(["nsenter", f"--net={h.netns(node)}", "--", sys.executable, "-c",
                              POLL, net["gateway"], "tasks.api", ip, "10"],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        pollers[node] = p
    h.ssh("n2", "stackctl", "kill", victim["Name"])
    killed = time.time()
    for node, p in pollers.items():
        out, _ = p.communicate(timeout=30)
        gone = json.loads(out.strip().splitlines()[-1])
        assert gone["dns"] is not None and gone["vip"] is not None, (node, gone)
        assert gone["dns"] - killed < 1.0 and gone["vip"] - killed < 1.0, (node, gone, killed)


def test_down_leaves_nothing_of_the_stack_on_any_node(stacks):
    h = stacks
    name, path = h.write_stack(API.format(port=18084))
    h.cli("up", "-d", "--wait", "-f", path)
    net = h.overlay_of("n1", f"{name}_front")
    h.cli("down", "-v", "-f", path)
    h.stacks.remove(path)
    for node in ("n1", "n2", "n3"):
        links = h.in_node(node, "ip", "-o", "link").stdout
        assert "stkx" + net["id"][:8] not in links and "stk-" + net["id"][:8] not in links
        fdb = h.in_node(node, "bridge", "fdb", "show").stdout
        assert not [l for l in fdb.splitlines() if " dst " in l], fdb
        neigh = h.in_node(node, "ip", "neigh", "show", "nud", "permanent").stdout
        assert net["subnet"].rsplit(".", 1)[0] + "." not in neigh, neigh
        assert h.in_node(node, "ip", "xfrm", "state").stdout.strip() == ""
        assert h.in_node(node, "ip", "xfrm", "policy").stdout.strip() == ""
        rules = h.in_node(node, "nft", "list", "ruleset").stdout
        assert net["subnet"] not in rules and "4789" not in rules, rules
        assert f"{name}_front" not in json.dumps(h.node_state(node)["networks"])


def test_bad_input_is_one_line(stacks):
    h = stacks
    # a subnet that holds a node's own address
    _, path = h.write_stack(f"""services:
  a:
    image: stackctl/busybox:latest
    command: ["sleep", "3600"]
    networks: [front]
networks:
  front:
    ipam:
      config: [{{subnet: {h.demo.subnet}}}]
""")
    p = h.cli("up", "-d", "-f", path, check=False)
    assert p.returncode != 0
    assert f"holds node n1's own address {h.address('n1')}" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr

    # the VXLAN port taken on a node: that node is named, with what to do
    holder = subprocess.Popen(["nsenter", f"--net={h.netns('n3')}", "--", sys.executable, "-c",
                               "import socket,sys; s=socket.socket(socket.AF_INET, "
                               "socket.SOCK_DGRAM); s.bind(('0.0.0.0', 4789)); print('ok', "
                               "flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        _, path = h.write_stack(API.format(port=18085))
        p = h.cli("up", "-d", "-f", path, check=False)
        assert p.returncode != 0
        assert "UDP port 4789 (VXLAN) is already in use" in p.stderr, p.stderr
        assert "n3" in p.stderr and "Traceback" not in p.stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    h.cli("down", "-v", "-f", path)

    # (an encrypted network that no node can encrypt is refused: tests/unit/net/
    # test_overlay_tunnel.py, the manager's choice of data path)


SECRET = """services:
  api:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && """ + BIG + """ && exec httpd -f -p 80 -h /www"]
    stop_signal: SIGKILL
    networks:
      sec:
        aliases: [secret-api]
      front:
        aliases: [plain-api]
    deploy:
      replicas: 2
      placement:
        constraints: ["node.hostname != n1"]
        max_replicas_per_node: 1
  client:
    image: stackctl/busybox:latest
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    networks: [sec, front]
    deploy:
      placement:
        constraints: ["node.hostname == n1"]
networks:
  front: {}
  sec:
    driver: overlay
    driver_opts: {encrypted: ""}
"""

#: what the 1 MB body looks like in clear: runs of "1xxxxx\n" (its last 50,000 lines)
PLAIN = re.compile(rb"\n1\d{5}\n1\d{5}\n1\d{5}\n")


def _capture(h: Harness, path: str, url: str, pcap: str) -> bytes:
    """The frames on the harness bridge (between the nodes) while the client fetches ``url``;
    the body arrived intact, and tcpdump lost nothing (a 64 MB buffer: the tunnel's
    datagrams come in bursts of 64 KB; immediate mode: nothing waits in a ring block for
    libpcap's 1 s timeout when tcpdump is ended)."""
    cap = subprocess.Popen(["tcpdump", "-U", "--immediate-mode", "-B", "65536", "-s", "0",
                            "-w", pcap, "-i",
                            h.demo.bridge, "udp"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in cap.stderr.readline()  # tcpdump is attached
        out = h.exec(path, "client", "sh", "-c", f"wget -qO- {url} | md5sum").stdout
        assert out.split()[0] == BIG_MD5, out
        # tcpdump writes what it holds before it ends: wait until the file stops growing
        # (a SIGTERM drops what it has not written yet)
        deadline, size = time.monotonic() + 10, -1
        while time.monotonic() < deadline and os.path.getsize(pcap) != size:
            size = os.path.getsize(pcap)
            time.sleep(0.3)  # the condition is "no growth for this long"
    finally:
        cap.terminate()
        summary = cap.communicate(timeout=10)[1]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) packets? (captured|received by filter|"
                                                r"dropped by kernel)", summary)}
    assert counts.get("dropped by kernel", 0) == 0, summary
    assert counts.get("captured") == counts.get("received by filter"), summary
    with open(pcap, "rb") as f:
        return f.read()


def _tunnel_pid(h: Harness, node: str, net_id: str) -> int | None:
    try:
        with open(os.path.join(h.demo.node(node).run, "net", "tunnel", f"{net_id}.pid")) as f:
            pid = int(f.read())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def test_an_encrypted_network_carries_a_big_body_and_the_wire_between_nodes_shows_none_of_it(
        stacks):
    h = stacks
    name, path = h.write_stack(SECRET)
    h.cli("up", "-d", "--wait", "-f", path)
    sec = {n: h.overlay_of(n, f"{name}_sec") for n in ("n1", "n2", "n3")}
    assert all(n["encrypted"] for n in sec.values())
    caps = json.loads(h.in_node("n1", sys.executable, "-c", "from stackctl.net import xfrm; "
                                "import json; print(json.dumps(xfrm.capabilities()))",
                                cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                                    __file__)))).stdout)
    inspect = json.loads(h.ssh("n1", "stackctl", "network", "inspect", f"{name}_sec")
                         .stdout)[0]
    assert inspect["Options"]["encrypted"] == ""
    if caps["gcm"] or caps["cbc"]:  # pragma: no cover - a kernel with ESP: IPsec
        assert inspect["Overlay"]["DataPath"] == "ipsec"
    else:  # this machine's kernel: the userspace tunnel, and inspect says why
        assert inspect["Overlay"]["DataPath"] == "userspace-aes-gcm", inspect["Overlay"]
        assert "cannot do IPsec ESP" in inspect["Overlay"]["DataPathReason"]
        assert inspect["Overlay"]["Tunnel"]["pid"], inspect["Overlay"]
        for node, net in sec.items():
            assert net["mtu"] == 1416
            links = h.in_node(node, "ip", "-o", "link").stdout
            assert f"stkt{net['id'][:8]}" in links and f"stkx{net['id'][:8]}" not in links
            assert _tunnel_pid(h, node, net["id"]), node
        assert h.exec(path, "client", "cat", "/sys/class/net/eth0/mtu").stdout.strip() in \
            ("1416", "1450")

    # the must-show: the body crosses intact, and the wire carries none of it in clear ...
    raw = _capture(h, path, "http://secret-api/big", os.path.join(h.dir, "sec.pcap"))
    assert len(raw) > 900_000, len(raw)  # the transfer (0.94 MB) was captured
    assert not PLAIN.search(raw), "plain payload on the wire of an encrypted network"
    # ... while the same capture of the plain overlay sees it (the check can fail)
    raw = _capture(h, path, "http://plain-api/big", os.path.join(h.dir, "plain.pcap"))
    assert len(PLAIN.findall(raw)) > 100

    if not (caps["gcm"] or caps["cbc"]):
        # a tunnel that dies is started again by its node's agent (from its configuration)
        nid = sec["n2"]["id"]
        old = _tunnel_pid(h, "n2", nid)
        os.kill(old, 9)
        deadline = time.monotonic() + 30
        while _tunnel_pid(h, "n2", nid) in (None, old) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _tunnel_pid(h, "n2", nid) not in (None, old)
        for _ in range(2):  # both replicas (n2 and n3) through the VIP
            out = h.exec(path, "client", "sh", "-c",
                         "wget -qO- http://secret-api/big | md5sum").stdout
            assert out.split()[0] == BIG_MD5
        # ... and outlives its agent: n2's agent stops, comes back (the manager reconnects and
        # pushes the view again), and adopts the same tunnel
        pid = _tunnel_pid(h, "n2", nid)
        h.ssh("n2", "stackctl", "agent", "stop", check=False)
        assert _tunnel_pid(h, "n2", nid) == pid
        deadline = time.monotonic() + 60  # the manager reconnects (dial-stdio starts it)
        while h.ssh("n2", "stackctl", "agent", "status", check=False).returncode != 0 and \
                time.monotonic() < deadline:
            h.cli("ps", "-f", path)
        assert h.ssh("n2", "stackctl", "agent", "status", check=False).returncode == 0
        assert _tunnel_pid(h, "n2", nid) == pid
        out = h.exec(path, "client", "sh", "-c", "wget -qO- http://secret-api/big | md5sum")
        assert out.stdout.split()[0] == BIG_MD5

    # after down -v: no TAP, tunnel process or file, xfrm state or rule of it anywhere
    h.cli("down", "-v", "-f", path)
    h.stacks.remove(path)
    for node, net in sec.items():
        assert f"stkt{net['id'][:8]}" not in h.in_node(node, "ip", "-o", "link").stdout
        assert _tunnel_pid(h, node, net["id"]) is None
        tdir = os.path.join(h.demo.node(node).run, "net", "tunnel")
        assert not [f for f in (os.listdir(tdir) if os.path.isdir(tdir) else [])
                    if f.startswith(net["id"])], node
        procs = subprocess.run(["pgrep", "-f", f"stackctl.net.tunneld .*{net['id']}"],
                               capture_output=True, text=True).stdout
        assert not procs.strip(), procs
        assert h.in_node(node, "ip", "xfrm", "state").stdout.strip() == ""
        rules = h.in_node(node, "nft", "list", "ruleset").stdout
        assert net["subnet"] not in rules, rules


def test_a_node_that_leaves_the_cluster_leaves_no_entries_on_the_others(stacks):
    h = stacks
    name, path = h.write_stack(API.format(port=18087))
    h.cli("up", "-d", "--wait", "-f", path)
    vtep = h.address("n3")

    def entries(node: str) -> list[str]:
        fdb = h.in_node(node, "bridge", "fdb", "show").stdout
        return [line for line in fdb.splitlines() if f"dst {vtep} " in line + " "]

    assert entries("n1") and entries("n2")  # n3's replica and n3's own address
    with open(h.inventory) as f:
        full = f.read()
    two = full[:full.index("  - name: n3")]
    try:
        with open(h.inventory, "w") as f:
            f.write(two)
        h.cli("ps", "-f", path)  # the CLI sends the inventory: n3 is no member any more
        deadline = time.monotonic() + 20
        while (entries("n1") or entries("n2")) and time.monotonic() < deadline:
            h.cli("ps", "-f", path)
        assert not entries("n1") and not entries("n2"), (entries("n1"), entries("n2"))
    finally:
        with open(h.inventory, "w") as f:
            f.write(full)
        h.cli("ps", "-f", path)
