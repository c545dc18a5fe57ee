"""Validation errors as located issues: ``stack.yml:14:9: services.web.deploy.replicas: ...``.

:func:`issues_from_validation` maps a :class:`~stackctl.spec.models.core.ValidationFailed`
(raised by the models of :mod:`stackctl.spec.models`) to :class:`~stackctl.errors.Issue`
objects, using the positions the YAML loader kept (:func:`~stackctl.spec.yamlpos.locate`).
The validators write their messages themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stackctl.errors import Issue, Pos
from stackctl.spec.models.core import ErrorItem, ValidationFailed
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


def issues_from_validation(raw: Any, error: ValidationFailed) -> list[Issue]:
    """Every error of ``error`` as an issue, sorted by position."""
    out = []
    seen = set()
    for err in error.errors:
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


def _issue(raw: Any, err: ErrorItem) -> Issue:
    loc = list(err.loc)
    if err.kind == "unknown":
        message = "unknown key"
        if err.suggestion:
            message += f'; did you mean "{err.suggestion}"?'
        return issue_at(raw, loc, message, key=True)
    if err.kind == "missing":
        pos: Pos | None = locate(raw, loc[:-1])
        return Issue(err.message, format_path(loc), pos)
    return issue_at(raw, loc, err.message)
