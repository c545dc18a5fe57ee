"""The project around the stack files: which files, which directory, which name, which
environment and which profiles.

- **Files.** ``-f`` options, in order (``-`` is standard input). Without ``-f``: the files
  listed in ``STACKCTL_FILE`` (separated by ``:``), else in ``COMPOSE_FILE`` (separated by
  ``COMPOSE_PATH_SEPARATOR``, default ``:``), else the
  first of :data:`DEFAULT_FILES` in the working directory, plus its override file
  (``stack.override.yml`` next to ``stack.yml``, ``compose.override.yaml`` next to
  ``compose.yaml``, ...) when there is one, as Compose does. Unlike Compose, parent directories
  are not searched: the directory you stand in is the one that counts.
- **Project directory.** ``--project-directory``, else the directory of the first file, else
  the working directory (for ``-f -``).
- **Environment.** The process environment over the ``.env`` file of the project directory; or,
  given ``--env-file`` (several allowed, later wins; else ``STACKCTL_ENV_FILES`` or
  ``COMPOSE_ENV_FILES``, comma separated), over those files instead of ``.env``.
  ``STACKCTL_FILE``, ``STACKCTL_PROJECT_NAME`` and ``STACKCTL_PROFILES`` may come from there
  too. Each ``STACKCTL_`` variable wins over its ``COMPOSE_`` namesake, which is read when
  ours is not set, so CI set up for Compose keeps working.
- **Name.** ``-p`` > ``STACKCTL_PROJECT_NAME`` > top-level ``name:`` (the last file that has
  one) > the project directory's name. A name from a directory or from ``name:`` is normalized
  as Compose does (lowercase; only ``a-z 0-9 _ -``; leading ``_``/``-`` dropped); a name given
  with ``-p``/``STACKCTL_PROJECT_NAME`` must already be in that form. An empty result is an
  error.
- **Profiles.** ``--profile`` options, else ``STACKCTL_PROFILES`` (comma separated): the option
  replaces the variable, as with Compose's ``COMPOSE_PROFILES``.

Pure except :func:`discover_files` (looks at the directory) and :func:`read_project_env`
(reads the env files), both thin.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence

from stackctl.errors import Issue, Pos, SpecError, UsageError
from stackctl.spec.envfile import read_env_file

DEFAULT_FILES = ("stack.yml", "stack.yaml", "compose.yaml", "compose.yml",
                 "docker-compose.yml", "docker-compose.yaml")
FILE_VAR = "STACKCTL_FILE"
NAME_VAR = "STACKCTL_PROJECT_NAME"
PROFILES_VAR = "STACKCTL_PROFILES"
ENV_FILES_VAR = "STACKCTL_ENV_FILES"
#: Compose's names, read when ours are not set (users' CI sets them already)
COMPOSE_VARS = {FILE_VAR: "COMPOSE_FILE", NAME_VAR: "COMPOSE_PROJECT_NAME",
                PROFILES_VAR: "COMPOSE_PROFILES", ENV_FILES_VAR: "COMPOSE_ENV_FILES"}


def env_setting(environ: Mapping[str, str], var: str) -> tuple[str, str]:
    """``(value, name)`` of our variable ``var``, else of Compose's one; ``("", var)``."""
    for name in (var, COMPOSE_VARS.get(var, var)):
        value = environ.get(name, "")
        if value:
            return value, name
    return "", var
STDIN = "-"

_VALID_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def normalize_project_name(name: str) -> str:
    """Compose's normalization: lowercase, keep ``a-z0-9_-``, drop leading ``_``/``-``."""
    kept = "".join(c for c in name.lower() if c in "abcdefghijklmnopqrstuvwxyz0123456789_-")
    return kept.lstrip("_-")


def choose_project_name(option: str | None, environ: Mapping[str, str],
                        name_in_files: tuple[str, Pos | None] | None,
                        project_dir: str) -> str:
    """The project name, by the priority in the module docstring."""
    for given, source in ((option, "-p"), env_setting(environ, NAME_VAR)):
        if given:
            if not _VALID_NAME.fullmatch(given):
                suggestion = normalize_project_name(given)
                raise UsageError(
                    f"invalid project name {given!r} (from {source}): it must hold only "
                    "lowercase letters, digits, \"_\" and \"-\", and start with a letter or "
                    "a digit",
                    hint=f"use {suggestion!r}" if suggestion else None)
            return given
    if name_in_files is not None and name_in_files[0]:
        raw, pos = name_in_files
        name = normalize_project_name(raw)
        if not name:
            raise SpecError(Issue(
                f"project name {raw!r} has no letter or digit left after normalization "
                "(lowercase letters, digits, \"_\" and \"-\" only)", "name", pos))
        return name
    base = posixpath.basename(posixpath.normpath(project_dir))
    name = normalize_project_name(base)
    if not name:
        raise UsageError(
            f"cannot make a project name from the directory name {base!r}",
            hint="give one with -p NAME, STACKCTL_PROJECT_NAME or a top-level name: in the file")
    return name


def choose_profiles(option: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """``--profile`` values (repeatable, each may also be comma separated), else
    ``STACKCTL_PROFILES`` (else ``COMPOSE_PROFILES``)."""
    source = list(option) if option else [env_setting(environ, PROFILES_VAR)[0]]
    out: list[str] = []
    for item in source:
        for p in item.split(","):
            p = p.strip()
            if p and p not in out:
                out.append(p)
    return out


def override_candidates(path: str) -> list[str]:
    """``dir/stack.yml`` -> ``[dir/stack.override.yml, dir/stack.override.yaml]``."""
    stem, ext = posixpath.splitext(path)
    return [f"{stem}.override{ext}", f"{stem}.override{'.yaml' if ext == '.yml' else '.yml'}"]


def discover_files(cwd: str, environ: Mapping[str, str],
                   is_file: Callable[[str], bool] = os.path.isfile) -> list[str]:
    """The stack files to use when no ``-f`` was given (absolute paths).

    Raises :class:`SpecError` naming the directory and the names looked for.
    """
    listed, var = env_setting(environ, FILE_VAR)
    if listed:
        sep = environ.get("COMPOSE_PATH_SEPARATOR", ":") if var != FILE_VAR else ":"
        return [absolute(f, cwd) for f in listed.split(sep or ":") if f]
    for name in DEFAULT_FILES:
        path = posixpath.join(cwd, name)
        if is_file(path):
            files = [path]
            for candidate in override_candidates(path):
                if is_file(candidate):
                    files.append(candidate)
                    break
            return files
    raise SpecError(Issue(
        f"no stack file found in {cwd} (looked for {', '.join(DEFAULT_FILES)})"),
        hint="name one with -f FILE, or set STACKCTL_FILE")


def absolute(path: str, cwd: str) -> str:
    if path == STDIN:
        return path
    return posixpath.normpath(posixpath.join(cwd, os.path.expanduser(path)))


def project_environ(process_env: Mapping[str, str],
                    file_values: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The project environment: env files in order (later wins), the process over them."""
    env: dict[str, str] = {}
    for values in file_values:
        env.update(values)
    env.update(process_env)
    return env


def env_files_option(option: Sequence[str], process_env: Mapping[str, str]) -> list[str]:
    """``--env-file`` values, else ``STACKCTL_ENV_FILES`` (else ``COMPOSE_ENV_FILES``),
    comma separated, as Compose reads its variable."""
    if option:
        return list(option)
    listed = env_setting(process_env, ENV_FILES_VAR)[0]
    return [f.strip() for f in listed.split(",") if f.strip()]


def read_project_env(process_env: Mapping[str, str], project_dir: str,
                     env_files: Sequence[str], cwd: str) -> dict[str, str]:
    """Read ``--env-file`` files (required) or else the project's ``.env`` (optional), and
    give the project environment. Each file's own interpolation sees the process
    environment and what the files before it defined."""
    values: list[dict[str, str]] = []
    if env_files:
        paths = [(absolute(f, cwd), True) for f in env_files]
    else:
        dotenv = posixpath.join(project_dir, ".env")
        paths = [(dotenv, False)] if not os.path.isdir(dotenv) else []
    for path, required in paths:
        lookup = project_environ(process_env, values)
        values.append(read_env_file(path, lookup, required=required,
                                    key_path="--env-file" if required else ""))
    return project_environ(process_env, values)
