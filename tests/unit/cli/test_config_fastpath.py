"""``stackctl config`` without click (stackctl/cli/config_fast.py): which command lines the
fast path takes, and that it prints what the click command prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stackctl.cli.config_fast import parse_fast_args

STACK = """services:
  web:
    image: nginx
    ports: ["8080:80"]
  db:
    image: postgres
    profiles: [debug]
volumes:
  data: {}
"""


def test_plain_forms_are_parsed():
    o = parse_fast_args(["-q", "-f", "a.yml", "--file", "b.yml", "-p", "shop",
                         "--profile", "x", "--format", "json", "--services"])
    assert o == {"files": ["a.yml", "b.yml"], "profiles": ["x"], "env_files": [],
                 "fmt": "json", "quiet": True, "project_name": "shop", "services": True}


@pytest.mark.parametrize("args", [
    ["--help"], ["-h"], ["-qf", "a.yml"], ["--file=a.yml"], ["-f"], ["-f", "-"],
    ["--format", "toml"], ["-o", "out.yml"], ["extra"], ["--quiet", "--bogus"],
])
def test_anything_else_goes_to_click(args):
    assert parse_fast_args(args) is None


def _run(args, cwd):
    code = "import sys; from stackctl.cli.main import main; sys.argv = ['stackctl'] + sys.argv[1:]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True)


@pytest.mark.parametrize("extra", [[], ["--format", "json"], ["--services"], ["--volumes"],
                                   ["--profiles"], ["--profile", "debug"], ["-q"]])
def test_same_output_as_click(tmp_path, extra):
    (tmp_path / "stack.yml").write_text(STACK)
    fast = _run(["config", "-f", "stack.yml", "-p", "shop", *extra], tmp_path)
    # `--project-name=shop` is not a fast form: the same command through click
    slow = _run(["config", "-f", "stack.yml", "--project-name=shop", *extra], tmp_path)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout,
                                                           slow.stderr)
    assert fast.returncode == 0


def test_errors_as_click_gives_them(tmp_path):
    (tmp_path / "stack.yml").write_text("services:\n  web:\n    image: 5\n    ports: [x]\n")
    fast = _run(["config", "-q", "-f", "stack.yml"], tmp_path)
    slow = _run(["config", "-q", "--file=stack.yml"], tmp_path)
    assert fast.returncode == slow.returncode == 2
    assert fast.stderr == slow.stderr and "stack.yml:4" in fast.stderr
    missing = _run(["config", "-f", "nope.yml"], tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")


def test_fast_path_does_not_import_click(tmp_path):
    (tmp_path / "stack.yml").write_text(STACK)
    code = ("import sys; from stackctl.cli.main import main\n"
            "sys.argv = ['stackctl', 'config', '-q', '-f', 'stack.yml']\n"
            "try:\n    main()\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\n    print('click' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.stdout.strip() == "False", out.stderr


# the start of `config -q` imports none of these (issue 14's speed target: each one costs
# milliseconds of every stack verb's start; see docs/spec-loading.md, "Speed")
ROOT = str(Path(__file__).resolve().parents[3])  # the checkout (not the cwd)
HEAVY = ("click", "rich", "networkx", "trio", "pydantic", "dataclasses", "inspect", "ast",
         "decimal", "json", "difflib", "ipaddress", "asyncio", "stackctl.runtime.security")


def test_quiet_start_imports_nothing_heavy(tmp_path):
    (tmp_path / "stack.yml").write_text(
        "services:\n  web:\n    image: nginx\n    ports: ['8080:80']\n"
        "    healthcheck: {test: [CMD, 'true'], interval: 1m30.5s}\n"
        "    deploy: {resources: {limits: {memory: 64M, cpus: '0.5'}}}\n")
    # -I -S as the launcher starts (site's .pth files import pathlib and more)
    code = (f"import sys; sys.path += {[ROOT] + [p for p in sys.path if p]!r}\n"
            "from stackctl.cli.main import main\n"
            "sys.argv = ['stackctl', 'config', '-q', '-f', 'stack.yml']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
            "import yaml.reader; print(type(yaml.reader.Reader.NON_PRINTABLE).__name__)\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"STACKCTL_WARM": "0", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    imported, pattern = out.stdout.split("\n")[:2]
    assert imported == "[]"
    assert pattern == "LazyPattern"  # PyYAML's Unicode class was never compiled


def test_launcher_start_exits_with_the_status_and_output(tmp_path):
    """The launcher's quick exit (os._exit) still flushes what config printed."""
    (tmp_path / "stack.yml").write_text(STACK)
    (tmp_path / "bad.yml").write_text("services:\n  web:\n    image: x\n    ports: ['99999:80']\n")
    code = "import sys; sys.argv[0] = 'stackctl'; from stackctl.launcher import launch; launch()"
    env = {"STACKCTL_WARM": "0", "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-c", code, "config", "--services", "-f", "stack.yml"],
                        cwd=tmp_path, capture_output=True, text=True, env=env)
    assert (ok.returncode, ok.stdout) == (0, "web\n"), ok.stderr
    bad = subprocess.run([sys.executable, "-c", code, "config", "-q", "-f", "bad.yml"],
                         cwd=tmp_path, capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: bad.yml:4:13: services.web.ports[0]")
