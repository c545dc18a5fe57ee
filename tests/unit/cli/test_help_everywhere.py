"""Every command's ``--help`` works (exit 0, a Usage line): walked from ``stackctl --help``'s
command list down through every group's subcommands; and ``stackctl --version``."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from click.testing import CliRunner

from stackctl import __version__
from stackctl.cli.main import cli

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GROUPS = {"image", "volume", "network", "container", "agent", "node"}


def _commands(help_text: str) -> list[str]:
    """The names listed under ``Commands:`` in a help text."""
    out, inside = [], False
    for line in help_text.splitlines():
        if line.strip() == "Commands:":
            inside = True
            continue
        if inside:
            if line and not line.startswith(" "):
                break
            m = re.match(r"^  (\S+)", line)
            if m:
                out.append(m.group(1))
    return out


def _help(args: list[str]) -> str:
    r = CliRunner().invoke(cli, [*args, "--help"], prog_name="stackctl")
    assert r.exit_code == 0, (args, r.exit_code, r.output, r.exception)
    assert r.output.startswith(f"Usage: stackctl {' '.join(args)}".rstrip()), (args, r.output[:200])
    return r.output


def test_every_command_and_subcommand_has_help():
    p = subprocess.run([sys.executable, "-m", "stackctl", "--help"], capture_output=True, text=True, check=False,
                       cwd=ROOT, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("Usage: stackctl"), p.stderr
    top = _commands(p.stdout)
    assert GROUPS <= set(top) and {"up", "down", "run", "ps", "logs", "exec"} <= set(top), top
    seen, todo = [], [[name] for name in top]
    while todo:
        args = todo.pop(0)
        text = _help(args)
        seen.append(" ".join(args))
        todo += [[*args, sub] for sub in _commands(text)]
    for group in GROUPS:
        assert [s for s in seen if s.startswith(group + " ")], (group, seen)
    assert "container ls" in seen and "image build" in seen and "agent serve" in seen


def test_version():
    for flag in ("--version", "-v"):
        p = subprocess.run([sys.executable, "-m", "stackctl", flag], capture_output=True, text=True, check=False,
                           cwd=ROOT, timeout=60)
        assert p.returncode == 0 and p.stdout == f"stackctl version {__version__}\n", (p.stdout, p.stderr)
