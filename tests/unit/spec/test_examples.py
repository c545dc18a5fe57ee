"""Every stack under examples/stacks/ loads (and round-trips through ``config``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackctl.spec.dump import render
from stackctl.spec.load import LoadOptions, load_project
from stackctl.spec.validate import build_stack
from stackctl.spec.yamlpos import load_yaml

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "stacks"
STACKS = sorted(EXAMPLES.glob("**/stack.yml"))
MAIN = [p for p in STACKS if p.parent.parent == EXAMPLES]


def test_examples_exist():
    assert {p.parent.name for p in MAIN} >= {"webapp", "multinet", "rolling", "compose-features"}


@pytest.mark.parametrize("path", MAIN, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("profiles", [[], ["*"]])
def test_example_loads(path: Path, profiles):
    project = load_project(LoadOptions(files=[str(path)], profiles=profiles, environ={},
                                       cwd=str(path.parent)))
    assert project.stack.services
    assert not [w for w in project.warnings if "not supported" in str(w)]
    text = render(project.stack)
    again = build_stack(load_yaml(text, "out.yml"), project_name=project.name,
                        project_dir=project.directory, environ={}, profiles=profiles)[0]
    assert render(again) == text
