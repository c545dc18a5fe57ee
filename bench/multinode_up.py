#!/usr/bin/env python3
"""`up -d --wait` of a 10-service stack onto one node against the same stack onto three
nodes, on a demo cluster made on this machine (stackctl/cluster/demo.py: network namespaces
on a bridge, an sshd and an agent per node). Target: three nodes take at most 1.3x one node's
time (the manager works on the nodes in parallel).

    python3 bench/multinode_up.py [-n 5]

Both cases use the same cluster, CLI and manager (n1); the one-node case has an inventory
listing n1 alone, so SSH and the manager's path are paid alike. Runs alternate between the
cases (machine noise hits both). Each run is followed by `down` (not timed). The cluster is
removed at the end, also on error or Ctrl-C. Needs root.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench import _timing  # noqa: E402
from bench._timing import p95, runs_from_argv  # noqa: E402
from bench.results import Result, group_of, write  # noqa: E402

SERVICES = 10
IMAGE = "stackctl/busybox:latest"


def stack_text() -> str:
    lines = ["name: bench10", "services:"]
    for i in range(SERVICES):
        lines += [f"  s{i}:", f"    image: {IMAGE}", '    command: ["sleep", "100000"]',
                  "    stop_signal: SIGKILL", "    deploy:", "      replicas: 3",
                  "      placement:", "        max_replicas_per_node: 3"]
    return "\n".join(lines) + "\n"


def inventory(c, names: list[str]) -> str:
    out = ["nodes:"]
    for n in c.nodes:
        if n.name in names:
            out += [f"  - name: {n.name}", f"    url: ssh://root@{n.address}",
                    f"    identity: {c.client_key}", f"    known_hosts: {c.known_hosts}"]
    return "\n".join(out) + "\n"


def main() -> int:
    runs = runs_from_argv(__doc__, 5, "runs per case")
    if os.geteuid() != 0:
        print("needs root (network namespaces, sshd)", file=sys.stderr)
        return 1
    from stackctl.cluster import demo

    tmp = tempfile.mkdtemp(prefix="stackctl-bench-mn-")
    c = demo.up(3, name=f"bench{os.getpid() % 10000}", cluster_dir=os.path.join(tmp, "demo"),
                warm=False)
    try:
        stack = os.path.join(tmp, "stack.yml")
        with open(stack, "w") as f:
            f.write(stack_text())
        inv = {}
        for case, names in (("1 node", ["n1"]), ("3 nodes", ["n1", "n2", "n3"])):
            inv[case] = os.path.join(tmp, f"{case.split()[0]}.yml")
            with open(inv[case], "w") as f:
                f.write(inventory(c, names))
        env = {**os.environ, "STACKCTL_WARM": "0"}
        # the image, built here and sent to every node once (not timed)
        subprocess.run([sys.executable, "-m", "stackctl", "image", "build-busybox", "-q"],
                       check=True, env=env, stdout=subprocess.DEVNULL)

        def cli(case: str, *argv: str) -> None:
            p = subprocess.run([sys.executable, "-m", "stackctl", *argv, "-f", stack,
                                "--nodes", inv[case]], env=env, capture_output=True,
                               text=True)
            if p.returncode != 0:
                raise SystemExit(f"stackctl {' '.join(argv)} ({case}) failed:\n{p.stderr}")

        for case in inv:  # warm-up: images sent, agents started, connections made
            cli(case, "up", "-d", "--wait")
            cli(case, "down")
        samples: dict[str, list[float]] = {case: [] for case in inv}
        for i in range(runs):
            for case in inv:
                t0 = time.perf_counter()
                cli(case, "up", "-d", "--wait")
                samples[case].append(time.perf_counter() - t0)
                cli(case, "down")
            print(f"run {i + 1}/{runs}: " + ", ".join(
                f"{case} {samples[case][-1]:.2f} s" for case in inv), flush=True)
        one = statistics.median(samples["1 node"])
        print(f"\n`up -d --wait` of {SERVICES} services x 3 replicas (median of {runs})")
        print(f"{'case':<8}  {'median s':>8}  {'p95 s':>6}  {'vs 1 node':>9}")
        for case, s in samples.items():
            med = statistics.median(s)
            print(f"{case:<8}  {med:8.2f}  {p95(s):6.2f}  {med / one:8.2f}x")
        ratio = statistics.median(samples["3 nodes"]) / one
        print(f"\ntarget: 3 nodes <= 1.3x one node: {'met' if ratio <= 1.3 else 'NOT met'} "
              f"({ratio:.2f}x)")
        write(_timing.JSON_PATH, Result("multinode_up", [group_of(
            f"up -d --wait of {SERVICES} services x 3 replicas", "s",
            [(f"stackctl, {case}", s) for case, s in samples.items()])]))
        return 0
    finally:
        demo.down(demo.DemoCluster.load(os.path.join(tmp, "demo")))
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    raise SystemExit(main())
