#!/usr/bin/env python3
"""Cross-node throughput and latency through a stackctl overlay network, against the same
transfer between the two node namespaces directly. Target: the overlay (plain VXLAN) keeps
at least 0.8x of the direct path's throughput.

    python3 bench/overlay.py [--seconds 5] [--runs 5] [--rounds 2000] [--equal-mtu]

Two "nodes" are network namespaces joined by a veth pair (192.0.2.1 and .2, MTU 1500), as
the demo cluster's nodes are. Each gets the overlay network exactly as the manager would push
it (``stackctl.net.overlay.sync``: VXLAN device, the node's macvlan port, static FDB and
neighbour entries, nft table) and one "container" namespace on it
(``sandbox.setup_container``: a macvlan port, MTU 1450), and
an encrypted overlay on the data path the manager would pick here (IPsec ESP, else the
userspace AES-256-GCM tunnel; ``--no-encrypted`` leaves it out). Then:

- throughput: ``iperf3`` (Debian's) for ``--seconds`` between the containers (overlay) and
  between the node namespaces (direct), ``--runs`` times each, interleaved (the machine's
  noise hits every path alike); the medians, and the CPU time iperf3's two ends spent per GB
  (user + system: the kernel's work on the path runs mostly in their context), which a
  loaded machine disturbs less than the rate;
- latency: a TCP ping-pong of 1-byte messages (``--rounds``), median and p99 round trip.

The direct path keeps MTU 1500: it is what the nodes get without an overlay, and the
overlay's 50 bytes are part of its cost (with TSO/GRO both move 64 KB segments, so the MSS
matters little: ``--equal-mtu`` adds the direct path at 1450 to show it).

Docker swarm's overlay, when ``dockerd`` is installed: one dockerd per node namespace (own
data and exec roots, socket), ``swarm init`` on a, ``join`` from b over the veth, an
``--attachable`` overlay network, the same iperf3 and ping-pong between a container on each
(a busybox image with the host's /usr bind-mounted). ``--no-swarm`` leaves it out.
Everything made is removed at the end, also on error or Ctrl-C. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

#: busybox plus the host's /usr (iperf3, python3) bind-mounted: the same tools in both runs
SWARM_IMAGE = "stackctl-bench-swarm:1"


NODE = r'''
import json, os, sys
sys.path.insert(0, sys.argv[1])
from stackctl.paths import NodePaths
from stackctl.net import overlay, sandbox, networks
root, me, cmd, secret = sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
paths = NodePaths(state=f"{root}/state", run=f"{root}/run", cgroup_parent="stackctl-bench")
os.makedirs(paths.state + "/networks", exist_ok=True); os.makedirs(paths.run, exist_ok=True)
VTEPS = (("a", "192.0.2.1"), ("b", "192.0.2.2"))

def view(name, vni, net, **extra):
    # the view the manager would push (stackctl.controller.overlay.views)
    return overlay.OverlaySync.from_json({
        "network": name, "vni": vni, "subnet": f"{net}.0/24", "gateway": f"{net}.1",
        "node": me, "nodes": [{"node": n, "vtep": v, "address": f"{net}.{2 + i}"}
                              for i, (n, v) in enumerate(VTEPS)],
        "peers": [{"ip": f"{net}.{10 + i}", "node": n, "vtep": v, "names": ["c" + n],
                   "container": "c" + n} for i, (n, v) in enumerate(VTEPS)], **extra})

views = [view("bench_ov", 4096, "10.77.0")]
if secret:  # an encrypted network on the data path the manager would pick (IPsec or tunnel)
    views.append(view("bench_sec", 4097, "10.78.0", encrypted=True, **secret))
me_i = [n for n, _ in VTEPS].index(me)
if cmd == "up":
    for v in views:
        overlay.sync(paths, v)
    s = sandbox.setup_container(paths, "c" + me, name="c" + me, networks=[
        sandbox.Attachment(v.network, [], f"{v.subnet.rsplit('.', 1)[0]}.{10 + me_i}")
        for v in views])
    print(s.netns)
else:
    sandbox.teardown_container(paths, "c" + me)
    networks.remove(paths, [v.network for v in views])
'''

PINGPONG = r'''
import socket, sys, time, statistics, json
mode, host, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "server":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 5202)); s.listen(1); print("ready", flush=True)
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = c.recv(1)
        if not b: break
        c.sendall(b)
else:
    c = socket.create_connection((host, 5202)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for _ in range(rounds):
        t = time.perf_counter(); c.sendall(b"x"); c.recv(1); out.append(time.perf_counter() - t)
    c.close(); out.sort()
    print(json.dumps({"p50": out[len(out) // 2] * 1e6, "p99": out[int(len(out) * .99)] * 1e6}))
'''


def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("text", True)
    return subprocess.run(list(argv), check=True, capture_output=True, **kw)


def ns(path: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net={path}", "--", *argv]


def iperf(server_ns: str, client_ns: str, address: str, seconds: float) -> tuple[float, float]:
    """(Gb/s received, CPU seconds per GB: iperf3's sender + receiver, user + system — the
    kernel's work on the path runs mostly in their context, and a loaded machine disturbs
    this less than the rate)."""
    srv = subprocess.Popen(ns(server_ns, "iperf3", "-s", "-1", "-B", address),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # until the server listens
            p = subprocess.run(ns(server_ns, "ss", "-Htln", f"sport = :5201"),
                               capture_output=True, text=True)
            if p.stdout.strip() or time.monotonic() > deadline:
                break
        out = json.loads(sh(*ns(client_ns, "iperf3", "-J", "-c", address, "-t",
                                str(seconds))).stdout)["end"]
        got = out["sum_received"]
        cpu = out["cpu_utilization_percent"]
        cpu_s = (cpu["host_total"] + cpu["remote_total"]) / 100 * got["seconds"]
        return got["bits_per_second"] / 1e9, cpu_s / (got["bytes"] / 1e9)
    finally:
        srv.kill()
        srv.wait()


def pingpong(server_ns: str, client_ns: str, address: str, rounds: int) -> dict:
    srv = subprocess.Popen(ns(server_ns, sys.executable, "-c", PINGPONG, "server", address,
                              "0"), stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "ready"
        out = sh(*ns(client_ns, sys.executable, "-c", PINGPONG, "client", address,
                     str(rounds))).stdout
        return json.loads(out)
    finally:
        srv.kill()
        srv.wait()


class Swarm:
    """Two dockerd nodes in the two namespaces, joined into one swarm."""

    def __init__(self, tmp: str, nodes: dict[str, str]) -> None:
        self.tmp, self.nodes = os.path.join(tmp, "swarm"), nodes
        self.procs: dict[str, subprocess.Popen] = {}

    def docker(self, n: str, *argv: str, **kw) -> subprocess.CompletedProcess:
        return sh("docker", "-H", f"unix://{self.tmp}/{n}/sock", *argv, **kw)

    def up(self) -> dict[str, str]:
        """(server namespace path, client namespace path, server address) of the two tasks"""
        for n, path in self.nodes.items():
            d = os.path.join(self.tmp, n)
            os.makedirs(d)
            log = open(os.path.join(d, "log"), "w")
            self.procs[n] = subprocess.Popen(ns(path, "dockerd", "--data-root", f"{d}/data",
                                                "--exec-root", f"{d}/exec", "-H",
                                                f"unix://{d}/sock", "--pidfile", f"{d}/pid",
                                                "--bridge=none"), stdout=log, stderr=log)
        for n in self.nodes:
            deadline = time.monotonic() + 60
            while subprocess.run(["docker", "-H", f"unix://{self.tmp}/{n}/sock", "info"],
                                 capture_output=True).returncode != 0:
                if time.monotonic() > deadline or self.procs[n].poll() is not None:
                    raise RuntimeError(f"dockerd on {n} did not start: see {self.tmp}/{n}/log")
                time.sleep(0.2)
        self.docker("a", "swarm", "init", "--advertise-addr", "192.0.2.1", "--listen-addr",
                    "192.0.2.1:2377")
        token = self.docker("a", "swarm", "join-token", "-q", "worker").stdout.strip()
        self.docker("b", "swarm", "join", "--token", token, "--advertise-addr", "192.0.2.2",
                    "192.0.2.1:2377")
        rootfs = os.path.join(self.tmp, "rootfs")
        for d in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            os.makedirs(os.path.join(rootfs, d))
        shutil.copy(shutil.which("busybox") or "/bin/busybox", os.path.join(rootfs, "bin"))
        for link in ("lib", "lib64", "sbin"):
            os.symlink(f"usr/{link}", os.path.join(rootfs, link))
        tar = sh("tar", "-C", rootfs, "-c", ".", text=False).stdout
        for n in self.nodes:
            self.docker(n, "import", "-", SWARM_IMAGE, input=tar, text=False)
        self.docker("a", "network", "create", "-d", "overlay", "--attachable", "benchov")
        out = {}
        for n in self.nodes:
            cid = self.docker(n, "run", "-d", "--name", f"bench{n}", "--network", "benchov",
                              "-v", "/usr:/usr:ro", SWARM_IMAGE, "sleep", "3600").stdout.strip()
            pid = self.docker(n, "inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
            out[n] = f"/proc/{pid}/ns/net"
        ip = self.docker("b", "inspect", "-f",
                         '{{(index .NetworkSettings.Networks "benchov").IPAddress}}',
                         "benchb").stdout.strip()
        out["ip"] = ip
        return out

    def down(self) -> None:
        for n in self.nodes:
            sock = f"unix://{self.tmp}/{n}/sock"
            ids = subprocess.run(["docker", "-H", sock, "ps", "-aq"], capture_output=True,
                                 text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "-H", sock, "rm", "-f", *ids], capture_output=True)
            subprocess.run(["docker", "-H", sock, "swarm", "leave", "--force"],
                           capture_output=True)
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        with open("/proc/mounts") as f:  # what dockerd left mounted under its roots
            left = [line.split()[1] for line in f if f" {self.tmp}/" in line]
        for m in sorted(left, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)


def secret_view() -> dict | None:
    """The data path the manager would pick for an encrypted network here (IPsec where the
    kernel can, else the userspace tunnel), as the view's fields; None if neither."""
    from stackctl.controller.overlay import OverlayError, pick_datapath
    from stackctl.net import tunneld, xfrm

    caps = dict(xfrm.capabilities())
    caps["esp_reason"] = xfrm.esp_reason()
    caps["userspace"], caps["userspace_reason"] = tunneld.available()
    try:
        algo, datapath, why = pick_datapath("bench_sec", {"a": caps, "b": caps})
    except OverlayError:
        return None
    from stackctl.controller.overlay import rotate_keys
    from stackctl.net.overlay import overlay_mtu

    keys, _ = rotate_keys([], time.time(), 3600.0, algo)
    return {"datapath": datapath, "datapath_reason": why, "keys": keys,
            "mtu": overlay_mtu(True, algo=algo)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5, help="per iperf3 run")
    ap.add_argument("--runs", type=int, default=5,
                    help="iperf3 runs per path, interleaved; medians are reported")
    ap.add_argument("--rounds", type=int, default=2000, help="ping-pong round trips")
    ap.add_argument("--no-swarm", action="store_true", help="leave docker swarm out")
    ap.add_argument("--no-encrypted", action="store_true",
                    help="leave the encrypted overlay (IPsec or the userspace tunnel) out")
    ap.add_argument("--equal-mtu", action="store_true",
                    help="also the direct path with the node link at MTU 1450 (the overlay's "
                    "inner MTU: equal MSS)")
    ap.add_argument("--no-br-netfilter", action="store_true",
                    help="bridge-nf-call-iptables=0 in the two node namespaces (what "
                    "br_netfilter costs bridged overlay frames)")
    ap.add_argument("--json", metavar="FILE", help="also write the samples as JSON (bench/results.py)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    for tool in ("iperf3", "nsenter", "ss"):
        if shutil.which(tool) is None:
            print(f"needs {tool}", file=sys.stderr)
            return 2
    tag = f"ovb{os.getpid() % 10000}"
    tmp = tempfile.mkdtemp(prefix="stackctl-bench-overlay-")
    nodes = {n: f"/run/netns/{tag}{n}" for n in ("a", "b")}
    made: list[str] = []
    containers: dict[str, str] = {}
    swarm: Swarm | None = None
    secret = None if args.no_encrypted else secret_view()
    notes: list[str] = []

    def link_mtu(mtu: int) -> None:
        for n in nodes:
            sh("ip", "-n", f"{tag}{n}", "link", "set", f"{tag}v{n}", "mtu", str(mtu))

    try:
        for n in nodes:
            sh("ip", "netns", "add", f"{tag}{n}")
            made.append(n)
        sh("ip", "link", "add", f"{tag}va", "type", "veth", "peer", "name", f"{tag}vb")
        for n, addr in (("a", "192.0.2.1"), ("b", "192.0.2.2")):
            sh("ip", "link", "set", f"{tag}v{n}", "netns", f"{tag}{n}")
            sh("ip", "-n", f"{tag}{n}", "addr", "add", f"{addr}/24", "dev", f"{tag}v{n}")
            sh("ip", "-n", f"{tag}{n}", "link", "set", f"{tag}v{n}", "up")
            sh("ip", "-n", f"{tag}{n}", "link", "set", "lo", "up")
            if args.no_br_netfilter and os.path.exists("/proc/sys/net/bridge"):
                sh(*ns(nodes[n], "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"))
        for n in nodes:
            containers[n] = sh(*ns(nodes[n], sys.executable, "-c", NODE, ROOT,
                                   os.path.join(tmp, n), n, "up",
                                   json.dumps(secret))).stdout.strip()
        # name -> (server netns, client netns, address, MTU of the node link for the run)
        paths = {
            "direct (node netns to node netns, veth)": (nodes["b"], nodes["a"], "192.0.2.2",
                                                        1500),
            "overlay (container to container, VXLAN)": (containers["b"], containers["a"],
                                                        "10.77.0.11", 1500),
        }
        if args.equal_mtu:
            paths["direct at MTU 1450 (equal MSS)"] = (nodes["b"], nodes["a"], "192.0.2.2",
                                                       1450)
        if secret is not None:
            paths[f"encrypted overlay ({secret['datapath']})"] = (
                containers["b"], containers["a"], "10.78.0.11", 1500)
        elif not args.no_encrypted:
            notes.append("encrypted overlay: left out (no IPsec and no userspace tunnel here)")
        if args.no_swarm:
            notes.append("docker swarm: left out (--no-swarm)")
        elif shutil.which("dockerd") is None or shutil.which("docker") is None:
            notes.append("docker swarm: skipped (dockerd is not installed)")
        else:
            swarm = Swarm(tmp, nodes)
            try:
                sw = swarm.up()
                paths["docker swarm overlay (container to container)"] = (sw["b"], sw["a"],
                                                                          sw["ip"], 1500)
            except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                notes.append(f"docker swarm: skipped ({getattr(exc, 'stderr', '') or exc})")
        results: dict[str, dict] = {k: {"gbps": [], "cpu": []} for k in paths}
        for _ in range(args.runs):  # interleaved: the machine's noise hits every path alike
            for name, (srv, cli, addr, mtu) in paths.items():
                if mtu != 1500:
                    link_mtu(mtu)
                try:
                    gbps, cpu = iperf(srv, cli, addr, args.seconds)
                finally:
                    if mtu != 1500:
                        link_mtu(1500)
                results[name]["gbps"].append(gbps)
                results[name]["cpu"].append(cpu)
        for name, (srv, cli, addr, mtu) in paths.items():
            if mtu == 1500:
                results[name].update(pingpong(srv, cli, addr, args.rounds))
        med = {n: statistics.median(r["gbps"]) for n, r in results.items()}
        cpu = {n: statistics.median(r["cpu"]) for n, r in results.items()}
        print(f"{'path':<46} {'median':>10} {'min-max':>12} {'CPU s/GB':>9} "
              f"{'rtt p50':>8} {'rtt p99':>8}")
        for name, r in results.items():
            rtt = (f"{r['p50']:>5.0f} us {r['p99']:>5.0f} us" if "p50" in r else "")
            print(f"{name:<46} {med[name]:>5.2f} Gb/s {min(r['gbps']):>5.1f}-"
                  f"{max(r['gbps']):<5.1f} {cpu[name]:>9.3f} {rtt}")
        names = list(results)
        ratio = med[names[1]] / med[names[0]]
        print(f"stackctl overlay/direct throughput (medians of {args.runs} interleaved runs): "
              f"{ratio:.2f}x (target >= 0.80x): {'ok' if ratio >= 0.8 else 'BELOW TARGET'}; "
              f"CPU per GB {cpu[names[1]] / cpu[names[0]]:.2f}x the direct path's")
        for name in names[2:]:
            print(f"{name}/direct throughput: {med[name] / med[names[0]]:.2f}x")
        if secret is not None:
            print(f"encrypted data path: {secret['datapath']} ({secret['datapath_reason']})")
        for note in notes:
            print(note)
        from bench.results import Group, Result, Row, write

        def short(n: str) -> str:
            return {"direct": "direct", "overlay": "overlay", "encrypted": "encrypted"}.get(
                n.split(" ")[0], "swarm")

        def label(n: str) -> str:
            return f"stackctl {n}" if n.startswith(("overlay", "encrypted")) else n

        write(args.json, Result("overlay", [
            Group("throughput between two nodes (iperf3)", "Gb/s",
                  [Row(label(n), r["gbps"]) for n, r in results.items()],
                  higher_is_better=True),
            Group("CPU per GB moved (iperf3's sender + receiver)", "s",
                  [Row(label(n), r["cpu"]) for n, r in results.items()])],
            values={f"{short(n)}_rtt_{k}_us": r[k]
                    for n, r in results.items() for k in ("p50", "p99") if k in r},
            notes=notes))
        return 0
    finally:
        if swarm is not None:
            swarm.down()
        for n in list(containers):
            subprocess.run(ns(nodes[n], sys.executable, "-c", NODE, ROOT,
                              os.path.join(tmp, n), n, "down", json.dumps(secret)),
                           capture_output=True)
        for n in made:
            subprocess.run(["ip", "netns", "del", f"{tag}{n}"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
