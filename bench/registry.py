#!/usr/bin/env python3
"""Pulling and pushing a multi-layer image (tens of MB, several layers of random data) through
a local registry (Debian's docker-registry on 127.0.0.1): stackctl against `skopeo copy` and
`docker pull`/`docker push`, in one run. Prints median and p95 per tool and the ratio to skopeo
(target: stackctl no slower than skopeo, faster than docker).

    python3 bench/registry.py [-n 5] [--layers 4] [--mb 12]

- pull: `stackctl pull` into an empty node (download, verify, unpack: the image is ready to
  run) vs `skopeo copy --preserve-digests docker://... oci:DIR` (download and verify only:
  skopeo does not unpack) vs `docker pull` into an empty dockerd (download and unpack).
- push: `stackctl push` of the image vs `skopeo copy --preserve-digests oci:DIR docker://...`
  of the same blobs vs `docker push`, each into a fresh registry (nothing to skip, no mount).
- Two variants of the image: layers as stackctl builds them (plain tar) and gzip-compressed
  (as most registries hold them; made with `skopeo copy --dest-compress`).

A missing peer is named (`apt-get install skopeo docker.io`) and stackctl is still measured.
Everything lives in a temporary directory; the registries (and dockerd, if installed) are
started here and stopped by PID, also on error or Ctrl-C.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=5, help="runs per tool (default 5)")
    ap.add_argument("--layers", type=int, default=4, help="layers of random data (default 4)")
    ap.add_argument("--mb", type=int, default=12, help="MB per layer (default 12)")
    ap.add_argument("--json", metavar="FILE", help="also write the samples as JSON (bench/results.py)")
    args = ap.parse_args()
    groups = []
    notes = ["skopeo copy downloads and verifies (into an OCI layout) but does not unpack; "
             "stackctl pull and docker pull also unpack the layers, ready to run"]
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
    for note in notes[1:]:
        print(note)
    tmp = tempfile.mkdtemp(prefix="bench-registry-")
    dockerd = peers.Dockerd(os.path.join(tmp, "docker"))
    try:
        with peers.host_snapshot(), registry(os.path.join(tmp, "registry")) as host:
            src_env = stackctl_env(os.path.join(tmp, "src"))
            plain, gz = f"{host}/bench/app:plain", f"{host}/bench/app:gzip"
            build_image(tmp, src_env, plain, args.layers, args.mb)
            sh([sys.executable, "-m", "stackctl", "push", "-q", plain], src_env)
            variants = [("plain", plain)]
            layout = os.path.join(tmp, "layout")
            if have_skopeo:
                sh(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--dest-compress",
                    f"docker://{plain}", f"docker://{gz}"])
                variants.append(("gzip", gz))
                sh(["skopeo", "copy", "-q", "--preserve-digests", "--src-tls-verify=false", f"docker://{plain}",
                    f"oci:{layout}:app"])
            if have_docker:
                dockerd.start()
            size = args.layers * args.mb
            print(f"image: {args.layers} layers of {args.mb} MB random data ({size} MB), {args.n} runs each\n")
            for name, ref in variants:
                rows: list[tuple[str, list[float]]] = [("stackctl pull", []), ("skopeo copy", []), ("docker pull", [])]
                for i in range(args.n):
                    state = os.path.join(tmp, f"pull-{name}-{i}")
                    rows[0][1].append(timed([sys.executable, "-m", "stackctl", "pull", "-q", ref], stackctl_env(state),
                                            cpu="stackctl pull"))
                    shutil.rmtree(state, ignore_errors=True)
                    if have_skopeo:
                        dest = os.path.join(tmp, f"oci-{name}-{i}")
                        rows[1][1].append(timed(["skopeo", "copy", "-q", "--preserve-digests", "--src-tls-verify=false",
                                                 f"docker://{ref}", f"oci:{dest}:app"], cpu="skopeo copy"))
                        shutil.rmtree(dest, ignore_errors=True)
                    if have_docker:
                        dockerd.docker("rmi", "-f", ref, check=False)
                        dockerd.docker("image", "prune", "-af", check=False)
                        t0 = time.perf_counter()
                        dockerd.docker("pull", "-q", ref)
                        rows[2][1].append(time.perf_counter() - t0)
                print(f"pull, {name} layers:")
                groups.append(group_of(f"pull, {name} layers ({size} MB)", "ms", rows, scale=1000))
                print_table([r for r in rows if r[1]], baseline="skopeo copy" if have_skopeo else None)
                print_cpu(["stackctl pull", "skopeo copy"], have_docker)
                print()
            # push: each run into a fresh registry
            rows = [("stackctl push", []), ("skopeo copy", []), ("docker push", [])]
            if have_docker:
                dockerd.docker("pull", "-q", plain)
            for i in range(args.n):
                for idx, tool in enumerate(("stackctl", "skopeo", "docker")):
                    if tool == "skopeo" and not have_skopeo or tool == "docker" and not have_docker:
                        continue
                    with registry(os.path.join(tmp, f"push-{tool}-{i}")) as dest:
                        target = f"{dest}/bench/app:plain"
                        if tool == "stackctl":
                            sh([sys.executable, "-m", "stackctl", "image", "tag", plain, target], src_env)
                            rows[idx][1].append(timed([sys.executable, "-m", "stackctl", "push", "-q", target], src_env,
                                                      cpu="stackctl push"))
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
            print_cpu(["stackctl push", "skopeo copy"], have_docker)
            dockerd.stop()  # inside host_snapshot: what dockerd left (docker0, nft tables) is undone
    finally:
        dockerd.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    write(args.json, Result("registry", groups, notes=notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
