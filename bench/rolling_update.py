#!/usr/bin/env python3
"""A rolling update of 3 replicas (parallelism 1, monitor 1s, start-first, stop grace 1s):
stackctl (`up -d --wait` after a change of environment, with a client sending requests to the
published port the whole time, counting failures) against `docker service update` in a
one-node swarm (`--endpoint-mode dnsrr`, `--no-resolve-image`; no published port: without
IPVS there is no routing mesh here, see PEERS.md). Same busybox rootfs for both, and on both
sides an init as PID 1 (`init: true` / `--init`): busybox httpd as PID 1 has no SIGTERM
handler, so without one every stop of an old task would wait out the grace period, on both
sides alike. Target: faster than swarm, with no failed request.

    python3 bench/rolling_update.py [-n 3]

Everything lives in a temporary directory; dockerd is started here and stopped by PID, and
what it leaves on the host (docker0, docker_gwbridge, nft tables, ip_forward) is undone.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench import peers  # noqa: E402
from bench import _timing  # noqa: E402
from bench._timing import print_table, runs_from_argv, time_calls  # noqa: E402
from bench.results import Result, group_of, write  # noqa: E402

STACK = """\
name: benchroll
services:
  web:
    image: bench/bb:latest
    command: ["sh", "-c", "echo v$$VERSION > /var/www/index.html && exec httpd -f -p 80 -h /var/www"]
    environment:
      VERSION: ${{VERSION:-0}}
    ports: ["127.0.0.1:{port}:80"]
    stop_grace_period: 1s
    init: true  # both sides: httpd as PID 1 ignores SIGTERM and would wait out the grace
    deploy:
      replicas: 3
      update_config: {{parallelism: 1, monitor: 1s, delay: 0s, order: start-first}}
"""


class Client:
    """Requests in a loop against the published port; counts what fails."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=3) as r:
                    r.read()
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.failed += 1
                self.errors.append(repr(exc))
            time.sleep(0.005)

    def __enter__(self) -> Client:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


def bench_stackctl(st: peers.Stackctl, tmp: str, n: int) -> tuple[list[float], Client]:
    port = peers.free_port()
    path = os.path.join(tmp, "stack.yml")
    with open(path, "w") as f:
        f.write(STACK.format(port=port))
    st.cli("up", "-d", "--wait", "-f", path, env={**st.env, "VERSION": "0"}, timeout=120)
    with Client(port) as client:
        samples = time_calls(lambda i: st.cli("up", "-d", "--wait", "-f", path,
                                               env={**st.env, "VERSION": str(i)}, timeout=300), n)
    return samples, client


def bench_swarm(dockerd: peers.Dockerd, tarball: str, n: int) -> list[float]:
    dockerd.start()
    dockerd.import_rootfs(tarball, "bench/bb:latest")
    dockerd.swarm_init()
    dockerd.docker("service", "create", "--detach=false", "--name", "web", "--replicas", "3",
                   "--endpoint-mode", "dnsrr", "--no-resolve-image",
                   "--update-parallelism", "1", "--update-monitor", "1s",
                   "--update-delay", "0s", "--update-order", "start-first",
                   "--stop-grace-period", "1s", "--init",
                   "--env", "VERSION=0", "bench/bb:latest",
                   "sh", "-c", "echo v$VERSION > /var/www/index.html && "
                               "exec httpd -f -p 80 -h /var/www", timeout=120)
    return time_calls(lambda i: dockerd.docker("service", "update", "--detach=false",
                                               "--no-resolve-image", "--env-add", f"VERSION={i}",
                                               "web", timeout=300), n)


def main() -> int:
    n = runs_from_argv(__doc__, 3, "rolling updates per tool")
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    rows: list[tuple[str, list[float]]] = []
    notes: list[str] = []
    values: dict[str, float] = {}
    notes.append("swarm's side runs without the HTTP client: no IPVS here, so no routing mesh "
                 "to send requests through (PEERS.md); its failed requests are not counted")
    with peers.bench_dir("stackctl-bench-rolling-") as (tmp, st, dockerd), peers.host_snapshot():
        rootfs, tarball = peers.make_rootfs_tarball(tmp)
        st.import_rootfs(rootfs, "bench/bb:latest")
        try:
            samples, client = bench_stackctl(st, tmp, n)
            rows.append(("stackctl up (rolling update)", samples))
            values.update(stackctl_requests=client.ok + client.failed,
                          stackctl_failed_requests=client.failed)
            notes.append(f"stackctl: {client.ok} requests during the updates, "
                         f"{client.failed} failed" +
                         (f" (first: {client.errors[0]})" if client.errors else ""))
        except RuntimeError as exc:
            notes.append(f"stackctl: failed: {exc}")
        finally:
            st.cli("down", "-v", "-p", "benchroll", check=False, timeout=120)
            st.stop()
        if peers.have("dockerd", peers.DOCKER):
            try:
                rows.append(("docker service update (swarm)", bench_swarm(dockerd, tarball, n)))
            except RuntimeError as exc:
                notes.append(f"swarm: failed: {exc}")
            finally:
                dockerd.stop()
        else:
            notes.append(f"swarm: {peers.INSTALL_HINT}")
    print(f"rolling update of 3 replicas (parallelism 1, monitor 1s, start-first), "
          f"{n} updates each")
    if rows:
        print_table(rows, baseline="docker service update (swarm)")
    for note in notes[1:]:
        print(note)
    write(_timing.JSON_PATH, Result("rolling_update", [group_of(
        "rolling update of 3 replicas", "s", rows)], values=values, notes=notes))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
