"""Loading a project: stack files in, one merged, interpolated raw tree (and the Stack) out.

The pipeline, in compose-go's order (see docs/spec-loading.md):

1. find the files and the project directory; read the environment (process over ``.env``);
2. read and parse every file (YAML with positions; several documents in a file are layers)
   — every file's syntax errors at once; empty files and non-string keys refused;
3. choose the project name (``name:`` may use variables);
4. interpolate every file — every error of every file in one :class:`SpecError`;
5. per file: make relative paths absolute (against the project directory), then resolve
   ``extends`` (files named there are read, interpolated and resolved against their own
   directory);
6. per file: ``include`` — each entry loaded as its own sub-project (steps 2–7, own
   directory and ``.env``), its resources added (``!override`` in the file wins);
7. merge the files in order (override rules, ``!reset``/``!override``): a later file may
   change what an earlier one included;
8. :func:`load_project` only: ``build_stack`` validates, normalizes, applies profiles and
   builds the service graph.

:func:`load_raw` stops before step 8 (for tests, and for ``config --no-interpolate`` later).
I/O is limited to reading the named files (and stdin for ``-f -``).
"""

from __future__ import annotations

import os
import posixpath
import sys
from collections.abc import Mapping
from typing import Any

from stackctl.errors import Issue, Pos, SpecError
from stackctl.spec import project as proj
from stackctl.spec.extends import apply_extends
from stackctl.spec.include import IncludeEntry, apply_include
from stackctl.spec.interpolate import interpolate_tree, substitute, TemplateError
from stackctl.spec.merge import merge_trees
from stackctl.spec.paths import resolve_paths
from stackctl.spec.record import Record
from stackctl.spec.yamlpos import PDict, PList, format_path, load_yaml_documents

STDIN_NAME = "<stdin>"


class LoadOptions(Record):
    """What the command line (or a test) says about the project. ``environ`` None: the
    process environment; ``cwd`` None: the working directory; ``stdin``: the text of
    ``-f -`` (None: read standard input)."""

    __slots__ = ("files", "project_name", "profiles", "env_files", "project_directory",
                 "environ", "cwd", "stdin")

    def __init__(self, files: list[str] | None = None, project_name: str | None = None,
                 profiles: list[str] | None = None, env_files: list[str] | None = None,
                 project_directory: str | None = None,
                 environ: Mapping[str, str] | None = None, cwd: str | None = None,
                 stdin: str | None = None) -> None:
        self.files = [] if files is None else files
        self.project_name = project_name
        self.profiles = [] if profiles is None else profiles
        self.env_files = [] if env_files is None else env_files
        self.project_directory = project_directory
        self.environ = environ
        self.cwd = cwd
        self.stdin = stdin


class RawProject(Record):
    """A project loaded up to the merged raw tree (no validation yet)."""

    __slots__ = ("name", "directory", "files", "environ", "profiles", "raw", "warnings")

    def __init__(self, name: str, directory: str, files: list[str], environ: dict[str, str],
                 profiles: list[str], raw: PDict, warnings: list[Issue]) -> None:
        self.name = name
        self.directory = directory
        self.files = files
        self.environ = environ
        self.profiles = profiles
        self.raw = raw
        self.warnings = warnings


class Project(Record):
    """A loaded, validated project."""

    __slots__ = ("name", "directory", "files", "environ", "profiles", "raw", "stack", "graph",
                 "warnings")

    def __init__(self, name: str, directory: str, files: list[str], environ: dict[str, str],
                 profiles: list[str], raw: PDict, stack: Any, graph: Any,
                 warnings: list[Issue]) -> None:
        self.name = name
        self.directory = directory
        self.files = files
        self.environ = environ
        self.profiles = profiles
        self.raw = raw
        self.stack = stack
        self.graph = graph
        self.warnings = warnings


def load_project(opts: LoadOptions, *, build: Any = None) -> Project:
    """Load, merge, validate and normalize the project. Raises :class:`SpecError`.

    ``build`` stands in for :func:`stackctl.spec.validate.build_stack` (tests pass a fake).

    The cyclic garbage collector is paused meanwhile: loading builds tens of objects per
    line of YAML (nodes, positions, models) and makes next to no reference cycles, yet the
    collector's passes over all those young objects were ~40% of the CPU time of a
    400-service load (docs/spec-loading.md, "Speed"). Reference counting still frees
    everything as usual; the collector runs again afterwards.
    """
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_project(opts, build)
    finally:
        if was_enabled:
            gc.enable()


def _load_project(opts: LoadOptions, build: Any) -> Project:
    raw = load_raw(opts)
    if build is None:
        from stackctl.spec.validate import build_stack as build  # heavy: imported when needed

    stack, graph, warnings = build(raw.raw, project_name=raw.name,
                                         project_dir=raw.directory, environ=raw.environ,
                                         profiles=raw.profiles)
    return Project(raw.name, raw.directory, raw.files, raw.environ, raw.profiles, raw.raw,
                   stack, graph, raw.warnings + list(warnings))


def load_raw(opts: LoadOptions) -> RawProject:
    """Steps 1–7 of the pipeline: the merged, interpolated raw tree."""
    cwd = posixpath.abspath(opts.cwd or os.getcwd())
    process_env = dict(os.environ if opts.environ is None else opts.environ)
    project_dir_opt = proj.absolute(opts.project_directory, cwd) \
        if opts.project_directory else None
    env_files = proj.env_files_option(opts.env_files, process_env)
    env_dir, environ = None, None
    if opts.files:
        files = [proj.absolute(f, cwd) for f in opts.files]
    else:
        env_dir = project_dir_opt or cwd
        environ = proj.read_project_env(process_env, env_dir, env_files, cwd)
        files = proj.discover_files(cwd, environ)
    project_dir = project_dir_opt or (
        posixpath.dirname(files[0]) if files[0] != proj.STDIN else cwd)
    if env_dir != project_dir:  # not read yet, or files listed elsewhere: read it (again)
        environ = proj.read_project_env(process_env, project_dir, env_files, cwd)

    loader = _Loader(cwd, opts.stdin)
    layers, trees = loader.parse_all(files)
    name = proj.choose_project_name(opts.project_name, environ, _name_in(trees, environ),
                                    project_dir)
    environ[proj.NAME_VAR] = name
    environ["COMPOSE_PROJECT_NAME"] = name  # for files written for Compose
    raw = _with_name(loader.build(layers, trees, project_dir, environ, chain=()), name)
    profiles = proj.choose_profiles(opts.profiles, environ)
    return RawProject(name, project_dir, files, environ, profiles, raw, loader.warnings)


def _with_name(tree: PDict, name: str) -> PDict:
    """The tree with ``name:`` set to the project name, first (as ``config`` shows it)."""
    out = PDict(pos=tree.pos)
    out["name"] = name
    out.copy_positions_from(tree, ["name"] if "name" in tree else [])
    for key, value in tree.items():
        if key != "name":
            out[key] = value
            out.copy_positions_from(tree, [key])
    return out


def _name_in(trees: list[Any], environ: Mapping[str, str]) -> tuple[str, Pos | None] | None:
    """The top-level ``name:`` of the last file that has one, interpolated."""
    for tree in reversed(trees):
        value = tree.get("name") if isinstance(tree, dict) else None
        if isinstance(value, str) and value:
            try:
                value = substitute(value, environ).value
            except TemplateError:
                continue  # reported with the rest of the file's interpolation errors
            return value, tree.val_pos.get("name") if isinstance(tree, PDict) else None
    return None


# A bound on what is read (docs/security.md): stack files are kilobytes; a 10 GB file or
# `-f /dev/zero` must end in one line, not in the kernel's OOM killer.
MAX_FILE_CHARS = 64 * 1024 * 1024


def _within_limit(text: str, shown: str) -> str:
    if len(text) > MAX_FILE_CHARS:
        raise SpecError(Issue(f"stack file {shown} is larger than "
                              f"{MAX_FILE_CHARS // (1024 * 1024)} MiB; stackctl reads no more"))
    return text


class _Loader:
    """Reads, parses and assembles trees; collects warnings; keeps extends files cached."""

    def __init__(self, cwd: str, stdin: str | None) -> None:
        self.cwd = cwd
        self.stdin = stdin
        self.warnings: list[Issue] = []
        self._warned: set[str] = set()
        self._other: dict[tuple[str, str], Any] = {}

    # -- names and reading

    def display(self, path: str) -> str:
        if path == proj.STDIN:
            return STDIN_NAME
        if path.startswith(self.cwd.rstrip("/") + "/"):
            return path[len(self.cwd.rstrip("/")) + 1:]
        return path

    def read(self, path: str) -> str:
        """The text of one stack file; a clear SpecError naming it when it cannot be read."""
        if path == proj.STDIN:
            text = self.stdin if self.stdin is not None else sys.stdin.read(MAX_FILE_CHARS + 1)
            return _within_limit(text, STDIN_NAME)
        shown = self.display(path)
        try:
            with open(path, encoding="utf-8") as fh:
                return _within_limit(fh.read(MAX_FILE_CHARS + 1), shown)
        except FileNotFoundError:
            raise SpecError(Issue(f"stack file {shown} not found"),
                            hint="check the -f option, or the names in STACKCTL_FILE") from None
        except IsADirectoryError:
            raise SpecError(Issue(f"stack file {shown} is a directory, not a file")) from None
        except UnicodeDecodeError:
            raise SpecError(Issue(f"stack file {shown} is not UTF-8 text")) from None
        except OSError as exc:
            raise SpecError(Issue(
                f"cannot read stack file {shown}: {exc.strerror or exc}")) from None

    def parse_all(self, files: list[str]) -> tuple[list[str], list[Any]]:
        """Read and parse every file; every file's problem reported in one SpecError.

        A file holding several YAML documents gives one layer per document (merged in
        order, as compose-go does); the result is the file of each layer and its tree."""
        layers: list[str] = []
        trees: list[Any] = []
        issues: list[Issue] = []
        hints: list[str] = []
        for path in files:
            try:
                docs = self.parse(path)
            except SpecError as exc:
                issues.extend(exc.issues)
                if exc.hint and exc.hint not in hints:
                    hints.append(exc.hint)
                continue
            layers.extend([path] * len(docs))
            trees.extend(docs)
        if issues:
            raise SpecError(issues, hint="; ".join(hints) or None)
        return layers, trees

    def parse(self, path: str) -> list[Any]:
        """The documents of one stack file (at least one), each a mapping whose keys are
        strings. An empty file is an error, as in Compose."""
        shown = self.display(path)
        docs = [d for d in load_yaml_documents(self.read(path), shown) if d is not None]
        if not docs:
            raise SpecError(Issue(f"empty stack file {shown}", pos=Pos(shown, 1, 1)),
                            hint="a stack file needs at least services:")
        issues: list[Issue] = []
        for tree in docs:
            if not isinstance(tree, dict):
                issues.append(Issue(
                    "a stack file must be a mapping at the top level (services:, networks:, "
                    "...)", pos=getattr(tree, "pos", None) or Pos(shown, 1, 1)))
            else:
                issues.extend(non_string_keys(tree, ()))
        if issues:
            raise SpecError(issues)
        return docs

    # -- assembling

    def interpolate(self, trees: list[Any], environ: Mapping[str, str]) -> list[Any]:
        out: list[Any] = []
        errors: list[Issue] = []
        for tree in trees:
            result = interpolate_tree(tree, environ)
            errors.extend(result.errors)
            self.warn(result.warnings)
            out.append(result.tree)
        if errors:
            hint = None
            if any(e.message.startswith("required variable") for e in errors):
                hint = "set the variables in the environment or in the .env file"
            raise SpecError(errors, hint=hint)
        return out

    def warn(self, warnings: list[Issue]) -> None:
        for w in warnings:
            if w.message not in self._warned:
                self._warned.add(w.message)
                self.warnings.append(w)

    def build(self, files: list[str], trees: list[Any], project_dir: str,
              environ: Mapping[str, str], chain: tuple[str, ...]) -> PDict:
        """Steps 4–7 for one project (the main one, or an included one). As compose-go, a
        file's ``include`` is resolved with that file (a service of the file tagged
        ``!override`` replaces an included one), then the files are merged: a later ``-f``
        file overrides what an earlier one included."""
        trees = self.interpolate(trees, environ)  # fresh trees: paths resolved in place
        trees = [resolve_paths(t, project_dir, environ, in_place=True) for t in trees]
        issues: list[Issue] = []
        layers = []
        for path, tree in zip(files, trees):
            try:
                tree = apply_extends(tree, path, lambda other: self.load_other(other, environ),
                                     display=self.display)
                layers.append(apply_include(
                    tree, lambda entry: self.load_included(entry, environ, chain + (path,))))
            except SpecError as exc:
                issues.extend(exc.issues)
        if issues:
            raise SpecError(issues)
        return merge_trees(layers)

    def load_other(self, path: str, environ: Mapping[str, str]) -> Any:
        """A file named by ``extends.file``: interpolated, paths against its own directory
        (its documents merged, when it has several)."""
        key = (path, repr(sorted(environ.items())))
        if key not in self._other:
            docs = self.parse(path)
            tree = merge_trees(self.interpolate(docs, environ))
            self._other[key] = resolve_paths(tree, posixpath.dirname(path), environ,
                                             in_place=True)
        return self._other[key]

    def load_included(self, entry: IncludeEntry, parent_env: Mapping[str, str],
                      chain: tuple[str, ...]) -> PDict:
        """An ``include`` entry loaded as its own project; the including project's
        environment wins over the included project's env files."""
        looping = [p for p in entry.paths if p in chain]
        if looping:
            names = " -> ".join(self.display(p) for p in chain + (looping[0],))
            raise SpecError(Issue(f"include cycle: {names}", entry.key_path, entry.pos))
        sub_dir = entry.project_directory or posixpath.dirname(entry.paths[0])
        environ = proj.read_project_env(parent_env, sub_dir, entry.env_files, sub_dir)
        layers, trees = self.parse_all(entry.paths)
        tree = self.build(layers, trees, sub_dir, environ, chain)
        return fill_bare_environment(tree, environ)


def non_string_keys(node: Any, path: tuple) -> list[Issue]:
    """Every mapping key that is not a string (``123:`` for a service, ``1:`` in
    environment), located: Compose refuses them (``non-string key``)."""
    out: list[Issue] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                pos = node.key_pos.get(key) if isinstance(node, PDict) else None
                out.append(Issue(f"non-string key {key!r}: quote it (\"{key}\")",
                                 format_path(path + (str(key),)), pos))
            out.extend(non_string_keys(value, path + (str(key),)))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, (dict, list)):
                out.extend(non_string_keys(item, path + (i,)))
    return out


def fill_bare_environment(tree: Any, environ: Mapping[str, str]) -> Any:
    """An included project's services: ``environment`` entries named without a value (``- VAR``
    or ``VAR:``) take it from the included project's environment (its ``env_file``/``.env``),
    as compose-go resolves them while loading the included project. In place; returns
    ``tree``."""
    services = tree.get("services") if isinstance(tree, dict) else None
    if not isinstance(services, dict):
        return tree
    for svc in services.values():
        env = svc.get("environment") if isinstance(svc, dict) else None
        if isinstance(env, dict):
            for key, value in env.items():
                if value is None and key in environ:
                    env[key] = environ[key]
        elif isinstance(env, PList):
            for i, item in enumerate(env):
                if isinstance(item, str) and "=" not in item and item in environ:
                    env[i] = f"{item}={environ[item]}"
    return tree
