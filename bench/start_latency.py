#!/usr/bin/env python3
"""Start latency: `stackctl run --rm IMG true` against crun, runc (and docker/podman when a
daemon answers), on the same busybox rootfs, in one run. Prints median and p95 over N runs and
the ratio to crun.

    python3 bench/start_latency.py [-n 30]

Everything lives in a temporary directory (stackctl state/run dirs, bundles); processes are
stopped by PID and the directory removed at the end, also on error or Ctrl-C.
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
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def make_rootfs(root: str) -> None:
    busybox = shutil.which("busybox") or "/bin/busybox"
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2(busybox, os.path.join(root, "bin", "busybox"))
    for a in subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split():
        if a != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", a))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write("root:x:0:\n")


def make_bundle(tool: str, rootfs: str, bundle: str) -> None:
    os.makedirs(bundle)
    shutil.copytree(rootfs, os.path.join(bundle, "rootfs"), symlinks=True)
    subprocess.run([tool, "spec"], cwd=bundle, check=True, capture_output=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = ["/bin/true"]
    cfg["process"]["terminal"] = False
    cfg["root"] = {"path": "rootfs", "readonly": True}
    # keep rlimits within this machine's hard limits (see PEERS.md)
    cfg["process"].pop("rlimits", None)
    with open(path, "w") as f:
        json.dump(cfg, f)


def measure(argv_for, n: int, env=None) -> list[float]:
    out = []
    for i in range(n + 2):  # two warm-ups
        argv = argv_for(i)
        t0 = time.perf_counter()
        p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True)
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.decode(errors='replace')[-300:]}")
        if i >= 2:
            out.append(dt * 1000)
    return out


def _wait_warm(run: str, timeout: float = 10.0) -> None:
    """Until the agent's warm server listens and has its pool of prepared starts."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(os.path.join(run, "warm.sock")):
        if time.monotonic() > deadline:
            raise RuntimeError("the agent's warm server did not start (see <state>/agent.log)")
        time.sleep(0.05)
    time.sleep(0.5)  # the pool fills in the background


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=30, help="runs per tool (at least 20)")
    ap.add_argument("--json", metavar="FILE", help="also write the samples as JSON (bench/results.py)")
    ap.add_argument("--min-runs", type=int, default=20, help=argparse.SUPPRESS)  # the suite's --quick
    args = ap.parse_args()
    n = max(args.min_runs, args.n)
    notes: list[str] = []
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="stackctl-bench-")
    cgparent = f"stackctl-bench-{uuid.uuid4().hex[:8]}"
    results: dict[str, list[float]] = {}
    try:
        rootfs = os.path.join(tmp, "rootfs")
        make_rootfs(rootfs)
        state, run = os.path.join(tmp, "state"), os.path.join(tmp, "run")
        os.makedirs(state)
        os.makedirs(run)
        from stackctl.runtime.images.archive import import_rootfs
        from stackctl.runtime.images.store import ImageStore

        import_rootfs(ImageStore(os.path.join(state, "images")), rootfs, "bench-bb:latest")
        # Bytecode as an installed package has it (pip compiles at install time): with
        # PYTHONDONTWRITEBYTECODE set and no __pycache__, every run would compile stackctl's
        # modules from source (~25 ms here) and measure the compiler, not the start.
        import compileall

        compileall.compile_dir(os.path.join(os.path.dirname(HERE), "stackctl"), quiet=1)
        env = dict(os.environ, STACKCTL_STATE_DIR=state, STACKCTL_RUN_DIR=run, STACKCTL_CGROUP_PARENT=cgparent)
        stackctl = [sys.executable, "-m", "stackctl"]
        # crun/runc make no network and podman runs with --network none: stackctl too (its
        # default is Docker's `bridge` network, whose setup is not what this compares)
        NO_NET = ["--network", "none"]
        results["stackctl run --rm (python3 -m)"] = measure(lambda i: [*stackctl, "run", "--rm", *NO_NET, "bench-bb:latest", "true"], n, env)
        # the `stackctl` command as scripts/setup installs it (stackctl/launcher.py), called by
        # its path: a pyenv shim in front of it would add its own ~50 ms of bash
        import sysconfig

        from stackctl.launcher import MARKER

        fast = os.path.join(sysconfig.get_path("scripts"), "stackctl")
        try:
            with open(fast) as f:
                is_launcher = MARKER in f.read(4096)
        except OSError:
            is_launcher = False
        if is_launcher:
            results["stackctl run --rm (launcher)"] = measure(lambda i: [fast, "run", "--rm", *NO_NET, "bench-bb:latest", "true"], n, env)
            # With the node's agent running, as on any node stackctl manages (Docker's daemon
            # runs too when `docker run` is measured): the agent's warm server takes the run.
            subprocess.run([fast, "agent", "serve"], env=env, check=True, capture_output=True)
            try:
                _wait_warm(run)
                results["stackctl run --rm (agent up: warm)"] = measure(
                    lambda i: [fast, "run", "--rm", *NO_NET, "bench-bb:latest", "true"], n, env)
            finally:
                subprocess.run([fast, "agent", "stop"], env=env, capture_output=True)
        else:
            print(f"no fast launcher at {fast} (python3 -m stackctl.launcher installs it)", file=sys.stderr)

        if shutil.which("crun"):
            b = os.path.join(tmp, "crun-bundle")
            make_bundle("crun", rootfs, b)
            results["crun run"] = measure(lambda i: [
                "unshare", "-m", "--propagation", "private", "sh", "-c",
                f"umount /sys/fs/cgroup/unified 2>/dev/null; exec crun run -b {b} bench-crun-{os.getpid()}-{i}"], n)
        else:
            notes.append("crun: not installed (apt-get install crun)")
        if shutil.which("runc"):
            b = os.path.join(tmp, "runc-bundle")
            make_bundle("runc", rootfs, b)
            results["runc run"] = measure(lambda i: ["runc", "run", "-b", b, f"bench-runc-{os.getpid()}-{i}"], n)
        else:
            notes.append("runc: not installed (apt-get install runc)")
        # docker on a private dockerd and podman with a private storage and a containers.conf
        # that keeps its rlimits within this machine's hard limits (bench/peers.py, PEERS.md),
        # both started here and stopped by PID; what they leave on the host is undone
        from bench import peers

        tarball = os.path.join(tmp, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tarball, "."], check=True)
        with peers.host_snapshot():
            for tool in ("docker", "podman"):
                if tool == "docker" and not peers.have("dockerd", peers.DOCKER):
                    notes.append("docker: not installed (apt-get install docker.io)")
                    continue
                if tool == "podman" and not peers.have("podman"):
                    notes.append("podman: not installed (apt-get install podman)")
                    continue
                peer = (peers.Dockerd(os.path.join(tmp, "docker")) if tool == "docker"
                        else peers.Podman(os.path.join(tmp, "podman")))
                argv0 = peers.DOCKER if tool == "docker" else "podman"
                try:
                    if tool == "docker":
                        peer.start()
                    peer.import_rootfs(tarball, "bench/bb:latest")
                    results[f"{tool} run --rm --network none"] = measure(
                        lambda i: [argv0, "run", "--rm", "--network", "none", "bench/bb:latest",
                                   "/bin/true"], n, peer.env)
                except RuntimeError as e:  # a peer that does not run here is reported, not fatal
                    print(f"skipped {tool}: {e}", file=sys.stderr)
                    notes.append(f"{tool}: failed: {str(e).splitlines()[0][:200]}")
                finally:
                    peer.stop()
    finally:
        _cleanup(tmp, cgparent)
    from bench import results as res

    res.write(args.json, res.Result("start_latency", [res.group_of(
        "container start, /bin/true", "ms", results.items())], notes=notes))

    base = statistics.median(results["crun run"]) if "crun run" in results else None
    print(f"start latency, /bin/true, {n} runs each (ms)")
    print(f"{'tool':<38}{'median':>9}{'p95':>9}{'vs crun':>10}")
    for name, xs in results.items():
        med = statistics.median(xs)
        ratio = f"{med / base:.2f}x" if base else "-"
        print(f"{name:<38}{med:>9.1f}{p95(xs):>9.1f}{ratio:>10}")
    for note in notes:
        print(note)
    return 0


def _cleanup(tmp: str, cgparent: str) -> None:
    """Stop whatever the stackctl runs left (by the PIDs in their state, and an agent or warm
    server by its pid file), unmount below tmp, remove our cgroups and the directory."""
    for pidfile in ("agent.pid", "warm.pid"):
        try:
            with open(os.path.join(tmp, "run", pidfile)) as f:
                os.kill(int(f.read().strip()), 15)
        except (OSError, ValueError):
            pass
    cdir = os.path.join(tmp, "state", "containers")
    if os.path.isdir(cdir):
        for cid in os.listdir(cdir):
            try:
                with open(os.path.join(cdir, cid, "state.json")) as f:
                    st = json.load(f)
                for key in ("pid", "monitor_pid"):
                    if st.get("status") == "running" and st.get(key):
                        os.kill(int(st[key]), 9)
            except (OSError, ValueError):
                pass
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(tmp)]
    for p in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)
    for ctrl in os.listdir("/sys/fs/cgroup"):
        top = os.path.join("/sys/fs/cgroup", ctrl, cgparent)
        if os.path.isdir(top):
            for dirpath, _d, _f in sorted(os.walk(top), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
