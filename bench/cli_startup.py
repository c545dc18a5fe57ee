#!/usr/bin/env python3
"""How long the stackctl CLI takes to start, next to its peers, in one run.

    python3 bench/cli_startup.py [--runs N]

Measures `stackctl --version`, `stackctl --help` and `stackctl config -q` of the main example,
and where installed `docker-compose config -q` (Compose v1, also Python) and `docker --version`
on the same machine in the same process, so machine noise cancels. Target (issue 2): `--help`
and `--version` well under 150 ms. As root it also times `stackctl ps -a` on a private node,
cold and with that node's agent up (the warm server takes the command: docs/warm.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import print_table, time_command  # noqa: E402
from results import Result, group_of  # noqa: E402
from results import write as write_result  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "stacks", "webapp", "stack.yml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", metavar="FILE", help="also write the samples as JSON (bench/results.py)")
    args = ap.parse_args()

    # the stackctl installed beside this Python (the launcher), not a version manager's shim
    # that PATH may find first (pyenv's: ~130 ms of bash; docs/spec-loading.md, "Speed")
    beside = os.path.join(os.path.dirname(sys.executable), "stackctl")
    stackctl = beside if os.access(beside, os.X_OK) else shutil.which("stackctl")
    if not stackctl:
        sys.exit("stackctl is not installed: run scripts/setup")
    rows = [("python3 -c pass (floor)", time_command([sys.executable, "-c", "pass"], args.runs))]
    rows.append(("stackctl --version", time_command([stackctl, "--version"], args.runs)))
    rows.append(("stackctl --help", time_command([stackctl, "--help"], args.runs)))
    if os.path.exists(EXAMPLE):
        rows.append(("stackctl config -q (webapp)",
                     time_command([stackctl, "config", "-q", "-f", EXAMPLE], args.runs)))
    peer = shutil.which("docker-compose")
    if peer and os.path.exists(EXAMPLE):
        env = dict(os.environ, DB_PASSWORD=os.environ.get("DB_PASSWORD", "x"))
        rows.append(("docker-compose config -q (webapp)",
                     time_command([peer, "-f", EXAMPLE, "config", "-q"], args.runs, env=env, check=False)))
    docker = shutil.which("docker")
    if docker:
        rows.append(("docker --version", time_command([docker, "--version"], args.runs)))
    if os.geteuid() == 0:
        rows += ps_rows(stackctl, args.runs)
    print_table(rows, baseline="stackctl --version")
    write_result(args.json, Result("cli_startup", [group_of("CLI start", "ms", rows, scale=1000)]))


def ps_rows(stackctl: str, runs: int) -> list[tuple[str, list[float]]]:
    """`stackctl ps -a` on a private node (its own state, run dir and cgroup parent), cold and
    with its agent running; the agent is stopped and the node removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="stackctl-bench-cli-")
    parent = f"stackctl-bench-{os.getpid()}"
    env = dict(os.environ, STACKCTL_STATE_DIR=os.path.join(tmp, "state"),
               STACKCTL_RUN_DIR=os.path.join(tmp, "run"), STACKCTL_CGROUP_PARENT=parent)
    rows = []
    try:
        rows.append(("stackctl ps -a (cold)", time_command([stackctl, "ps", "-a"], runs, env=env)))
        subprocess.run([stackctl, "agent", "serve"], env=env, check=True, capture_output=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(tmp, "run", "warm.sock")):
            if time.monotonic() > deadline:
                raise RuntimeError("the agent's warm server did not start (see <state>/agent.log)")
            time.sleep(0.05)
        rows.append(("stackctl ps -a (agent up: warm)", time_command([stackctl, "ps", "-a"], runs, env=env)))
    finally:
        subprocess.run([stackctl, "agent", "stop"], env=env, capture_output=True)
        for ctrl in os.listdir("/sys/fs/cgroup"):  # the pool's cgroups go with the server
            top = os.path.join("/sys/fs/cgroup", ctrl, parent)
            for _ in range(100):
                try:
                    if os.path.isdir(top):
                        os.rmdir(top)
                    break
                except OSError:
                    time.sleep(0.02)
        netns = os.path.join(tmp, "run", "netns")
        if os.path.ismount(netns):
            subprocess.run(["umount", "-l", netns], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
