"""The click-free parser of ``stackctl run`` (stackctl/cli/run_cmd.py) agrees with click."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stackctl.cli.run_cmd import RUN_OPTIONS, parse_run_args

_STACK_PARAMS = {"stack_files", "stack_project", "stack_profiles", "stack_project_dir",
                 "stack_nodes"}


def click_parse(args: list[str]):
    from stackctl.cli.stack_scoped import run

    ctx = run.make_context("run", list(args))
    params = dict(ctx.params)
    for k in _STACK_PARAMS:
        params.pop(k)
    return params.pop("image"), params.pop("command"), params


AGREE = [
    ["bb", "true"],
    ["--rm", "bb", "true"],
    ["--rm", "-it", "bb", "sh"],
    ["-dit", "--name", "x", "bb"],
    ["-e", "A=1", "-eB=2", "--env=C=3", "-v", "/a:/b", "-l", "k=v", "bb", "echo", "-e", "--rm"],
    ["--memory", "32m", "--cpus", "0.5", "--pids-limit", "-1", "--stop-timeout", "3", "bb"],
    ["--network=host", "--no-sig-proxy", "-p", "8080:80", "-P", "--", "bb", "--", "x"],
    ["-h", "myhost", "-u", "1000:1000", "-w", "/tmp", "--entrypoint", "", "bb"],
    ["--read-only", "--privileged", "--init", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "-"],
    ["-ie", "X=1", "bb"],
]


@pytest.mark.parametrize("args", AGREE)
def test_fast_parser_agrees_with_click(args):
    assert parse_run_args(args) == click_parse(args)


@pytest.mark.parametrize("args", [
    [], ["--rm"], ["--help"], ["--nope", "bb"], ["-Z", "bb"], ["--rm=yes", "bb"],
    ["--cpus", "lots", "bb"], ["--pids-limit", "1.5", "bb"], ["--env-file", "f", "bb"],
    ["--file", "stack.yml", "web"], ["--project-name", "p", "web"], ["--name"],
])
def test_anything_unusual_is_left_to_click(args):
    assert parse_run_args(args) is None


def test_every_option_of_the_table_is_clicks():
    from stackctl.cli.container_cmd import run

    names = {p.name for p in run.params}
    defaults = parse_run_args(["bb"])[2]
    assert set(defaults) == names - {"image", "command"}
    assert len(RUN_OPTIONS) == len(names) - 4  # image, command, detach, sig_proxy


def test_plain_run_does_not_import_click():
    code = ("import sys; from stackctl.cli import run_cmd; run_cmd.parse_run_args(['--rm', 'bb', 'true']);"
            "import stackctl.cli.main; print('click' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
