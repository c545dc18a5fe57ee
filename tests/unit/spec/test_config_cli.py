"""``stackctl config``: output, listing flags, -q, warnings and errors (exit 2, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stackctl.cli.main import cli

REPO = Path(__file__).resolve().parents[3]
GOOD = """\
services:
  web:
    image: stackctl/busybox:latest
    ports: ["${PORT:-8080}:80"]
    volumes: [data:/data]
    devices: [/dev/null]
  dbg:
    image: x
    profiles: [debug]
volumes:
  data:
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "stack.yml").write_text(GOOD)
    return tmp_path


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stackctl", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def test_prints_normalized_yaml(project: Path):
    result = run(["config", "-f", "stack.yml", "-p", "demo"], project)
    assert result.returncode == 0, result.stderr
    assert "name: demo\n" in result.stdout
    assert "published: '8080'" in result.stdout
    assert "warning: stack.yml:6:5: services.web.devices: not supported by stackctl yet" \
        in result.stderr


def test_json_and_listing_flags(project: Path):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=project):
        path = str(project / "stack.yml")
        out = runner.invoke(cli, ["config", "-f", path, "--format", "json"])
        assert out.exit_code == 0, out.output
        data = json.loads(out.stdout)
        assert data["volumes"]["data"]["name"].endswith("_data")
        assert runner.invoke(cli, ["config", "-f", path, "--services"]).stdout == "web\n"
        assert runner.invoke(cli, ["config", "-f", path, "--services",
                                   "--profile", "debug"]).stdout == "dbg\nweb\n"
        assert runner.invoke(cli, ["config", "-f", path, "--volumes"]).stdout == "data\n"
        assert runner.invoke(cli, ["config", "-f", path, "--networks"]).stdout == "default\n"
        assert runner.invoke(cli, ["config", "-f", path, "--profiles"]).stdout == "debug\n"


def test_output_file(project: Path):
    result = run(["config", "-o", "out.yml"], project)
    assert result.returncode == 0 and result.stdout == ""
    assert "services:" in (project / "out.yml").read_text()


def test_quiet_valid_file(project: Path):
    (project / "ok.yml").write_text("services:\n  web:\n    image: x\n")
    result = run(["config", "-q", "-f", "ok.yml"], project)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_invalid_file_exits_2_without_traceback(project: Path):
    (project / "bad.yml").write_text("services:\n  web:\n    imgae: x\n    image: x\n"
                                     "    deploy: {replicas: three}\n")
    result = run(["config", "-f", "bad.yml"], project)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        'error: bad.yml:3:5: services.web.imgae: unknown key; did you mean "image"?',
        'error: bad.yml:5:24: services.web.deploy.replicas: expected a non-negative integer, '
        'got "three"',
    ]


def test_bad_yaml_and_missing_file(project: Path):
    (project / "broken.yml").write_text("services:\n  web: [\n")
    result = run(["config", "-f", "broken.yml"], project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = run(["config", "-f", "nope.yml"], project)
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_help():
    out = CliRunner().invoke(cli, ["config", "--help"])
    assert out.exit_code == 0 and "--profile" in out.output and "--format" in out.output


def test_up_refuses_what_config_only_warns_of(tmp_path: Path):
    """A driver stackctl does not implement: `config` loads the file with a warning, `up`
    stops with one located line per problem before it contacts any agent."""
    (tmp_path / "stack.yml").write_text(
        "services:\n  web: {image: x, networks: [lan]}\n"
        "networks:\n  lan: {driver: macvlan}\n")
    config = run(["config", "-q", "-f", "stack.yml"], tmp_path)
    assert config.returncode == 0, config.stderr
    up = subprocess.run([sys.executable, "-m", "stackctl", "up", "-d", "-f", "stack.yml"],
                        cwd=tmp_path, capture_output=True, text=True, timeout=60,
                        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                             "STACKCTL_STATE_DIR": str(tmp_path / "state"),
                             "STACKCTL_RUN_DIR": str(tmp_path / "run")})
    assert up.returncode == 2
    assert ("error: stack.yml:4:17: networks.lan.driver: network driver macvlan is not "
            "supported by stackctl (bridge and overlay are)") in up.stderr
    assert "Traceback" not in up.stderr
    assert not (tmp_path / "run").exists()  # no agent was started
