"""Validation errors as located issues: ``stack.yml:14:9: services.web.deploy.replicas: ...``.

:func:`issues_from_validation` maps a pydantic ``ValidationError`` (raised by the models of
:mod:`stackctl.spec.models`) to :class:`~stackctl.errors.Issue` objects, using the positions
the YAML loader kept (:func:`~stackctl.spec.yamlpos.locate`). Our own validators write their
messages themselves; pydantic's built-in error types get a wording here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from stackctl.errors import Issue, Pos
from stackctl.spec.models.base import UnknownKey, describe
from stackctl.spec.yamlpos import format_path, locate


def issue_at(raw: Any, path: Iterable[Any], message: str, *, key: bool = False) -> Issue:
    """An issue at ``path`` in the raw tree (position found with :func:`locate`)."""
    parts = _written_part(raw, list(path))
    return Issue(message, format_path(parts), locate(raw, parts, key=key))


def written_key(raw: Any, path: Iterable[Any], name: str) -> str | int:
    """How ``name`` is written under ``path``: its index in a list form, else the key itself
    (``depends_on: [db]`` -> 0, ``depends_on: {db: ...}`` -> ``"db"``)."""
    node = raw
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return name
    if isinstance(node, list):
        for i, item in enumerate(node):
            if str(item) == name:
                return i
    return name


def _written_part(raw: Any, parts: list[Any]) -> list[Any]:
    """Cut a path where the file has a scalar: the rest is the long form of a short syntax
    (``ports[1].target`` of ``- "abc"`` is reported as ``ports[1]``)."""
    node = raw
    for i, part in enumerate(parts):
        if isinstance(node, dict):
            if part not in node and str(part) not in node:
                return parts
            node = node[part] if part in node else node[str(part)]
        elif isinstance(node, list):
            if not isinstance(part, int) or not -len(node) <= part < len(node):
                return parts
            node = node[part]
        else:
            return parts[:i]
    return parts


def issues_from_validation(raw: Any, error: ValidationError) -> list[Issue]:
    """Every error of ``error`` as an issue, sorted by position."""
    out = []
    seen = set()
    for err in error.errors(include_url=False):
        issue = _issue(raw, err)
        ident = (issue.path, issue.message)
        if ident not in seen:
            seen.add(ident)
            out.append(issue)
    return sort_issues(out)


def sort_issues(issues: Iterable[Issue]) -> list[Issue]:
    """By file, line and column; issues without a position last."""
    def key(issue: Issue) -> tuple:
        pos = issue.pos
        if pos is None:
            return (1, "", 0, 0, issue.path)
        return (0, pos.file, pos.line, pos.col, issue.path)
    return sorted(issues, key=key)


def _issue(raw: Any, err: dict[str, Any]) -> Issue:
    loc = list(err.get("loc", ()))
    kind = err.get("type", "")
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "stackctl":
        at = ctx.get("at") or ""
        if at:
            loc += at.split(".")
        return issue_at(raw, loc, str(ctx.get("message", err.get("msg", ""))))
    if kind == "extra_forbidden":
        message = "unknown key"
        if isinstance(value, UnknownKey):
            if value.suggestion:
                message += f'; did you mean "{value.suggestion}"?'
        return issue_at(raw, loc, message, key=True)
    if kind == "missing":
        pos: Pos | None = locate(raw, loc[:-1])
        return Issue("required key is missing", format_path(loc), pos)
    return issue_at(raw, loc, _message(kind, value, err))


_EXPECTED = {
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "float_type": "a number",
    "float_parsing": "a number",
}


def _message(kind: str, value: Any, err: dict[str, Any]) -> str:
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {describe(value)}"
    if kind == "recursion_loop":
        return "the value refers to itself (a YAML alias loop)"
    if kind == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        return f"expected one of: {expected.replace(chr(39), '')}; got {describe(value)}"
    # a pydantic message we did not foresee: still say what was given
    return f"{err.get('msg', 'invalid value')} (got {describe(value)})"
