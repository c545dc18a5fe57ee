"""Helpers for the model tests: YAML text in, a validated stack (or the errors) out."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stackctl.errors import SpecError
from stackctl.spec.validate import build_stack
from stackctl.spec.yamlpos import load_yaml

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "models"


def build(text: str, *, profiles=(), environ=None, project_dir="/srv/proj", name="proj"):
    """(stack, graph, warnings) of a stack file given as (dedented) text."""
    raw = load_yaml(textwrap.dedent(text), "stack.yml")
    return build_stack(raw, project_name=name, project_dir=project_dir,
                       environ=environ or {}, profiles=profiles)


def stack(text: str, **kwargs):
    return build(text, **kwargs)[0]


def service(text: str, name: str = "web", **kwargs):
    return stack(text, **kwargs).services[name]


def errors(text: str, **kwargs) -> list[str]:
    """The error lines of an invalid stack file."""
    with pytest.raises(SpecError) as info:
        build(text, **kwargs)
    return [str(issue) for issue in info.value.issues]


def svc_text(body: str, name: str = "web") -> str:
    """A stack with one service whose keys are ``body`` (indented for you)."""
    inner = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    return f"services:\n  {name}:\n    image: busybox\n{inner}\n"
