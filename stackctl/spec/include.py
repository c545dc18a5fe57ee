"""Top-level ``include``: other stack files loaded as sub-projects, their resources added.

Forms::

    include:
      - db/stack.yml                         # short: a path
      - path: [cache/stack.yml, cache/override.yml]   # long: one file or several (merged)
        project_directory: cache             # base of the sub-project's relative paths
        env_file: cache/prod.env             # instead of the sub-project's own .env

Each entry is loaded as its own project (the caller's ``load_sub`` does it): its own project
directory (default: the directory of its first file), its own ``.env`` (values of the including
project win over it), its own ``include`` and ``extends``. Its services, networks, volumes,
secrets and configs are then added to the including tree. A name defined on both sides is an
error naming both places — unless the two definitions are identical (a shared sub-project
included twice), as Compose allows, or the including file tags its definition ``!override``
(it replaces the included one).

Include is applied per file, before the files are merged (as compose-go does): a later
``-f`` file may change what an earlier one included. Paths in ``include`` are already
absolute (:mod:`stackctl.spec.paths`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stackctl.errors import Issue, Pos, SpecError
from stackctl.spec.merge import copy_tree
from stackctl.spec.record import Record
from stackctl.spec.yamlpos import OverrideDict, PDict, format_path, strip_positions

SECTIONS = ("services", "networks", "volumes", "secrets", "configs")


class IncludeEntry(Record):
    """One entry of ``include``, paths absolute."""

    __slots__ = ("paths", "project_directory", "env_files", "pos", "key_path")

    def __init__(self, paths: list[str], project_directory: str | None = None,
                 env_files: list[str] | None = None, pos: Pos | None = None,
                 key_path: str = "include") -> None:
        self.paths = paths
        self.project_directory = project_directory
        self.env_files = [] if env_files is None else env_files
        self.pos = pos
        self.key_path = key_path


LoadSub = Callable[[IncludeEntry], Any]  # -> the sub-project's merged top-level tree


def parse_include(node: Any, pos: Pos | None) -> tuple[list[IncludeEntry], list[Issue]]:
    """The entries of an ``include`` value, and the problems of its form."""
    entries: list[IncludeEntry] = []
    issues: list[Issue] = []
    if node is None:
        return entries, issues
    if not isinstance(node, list):
        return entries, [Issue("include must be a list of paths or of mappings with path",
                               "include", pos)]
    for i, item in enumerate(node):
        ipos = node.item_pos[i] if hasattr(node, "item_pos") and i < len(node.item_pos) else pos
        kp = format_path(("include", i))
        if isinstance(item, str) and item:
            entries.append(IncludeEntry([item], pos=ipos, key_path=kp))
            continue
        if not isinstance(item, dict):
            issues.append(Issue("an include entry must be a path or a mapping with path", kp,
                                ipos))
            continue
        unknown = [k for k in item if k not in ("path", "project_directory", "env_file")]
        for k in unknown:
            issues.append(Issue(
                f"unknown key {k!r} (expected path, project_directory, env_file)",
                format_path(("include", i, k)),
                item.key_pos.get(k, ipos) if isinstance(item, PDict) else ipos))
        paths = _str_list(item.get("path"))
        env_files = _str_list(item.get("env_file")) if "env_file" in item else []
        project_dir = item.get("project_directory")
        if not paths:
            issues.append(Issue("include needs `path:` (a file, or a list of files)", kp, ipos))
            continue
        if env_files is None or (project_dir is not None and not isinstance(project_dir, str)):
            issues.append(Issue("env_file must be a path or a list of paths and "
                                "project_directory a path", kp, ipos))
            continue
        if not unknown:
            entries.append(IncludeEntry(paths, project_dir, env_files, ipos, kp))
    return entries, issues


def _str_list(value: Any) -> list[str] | None:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    return None


def apply_include(tree: Any, load_sub: LoadSub) -> Any:
    """A copy of ``tree`` without ``include``, with the resources of the included projects
    added. Raises :class:`SpecError` with every problem found (of every entry)."""
    if not isinstance(tree, dict) or "include" not in tree:
        return tree
    pos = tree.val_pos.get("include") if isinstance(tree, PDict) else None
    entries, issues = parse_include(tree["include"], pos)
    out = copy_tree(tree, resolve=False)  # !reset / !override stay for the merge of files
    out.pop("include")
    out.key_pos.pop("include", None)
    out.val_pos.pop("include", None)
    for entry in entries:
        try:
            sub = load_sub(entry)
        except SpecError as exc:
            for issue in exc.issues:
                if issue.pos is None and not issue.path:
                    issue = Issue(issue.message, entry.key_path, entry.pos)
                issues.append(issue)
            continue
        issues.extend(_add_resources(out, sub, entry))
    if issues:
        raise SpecError(issues)
    return out


def _add_resources(out: PDict, sub: Any, entry: IncludeEntry) -> list[Issue]:
    issues: list[Issue] = []
    if not isinstance(sub, dict):
        return issues
    for section in SECTIONS:
        theirs = sub.get(section)
        if not isinstance(theirs, dict) or not theirs:
            continue
        ours = out.get(section)
        if ours is None:
            ours = PDict(pos=getattr(theirs, "pos", None))
            out[section] = ours
            if isinstance(sub, PDict):
                out.key_pos[section] = sub.key_pos.get(section)  # type: ignore[assignment]
                out.val_pos[section] = sub.val_pos.get(section)  # type: ignore[assignment]
        elif not isinstance(ours, dict):
            continue  # validation reports the bad section
        for name, value in theirs.items():
            if name in ours:
                if isinstance(ours[name], OverrideDict):
                    continue  # `!override` here: this file's definition replaces theirs
                if strip_positions(ours[name]) == strip_positions(value):
                    continue
                issues.append(Issue(
                    f"{section[:-1]} {name!r} is defined both here "
                    f"({_where(ours, name)}) and in the included "
                    f"{_where(theirs, name)}; rename one of them, tag this one !override "
                    "to replace the included one, or change it from a later -f file",
                    entry.key_path, entry.pos))
                continue
            ours[name] = copy_tree(value)
            if isinstance(theirs, PDict):
                if name in theirs.key_pos:
                    ours.key_pos[name] = theirs.key_pos[name]
                if name in theirs.val_pos:
                    ours.val_pos[name] = theirs.val_pos[name]
    return issues


def _where(section: Any, name: Any) -> str:
    if isinstance(section, PDict):
        p = section.key_pos.get(name)
        if p is not None:
            return str(p)
    return "?"
