#!/usr/bin/env python3
"""Run stackctl's loader over the Compose files of a compose-go checkout (or any directory).

    python3 tests/unit/spec/compose_go_examples.py DIR [--expect FILE] [--env K=V ...]

compose-go (https://github.com/compose-spec/compose-go, Apache-2.0) publishes its loader's
example and test files under ``loader/`` (``full-example.yml``, ``loader/testdata/...``).
They are not copied into this repository and cannot be fetched by the tests (no network):
check compose-go out yourself and point this script at ``loader`` (or any directory).

Every ``*.yml`` / ``*.yaml`` below DIR is loaded as its own project (the file alone, its
directory as the project directory), and one line is printed per file:

    ok       FILE  (N services, W warnings)
    refused  FILE  first error line
    CRASH    FILE  ExceptionType: message      <- a bug: never a traceback for bad input

``--expect FILE`` reads lines ``valid PATH`` / ``invalid PATH`` (PATH relative to DIR; ``#``
comments) and reports every file whose outcome differs. The exit status is 1 when a file
crashed or an expectation was not met, else 0. Note that compose-go's own tests load some
examples with ``SkipConsistencyCheck`` (``full-example.yml`` uses undefined networks and
``network_mode`` with ``networks``): stackctl applies the consistency checks always, as
``docker compose config`` does, so those examples are refused here, and rightly.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.path.insert(0, ROOT)

from stackctl.errors import StackctlError  # noqa: E402
from stackctl.spec.load import LoadOptions, load_project  # noqa: E402


def compose_files(top: str) -> list[str]:
    out = []
    for base, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            if name.endswith((".yml", ".yaml")):
                out.append(os.path.join(base, name))
    return out


def load_one(path: str, environ: dict[str, str]) -> tuple[str, str]:
    """``(outcome, detail)``: outcome is ok, refused or CRASH."""
    opts = LoadOptions(files=[path], environ=environ, cwd=os.path.dirname(path))
    try:
        project = load_project(opts)
    except StackctlError as exc:
        return "refused", str(exc).splitlines()[0]
    except Exception as exc:  # noqa: BLE001 - a crash is what this script looks for
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return "CRASH", (f"{type(exc).__name__}: {exc} "
                         f"({os.path.relpath(frame.filename, ROOT)}:{frame.lineno})")
    return "ok", (f"({len(project.stack.services)} services, "
                  f"{len(project.warnings)} warnings)")


def read_expectations(path: str) -> dict[str, str]:
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if line:
                verdict, _, name = line.partition(" ")
                out[name.strip()] = verdict
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--expect", help="lines 'valid PATH' / 'invalid PATH'")
    ap.add_argument("--env", action="append", default=[], metavar="K=V",
                    help="a variable of the environment the files see (repeatable)")
    args = ap.parse_args()
    environ = {"HOME": os.environ.get("HOME", "/root")}
    environ.update(item.split("=", 1) for item in args.env if "=" in item)
    expected = read_expectations(args.expect) if args.expect else {}
    failures = 0
    counts: dict[str, int] = {}
    for path in compose_files(os.path.abspath(args.dir)):
        rel = os.path.relpath(path, os.path.abspath(args.dir))
        outcome, detail = load_one(path, dict(environ))
        counts[outcome] = counts.get(outcome, 0) + 1
        note = ""
        want = expected.get(rel)
        if want and (want == "valid") != (outcome == "ok"):
            note = f"  <- expected {want}"
            failures += 1
        if outcome == "CRASH":
            failures += 1
        print(f"{outcome:8} {rel}  {detail}{note}")
    print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no Compose files found")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
