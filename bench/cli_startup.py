#!/usr/bin/env python3
"""How long the stackctl CLI takes to start, next to its peers, in one run.

    python3 bench/cli_startup.py [--runs N]

Measures `stackctl --version`, `stackctl --help` and `stackctl config -q` of the main example,
and where installed `docker-compose config -q` (Compose v1, also Python) and `docker --version`
on the same machine in the same process, so machine noise cancels. Target (issue 2): `--help`
and `--version` well under 150 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import print_table, time_command  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "stacks", "webapp", "stack.yml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()

    stackctl = shutil.which("stackctl") or sys.exit("stackctl is not installed: run scripts/setup")
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
    print_table(rows, baseline="stackctl --version")


if __name__ == "__main__":
    main()
