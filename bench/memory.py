#!/usr/bin/env python3
"""Memory a node's machinery takes, idle and with 50 containers running: stackctl's agent
(with its warm server) and a monitor per container, against dockerd + containerd and one
containerd-shim per container, and podman (no daemon) with one conmon per container. Measured
as PSS (proportional set size, /proc/PID/smaps_rollup: shared pages divided among the
processes sharing them), so 50 monitors of one Python do not count its shared pages 50 times.
The containers' own processes (`sleep`) are not counted on any side.

    python3 bench/memory.py [--containers 50]

Everything lives in a temporary directory: stackctl's state, dockerd's data root and socket,
podman's storage. The agent and dockerd are started here and stopped by PID; what the peers
leave on the host (docker0, nft tables, ip_forward) is undone (bench/peers.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench import peers  # noqa: E402
from bench.results import Group, Result, Row, fmt, median, write  # noqa: E402

MIB = 1024.0  # smaps_rollup is in kB


def pss_mib(pid: int) -> float:
    """PSS of one process in MiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / MIB
    except OSError:
        pass
    return 0.0


def parents() -> dict[int, int]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    out[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def tree(root: int, skip: set[int] = frozenset()) -> list[int]:
    """``root`` and its descendants, leaving out ``skip`` and everything below them."""
    ppid = parents()
    kids: dict[int, list[int]] = {}
    for pid, pp in ppid.items():
        kids.setdefault(pp, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in skip:
            continue
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def mentioning(*needles: str) -> list[int]:
    """Processes whose command line holds every one of ``needles``."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if all(n.encode() in cmd for n in needles):
                out.append(int(d))
    return out


def settle() -> None:
    time.sleep(2)  # let just-started processes finish their start-up allocations


def measure_stackctl(st: peers.Stackctl, rootfs: str, count: int) -> dict[str, list[float]]:
    st.import_rootfs(rootfs, "bench/bb:latest")
    st.cli("agent", "serve")
    with open(os.path.join(st.run, "agent.pid")) as f:
        agent = int(f.read().split()[0])
    deadline = time.monotonic() + 15
    while not os.path.exists(os.path.join(st.run, "warm.sock")) and time.monotonic() < deadline:
        time.sleep(0.05)
    settle()
    idle = sum(pss_mib(p) for p in tree(agent))
    for i in range(count):
        st.cli("run", "-d", "--network", "none", "--name", f"m{i}", "bench/bb:latest",
               "sleep", "100000", timeout=60)
    settle()
    monitors = []
    cdir = os.path.join(st.state, "containers")
    for cid in os.listdir(cdir):
        with open(os.path.join(cdir, cid, "state.json")) as f:
            state = json.load(f)
        if state.get("status") == "running" and state.get("monitor_pid"):
            monitors.append(int(state["monitor_pid"]))
    busy = sum(pss_mib(p) for p in tree(agent, skip=set(monitors)))
    per = [pss_mib(p) for p in monitors]
    st.cli("rm", "-f", *[f"m{i}" for i in range(count)], check=False, timeout=120)
    return {"idle": [idle], "busy": [busy], "per": per, "total": [busy + sum(per)]}


def measure_docker(dockerd: peers.Dockerd, tarball: str, count: int) -> dict[str, list[float]]:
    dockerd.start()
    dockerd.import_rootfs(tarball, "bench/bb:latest")
    settle()

    def daemons() -> float:
        containerd = [p for p in mentioning("containerd", dockerd.root)
                      if not mentioning_shim(p)]
        return pss_mib(dockerd.proc.pid) + sum(pss_mib(p) for p in containerd
                                               if p != dockerd.proc.pid)

    idle = daemons()
    for i in range(count):
        dockerd.docker("run", "-d", "--network", "none", "--name", f"m{i}", "bench/bb:latest",
                       "sleep", "100000", timeout=60)
    settle()
    shims = mentioning("containerd-shim", dockerd.root)
    per = [pss_mib(p) for p in shims]
    busy = daemons()
    return {"idle": [idle], "busy": [busy], "per": per, "total": [busy + sum(per)]}


def mentioning_shim(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"containerd-shim" in f.read()
    except OSError:
        return False


def measure_podman(podman: peers.Podman, tarball: str, count: int) -> dict[str, list[float]]:
    podman.import_rootfs(tarball, "bench/bb:latest")
    for i in range(count):
        podman.podman("run", "-d", "--network", "none", "--name", f"m{i}", "bench/bb:latest",
                      "sleep", "100000", timeout=60)
    settle()
    per = [pss_mib(p) for p in mentioning("conmon", podman.root)]
    return {"idle": [0.0], "busy": [0.0], "per": per, "total": [sum(per)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--json", metavar="FILE", help="also write the samples as JSON (bench/results.py)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    n = args.containers
    got: dict[str, dict[str, list[float]]] = {}
    notes: list[str] = []
    with peers.bench_dir("stackctl-bench-mem-") as (tmp, st, dockerd), peers.host_snapshot():
        rootfs, tarball = peers.make_rootfs_tarball(tmp)
        try:
            got["stackctl"] = measure_stackctl(st, rootfs, n)
        except RuntimeError as exc:
            notes.append(f"stackctl: failed: {exc}")
        finally:
            st.stop()
        if peers.have("dockerd", peers.DOCKER):
            try:
                got["docker"] = measure_docker(dockerd, tarball, n)
            except RuntimeError as exc:
                notes.append(f"docker: failed: {str(exc).splitlines()[0][:200]}")
            finally:
                dockerd.stop()
        else:
            notes.append("docker: not installed (apt-get install docker.io)")
        if peers.have("podman"):
            podman = peers.Podman(os.path.join(tmp, "podman"))
            try:
                got["podman"] = measure_podman(podman, tarball, n)
            except RuntimeError as exc:
                notes.append(f"podman: failed: {str(exc).splitlines()[0][:200]}")
            finally:
                podman.stop()
        else:
            notes.append("podman: not installed (apt-get install podman)")

    names = {"stackctl": ("stackctl agent + warm server", "stackctl monitor"),
             "docker": ("dockerd + containerd", "containerd-shim-runc-v2"),
             "podman": ("podman (no daemon)", "conmon")}

    def rows(key: str, per_label: bool = False, skip_podman: bool = False) -> list[Row]:
        return [Row(names[t][1 if per_label else 0], got[t][key]) for t in got
                if got[t][key] and not (skip_podman and t == "podman")]

    groups = [
        Group("daemon, idle", "MiB PSS", rows("idle", skip_podman=True)),
        Group(f"daemon, with {n} containers", "MiB PSS", rows("busy", skip_podman=True)),
        Group("per container (monitor / shim / conmon)", "MiB PSS", rows("per", True)),
        Group(f"total for {n} containers (daemon + per-container processes)", "MiB PSS",
              [Row(f"{t}" if t != "stackctl" else "stackctl agent + monitors", got[t]["total"])
               for t in got]),
    ]
    print(f"memory (PSS, MiB), {n} containers of `sleep` each")
    for g in groups:
        print(f"\n{g.title}")
        for r in g.rows:
            extra = f" (median of {len(r.samples)}, max {fmt(max(r.samples))})" \
                if len(r.samples) > 1 else ""
            print(f"  {r.label:<34} {fmt(median(r.samples)):>8}{extra}")
    for note in notes:
        print(note)
    write(args.json, Result("memory", groups, notes=notes))
    return 0 if got else 1


if __name__ == "__main__":
    sys.exit(main())
