#!/usr/bin/env python3
"""`up -d` (stackctl: `up -d --wait`) and `down -v` of a 3-service stack (a network, a volume,
a port published on 127.0.0.1) and of a 10-service one (7 more on the same network): stackctl
against docker-compose (v1, Debian's) and podman-compose (PyPI), on the
same stack and the same busybox rootfs, in one run. Prints median and p95 per tool and the
ratio to docker-compose (target: stackctl at most half of docker-compose's time).

    python3 bench/up_down.py [-n 10]

Everything lives in a temporary directory: stackctl's state, dockerd's data root and socket,
podman's storage. The peers are started here and stopped by PID; what they leave on the host
(docker0, nft tables, ip_forward) is undone (bench/peers.py), also on error or Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench import peers  # noqa: E402
from bench import _timing  # noqa: E402
from bench._timing import print_table, runs_from_argv  # noqa: E402
from bench.results import Result, group_of, write  # noqa: E402

STACK = """\
services:
  web:
    image: {image}
    command: ["httpd", "-f", "-p", "80", "-h", "/var/www"]
    ports: ["127.0.0.1:{port}:80"]
    networks: [front, back]
    stop_signal: SIGKILL  # busybox httpd as PID 1 ignores SIGTERM: don't time the grace period
  db:
    image: {image}
    command: ["sleep", "100000"]
    volumes: ["data:/data"]
    networks: [back]
    stop_signal: SIGKILL
  cache:
    image: {image}
    command: ["sleep", "100000"]
    networks: [back]
    stop_signal: SIGKILL
{extra}networks:
  front: {{}}
  back: {{}}
volumes:
  data: {{}}
"""

EXTRA = """\
  worker{i}:
    image: {image}
    command: ["sleep", "100000"]
    networks: [back]
    stop_signal: SIGKILL
"""


def write_stack(directory: str, image: str, port: int, services: int = 3) -> str:
    """The 3-service stack, plus ``services - 3`` more sleeping workers on ``back``."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "docker-compose.yml")
    extra = "".join(EXTRA.format(i=i, image=image) for i in range(max(0, services - 3)))
    with open(path, "w") as f:
        f.write(STACK.format(image=image, port=port, extra=extra))
    return path


def measure_pair(run_up, run_down, n: int) -> tuple[list[float], list[float]]:
    """n timed (up, down) pairs after one warm-up pair."""
    ups, downs = [], []
    for i in range(n + 1):
        t0 = time.perf_counter()
        run_up()
        t1 = time.perf_counter()
        run_down()
        t2 = time.perf_counter()
        if i:
            ups.append(t1 - t0)
            downs.append(t2 - t1)
    return ups, downs


def timed_rows(tool: str, up, down, n: int, wait: str = "") -> list[tuple[str, list[float]]]:
    """The "<tool> up -d" and "<tool> down -v" rows of n timed (up, down) pairs."""
    ups, downs = measure_pair(up, down, n)
    return [(f"{tool} up -d{wait}", ups), (f"{tool} down -v", downs)]


def compose_rows(tool: str, file: str, env: dict[str, str], n: int) -> list[tuple[str, list[float]]]:
    """timed_rows of a docker-compose-like ``tool`` (docker-compose, podman-compose)."""
    argv = [tool, "-f", file, "-p", "bench"]
    return timed_rows(tool, lambda: _run(argv + ["up", "-d"], env),
                      lambda: _run(argv + ["down", "-v"], env), n)


def main() -> int:
    n = runs_from_argv(__doc__, 10, "timed up/down pairs per tool")
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    groups, notes = [], []
    for services in SIZES:
        rows = measure_size(services, n, notes)
        print(f"up -d / down -v of a {services}-service stack (network, volume, published "
              f"port), {n} runs each")
        ups = [r for r in rows if " up " in r[0] + " "]
        downs = [r for r in rows if "down" in r[0]]
        if ups:
            print_table(ups, baseline="docker-compose up -d")
            print()
            print_table(downs, baseline="docker-compose down -v")
            print()
        groups.append(group_of(f"up, {services} services", "ms", ups, scale=1000))
        groups.append(group_of(f"down, {services} services", "ms", downs, scale=1000))
    notes = list(dict.fromkeys(notes))
    for note in notes:
        print(note)
    write(_timing.JSON_PATH, Result("up_down", groups, notes=notes))
    return 0 if any(g.rows for g in groups) else 1


SIZES = (3, 10)


def measure_size(services: int, n: int, notes: list[str]) -> list[tuple[str, list[float]]]:
    rows: list[tuple[str, list[float]]] = []
    with peers.bench_dir("stackctl-bench-updown-") as (tmp, st, dockerd), peers.host_snapshot():
        podman = peers.Podman(os.path.join(tmp, "podman"))
        rootfs, tarball = peers.make_rootfs_tarball(tmp)
        port = peers.free_port()

        # stackctl
        st.import_rootfs(rootfs, "bench/bb:latest")
        f = write_stack(os.path.join(tmp, "s-stackctl"), "bench/bb:latest", port, services)
        try:
            # --wait: until every container runs (compose v1's `up -d` returns then too)
            rows += timed_rows("stackctl", lambda: st.cli("up", "-d", "--wait", "-f", f, "-p", "bench"),
                               lambda: st.cli("down", "-v", "-p", "bench"), n, " --wait")
        except RuntimeError as exc:
            notes.append(f"stackctl: failed: {exc}")
        finally:
            st.cli("down", "-v", "-p", "bench", check=False)
            st.stop()

        # docker-compose (v1) on a private dockerd
        if peers.have("dockerd", peers.DOCKER, "docker-compose"):
            try:
                dockerd.start()
                dockerd.import_rootfs(tarball, "bench/bb:latest")
                f = write_stack(os.path.join(tmp, "s-compose"), "bench/bb:latest", port,
                                services)
                rows += compose_rows("docker-compose", f, dockerd.env, n)
            except RuntimeError as exc:
                notes.append(f"docker-compose: failed: {exc}")
            finally:
                dockerd.stop()
        else:
            notes.append(f"docker-compose: {peers.INSTALL_HINT}")

        # podman-compose
        if peers.have("podman", "podman-compose"):
            f = os.path.join(tmp, "s-podman", "docker-compose.yml")
            try:
                podman.import_rootfs(tarball, "bench/bb:latest")
                write_stack(os.path.dirname(f), "localhost/bench/bb:latest", port, services)
                rows += compose_rows("podman-compose", f, podman.env, n)
            except RuntimeError as exc:
                notes.append(f"podman-compose: failed: {exc}")
            finally:
                _run(["podman-compose", "-f", f, "-p", "bench", "down", "-v"], podman.env,
                     check=False)
                podman.stop()
        else:
            notes.append(f"podman-compose: {peers.INSTALL_HINT}")
    return rows


def _run(argv: list[str], env: dict[str, str], check: bool = True) -> None:
    import subprocess

    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} ({p.returncode}): {p.stderr.strip()[-800:]}")


if __name__ == "__main__":
    sys.exit(main())
