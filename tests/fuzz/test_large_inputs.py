"""Large and hostile stack files, through the real CLI in a subprocess with a memory limit
(RLIMIT_AS) and a timeout: each ends in a result or in one located error line, never in a
traceback, a MemoryError or a hang (issue 9 item 5, issue 14 "bounded work").

The 100,000-service file takes minutes of model validation here; it runs in the long fuzz run
only (``STACKCTL_FUZZ_LONG=1``, see docs/security.md).
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time

import pytest

LONG = os.environ.get("STACKCTL_FUZZ_LONG") == "1"
MiB = 1024 * 1024
LOCATED = re.compile(r"^error: \S+:\d+:\d+: ")


def _config(path: str, *, memory_mib: int, timeout: float) -> tuple[int, str, float]:
    """``stackctl config -q -f PATH`` with at most ``memory_mib`` of address space."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mib * MiB, memory_mib * MiB))

    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "stackctl", "config", "-q", "-f", path],
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                          cwd=os.path.dirname(path))
    return proc.returncode, proc.stderr, time.monotonic() - start


def _one_located_error(rc: int, err: str) -> str:
    assert "Traceback" not in err and "MemoryError" not in err, err[-2000:]
    assert rc == 2, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and LOCATED.match(lines[0]), err[-2000:]
    return lines[0]


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BOMBS = {
    # 9 levels of 9 aliases: 9**9 (387 million) values once expanded, from 342 bytes
    "billion-laughs": "".join(
        f"x-{name}: &{name} [" + ",".join([f"*{prev}"] * 9 if prev else ['"lol"'] * 9) + "]\n"
        for prev, name in zip([None, *"abcdefgh"], "abcdefghi")) + "services: {}\n",
    # merge keys doubling at every level: 2**30 keys merged
    "merge-keys": "x-a0: &a0 {k0: 1, k1: 2}\n" + "".join(
        f"x-a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], n{i}: {i}}}\n" for i in range(1, 30))
    + "services:\n  web:\n    image: busybox\n    labels: {<<: *a29}\n",
    "recursive-alias": "x-a: &a [1, *a]\nservices: {}\n",
    "nested-100000-flow": "x-a: " + "[" * 100_000 + "]" * 100_000 + "\nservices: {}\n",
    "nested-100000-block": "services:\n  web:\n    image: busybox\n    x-a: "
    + "- " * 100_000 + "x\n",
    "interpolation-5000": "services:\n  web:\n    image: '" + "${X:-" * 5000 + "x"
    + "}" * 5000 + "'\n",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_hostile_file_is_one_located_error_in_bounded_memory(tmp_path, name):
    path = _write(tmp_path, "stack.yml", BOMBS[name])
    rc, err, elapsed = _config(path, memory_mib=768, timeout=60)
    line = _one_located_error(rc, err)
    assert "stack.yml:" in line
    assert elapsed < 30  # ~0.3 s here; generous for a loaded CI machine


def test_file_larger_than_the_limit_is_refused(tmp_path):
    rc, err, _ = _config("/dev/zero", memory_mib=768, timeout=60)
    assert rc == 2 and "Traceback" not in err
    assert "larger than 64 MiB" in err


def test_50_mb_scalar_loads(tmp_path):
    path = _write(tmp_path, "stack.yml", "services:\n  web:\n    image: busybox\n"
                  "    command: \"" + "a" * (50 * 1000 * 1000) + "\"\n")
    rc, err, elapsed = _config(path, memory_mib=1536, timeout=120)
    assert rc == 0, err[-2000:]


def _services(n: int) -> str:
    return "services:\n" + "".join(
        f"  s{i}:\n    image: busybox\n    environment: {{A: '{i}'}}\n    ports: ['{1000 + i % 60000}:80']\n"
        for i in range(n))


def test_10000_services_load(tmp_path):
    path = _write(tmp_path, "stack.yml", _services(10_000))
    rc, err, elapsed = _config(path, memory_mib=1536, timeout=300)
    assert rc == 0, err[-2000:]


@pytest.mark.skipif(not LONG, reason="minutes of model validation: STACKCTL_FUZZ_LONG=1")
def test_100000_services_give_a_result(tmp_path):
    path = _write(tmp_path, "stack.yml", _services(100_000))
    rc, err, _ = _config(path, memory_mib=3072, timeout=1200)
    assert "Traceback" not in err and rc in (0, 2), err[-2000:]


def test_env_file_of_200000_lines_is_linear():
    """Positions were counted from the start of the file for every line (quadratic: ~100 s
    for this file here); now a second or two."""
    from fuzz_settings import bounded
    from stackctl.spec.envfile import parse_env_file

    with bounded(60):
        assert len(parse_env_file("".join(f"A{i}=1\n" for i in range(200_000)), ".env")) == 200_000
    with bounded(60):
        parse_env_file("1=1\n" * 100_000, ".env")
