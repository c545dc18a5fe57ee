"""Small helpers shared by the benchmarks: run a command N times, report median and p95."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence


JSON_PATH: str | None = None  # the ``--json FILE`` that runs_from_argv read, if any


def runs_from_argv(doc: str, default: int, help: str) -> int:
    """The ``-n`` of a benchmark's command line (its description: ``doc``'s first line); its
    ``--json FILE`` (the machine-readable result, bench/results.py) lands in ``JSON_PATH``."""
    global JSON_PATH
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("-n", type=int, default=default, help=help)
    ap.add_argument("--json", metavar="FILE", help="also write the samples as JSON (bench/results.py)")
    args = ap.parse_args()
    JSON_PATH = args.json
    return args.n


def time_calls(call: Callable[[int], object], runs: int) -> list[float]:
    """Wall-clock seconds of ``call(1)`` ... ``call(runs)``."""
    samples = []
    for i in range(1, runs + 1):
        t0 = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - t0)
    return samples


def time_command(argv: Sequence[str], runs: int, *, env: dict[str, str] | None = None,
                 warmup: int = 2, check: bool = True) -> list[float]:
    """Wall-clock seconds of each of ``runs`` executions of ``argv`` (after ``warmup`` runs)."""
    samples = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=env or os.environ.copy())
        dt = time.perf_counter() - t0
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
        if i >= warmup:
            samples.append(dt)
    return samples


def p95(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def print_table(rows: list[tuple[str, list[float]]], *, baseline: str | None = None) -> None:
    """Print median / p95 in ms per row, with the ratio of medians against ``baseline`` (no
    ratio column when no row is named ``baseline``)."""
    base = None
    if baseline is not None:
        for name, samples in rows:
            if name == baseline:
                base = statistics.median(samples)
    width = max(len(name) for name, _ in rows)
    head = f"{'command':<{width}}  {'median ms':>10}  {'p95 ms':>8}  {'runs':>4}"
    if base:
        head += f"  {'vs ' + baseline:>14}"
    print(head)
    for name, samples in rows:
        med = statistics.median(samples)
        line = f"{name:<{width}}  {med * 1000:>10.1f}  {p95(samples) * 1000:>8.1f}  {len(samples):>4}"
        if base:
            line += f"  {med / base:>13.2f}x"
        print(line)
