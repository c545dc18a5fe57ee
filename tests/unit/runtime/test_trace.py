"""stackctl.trace: off by default; STACKCTL_TRACE=1 reports to stderr at exit, a path collects
marks from every process."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PROG = "from stackctl.trace import mark\nmark('one')\nmark('two')\n"


def _run(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "STACKCTL_TRACE"}
    if value is not None:
        env["STACKCTL_TRACE"] = value
    return subprocess.run([sys.executable, "-c", PROG], env=env, cwd=ROOT, capture_output=True, text=True, check=True)


def test_off_by_default_prints_nothing():
    assert _run(None).stderr == ""
    assert _run("0").stderr == ""


def test_stderr_report_lists_marks_in_order():
    lines = _run("1").stderr.splitlines()
    assert [ln.split()[-1] for ln in lines] == ["one", "two"]
    assert all(ln.startswith("trace ") and " ms " in ln for ln in lines)


def test_file_collects_pid_and_mark(tmp_path):
    out = tmp_path / "trace"
    _run(str(out))
    rows = [ln.split(None, 2) for ln in out.read_text().splitlines()]
    assert [r[2] for r in rows] == ["one", "two"]
    assert int(rows[0][0]) <= int(rows[1][0]) and rows[0][1] == rows[1][1]


def test_monitor_boot_line_compiles():
    from stackctl.runtime.containers import api

    compile(api.MONITOR_BOOT, "<monitor>", "exec")
    assert "stackctl.runtime.containers.monitor" in api.MONITOR_BOOT
