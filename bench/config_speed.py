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

The runs alternate (stackctl, docker-compose, stackctl, ...) so that a neighbour's load on
this shared machine falls on both alike; each run's wall clock and CPU time (user + system,
from wait4) are kept. The stackctl measured is the command pip installed beside this Python
(the fast launcher after scripts/setup), as a user runs it with that directory on PATH; a
version manager's shim found first on PATH (pyenv's: bash, ~130 ms) is named in the output
but not measured (docs/spec-loading.md, "Speed").

Also printed: where stackctl's time goes for the 400-service file, in one process (imports,
YAML, the rest of loading, validation), so a regression shows its place.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import print_table  # noqa: E402
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


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``argv`` (an absolute path), its output
    discarded; RuntimeError with its stderr when it fails."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, err.fileno(), 2)])
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)} failed: {err.read().decode()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def interleaved(commands: list[list[str]], runs: int, warmup: int = 2
                ) -> list[tuple[list[float], list[float]]]:
    """(wall samples, CPU samples) in seconds per command, the commands run in turns."""
    out: list[tuple[list[float], list[float]]] = [([], []) for _ in commands]
    for i in range(warmup + runs):
        for argv, (walls, cpus) in zip(commands, out):
            wall, cpu = run_once(argv)
            if i >= warmup:
                walls.append(wall)
                cpus.append(cpu)
    return out


def breakdown(path: str) -> str:
    """Where one in-process load of ``path`` spends its time (a fresh interpreter)."""
    code = f"""
import gc, time
gc.disable()  # as config's fast path runs
t0 = time.perf_counter()
from stackctl.spec.yamlimport import import_yaml
import_yaml()
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
print(f"imports: yaml {{(t1-t0)*1e3:.0f}} ms, stackctl.spec {{(t2-t1)*1e3:.0f}} ms; "
      f"YAML parse {{(t3-t2)*1e3:.0f}} ms; load (parse, interpolate, merge) "
      f"{{(t4-t3)*1e3:.0f}} ms; validate and normalize {{(t5-t4)*1e3:.0f}} ms")
"""
    out = subprocess.run([sys.executable, "-I", "-S", "-c",
                          f"import sys; sys.path += {[ROOT] + [p for p in sys.path if p]!r}\n" + code],
                         cwd=ROOT, capture_output=True, text=True)
    return (out.stdout or out.stderr).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
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
    on_path = shutil.which("stackctl")
    print(f"measuring {stackctl}" + ("" if on_path in (None, stackctl) else
                                      f" (`stackctl` on PATH is {on_path}, not measured)"))
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
            commands = [[stackctl, "config", "-q", "-f", path]]
            if peer:
                commands.append([peer, "-f", path, "config", "-q"])
            samples = interleaved(commands, args.runs)
            rows = [(f"stackctl config -q ({count} services)", samples[0][0])]
            values[f"stackctl_cpu_ms_{count}_services"] = ours = \
                statistics.median(samples[0][1]) * 1000
            cpu = f"CPU (user+sys) median: stackctl {ours:.0f} ms"
            if peer:
                rows.append((f"docker-compose config -q ({count} services)", samples[1][0]))
                ratios.append((count, statistics.median(rows[0][1]) /
                               statistics.median(rows[1][1])))
                values[f"docker-compose_cpu_ms_{count}_services"] = theirs = \
                    statistics.median(samples[1][1]) * 1000
                cpu += f", docker-compose {theirs:.0f} ms"
            print_table(rows, baseline=rows[-1][0] if peer else None)
            groups.append(group_of(f"config, {count} services", "ms", rows, scale=1000))
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
