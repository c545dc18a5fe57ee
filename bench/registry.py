#!/usr/bin/env python3
"""Pulling and pushing a multi-layer image (tens of MB, several layers of random data) through
a local registry (Debian's docker-registry on 127.0.0.1): stackctl against `skopeo copy` and
`docker pull`/`docker push`, in one run. Prints median and p95 per tool, the ratio to skopeo,
and the CPU seconds of each tool's own processes (target: stackctl no slower than skopeo,
faster than docker).

    python3 bench/registry.py [-n 5] [--layers 4] [--mb 12]

What each command does, so that the ratios compare like with like:

- `stackctl pull` into an empty node: download, verify, unpack (the image is ready to run).
  Two rows: cold (a fresh process: Python's start and imports, ~0.2 s here, are in the figure;
  what a machine with no stackctl agent pays) and warm (through the node's warm server, which
  every node running the agent has: no imports per command, as `docker pull` relies on dockerd).
- `skopeo copy docker://... containers-storage:[overlay@DIR+RUN]NAME`: download, verify and
  unpack into an overlay store — what `podman pull` does, the same work as `stackctl pull`.
  This is the skopeo the target compares with.
- `skopeo copy --preserve-digests docker://... oci:DIR`: download and verify only; skopeo does
  not unpack into an OCI layout, so this row does less work than the others (shown as the
  floor: the network and the hashing alone).
- `docker pull` into an empty private dockerd (download and unpack, in the daemon).
- push: `stackctl push` (cold and warm) vs `skopeo copy --preserve-digests oci:DIR docker://...`
  of the same blobs vs `docker push`, each into a fresh registry (nothing to skip, no mount).
- Three images: the layers as stackctl builds them (plain tar), the same gzip-compressed (as
  most registries hold them; made by `skopeo copy --dest-compress` into an OCI layout and
  pushed from there with `--preserve-digests`, so that skopeo cannot substitute the plain
  layers the registry already has), and one gzip layer of `--files` small files (the per-file
  cost of unpacking, as in a real root filesystem).

Runs are interleaved (run i of every tool, then run i+1), since the machine is shared.
A missing peer is named (`apt-get install skopeo docker.io`) and stackctl is still measured.
Everything lives in a temporary directory; the registries, the warm server (and dockerd, if
installed) are started here and stopped by PID, also on error or Ctrl-C; the overlay store's
mount is unmounted after each skopeo run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench import peers  # noqa: E402
from bench._timing import print_table  # noqa: E402
from bench.results import Result, group_of, write  # noqa: E402


def stackctl_env(state: str) -> dict[str, str]:
    return dict(os.environ, STACKCTL_STATE_DIR=state, STACKCTL_RUN_DIR=state + "-run",
                STACKCTL_WARM="0", STACKCTL_REGISTRIES_CONFIG="/nonexistent")


def sh(argv: list[str], env: dict[str, str] | None = None) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, env=env or os.environ.copy())
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()[-800:]}")
    return p.stdout


CPU: dict[str, list[float]] = {}  # tool -> user+sys seconds of its own processes, per run


def timed(argv: list[str], env: dict[str, str] | None = None, cpu: str = "") -> float:
    """Wall seconds of one run; with ``cpu``, also records the run's CPU seconds (user+sys of
    the process and the children it waited for) — a figure a busy machine disturbs less."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    sh(argv, env)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu:
        CPU.setdefault(cpu, []).append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return wall


def print_cpu(names: list[str], docker: bool = False) -> None:
    import statistics

    shown = [n for n in names if CPU.get(n)]
    if shown:
        print("  CPU s (user+sys, median): " + ", ".join(f"{n} {statistics.median(CPU[n]):.2f}" for n in shown)
              + ("; docker's work is in dockerd, not counted" if docker else ""))
    CPU.clear()


@contextlib.contextmanager
def registry(base: str) -> Iterator[str]:
    """A docker-registry on a free port with its storage under ``base``; yields host:port."""
    port = peers.free_port()
    os.makedirs(base, exist_ok=True)
    cfg = os.path.join(base, "config.yml")
    with open(cfg, "w") as f:
        json.dump({"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
                   "storage": {"filesystem": {"rootdirectory": os.path.join(base, "data")}},
                   "http": {"addr": f"127.0.0.1:{port}"}}, f)
    log = open(os.path.join(base, "registry.log"), "wb")
    proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    try:
        import socket

        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start; see {base}/registry.log")
            time.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        peers.stop_pid(proc.pid)


def build_files_image(tmp: str, env: dict[str, str], ref: str, files: int) -> None:
    """One layer of ``files`` small files (1–16 KiB of random data, 20 per directory): what
    the per-file work of an unpack costs, as in a real root filesystem."""
    ctx = os.path.join(tmp, "context-files")
    for i in range(files):
        d = os.path.join(ctx, "tree", f"d{i // 20:04d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
            f.write(os.urandom(1024 + (i * 7919) % (15 * 1024)))
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM scratch\nCOPY tree /tree\n")
    sh([sys.executable, "-m", "stackctl", "image", "build", "-q", "-t", ref, ctx], env)
    shutil.rmtree(ctx, ignore_errors=True)


def build_image(tmp: str, env: dict[str, str], ref: str, layers: int, mb: int) -> None:
    ctx = os.path.join(tmp, "context")
    os.makedirs(ctx, exist_ok=True)
    lines = ["FROM scratch"]
    for i in range(layers):
        with open(os.path.join(ctx, f"blob{i}"), "wb") as f:
            f.write(os.urandom(mb << 20))
        lines.append(f"COPY blob{i} /data/blob{i}")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("\n".join(lines) + "\n")
    sh([sys.executable, "-m", "stackctl", "image", "build", "-q", "-t", ref, ctx], env)


@contextlib.contextmanager
def warm_server(tmp: str) -> Iterator[str]:
    """The node's warm server (what `stackctl agent serve` starts) for a run directory under
    ``tmp``, with no pool of prepared containers (pull and push start none); yields that run
    directory. Stopped by PID."""
    run = os.path.join(tmp, "warm-run")
    os.makedirs(run, mode=0o700, exist_ok=True)
    log = open(os.path.join(tmp, "warm.log"), "wb")
    env = dict(os.environ, STACKCTL_WARM_POOL="0")
    proc = subprocess.Popen([sys.executable, "-m", "stackctl.warm.server", os.path.join(tmp, "warm-state"), run,
                             "stackctl-bench-registry"], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            env=env, cwd=os.path.dirname(HERE), start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(run, "warm.sock")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the warm server did not start; see {tmp}/warm.log")
            time.sleep(0.05)
        yield run
    finally:
        peers.stop_pid(proc.pid)


def stackctl_command() -> list[str]:
    """The ``stackctl`` a user runs: the launcher next to this interpreter (scripts/setup puts
    it there; it starts Python without ``site``), else ``python3 -m stackctl``."""
    launcher = os.path.join(os.path.dirname(sys.executable), "stackctl")
    try:
        with open(launcher, encoding="utf-8", errors="replace") as f:
            if "stackctl fast launcher" in f.read(512):
                return [launcher]
    except OSError:
        pass
    return [sys.executable, "-m", "stackctl"]


def warm_env(state: str, run: str) -> dict[str, str]:
    return dict(stackctl_env(state), STACKCTL_RUN_DIR=run, STACKCTL_WARM="1")


def containers_storage(root: str, name: str) -> str:
    return f"containers-storage:[overlay@{root}/storage+{root}/run]{name}"


def drop_containers_storage(root: str) -> None:
    """containers-storage bind-mounts its overlay directory on itself: unmount, then remove."""
    mnt = os.path.join(root, "storage", "overlay")
    with open("/proc/self/mountinfo") as f:  # (os.path.ismount misses a bind mount on the same fs)
        mounted = any(line.split()[4] == mnt for line in f)
    if mounted:
        subprocess.run(["umount", mnt], capture_output=True, check=True)
    shutil.rmtree(root, ignore_errors=True)


def ratios_line(rows: list[tuple[str, list[float]]], ours: list[str], peer: str) -> str:
    import statistics

    med = {name: statistics.median(v) for name, v in rows if v}
    if peer not in med:
        return ""
    return "  vs " + peer + ": " + ", ".join(f"{n} {med[n] / med[peer]:.2f}x" for n in ours if n in med)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=5, help="runs per tool (default 5)")
    ap.add_argument("--layers", type=int, default=4, help="layers of random data (default 4)")
    ap.add_argument("--mb", type=int, default=12, help="MB per layer (default 12)")
    ap.add_argument("--files", type=int, default=3000,
                    help="small files of the many-files image, gzip layer (default 3000; 0: none)")
    ap.add_argument("--json", metavar="FILE", help="also write the samples as JSON (bench/results.py)")
    args = ap.parse_args()
    groups = []
    notes = ["pull: 'skopeo copy -> containers-storage' downloads, verifies and unpacks (what podman pull does), "
             "like stackctl pull and docker pull; 'skopeo copy -> oci:' only downloads and verifies (no unpack)",
             "stackctl cold: a fresh process (Python start and imports included); warm: through the node's warm "
             "server, which a node running the stackctl agent has"]
    if os.geteuid() != 0:
        print("bench/registry.py needs root (stackctl unpacks layers as root)", file=sys.stderr)
        return 1
    if not peers.have("docker-registry"):
        print("docker-registry: not installed (apt-get install docker-registry)", file=sys.stderr)
        return 1
    have_skopeo = peers.have("skopeo")
    have_docker = peers.have("dockerd") and os.path.exists(peers.DOCKER)
    if not have_skopeo:
        notes.append("skopeo: not installed (apt-get install skopeo); measuring stackctl alone")
    if not have_docker:
        notes.append("docker: not installed (apt-get install docker.io); measuring without it")
    for note in notes[2:]:
        print(note)
    tmp = tempfile.mkdtemp(prefix="bench-registry-")
    dockerd = peers.Dockerd(os.path.join(tmp, "docker"))
    S_CS, S_OCI = "skopeo copy -> containers-storage", "skopeo copy -> oci: (no unpack)"
    cmd = stackctl_command()
    try:
        with peers.host_snapshot(), registry(os.path.join(tmp, "registry")) as host, warm_server(tmp) as wrun:
            src_env = stackctl_env(os.path.join(tmp, "src"))
            plain, gz = f"{host}/bench/app:plain", f"{host}/bench/app:gzip"
            build_image(tmp, src_env, plain, args.layers, args.mb)
            sh([sys.executable, "-m", "stackctl", "push", "-q", plain], src_env)
            variants = [("plain", plain)]
            layout = os.path.join(tmp, "layout")
            if have_skopeo:
                gz_layout = os.path.join(tmp, "layout-gz")
                sh(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-compress", f"docker://{plain}",
                    f"oci:{gz_layout}:app"])
                sh(["skopeo", "copy", "-q", "--preserve-digests", "--dest-tls-verify=false", f"oci:{gz_layout}:app",
                    f"docker://{gz}"])
                shutil.rmtree(gz_layout, ignore_errors=True)
                variants.append(("gzip", gz))
            if args.files:
                many = f"{host}/bench/files:plain"
                build_files_image(tmp, src_env, many, args.files)
                sh([sys.executable, "-m", "stackctl", "push", "-q", many], src_env)
                if have_skopeo:  # gzip, as a real image's layers are
                    gz_layout = os.path.join(tmp, "layout-files")
                    sh(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-compress", f"docker://{many}",
                        f"oci:{gz_layout}:app"])
                    many = f"{host}/bench/files:gzip"
                    sh(["skopeo", "copy", "-q", "--preserve-digests", "--dest-tls-verify=false",
                        f"oci:{gz_layout}:app", f"docker://{many}"])
                    shutil.rmtree(gz_layout, ignore_errors=True)
                variants.append((f"{args.files} small files", many))
                sh(["skopeo", "copy", "-q", "--preserve-digests", "--src-tls-verify=false", f"docker://{plain}",
                    f"oci:{layout}:app"])
            if have_docker:
                dockerd.start()
            size = args.layers * args.mb
            print(f"image: {args.layers} layers of {args.mb} MB random data ({size} MB), {args.n} runs each\n")
            for name, ref in variants:
                rows: list[tuple[str, list[float]]] = [
                    ("stackctl pull (cold)", []), ("stackctl pull (warm)", []), (S_CS, []), (S_OCI, []),
                    ("docker pull", [])]
                for i in range(args.n):
                    state = os.path.join(tmp, f"pull-{i}")
                    rows[0][1].append(timed(cmd + ["pull", "-q", ref], stackctl_env(state), cpu="stackctl pull (cold)"))
                    shutil.rmtree(state, ignore_errors=True)
                    rows[1][1].append(timed(cmd + ["pull", "-q", ref], warm_env(state, wrun)))
                    shutil.rmtree(state, ignore_errors=True)
                    if have_skopeo:
                        dest = os.path.join(tmp, f"cs-{i}")
                        try:
                            rows[2][1].append(timed(["skopeo", "copy", "-q", "--src-tls-verify=false",
                                                     f"docker://{ref}", containers_storage(dest, "bench/app:1")],
                                                    cpu=S_CS))
                        finally:
                            drop_containers_storage(dest)
                        dest = os.path.join(tmp, f"oci-{i}")
                        rows[3][1].append(timed(["skopeo", "copy", "-q", "--preserve-digests", "--src-tls-verify=false",
                                                 f"docker://{ref}", f"oci:{dest}:app"], cpu=S_OCI))
                        shutil.rmtree(dest, ignore_errors=True)
                    if have_docker:
                        dockerd.docker("rmi", "-f", ref, check=False)
                        dockerd.docker("image", "prune", "-af", check=False)
                        t0 = time.perf_counter()
                        dockerd.docker("pull", "-q", ref)
                        rows[4][1].append(time.perf_counter() - t0)
                what = f"{name} layers ({size} MB)" if name in ("plain", "gzip") else f"{name}, one gzip layer"
                print(f"pull, {what}:")
                groups.append(group_of(f"pull, {what}", "ms", rows, scale=1000))
                shown = [r for r in rows if r[1]]
                print_table(shown, baseline=S_CS if have_skopeo else None)
                if have_skopeo:
                    print(ratios_line(shown, ["stackctl pull (cold)", "stackctl pull (warm)"], S_OCI))
                print_cpu(["stackctl pull (cold)", S_CS, S_OCI], have_docker)
                print("  (warm: the work is in the warm server's worker, not counted)")
                print()
            # push: each run into a fresh registry
            rows = [("stackctl push (cold)", []), ("stackctl push (warm)", []), ("skopeo copy", []),
                    ("docker push", [])]
            if have_docker:
                dockerd.docker("pull", "-q", plain)
            for i in range(args.n):
                for idx, tool in enumerate(("stackctl", "warm", "skopeo", "docker")):
                    if tool == "skopeo" and not have_skopeo or tool == "docker" and not have_docker:
                        continue
                    with registry(os.path.join(tmp, f"push-{tool}-{i}")) as dest:
                        target = f"{dest}/bench/app:plain"
                        if tool in ("stackctl", "warm"):
                            sh([sys.executable, "-m", "stackctl", "image", "tag", plain, target], src_env)
                            if tool == "stackctl":
                                rows[idx][1].append(timed(cmd + ["push", "-q", target], src_env,
                                                          cpu="stackctl push (cold)"))
                            else:
                                rows[idx][1].append(timed(cmd + ["push", "-q", target],
                                                          dict(src_env, STACKCTL_RUN_DIR=wrun, STACKCTL_WARM="1")))
                            sh([sys.executable, "-m", "stackctl", "image", "rm", target], src_env)
                        elif tool == "skopeo":
                            rows[idx][1].append(timed(["skopeo", "copy", "-q", "--preserve-digests",
                                                       "--dest-tls-verify=false", f"oci:{layout}:app",
                                                       f"docker://{target}"], cpu="skopeo copy"))
                        else:
                            dockerd.docker("tag", plain, target)
                            t0 = time.perf_counter()
                            dockerd.docker("push", "-q", target)
                            rows[idx][1].append(time.perf_counter() - t0)
            print("push, plain layers (into an empty registry):")
            groups.append(group_of(f"push, plain layers ({size} MB, into an empty registry)",
                                   "ms", rows, scale=1000))
            print_table([r for r in rows if r[1]], baseline="skopeo copy" if have_skopeo else None)
            print_cpu(["stackctl push (cold)", "skopeo copy"], have_docker)
            dockerd.stop()  # inside host_snapshot: what dockerd left (docker0, nft tables) is undone
    finally:
        dockerd.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    write(args.json, Result("registry", groups, notes=notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
