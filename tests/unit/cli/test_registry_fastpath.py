"""`stackctl pull|push` without click: which command lines the fast path takes (pure), and
that it imports no click while doing the same as the click command (a refused reference:
the same one line and exit status either way; no registry needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stackctl.cli.registry_fast import parse_fast_args


@pytest.mark.parametrize("verb,args,want", [
    ("pull", ["app:1"], {"quiet": False, "platform": "", "name": "app:1"}),
    ("pull", ["-q", "--platform", "linux/arm64", "h:5000/a@sha256:" + "0" * 64],
     {"quiet": True, "platform": "linux/arm64", "name": "h:5000/a@sha256:" + "0" * 64}),
    ("pull", ["--platform=linux/arm64", "--quiet", "app"], {"quiet": True, "platform": "linux/arm64", "name": "app"}),
    ("pull", ["--disable-content-trust", "app"], {"quiet": False, "platform": "", "name": "app"}),
    ("push", ["-q", "127.0.0.1:5000/app:1"], {"quiet": True, "name": "127.0.0.1:5000/app:1"}),
])
def test_plain_command_lines_take_the_fast_path(verb, args, want):
    assert parse_fast_args(verb, args) == want


@pytest.mark.parametrize("verb,args", [
    ("pull", []), ("pull", ["a", "b"]), ("pull", ["--help"]), ("pull", ["-a", "app"]),
    ("pull", ["--all-tags", "app"]), ("pull", ["--platform"]), ("pull", ["-f", "stack.yml"]),
    ("pull", ["-p", "proj", "web"]), ("pull", ["-q=1", "app"]), ("push", ["--platform", "x", "app"]),
    ("push", ["-a", "app"]), ("login", ["app"]),
])
def test_anything_else_goes_to_click(verb, args):
    assert parse_fast_args(verb, args) is None


def _run(argv: list[str], tmp_path) -> tuple[int, str, str, list[str]]:
    code = (
        "import sys, json\n"
        "from stackctl.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as e:\n"
        "    rc = e.code\n"
        "print('MODULES' + json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    env = dict(os.environ, STACKCTL_STATE_DIR=str(tmp_path / "state"), STACKCTL_RUN_DIR=str(tmp_path / "run"),
               STACKCTL_WARM="0")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lines = p.stderr.splitlines()
    mods = json.loads(lines[-1].removeprefix("MODULES"))
    return p.returncode, p.stdout, "\n".join(lines[:-1]), mods


def test_fast_and_click_paths_agree_without_click_on_the_fast_one(tmp_path):
    # an invalid reference fails before any network: the same line both ways
    fast = _run(["pull", "-q", "UPPER/Case:1"], tmp_path)
    slow = _run(["pull", "-q", "--all-tags", "UPPER/Case"], tmp_path)  # -a: click parses it
    assert "click" not in fast[3] and "click" in slow[3]
    assert fast[0] == slow[0] != 0
    assert fast[2].startswith("error: ") and "UPPER/Case" in fast[2] and "Traceback" not in fast[2]
    assert slow[2].startswith("error: ") and "UPPER/Case" in slow[2]
    push = _run(["push", "-q", "127.0.0.1:1/nothing-here:1"], tmp_path)  # no such local image
    assert push[0] != 0 and push[2].startswith("error: ") and "click" not in push[3]
