"""The conformance corpus: one YAML per case in ``conformance/``, each a small project
(files written to a temporary directory) and what Compose (compose-go; docker/cli for the
Swarm keys) does with it — load it and print these values, or refuse it with these errors.

A case::

    about: what it checks, and where the behaviour comes from
    files: {stack.yml: "...", other.yml: "..."}   # the project's files
    args: [stack.yml, override.yml]                # -f order (default: [stack.yml])
    env: {VAR: value}                              # the process environment
    valid: true | false
    values: {services.web.ports.0.published: "8080"}   # dotted paths into `config --format json`
                                                   # ("{root}" is the project directory)
    absent: [services.web.labels.b]                # paths that must not exist
    errors: ["substring", ...]                     # invalid: each in some error line
    warnings: ["substring", ...]                   # each in some warning line
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stackctl.errors import SpecError
from stackctl.spec.dump import stack_data
from stackctl.spec.load import LoadOptions, load_project

CASES = sorted((Path(__file__).parent / "conformance").glob("*.yml"))
_MISSING = object()


def _rooted(value: Any, root: str) -> Any:
    if isinstance(value, str):
        return value.replace("{root}", root)
    if isinstance(value, dict):
        return {k: _rooted(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_rooted(v, root) for v in value]
    return value


def _get(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return _MISSING
    return data


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_case(case: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load(case.read_text())
    root = tmp_path / "proj"
    for name, text in spec.get("files", {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = {"HOME": str(tmp_path), **{k: str(v) for k, v in (spec.get("env") or {}).items()}}
    opts = LoadOptions(files=list(spec.get("args", ["stack.yml"])), environ=env,
                       cwd=str(root))
    if not spec["valid"]:
        with pytest.raises(SpecError) as info:
            load_project(opts)
        lines = str(info.value).splitlines()
        for wanted in spec.get("errors", []):
            assert any(wanted in line for line in lines), (wanted, lines)
        return
    project = load_project(opts)
    data = stack_data(project.stack)
    for path, wanted in (spec.get("values") or {}).items():
        assert _get(data, path) == _rooted(wanted, str(root)), (path, _get(data, path))
    for path in spec.get("absent") or []:
        assert _get(data, path) is _MISSING, (path, _get(data, path))
    warnings = [str(w) for w in project.warnings]
    for wanted in spec.get("warnings", []):
        assert any(wanted in line for line in warnings), (wanted, warnings)


def test_compose_go_examples_script(tmp_path: Path) -> None:
    """The script that runs a compose-go checkout's examples: one line per file, and the
    exit status says whether an expectation failed."""
    import subprocess
    import sys

    (tmp_path / "good.yml").write_text("services:\n  web: {image: x}\n")
    (tmp_path / "bad.yaml").write_text("services:\n  web: {image: x, ports: [99999]}\n")
    (tmp_path / "expect").write_text("valid good.yml\ninvalid bad.yaml\n")
    script = Path(__file__).parent / "compose_go_examples.py"
    run = subprocess.run([sys.executable, str(script), str(tmp_path), "--expect",
                          str(tmp_path / "expect")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok       good.yml  (1 services, 0 warnings)" in run.stdout
    assert "refused  bad.yaml  bad.yaml:2:27: services.web.ports[0]: invalid container port" \
        in run.stdout
    (tmp_path / "expect").write_text("invalid good.yml\n")
    run = subprocess.run([sys.executable, str(script), str(tmp_path), "--expect",
                          str(tmp_path / "expect")], capture_output=True, text=True)
    assert run.returncode == 1 and "<- expected invalid" in run.stdout


INVALID = [c for c in CASES if "valid: false" in c.read_text()]


@pytest.mark.parametrize("case", INVALID, ids=[c.stem for c in INVALID])
def test_invalid_case_refused_by_config_quiet(case: Path, tmp_path: Path) -> None:
    """`stackctl config -q` as a user runs it (the launcher's start: no site, the fast path,
    PyYAML's lazy patterns) refuses every invalid case with exactly the located lines the
    loader gives in process, and exit status 2."""
    import subprocess
    import sys

    from stackctl.cli.common import error_lines

    spec = yaml.safe_load(case.read_text())
    root = tmp_path / "proj"
    for name, text in spec.get("files", {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = {"HOME": str(tmp_path), **{k: str(v) for k, v in (spec.get("env") or {}).items()}}
    args = list(spec.get("args", ["stack.yml"]))
    with pytest.raises(SpecError) as info:
        load_project(LoadOptions(files=args, environ=env, cwd=str(root)))
    root_dir = str(Path(__file__).resolve().parents[3])  # the checkout (not the cwd)
    code = (f"import sys; sys.path += {[root_dir] + [p for p in sys.path if p]!r}; "
            "sys.argv[0] = 'stackctl'\n"
            "from stackctl.launcher import launch; launch()\n")
    argv = [sys.executable, "-I", "-S", "-c", code, "config", "-q"]
    for f in args:
        argv += ["-f", f]
    run = subprocess.run(argv, cwd=root, capture_output=True, text=True,
                         env={**env, "STACKCTL_WARM": "0", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if not line.startswith("warning:")]
    assert errors == error_lines(info.value)
