"""Relative paths of one stack file made absolute, before files are merged (as Compose does).

The base directory is the project directory for the main and override files (``-f``), and the
file's own directory for a file named by ``extends.file`` or ``include`` (its own project
directory). ``~`` and ``~/...`` expand to ``HOME`` from the given environment.

Resolved:

- ``services.*.build`` (a string) and ``build.context`` — not remote contexts (URLs, ``git@``);
  ``build.additional_contexts`` values that are local paths;
- ``services.*.env_file`` (a string, a list of strings, or entries with ``path``) and
  ``services.*.label_file``;
- bind mounts in ``services.*.volumes``: short syntax whose source starts with ``.``, ``~`` or
  ``/`` (anything else is a named volume), long syntax with ``type: bind``;
- ``services.*.extends.file``;
- ``secrets.*.file`` and ``configs.*.file``;
- ``volumes.*.driver_opts.device`` when ``driver_opts.o`` asks for a bind (the local driver's
  bind volumes);
- ``include`` entries: ``path`` (string or list), ``project_directory``, ``env_file``.

Pure: only strings are joined, nothing is read. The input is never changed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from stackctl.spec.merge import copy_tree
from stackctl.spec.yamlpos import PDict, PList

_REMOTE_PREFIXES = ("http://", "https://", "git://", "ssh://", "git@", "github.com/")


def is_remote(ref: str) -> bool:
    """A build context that is not a local directory (a URL or a git reference)."""
    return ref.startswith(_REMOTE_PREFIXES) or "://" in ref


def absolute(path: str, base_dir: str, environ: Mapping[str, str]) -> str:
    """``path`` made absolute against ``base_dir``, with ``~`` expanded from ``HOME``."""
    if path == "~" or path.startswith("~/"):
        home = environ.get("HOME")
        if home:
            path = home + path[1:]
    if path.startswith("~"):  # ~user or no HOME: leave it as written
        return path
    return posixpath.normpath(posixpath.join(base_dir, path))


def resolve_paths(tree: Any, base_dir: str, environ: Mapping[str, str], *,
                  in_place: bool = False) -> Any:
    """A copy of a top-level tree with its relative paths made absolute against ``base_dir``
    (with ``in_place``, the tree itself: for a fresh tree nobody else holds).

    Values of the wrong type are left for validation to report.
    """
    if not isinstance(tree, dict):
        return tree
    out = tree if in_place else copy_tree(tree, resolve=False)

    def abs_(p: Any) -> Any:
        return absolute(p, base_dir, environ) if isinstance(p, str) and p else p

    services = out.get("services")
    if isinstance(services, dict):
        for svc in services.values():
            if isinstance(svc, dict):
                _service(svc, abs_)
    for section in ("secrets", "configs"):
        items = out.get(section)
        if isinstance(items, dict):
            for item in items.values():
                if isinstance(item, dict) and isinstance(item.get("file"), str):
                    item["file"] = abs_(item["file"])
    volumes = out.get("volumes")
    if isinstance(volumes, dict):
        for vol in volumes.values():
            opts = vol.get("driver_opts") if isinstance(vol, dict) else None
            if isinstance(opts, dict) and isinstance(opts.get("device"), str) \
                    and "bind" in str(opts.get("o", "")).split(","):
                opts["device"] = abs_(opts["device"])
    if "include" in out:
        out["include"] = _include(out["include"], abs_)
    return out


def _service(svc: PDict, abs_) -> None:
    build = svc.get("build")
    if isinstance(build, str) and not is_remote(build):
        svc["build"] = abs_(build)
    elif isinstance(build, dict):
        ctx = build.get("context")
        if isinstance(ctx, str) and not is_remote(ctx):
            build["context"] = abs_(ctx)
        extra = build.get("additional_contexts")
        if isinstance(extra, dict):
            for k, v in list(extra.items()):
                if isinstance(v, str) and not is_remote(v) and ":" not in v.split("/")[0]:
                    extra[k] = abs_(v)
    env_file = svc.get("env_file")
    if isinstance(env_file, str):
        svc["env_file"] = abs_(env_file)
    elif isinstance(env_file, list):
        for i, item in enumerate(env_file):
            if isinstance(item, str):
                env_file[i] = abs_(item)
            elif isinstance(item, dict) and isinstance(item.get("path"), str):
                item["path"] = abs_(item["path"])
    label_file = svc.get("label_file")
    if isinstance(label_file, str):
        svc["label_file"] = abs_(label_file)
    elif isinstance(label_file, list):
        for i, item in enumerate(label_file):
            if isinstance(item, str):
                label_file[i] = abs_(item)
    volumes = svc.get("volumes")
    if isinstance(volumes, list):
        for i, vol in enumerate(volumes):
            if isinstance(vol, str):
                volumes[i] = _short_volume(vol, abs_)
            elif isinstance(vol, dict) and vol.get("type") == "bind" \
                    and isinstance(vol.get("source"), str):
                vol["source"] = abs_(vol["source"])
    extends = svc.get("extends")
    if isinstance(extends, dict) and isinstance(extends.get("file"), str):
        extends["file"] = abs_(extends["file"])


def _short_volume(spec: str, abs_) -> str:
    source, sep, rest = spec.partition(":")
    if not sep or not source.startswith((".", "~", "/")):
        return spec  # an anonymous volume ("/data") or a named one ("db:/data")
    return f"{abs_(source)}:{rest}"


def _include(node: Any, abs_) -> Any:
    if not isinstance(node, list):
        return node
    for i, item in enumerate(node):
        if isinstance(item, str):
            node[i] = abs_(item)
        elif isinstance(item, dict):
            for key in ("path", "env_file"):
                value = item.get(key)
                if isinstance(value, str):
                    item[key] = abs_(value)
                elif isinstance(value, list):
                    item[key] = _abs_list(value, abs_)
            if isinstance(item.get("project_directory"), str):
                item["project_directory"] = abs_(item["project_directory"])
    return node


def _abs_list(items: list, abs_) -> PList:
    out = copy_tree(items, resolve=False)
    for i, v in enumerate(out):
        if isinstance(v, str):
            out[i] = abs_(v)
    return out
