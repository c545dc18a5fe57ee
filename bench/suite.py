"""The benchmark suite: every benchmark in bench/, one after another (never two at once),
each next to its peers in the same run; then bench/RESULTS.md and bench/charts/*.svg.

    scripts/bench [--quick] [--only NAME ...] [--no-install] [--list] [--render]

The peers come from Debian's packages and PyPI (``PEER_PACKAGES``); a missing one is
installed first (``--no-install``: not), and one that cannot be installed or run is named in
the results with its one-line reason while stackctl is still measured. Each benchmark starts
the peers it needs (dockerd, docker-registry, sshd, ...) itself and stops them by PID; what
the peers leave on the host (bridges, their nft tables, ip_forward) is undone after each one.

Raw samples of the latest run of every benchmark are kept in bench/results.json, so
``--only NAME`` re-measures one and renders the whole page again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from bench import peers  # noqa: E402
from bench import results as res  # noqa: E402

RESULTS_MD = os.path.join(HERE, "RESULTS.md")
RESULTS_JSON = os.path.join(HERE, "results.json")
CHARTS = os.path.join(HERE, "charts")


@dataclass
class Bench:
    name: str
    title: str
    what: str
    full: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)
    timeout: float = 3600

    @property
    def script(self) -> str:
        return os.path.join(HERE, f"{self.name}.py")


BENCHES = [
    Bench("cli_startup", "CLI start-up",
          "`stackctl --version/--help/config -q` and `ps -a` (cold, agent up) vs "
          "docker-compose and docker's CLI", ["--runs", "20"], ["--runs", "5"]),
    Bench("config_speed", "`config` of 3 and 400 services",
          "`stackctl config -q` vs `docker-compose config -q` on the same generated files",
          ["--runs", "10"], ["--runs", "3"]),
    Bench("start_latency", "Container start: `run --rm IMG true`",
          "cold (no agent) and warm (agent up) vs `crun run`, `runc run`, `docker run --rm`, "
          "`podman run --rm`, all with no network, on one busybox rootfs",
          ["-n", "30"], ["-n", "5", "--min-runs", "5"]),
    Bench("up_down", "Stack `up -d --wait` / `down -v`",
          "3- and 10-service stacks (networks, a volume, a published port) vs docker-compose "
          "v1 and podman-compose", ["-n", "10"], ["-n", "2"]),
    Bench("rolling_update", "Rolling update of 3 replicas under HTTP load",
          "parallelism 1, monitor 1 s, start-first; a client counts failed requests during "
          "stackctl's updates; vs `docker service update` in a one-node swarm",
          ["-n", "3"], ["-n", "1"]),
    Bench("build", "Image build, cold and warm cache",
          "`stackctl image build` vs `docker build` (classic builder) and `podman build`",
          ["-n", "5"], ["-n", "2"]),
    Bench("registry", "Pull and push through a local registry",
          "a 4-layer image of random data via Debian's docker-registry on 127.0.0.1 vs "
          "`skopeo copy` and `docker pull`/`push`", ["-n", "5"], ["-n", "2", "--mb", "6"]),
    Bench("scheduler", "Scheduler: 100,000 tasks on 1,000 simulated nodes",
          "the pure placement and reconcile passes; Swarm's and Nomad's published figures "
          "quoted, not measured", ["-n", "3"], ["-n", "1"]),
    Bench("ssh_request", "One agent request over SSH",
          "a kept asyncssh connection to a demo node vs `ssh host true` over an OpenSSH "
          "ControlMaster", ["-n", "200"], ["-n", "40"]),
    Bench("multinode_up", "Multi-node `up -d --wait`: 1 vs 3 nodes",
          "10 services x 3 replicas onto one node and onto three demo-cluster nodes",
          ["-n", "5"], ["-n", "1"]),
    Bench("overlay", "Cross-node overlay throughput",
          "iperf3 between containers on two nodes over stackctl's VXLAN overlay vs the direct "
          "path between the nodes", [], ["--seconds", "2", "--rounds", "500"]),
    Bench("node_loss", "Node-loss recovery",
          "a node of the demo cluster loses its link: time until all its replicas run on the "
          "other nodes (Swarm's and Nomad's detection times quoted)",
          [], ["--replicas", "1,10"]),
    Bench("memory", "Memory: the agent and a monitor per container",
          "PSS of the agent idle and with 50 containers, and of each per-container process, "
          "vs dockerd + containerd + shims and podman's conmon",
          ["--containers", "50"], ["--containers", "50"]),
]

# Debian package -> a command it installs; podman-compose comes from PyPI
PEER_PACKAGES = {"docker.io": "dockerd", "docker-compose": "docker-compose", "podman": "podman",
                 "crun": "crun", "runc": "runc", "docker-registry": "docker-registry",
                 "skopeo": "skopeo", "catatonit": "catatonit", "iperf3": "iperf3",
                 "busybox-static": "busybox", "openssh-server": "/usr/sbin/sshd"}
VERSIONS = [("docker", [peers.DOCKER, "--version"]),
            ("docker-compose", ["docker-compose", "version", "--short"]),
            ("podman", ["podman", "--version"]), ("podman-compose", ["podman-compose", "--version"]),
            ("crun", ["crun", "--version"]), ("runc", ["runc", "--version"]),
            ("skopeo", ["skopeo", "--version"]), ("docker-registry", ["docker-registry", "--version"])]
# tables the peers make (dockerd's iptables-nft, netavark): removed when a run left them
PEER_TABLES = {"ip nat", "ip filter", "ip6 nat", "ip6 filter", "inet netavark"}


def say(text: str) -> None:
    print(text, flush=True)


# --- peers ----------------------------------------------------------------------------------

def ensure_peers(install: bool) -> list[str]:
    """Install the missing peers (Debian packages, podman-compose from PyPI); the one-line
    reasons of those that are still missing."""
    missing = [p for p, cmd in PEER_PACKAGES.items() if not peers.have(cmd)]
    if missing and install:
        say(f"installing peers: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            subprocess.run(cmd, env=env, capture_output=True)
    if not peers.have("podman-compose") and install:
        say("installing peers: podman-compose (pip)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "podman-compose"],
                       capture_output=True)
    reasons = [f"{p}: not installed (apt-get install {p})" for p, cmd in PEER_PACKAGES.items()
               if not peers.have(cmd)]
    if not peers.have("podman-compose"):
        reasons.append("podman-compose: not installed (pip install podman-compose)")
    return reasons


def peer_versions() -> list[str]:
    out = []
    for name, argv in VERSIONS:
        if not peers.have(argv[0]):
            continue
        p = subprocess.run(argv, capture_output=True, text=True)
        line = (p.stdout or p.stderr).strip().splitlines()
        version = re.search(r"\d+\.\d+[\w.+~-]*", line[0]) if p.returncode == 0 and line else None
        if version:
            out.append(f"{name} {version.group(0).rstrip(',')}")
    return out


class HostGuard:
    """What the peers leave on the host between benchmarks: their bridges and veths, their
    nft tables, ip_forward. Only what appeared since the suite started, and only the peers'
    kinds (the machine is shared: other links and tables are not ours)."""

    def __init__(self) -> None:
        self.links, self.tables, self.forward = peers.links(), peers.nft_tables(), peers.read_forward()

    def clean(self) -> list[str]:
        left = []
        for name in sorted(peers.links() - self.links):
            if name.startswith(peers.PEER_LINK_PREFIXES):
                subprocess.run(["ip", "link", "delete", name], capture_output=True)
                left.append(f"link {name}")
        for table in sorted((peers.nft_tables() - self.tables) & PEER_TABLES):
            subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)
            left.append(f"nft table {table}")
        if peers.read_forward() != self.forward:
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write(self.forward)
            left.append("ip_forward")
        return left


# --- running one benchmark ------------------------------------------------------------------

def run_one(b: Bench, quick: bool, tmp: str) -> dict:
    """Run ``b`` in a child process, its output shown as it comes; the suite's entry for it
    (result, or printed text and a one-line reason)."""
    entry = {"name": b.name, "mode": "quick" if quick else "full",
             "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if not os.path.exists(b.script):
        entry["skipped"] = f"bench/{b.name}.py is not in this checkout"
        return entry
    with open(b.script, encoding="utf-8") as f:
        text = f.read()
        speaks_json = "--json" in text or "JSON_PATH" in text
    out_json = os.path.join(tmp, f"{b.name}.json")
    argv = [sys.executable, b.script, *(b.quick if quick else b.full)]
    if speaks_json:
        argv += ["--json", out_json]
    entry["command"] = "python3 " + " ".join(os.path.relpath(a, ROOT) if a == b.script else a
                                             for a in argv[1:] if a != out_json).replace(
                                                 " --json", "")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1"),
                            bufsize=1)
    lines: list[str] = []
    # a benchmark past its time gets SIGINT, also when it prints nothing: its finally blocks
    # stop what it started
    timer = threading.Timer(b.timeout, proc.send_signal, (signal.SIGINT,))
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            say(f"    | {line.rstrip()}")
        proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        timer.cancel()
    if time.monotonic() - t0 >= b.timeout:
        entry["skipped"] = f"stopped after {b.timeout:.0f} s"
    entry["seconds"] = round(time.monotonic() - t0, 1)
    entry["output"] = "\n".join(lines[-80:])
    if speaks_json and os.path.exists(out_json):
        with open(out_json, encoding="utf-8") as f:
            entry["result"] = json.load(f)
    elif "skipped" not in entry:
        last = next((ln for ln in reversed(lines) if ln.strip()), "no output")
        entry["skipped"] = (f"exited {proc.returncode}: {last.strip()[:200]}" if proc.returncode
                            else "printed its table only (no --json): output below")
    return entry


# --- the machine ----------------------------------------------------------------------------

def cgroup_mode() -> str:
    with open("/proc/self/mountinfo") as f:
        fs = {line.split()[4]: line.split(" - ")[1].split()[0] for line in f}
    if fs.get("/sys/fs/cgroup") == "cgroup2":
        return "v2 (unified)"
    if fs.get("/sys/fs/cgroup/unified") == "cgroup2":
        return "v1 (hybrid: a v2 mount at /sys/fs/cgroup/unified)"
    return "v1 (legacy)"


def machine() -> dict:
    with open("/proc/meminfo") as f:
        mem = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1]) / (1 << 20)
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": cpu, "memory": f"{mem:.1f} GiB",
            "kernel": platform.release(), "cgroups": cgroup_mode(),
            "os": _os_name(), "python": platform.python_version()}


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            kv = dict(ln.rstrip().split("=", 1) for ln in f if "=" in ln)
        return kv.get("PRETTY_NAME", "?").strip('"')
    except OSError:
        return "?"


def commit() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "stackctl", "bench")
    return head + (" (with uncommitted changes in stackctl/ or bench/)" if dirty else "")


# --- main -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few iterations (a few minutes)")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="run this benchmark only (repeatable); the others keep their last results")
    ap.add_argument("--no-install", action="store_true", help="do not install missing peers")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--render", action="store_true",
                    help="only write RESULTS.md, the charts and the README's section again "
                         "from bench/results.json")
    args = ap.parse_args(argv)
    if args.render:
        _save(_load_state(), readme=True)
        return 0
    if args.list:
        for b in BENCHES:
            have = "" if os.path.exists(b.script) else "  (not in this checkout)"
            say(f"{b.name:<16} {b.title}{have}")
        return 0
    names = [b.name for b in BENCHES]
    for name in args.only or []:
        if name not in names:
            print(f"scripts/bench: no benchmark {name!r}; one of: {', '.join(names)}",
                  file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("scripts/bench: needs root (namespaces, cgroups, the peers' daemons)",
              file=sys.stderr)
        return 2
    chosen = [b for b in BENCHES if not args.only or b.name in args.only]
    started = time.monotonic()
    load0 = os.getloadavg()
    missing = ensure_peers(not args.no_install)
    for reason in missing:
        say(f"peer {reason}")
    state = _load_state()
    command = "scripts/bench " + " ".join(sys.argv[1:] if argv is None else argv)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if args.only and state.get("run"):
        # the page stays that of the last whole run; this one is named beside it
        state["run"].setdefault("later", []).append(f"`{command.strip()}` ({now}, commit "
                                                    f"{commit().split()[0]})")
    else:
        state["entries"] = {}
        state["run"] = {"command": command.strip(), "date": now, "commit": commit(),
                        "machine": machine(), "peers": peer_versions(), "missing": missing}
    guard = HostGuard()
    tmp = os.path.join("/tmp", f"stackctl-bench-suite-{os.getpid()}")
    os.makedirs(tmp, exist_ok=True)
    try:
        for i, b in enumerate(chosen, 1):
            say(f"[{i}/{len(chosen)}] {b.name}: {b.title} "
                f"({time.monotonic() - started:.0f} s so far)")
            entry = run_one(b, args.quick, tmp)
            left = guard.clean()
            if left:
                entry["cleaned"] = left
            state["entries"][b.name] = entry
            note = entry.get("skipped")
            say(f"[{i}/{len(chosen)}] {b.name}: " + (f"skipped: {note}" if note and "result" not in entry
                                                     else f"done in {entry.get('seconds', 0):.0f} s"))
            _save(state)  # after each one: an interrupted run keeps what it measured
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not args.only or "seconds" not in state["run"]:
            state["run"]["seconds"] = round(time.monotonic() - started)
            state["run"]["load"] = [round(x, 1) for x in (*load0, *os.getloadavg())]
        _save(state, readme=True)
    say(f"wrote {os.path.relpath(RESULTS_MD)} and {os.path.relpath(CHARTS)}/ "
        f"in {time.monotonic() - started:.0f} s")
    return 0


def _load_state() -> dict:
    try:
        with open(RESULTS_JSON, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"entries": {}}


def _save(state: dict, readme: bool = False) -> None:
    with open(RESULTS_JSON, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=1)
    os.makedirs(CHARTS, exist_ok=True)
    order = [b for b in BENCHES if b.name in state["entries"]]
    for b in order:
        result = state["entries"][b.name].get("result")
        if result:
            r = res.adapt(b.name, result)
            with open(os.path.join(CHARTS, f"{b.name}.svg"), "w", encoding="utf-8") as f:
                f.write(res.svg_chart(b.title, r.groups))
    shown = [(b.name, b.title, b.what) for b in order]
    with open(RESULTS_MD, "w", encoding="utf-8") as f:
        f.write(res.results_markdown(state, shown))
    if not readme:
        return
    # the README's benchmark section, between its markers (left alone when they are gone),
    # only once a run is over: the README is not to show half a run
    readme = os.path.join(ROOT, "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    new = res.replace_between(text, res.README_BEGIN, res.README_END,
                              res.readme_summary(state, shown))
    if new is not None and new != text:
        with open(readme, "w", encoding="utf-8") as f:
            f.write(new)


if __name__ == "__main__":
    sys.exit(main())
