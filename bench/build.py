#!/usr/bin/env python3
"""Image build with a cold cache and with a warm one: `stackctl image build` against
`docker build` (dockerd's classic builder, DOCKER_BUILDKIT=0: Debian's docker.io has no
buildx) and `podman build` (buildah), the same Dockerfile and context on the same busybox
base image, in one run.

    python3 bench/build.py [-n 5]

The Dockerfile has the steps a small service has: ENV, WORKDIR, COPY of a 4 MB context, three
RUN steps (files written, a shell loop), LABEL, CMD. Cold: `--no-cache` (every step runs).
Warm: the same build again with nothing changed (every step taken from the cache).

Everything lives in a temporary directory: stackctl's state, dockerd's data root and socket,
podman's storage. dockerd is started here and stopped by PID; what the peers leave on the host
(docker0, nft tables, ip_forward) is undone (bench/peers.py), also on error or Ctrl-C.
"""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench import _timing, peers  # noqa: E402
from bench._timing import print_table, runs_from_argv, time_calls  # noqa: E402
from bench.results import Result, group_of, write  # noqa: E402

DOCKERFILE = """\
FROM {base}
ENV APP_HOME=/srv/app MODE=production
WORKDIR /srv/app
COPY . /srv/app/
RUN mkdir -p /srv/app/data && echo built > /srv/app/data/stamp
RUN for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i" >> /srv/app/data/log; done
RUN sh -c 'cat /srv/app/data/log | wc -l > /srv/app/data/count'
LABEL org.example.bench=build
CMD ["httpd", "-f", "-p", "80", "-h", "/srv/app"]
"""


def make_context(directory: str, base: str) -> str:
    os.makedirs(os.path.join(directory, "static"), exist_ok=True)
    with open(os.path.join(directory, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE.format(base=base))
    for i in range(8):
        with open(os.path.join(directory, "static", f"part{i}.bin"), "wb") as f:
            f.write(os.urandom(512 << 10))
    with open(os.path.join(directory, "index.html"), "w") as f:
        f.write("<h1>bench</h1>\n")
    return directory


def _run(argv: list[str], env: dict[str, str]) -> None:
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ({p.returncode}): {p.stderr.strip()[-500:]}")


def cold_warm(tool: str, build: list[str], no_cache: str, env: dict[str, str], n: int
              ) -> list[tuple[str, list[float]]]:
    """n cold builds (``no_cache`` added) and n warm ones, after one untimed build."""
    _run(build, env)
    cold = time_calls(lambda i: _run([*build[:-1], no_cache, build[-1]], env), n)
    _run(build, env)  # the cache holds the last cold build's steps
    warm = time_calls(lambda i: _run(build, env), n)
    return [(f"{tool} (cold cache)", cold), (f"{tool} (warm cache)", warm)]


def main() -> int:
    n = runs_from_argv(__doc__, 5, "cold and warm builds per tool")
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    rows: list[tuple[str, list[float]]] = []
    notes: list[str] = []
    with peers.bench_dir("stackctl-bench-build-") as (tmp, st, dockerd), peers.host_snapshot():
        rootfs, tarball = peers.make_rootfs_tarball(tmp)

        st.import_rootfs(rootfs, "bench/bb:latest")
        ctx = make_context(os.path.join(tmp, "ctx-stackctl"), "bench/bb:latest")
        env = {**st.env, "STACKCTL_WARM": "0"}
        try:
            rows += cold_warm("stackctl image build",
                              [*st.argv, "image", "build", "-q", "-t", "bench/app:1", ctx],
                              "--no-cache", env, n)
        except RuntimeError as exc:
            notes.append(f"stackctl: failed: {exc}")
        finally:
            st.stop()

        if peers.have("dockerd", peers.DOCKER):
            try:
                dockerd.start()
                dockerd.import_rootfs(tarball, "bench/bb:latest")
                ctx = make_context(os.path.join(tmp, "ctx-docker"), "bench/bb:latest")
                rows += cold_warm("docker build", [peers.DOCKER, "build", "-q", "-t",
                                                   "bench/app:1", ctx], "--no-cache",
                                  {**dockerd.env, "DOCKER_BUILDKIT": "0"}, n)
            except RuntimeError as exc:
                notes.append(f"docker build: failed: {str(exc).splitlines()[0][:200]}")
            finally:
                dockerd.stop()
        else:
            notes.append("docker build: not installed (apt-get install docker.io)")

        if peers.have("podman"):
            podman = peers.Podman(os.path.join(tmp, "podman"))
            try:
                podman.import_rootfs(tarball, "bench/bb:latest")
                ctx = make_context(os.path.join(tmp, "ctx-podman"), "localhost/bench/bb:latest")
                # buildah's default isolation and network need nothing podman lacks here; the
                # layers are kept so the warm build can take them from the cache
                rows += cold_warm("podman build", ["podman", "build", "-q", "--layers",
                                                   "--network", "host", "-t", "bench/app:1",
                                                   ctx], "--no-cache", podman.env, n)
            except RuntimeError as exc:
                notes.append(f"podman build: failed: {str(exc).splitlines()[0][:200]}")
            finally:
                podman.stop()
        else:
            notes.append("podman build: not installed (apt-get install podman)")

    print(f"image build (ENV, WORKDIR, COPY 4 MB, 3 RUN, LABEL, CMD), {n} builds each")
    cold = [r for r in rows if "cold" in r[0]]
    warm = [r for r in rows if "warm" in r[0]]
    if cold:
        print_table(cold, baseline="docker build (cold cache)")
        print()
        print_table(warm, baseline="docker build (warm cache)")
    for note in notes:
        print(note)
    write(_timing.JSON_PATH, Result("build", [
        group_of("build, cold cache", "ms", cold, scale=1000),
        group_of("build, warm cache", "ms", warm, scale=1000)], notes=notes))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
