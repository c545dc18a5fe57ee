"""Bad input to the container CLI, as root: one clear line and Docker's exit codes, never a
traceback, and no exit code lost (issue 9 items 6 and 9).

Exit codes: a value refused before the container exists is 125 (Docker's run/create); a command
that cannot be executed once the container started is 126 (127: not found), with the exec's
error on stderr — also with ``--rm`` and attached, where the monitor reports it on the attach
socket (an "error" frame)."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.root

IMG = "bb:latest"


def _import(node_paths, busybox_rootfs) -> None:
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore

    import_rootfs(ImageStore(node_paths.images), busybox_rootfs, IMG, changes=['CMD ["sh"]'])


@pytest.fixture
def cli(node_cli, node_paths, busybox_rootfs):
    _import(node_paths, busybox_rootfs)
    return node_cli


@pytest.fixture
def cli_both(node_cli_both, node_paths, busybox_rootfs):
    """Cold, and through the warm server (docs/warm.md)."""
    _import(node_paths, busybox_rootfs)
    return node_cli_both


def _one_error(p, code: int) -> str:
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == code, (p.returncode, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.parametrize("args,words", [
    (["-p", "-1:80"], "invalid port spec"),
    (["-p", "٨٠:80"], "invalid port spec"),
    (["--cpus", "1000"], "range of CPUs is from 0.01 to"),
    (["--cpus", "nan"], "invalid --cpus"),
    (["--dns", "notanip"], "not an IP address"),
    (["-m", "10m", "--memory-reservation", "20m"], "memory reservation"),
    (["--expose", "99999"], "ports are 1 to 65535"),
    (["-v", "data:/"], "can't be '/'"),
    (["--ulimit", "nofile=١٠"], "invalid ulimit"),
], ids=["publish-negative", "publish-arabic-digits", "cpus-1000", "cpus-nan", "dns", "reservation",
        "expose", "volume-on-root", "ulimit-digits"])
def test_refused_values_are_one_line_and_125(cli, args, words):
    p = cli("run", "--rm", *args, IMG, "true")
    assert words in _one_error(p, 125)
    assert cli("ps", "-aq").stdout.strip() == ""


def _env_file(tmp_path, name: str, count: int, size: int) -> str:
    path = tmp_path / name
    path.write_text("".join(f"V{i}={'a' * size}\n" for i in range(count)))
    return str(path)


def test_one_variable_over_128k_is_refused_naming_it(cli, tmp_path):
    env = _env_file(tmp_path, "big.env", 1, 140_000)
    for extra in (["--rm"], [], ["-d"]):
        p = cli("run", *extra, "--env-file", env, IMG, "true")
        line = _one_error(p, 125)
        assert "V0" in line and "131072" in line


@pytest.mark.parametrize("extra", [["--rm"], [], ["-d"]], ids=["rm", "attached", "detached"])
def test_exec_failure_after_start_is_reported_with_126(cli_both, tmp_path, extra):
    # each variable is under the per-string limit, together they pass ARG_MAX: execve's E2BIG
    env = _env_file(tmp_path, "many.env", 20, 120_000)
    p = cli_both("run", *extra, "--env-file", env, IMG, "true")
    assert "argument list too long" in _one_error(p, 126)


def test_image_save_to_a_directory_is_one_line(cli, tmp_path):
    out = tmp_path / "dir"
    out.mkdir()
    p = cli("image", "save", "-o", str(out), IMG)
    assert "is a directory" in _one_error(p, 1)
    assert os.listdir(out) == [] and not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    p = cli("image", "save", "-o", str(tmp_path / "missing" / "x.tar"), IMG)
    assert "does not exist" in _one_error(p, 1)
