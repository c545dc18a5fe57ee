"""What the multi-node tests share: a cluster of demo nodes with an inventory, the CLI run
against it, and a request loop (tests/multinode/test_cluster_stack.py, test_chaos.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

IMAGE = "stackctl/busybox:latest"


class Cluster:
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

    def cli(self, *argv: str, check: bool = True, timeout: float = 180,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        full = {**os.environ, "STACKCTL_WARM": "0", "STACKCTL_NODES": self.inventory,
                **(env or {})}
        p = subprocess.run([sys.executable, "-m", "stackctl", *argv], capture_output=True,
                           text=True, timeout=timeout, env=full, cwd=self.dir)
        if check and p.returncode != 0:
            raise AssertionError(f"stackctl {argv}: {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def write_stack(self, text: str) -> str:
        name = f"s{uuid.uuid4().hex[:6]}"
        path = os.path.join(self.dir, f"{name}.yml")
        with open(path, "w") as f:
            f.write(f"name: {name}\n" + text)
        self.stacks.append(path)
        return path

    def ps(self, path: str, *, all_: bool = False) -> list[dict]:
        out = self.cli("ps", "-f", path, "--format", "json", *(["-a"] if all_ else [])).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def address(self, node: str) -> str:
        return self.demo.node(node).address


def make(demo_cluster, tmp: str, zones: dict[str, str] | None = None) -> Cluster:
    """A Cluster on ``demo_cluster``: the busybox image on every node (the same id), an
    inventory with ``zones`` as labels."""
    c = Cluster(demo_cluster, tmp)
    c.ssh("n1", "stackctl", "image", "build-busybox", "-q")
    image = c.ssh("n1", "stackctl", "image", "save", IMAGE).stdout
    for node in demo_cluster.nodes[1:]:
        c.ssh(node.name, "stackctl", "image", "load", "-q", input=image)
    with open(c.inventory, "w") as f:
        f.write("nodes:\n")
        for node in demo_cluster.nodes:
            f.write(f"  - name: {node.name}\n    url: ssh://root@{node.address}\n")
            if zones and node.name in zones:
                f.write(f"    labels: {{zone: {zones[node.name]}}}\n")
            f.write(f"    identity: {demo_cluster.client_key}\n"
                    f"    known_hosts: {demo_cluster.known_hosts}\n")
    return c


def _load(ips: list[str], port: int, seconds: float, out: dict) -> None:
    stop = time.monotonic() + seconds
    out.update(ok=0, failed=0, bodies={}, errors=[])

    def worker(ip: str) -> None:
        while time.monotonic() < stop:
            try:
                with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=3) as r:
                    body = r.read().decode().strip()
                out["ok"] += 1
                out["bodies"][body] = out["bodies"].get(body, 0) + 1
            except Exception as exc:  # noqa: BLE001 - counted as a lost request
                out["failed"] += 1
                out["errors"].append(f"{ip}: {exc}")
            time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(ip,)) for ip in ips]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class Load:
    """A request loop in a thread for as long as the block runs (``with Load(...) as r``)."""

    def __init__(self, ips: list[str], port: int) -> None:
        self.ips, self.port = ips, port
        self.result: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        r = self.result
        r.update(ok=0, failed=0, bodies={}, errors=[])

        def worker(ip: str) -> None:
            while not self._stop.is_set():
                try:
                    with urllib.request.urlopen(f"http://{ip}:{self.port}/", timeout=3) as resp:
                        body = resp.read().decode().strip()
                    r["ok"] += 1
                    r["bodies"][body] = r["bodies"].get(body, 0) + 1
                except Exception as exc:  # noqa: BLE001 - counted as a lost request
                    r["failed"] += 1
                    r["errors"].append(f"{ip}: {exc}")
                time.sleep(0.01)

        threads = [threading.Thread(target=worker, args=(ip,)) for ip in self.ips]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def __enter__(self) -> dict:
        self._thread.start()
        return self.result

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
