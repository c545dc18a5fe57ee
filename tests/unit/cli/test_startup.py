"""The CLI must start fast: `stackctl --help` / `--version` import no heavy library.

Not a timed test (timings live in bench/cli_startup.py): it checks which modules the start-up
path imports, which is what makes it fast or slow.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["pydantic", "networkx", "rich", "trio", "asyncssh", "yaml", "pyroute2", "zstandard"]


def _modules_after(argv: list[str]) -> set[str]:
    code = (
        "import sys, json\n"
        "from stackctl.cli.main import main\n"
        f"sys.argv = ['stackctl'] + {argv!r}\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stderr.strip().splitlines()[-1]))


def test_version_imports_nothing_heavy():
    mods = _modules_after(["--version"])
    assert "click" in mods
    assert not [m for m in HEAVY if m in mods]


def test_help_imports_nothing_heavy():
    mods = _modules_after(["--help"])
    assert not [m for m in HEAVY if m in mods]


def test_version_output():
    out = subprocess.run([sys.executable, "-m", "stackctl", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("stackctl version ")


def test_unknown_command_is_usage_error():
    out = subprocess.run([sys.executable, "-m", "stackctl", "frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "No such command" in out.stderr
    assert "Traceback" not in out.stderr


def test_ctx_exit_code_reaches_the_shell():
    code = (
        "import click\n"
        "from stackctl.cli import main as m\n"
        "@click.command()\n"
        "@click.pass_context\n"
        "def t(ctx):\n"
        "    ctx.exit(3)\n"
        "m.cli.add_command(t, 'tt')\n"
        "m.main(['tt'])\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 3


def test_stackctl_error_is_one_line_without_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "stackctl", "config", "-f", str(tmp_path / "nope.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ")
    assert "nope.yml" in out.stderr
    assert "Traceback" not in out.stderr


def _main_raising(exc_expr: str) -> subprocess.CompletedProcess:
    code = (
        "import click, errno\n"
        "from stackctl.cli import main as m\n"
        "@click.command()\n"
        "def t():\n"
        f"    raise {exc_expr}\n"
        "m.cli.add_command(t, 'tt')\n"
        "m.main(['tt'])\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_disk_full_anywhere_is_one_clear_line():
    out = _main_raising("OSError(errno.ENOSPC, 'No space left on device', '/var/lib/stackctl/x')")
    assert out.returncode == 1
    assert out.stderr.startswith("error: no space left on device while writing /var/lib/stackctl/x")
    assert "Traceback" not in out.stderr


def test_unexpected_error_gets_a_traceback_and_a_bug_hint():
    out = _main_raising("ZeroDivisionError('boom')")
    assert out.returncode == 70
    assert "Traceback" in out.stderr and "ZeroDivisionError: boom" in out.stderr
    assert "this is a bug in stackctl" in out.stderr
