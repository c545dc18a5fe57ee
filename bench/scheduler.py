#!/usr/bin/env python3
"""The pure scheduler and the pure reconcile pass at cluster scale (issues 10 and 12).

1. place: 100,000 tasks (200 services x 500 replicas, with constraints, spread over zones —
   nested zone/rack for a quarter of them — CPU and memory reservations, a few with
   max_replicas_per_node and host-mode ports) onto 1,000 simulated nodes (3 zones x 10 racks,
   2% drained, 1% down). Placements per second and peak memory. Target >= 50,000/s.
2. place, incremental: 1,000 new tasks (two services scaled up) onto the same cluster holding
   the 100,000 placed tasks.
3. reconcile: the decision a manager takes after a node change, over 100,000 live tasks on
   1,000 nodes with 10 nodes just gone down: which tasks to replace (placement.displaced),
   where their replacements go (placement.place), and the per-slot plan of the stack
   (planner.plan: desired vs observed). Target <= 2 s.

Each measurement runs in a fresh subprocess so that its peak RSS (getrusage maxrss) is its
own; tracemalloc's peak of the timed call is given too (a second, untimed run: tracing slows
Python several-fold).

    python3 bench/scheduler.py [-n 3]

Peers (published figures, quoted, not measured: neither runs here without a cluster):
- Docker Swarm (classic, Docker's blog "Scale Testing Docker Swarm to 30,000 Containers",
  Nov 2015): 1,000 nodes, 30,000 containers, one manager; scheduling delay of one
  `docker run` 230 ms median, 400 ms p99. Swarm mode's own scale runs (Swarm2k, 2016: 2,384
  nodes) published cluster sizes, not placement rates.
- Nomad C1M (HashiCorp, March 2016, Nomad 0.3.1, 5 servers): 1,000,000 containers on 5,000
  hosts in under 5 minutes, 3,750 containers/s. C2M (2020, Nomad 1.0, 3 schedulers):
  2,000,000 containers on 6,100 hosts in 22 min 14 s, nearly 1,500/s.
Both include the agents starting containers; ours is the pure placement decision alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench import _timing  # noqa: E402
from bench._timing import runs_from_argv  # noqa: E402
from bench.results import Group, Result, Row, write  # noqa: E402
from stackctl.scheduler.nodes import (  # noqa: E402
    ACTIVE, DOWN, DRAIN, MANAGER, NANO, READY, WORKER, ExistingTask, HostPort, NodeSnapshot,
    PlacementSpec, TaskToPlace)

NODES = 1000
SERVICES = 200
REPLICAS = 500
MIB = 1 << 20

PEERS = [
    ("Docker Swarm (2015)", "1,000 nodes / 30,000 containers; one docker run scheduled in "
                            "230 ms median, 400 ms p99"),
    ("Nomad C1M (2016)", "1,000,000 containers / 5,000 hosts in < 5 min: 3,750/s"),
    ("Nomad C2M (2020)", "2,000,000 containers / 6,100 hosts in 22 min 14 s: ~1,500/s"),
]


def cluster(n: int = NODES, seed: int = 1) -> list[NodeSnapshot]:
    rnd = random.Random(seed)
    nodes = []
    for i in range(n):
        zone = f"z{i % 3}"
        availability = DRAIN if i % 50 == 17 else ACTIVE
        status = DOWN if i % 100 == 42 else READY
        nodes.append(NodeSnapshot(
            name=f"node{i:04d}", role=MANAGER if i % 10 == 0 else WORKER,
            availability=availability, status=status,
            labels={"zone": zone, "rack": f"{zone}-r{(i // 3) % 10}",
                    "disk": "ssd" if rnd.random() < 0.5 else "hdd"},
            ip=f"10.{i // 250}.{i % 250}.1", cpus=16 * NANO, memory=64 << 30))
    return nodes


def workload(services: int = SERVICES, replicas: int = REPLICAS, seed: int = 2,
             stack: str = "bench") -> list[TaskToPlace]:
    rnd = random.Random(seed)
    tasks = []
    for s in range(services):
        constraints = []
        if s % 2 == 0:
            constraints.append("node.labels.disk==ssd")
        if s % 5 == 0:
            constraints.append("node.role!=manager")
        prefs = ["node.labels.zone"] + (["node.labels.rack"] if s % 4 == 0 else [])
        spec = PlacementSpec.build(
            constraints=constraints, preferences=prefs,
            cpus=rnd.choice([10, 25, 50, 100]) * NANO // 1000,
            memory=rnd.choice([32, 64, 128]) * MIB,
            host_ports=[HostPort(20000 + s)] if s % 100 == 1 else [],
            max_replicas_per_node=2 if s % 40 == 3 else 0)
        version = f"sha256:{s:064x}"
        tasks.extend(TaskToPlace(stack, f"svc{s:03d}", str(i), version, spec)
                     for i in range(1, replicas + 1))
    return tasks


def as_existing(result) -> list[ExistingTask]:
    return [ExistingTask(t.stack, t.service, node, t.slot, t.spec.cpus, t.spec.memory,
                         t.spec.host_ports, version=t.version, spec=t.spec)
            for t, node in result.placements.items()]


# --------------------------------------------------------------------------------------------
# Measurements (each in its own process)


def measure_place() -> dict:
    from stackctl.scheduler.placement import place
    nodes, tasks = cluster(), workload()
    t0, c0 = time.perf_counter(), time.process_time()
    result = place(tasks, nodes)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": dt, "cpu": cpu, "tasks": len(tasks), "placed": len(result.placements),
            "unplaced": len(result.unplaced)}


def measure_incremental() -> dict:
    from stackctl.scheduler.placement import place
    nodes, tasks = cluster(), workload()
    existing = as_existing(place(tasks, nodes))
    new = [TaskToPlace(t.stack, t.service, str(int(t.slot) + REPLICAS), t.version, t.spec)
           for t in tasks if t.service in ("svc010", "svc011")]
    t0, c0 = time.perf_counter(), time.process_time()
    result = place(new, nodes, existing)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": dt, "cpu": cpu, "tasks": len(new), "placed": len(result.placements),
            "unplaced": len(result.unplaced)}


def _reconcile_inputs():
    """100,000 live tasks, then 10 more nodes go down; desired state and observed state of
    the stack as the planner takes them."""
    from stackctl.scheduler.placement import place
    nodes = cluster()
    tasks = workload()
    existing = as_existing(place(tasks, nodes))
    gone = {n.name for n in nodes if n.status == READY and n.availability == ACTIVE}
    gone = set(sorted(gone)[::97][:10])  # 10 ready nodes spread over the zones
    nodes = [NodeSnapshot(n.name, role=n.role, availability=n.availability,
                          status=DOWN if n.name in gone else n.status, labels=n.labels,
                          ip=n.ip, cpus=n.cpus, memory=n.memory) for n in nodes]
    desired, observed = _planner_states(existing)
    return nodes, existing, desired, observed


def _planner_states(existing: list[ExistingTask]):
    """The stack's desired state (through the real loader: 200 services x 500 replicas) and
    the observed state the agents would report: one running container per live task."""
    from stackctl.scheduler.observed import ContainerInfo, group_stack
    from stackctl.scheduler.tasks import desired_state
    from stackctl.spec.validate import build_stack

    raw = {"services": {f"svc{s:03d}": {"image": "bench/bb:latest",
                                        "deploy": {"replicas": REPLICAS}}
                        for s in range(SERVICES)}}
    stack, graph, _ = build_stack(raw, project_name="bench", project_dir="/srv/bench",
                                  environ={}, profiles=())
    desired = desired_state(stack, graph)
    node_of = {(e.service, e.slot): e.node for e in existing}
    containers = []
    for t in desired.tasks():
        cid = f"{t.service}{t.slot}".ljust(64, "0")
        containers.append(ContainerInfo(id=cid, name=t.container_name(),
                                        labels=t.labels("t" + cid[:11]), state="running",
                                        node=node_of.get((t.service, t.slot), "node0000")))
    return desired, group_stack(containers, "bench")


def measure_reconcile() -> dict:
    from stackctl.scheduler.placement import displaced, place
    from stackctl.scheduler.planner import plan
    nodes, existing, desired, observed = _reconcile_inputs()
    t0, c0 = time.perf_counter(), time.process_time()
    moved = displaced(existing, nodes)
    # the lost tasks are being shut down (swarmkit: desired state SHUTDOWN): they no longer
    # count for spreading; only their replacements need placing
    gone = {id(d.task) for d in moved}
    live = [e if id(e) not in gone else dataclasses.replace(e, active=False) for e in existing]
    repl = [TaskToPlace(d.task.stack, d.task.service, d.task.slot, d.task.version,
                        d.task.spec) for d in moved if d.replace]
    result = place(repl, nodes, live)
    t1 = time.perf_counter()
    p = plan(desired, observed)
    t2, c2 = time.perf_counter(), time.process_time()
    return {"seconds": t2 - t0, "cpu": c2 - c0, "decide_seconds": t1 - t0,
            "plan_seconds": t2 - t1,
            "tasks": len(existing), "displaced": len(moved), "placed": len(result.placements),
            "unplaced": len(result.unplaced), "plan_actions": sum(p.counts().values())}


MEASURES = {"place": measure_place, "incremental": measure_incremental,
            "reconcile": measure_reconcile}


def _child(name: str, traced: bool) -> None:
    if traced:
        tracemalloc.start()
    out = MEASURES[name]()
    if traced:
        out["traced_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


def _run(name: str, traced: bool = False) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", name] +
                          (["--traced"] if traced else []),
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mib(n: float) -> str:
    return f"{n / MIB:.0f} MiB"


def main() -> None:
    runs = runs_from_argv(__doc__, 3, "runs per measurement (median reported)")
    print(f"stackctl scheduler, CPython {sys.version.split()[0]}, {NODES} nodes, "
          f"{SERVICES * REPLICAS:,} tasks; {runs} runs each, median; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    rows = []
    for name in ("place", "incremental", "reconcile"):
        samples = [_run(name) for _ in range(runs)]
        med = statistics.median(s["seconds"] for s in samples)
        pick = min(samples, key=lambda s: abs(s["seconds"] - med))
        traced = _run(name, traced=True)
        rows.append((name, med, pick, traced, samples))
    for name, med, s, traced, _ in rows:
        mem = f"peak RSS {_mib(s['maxrss'])}, traced peak {_mib(traced['traced_peak'])}"
        cpu = s["cpu"]
        if name == "reconcile":
            print(f"reconcile pass   {med:6.3f} s wall, {cpu:6.3f} s CPU  ({s['tasks']:,} live "
                  f"tasks; {s['displaced']:,} on 10 dead nodes re-placed in "
                  f"{s['decide_seconds']:.3f} s, plan() of the stack {s['plan_seconds']:.3f} s)"
                  "  target <= 2 s")
        else:
            label = "place (fresh)   " if name == "place" else "place (+1,000)  "
            print(f"{label} {med:6.3f} s wall, {cpu:6.3f} s CPU  {s['tasks'] / med:9,.0f}/s "
                  f"wall, {s['tasks'] / cpu:9,.0f}/s CPU  ({s['placed']:,} placed, "
                  f"{s['unplaced']:,} unplaced)"
                  + ("  target >= 50,000/s" if name == "place" else ""))
        print(f"                 {mem}")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"\nnote: load average {load:.1f} on {os.cpu_count()} CPUs while measuring: the "
              "wall times include waiting for a CPU; the CPU times are the work itself")
    print("\npeers (published figures, not measured here; theirs include starting the "
          "containers):")
    for peer, figure in PEERS:
        print(f"  {peer:20} {figure}")
    by = {name: (samples, pick, traced) for name, _m, pick, traced, samples in rows}
    place, inc, rec = by["place"], by["incremental"], by["reconcile"]
    write(_timing.JSON_PATH, Result("scheduler", [
        Group("placements per second, 1,000 nodes", "/s", [
            Row("stackctl place (100,000 fresh)", [x["tasks"] / x["seconds"] for x in place[0]]),
            Row("stackctl place (+1,000 onto 100,000)", [x["tasks"] / x["seconds"] for x in inc[0]])],
            higher_is_better=True),
        Group("reconcile of 100,000 tasks, 10 nodes down", "s", [
            Row("stackctl reconcile", [x["seconds"] for x in rec[0]])])],
        values={"place_peak_rss_mib": place[1]["maxrss"] / MIB,
                "place_traced_peak_mib": place[2]["traced_peak"] / MIB,
                "reconcile_peak_rss_mib": rec[1]["maxrss"] / MIB},
        notes=["peers quoted, not measured (theirs include starting the containers): "
               + "; ".join(f"{p}: {f}" for p, f in PEERS)]))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2], "--traced" in sys.argv)
    else:
        main()
