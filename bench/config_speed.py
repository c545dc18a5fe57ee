#!/usr/bin/env python3
"""How long `stackctl config -q` takes on a 3-service and a 400-service stack, next to the peer.

    python3 bench/config_speed.py [--runs N] [--services N]

Every stack verb (and the agent, for each deployment) loads the stack file first, so this is
the floor of `up`, `plan`, `ps -f`... Issue 14's targets: <= 100 ms for 3 services and <= 1 s
for 400 services on the project's test machine. The peer is `docker-compose config -q`
(Debian's docker-compose v1, also Python; `apt-get install docker-compose`); without it the
table names the missing peer and still measures stackctl. Both get the same generated files
(image, command, ports, environment, volumes, a health check, deploy limits, depends_on,
networks), written to a temporary directory that is removed afterwards.

Also printed: where stackctl's time goes for the 400-service file, in one process (imports,
YAML, the rest of loading, validation), so a regression shows its place.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import print_table, time_command  # noqa: E402
from results import Result, group_of  # noqa: E402
from results import write as write_result  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stack_text(services: int) -> str:
    """A stack of ``services`` services (each depends on the one before)."""
    lines = ["version: '3.8'", "services:"]
    for i in range(services):
        lines += [
            f"  svc{i}:",
            "    image: busybox:latest",
            '    command: ["sh", "-c", "sleep 1000"]',
            f'    ports: ["{10000 + i}:80"]',
            "    environment:",
            "      MODE: production",
            f'      INDEX: "{i}"',
            '    volumes: ["data:/data", "./conf:/conf:ro"]',
            "    healthcheck:",
            '      test: ["CMD", "true"]',
            "      interval: 5s",
            "    deploy:",
            "      replicas: 2",
            "      resources: {limits: {memory: 64M, cpus: '0.5'}}",
            "    networks: [front]",
        ]
        if i:
            lines.append(f"    depends_on: [svc{i - 1}]")
    lines += ["networks:", "  front: {}", "volumes:", "  data: {}"]
    return "\n".join(lines) + "\n"


def cpu_ms(argv: list[str], runs: int) -> float:
    """Median CPU time (user + system, ms) of ``argv``: on a machine shared with other work
    the wall clock says more about the neighbours than about the command."""
    samples = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                       * 1000)
    return statistics.median(samples)


def breakdown(path: str) -> str:
    """Where one in-process load of ``path`` spends its time (a fresh interpreter)."""
    code = f"""
import time
t0 = time.perf_counter()
import click, yaml
t1 = time.perf_counter()
from stackctl.spec.load import LoadOptions, load_raw
from stackctl.spec.validate import build_stack
from stackctl.spec import yamlpos
t2 = time.perf_counter()
text = open({path!r}).read()
yamlpos.load_yaml_documents(text, "s.yml")
t3 = time.perf_counter()
raw = load_raw(LoadOptions(files=[{path!r}], environ={{}}))
t4 = time.perf_counter()
build_stack(raw.raw, project_name=raw.name, project_dir=raw.directory, environ={{}},
            profiles=[])
t5 = time.perf_counter()
print(f"imports: click+yaml {{(t1-t0)*1e3:.0f}} ms, stackctl.spec {{(t2-t1)*1e3:.0f}} ms; "
      f"YAML parse {{(t3-t2)*1e3:.0f}} ms; load (parse, interpolate, merge) "
      f"{{(t4-t3)*1e3:.0f}} ms; validate and normalize {{(t5-t4)*1e3:.0f}} ms")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    return (out.stdout or out.stderr).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--services", type=int, default=400, help="size of the large stack")
    ap.add_argument("--json", metavar="FILE", help="also write the samples as JSON (bench/results.py)")
    args = ap.parse_args()
    groups, values = [], {}

    # the stackctl installed beside this Python (a version manager's shim on PATH would add
    # its own start-up to every run), else the one on PATH
    beside = os.path.join(os.path.dirname(sys.executable), "stackctl")
    stackctl = beside if os.access(beside, os.X_OK) else shutil.which("stackctl")
    if not stackctl:
        sys.exit("stackctl is not installed: run scripts/setup")
    peer = shutil.which("docker-compose")
    tmp = tempfile.mkdtemp(prefix="stackctl-bench-config-")
    try:
        os.mkdir(os.path.join(tmp, "conf"))
        files = {}
        for count in (3, args.services):
            path = os.path.join(tmp, f"stack{count}.yml")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(stack_text(count))
            files[count] = path
        ratios = []
        for count, path in files.items():
            rows = [(f"stackctl config -q ({count} services)",
                     time_command([stackctl, "config", "-q", "-f", path], args.runs))]
            if peer:
                rows.append((f"docker-compose config -q ({count} services)",
                             time_command([peer, "-f", path, "config", "-q"], args.runs)))
                ratios.append((count, statistics.median(rows[0][1]) /
                               statistics.median(rows[1][1])))
            print_table(rows, baseline=rows[-1][0] if peer else None)
            groups.append(group_of(f"config, {count} services", "ms", rows, scale=1000))
            values[f"stackctl_cpu_ms_{count}_services"] = ours = cpu_ms(
                [stackctl, 'config', '-q', '-f', path], args.runs)
            cpu = f"CPU (user+sys) median: stackctl {ours:.0f} ms"
            if peer:
                values[f"docker-compose_cpu_ms_{count}_services"] = theirs = cpu_ms(
                    [peer, '-f', path, 'config', '-q'], args.runs)
                cpu += f", docker-compose {theirs:.0f} ms"
            print(cpu)
            print()
        if not peer:
            print("peer docker-compose: not installed (apt-get install docker-compose); "
                  "stackctl measured alone")
        for count, ratio in ratios:
            print(f"stackctl / docker-compose, {count} services: {ratio:.2f}x")
        print(f"stackctl, {args.services} services, in one process: "
              f"{breakdown(files[args.services])}")
        notes = [] if peer else ["docker-compose: not installed (apt-get install docker-compose)"]
        write_result(args.json, Result("config_speed", groups, values=values, notes=notes))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
