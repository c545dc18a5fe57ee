"""``extends``: a service built on another one, from the same file or from another file.

Forms::

    extends: base                          # a service of the same file
    extends: {service: base}               # the same
    extends: {service: base, file: common.yml}

The other file is read as its own piece: interpolated with the project's environment and its
relative paths resolved against *its own* directory (the caller's ``load_other`` does that).
Chains are followed (``a`` extends ``b`` which extends ``c`` in another file, whose own
``extends`` is relative to that file); a cycle is an error naming the chain.

The local service is merged over the base with the same rules as override files
(:func:`stackctl.spec.merge.merge_service`): mappings merge, ``ports``/``volumes``/... by key,
``command``/``entrypoint``/``healthcheck.test`` replaced. Everything of the base is inherited,
``depends_on``, ``volumes_from`` and ``links`` included — as Compose v2 does (the old "never
shared" rule of Compose v1 is gone from the specification). What the base refers to (other
services, networks, volumes) is *not* copied: the extending file must declare it.

Pure except for ``load_other``, which the caller supplies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stackctl.errors import Issue, Pos, SpecError
from stackctl.spec.merge import copy_tree, merge_service
from stackctl.spec.yamlpos import PDict, format_path

LoadOther = Callable[[str], Any]  # absolute path -> the file's top-level tree, ready to use

_Key = tuple[str, str]  # (file, service)


def apply_extends(tree: Any, filename: str, load_other: LoadOther, *,
                  display: Callable[[str], str] = lambda p: p) -> Any:
    """A copy of ``tree`` (the top level of ``filename``) with every ``extends`` resolved.

    Raises :class:`SpecError` with every problem found.
    """
    if not isinstance(tree, dict) or not isinstance(tree.get("services"), dict):
        return tree
    services = tree["services"]
    if not any(isinstance(s, dict) and "extends" in s for s in services.values()):
        return tree
    resolver = _Resolver(load_other, display)
    new_services = copy_tree(services, resolve=False)
    for name in services:
        if isinstance(services[name], dict) and "extends" in services[name]:
            new_services[name] = resolver.service(filename, services, name, [])
    if resolver.issues:
        raise SpecError(resolver.issues)
    out = copy_tree(tree, resolve=False)
    out["services"] = new_services
    return out


class _Resolver:
    def __init__(self, load_other: LoadOther, display: Callable[[str], str]) -> None:
        self.load_other = load_other
        self.display = display
        self.done: dict[_Key, Any] = {}
        self.files: dict[str, dict] = {}
        self.issues: list[Issue] = []

    def service(self, file: str, services: dict, name: str, chain: list[_Key]) -> Any:
        key = (file, name)
        if key in self.done:
            return self.done[key]
        svc = services[name]
        if not isinstance(svc, dict) or "extends" not in svc:
            return svc if svc is not None else PDict(pos=_val_pos(services, name))
        path = ("services", name, "extends")
        ext = svc["extends"]
        ext_pos = _val_pos(svc, "extends")
        local = copy_tree(svc, resolve=False)
        local.pop("extends")
        self.done[key] = local  # the answer if anything below fails

        ref, ref_file = self._parse(ext, path, ext_pos)
        if ref is None:
            return local
        other_file, other_services = file, services
        if ref_file is not None:
            loaded = self._load(ref_file, path, _val_pos(ext, "file") or ext_pos)
            if loaded is None:
                return local
            other_file, other_services = ref_file, loaded
        if ref not in other_services:
            where = "" if other_file == file else f" in {self.display(other_file)}"
            known = ", ".join(sorted(str(s) for s in other_services)) or "none"
            self.issues.append(Issue(
                f"service {ref!r} not found{where} (services: {known})",
                format_path(path + (("service",) if isinstance(ext, dict) else ())),
                (_val_pos(ext, "service") if isinstance(ext, dict) else None) or ext_pos))
            return local
        target = (other_file, ref)
        here = chain + [key]
        if target in here:
            cycle = here[here.index(target):] + [target]
            several = len({f for f, _ in cycle}) > 1
            names = " -> ".join(
                f"{s} ({self.display(f)})" if several else s for f, s in cycle)
            self.issues.append(Issue(
                f"extends cycle: {names}; a service cannot extend itself, directly or not",
                format_path(path), ext_pos))
            return local
        base = self.service(other_file, other_services, ref, here)
        try:
            merged = merge_service(base, local, name)
        except SpecError as exc:
            self.issues.extend(exc.issues)
            return local
        merged.pop("extends", None)
        self.done[key] = merged
        return merged

    def _parse(self, ext: Any, path: tuple, pos: Pos | None) -> tuple[str | None, str | None]:
        if isinstance(ext, str) and ext:
            return ext, None
        if isinstance(ext, dict):
            ref, ref_file = ext.get("service"), ext.get("file")
            if not isinstance(ref, str) or not ref:
                self.issues.append(Issue(
                    "extends needs `service:` (the name of the service to extend)",
                    format_path(path), pos))
                return None, None
            unknown = [k for k in ext if k not in ("service", "file")]
            if unknown:
                self.issues.append(Issue(
                    f"unknown key {unknown[0]!r} in extends (expected service, file)",
                    format_path(path + (unknown[0],)), ext.key_pos.get(unknown[0], pos)
                    if isinstance(ext, PDict) else pos))
                return None, None
            if ref_file is not None and (not isinstance(ref_file, str) or not ref_file):
                self.issues.append(Issue("extends.file must be a file path",
                                         format_path(path + ("file",)),
                                         _val_pos(ext, "file") or pos))
                return None, None
            return ref, ref_file
        self.issues.append(Issue(
            "extends must be a service name or a mapping with service (and file)",
            format_path(path), pos))
        return None, None

    def _load(self, ref_file: str, path: tuple, pos: Pos | None) -> dict | None:
        if ref_file in self.files:
            return self.files[ref_file]
        try:
            tree = self.load_other(ref_file)
        except SpecError as exc:
            for issue in exc.issues:
                if issue.pos is None and not issue.path:
                    issue = Issue(issue.message, format_path(path + ("file",)), pos)
                self.issues.append(issue)
            self.files[ref_file] = None  # type: ignore[assignment]
            return None
        services = tree.get("services") if isinstance(tree, dict) else None
        if not isinstance(services, dict):
            self.issues.append(Issue(f"{self.display(ref_file)} has no services to extend",
                                     format_path(path + ("file",)), pos))
            services = None
        self.files[ref_file] = services  # type: ignore[assignment]
        return services


def _val_pos(node: Any, key: Any) -> Pos | None:
    if isinstance(node, PDict):
        return node.val_pos.get(key) or node.key_pos.get(key) or node.pos
    return None
