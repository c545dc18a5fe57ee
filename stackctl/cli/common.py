"""What the container, image and volume verbs share: the manager, how an expected error is
printed, Docker's multi-object verbs (act on each, report each failure, exit 1 if any), and the
``Deleted …: / Total reclaimed space`` report of a prune.

Light to import: click is imported inside the functions that print, so the click-free ``run``
path (:mod:`stackctl.cli.run_cmd`) can use the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from stackctl.errors import StackctlError, UsageError


def manager():
    """The container manager of this node (default paths)."""
    from stackctl.paths import default_paths
    from stackctl.runtime.manager import ContainerManager

    return ContainerManager(default_paths())


def error_lines(exc: StackctlError) -> list[str]:
    """The lines the CLI prints for an expected error: ``error: …``, then any ``hint: …``."""
    return [line if line.startswith("hint:") else f"error: {line}" for line in exc.lines()]


def print_error(exc: StackctlError) -> None:
    import click

    for line in error_lines(exc):
        click.echo(line, err=True)


def for_each(items: Iterable[str], fn: Callable[[str], Any]) -> None:
    """Docker's multi-object verbs: act on each, report each failure, exit 1 if any."""
    failed = False
    for item in items:
        try:
            fn(item)
        except StackctlError as exc:
            failed = True
            print_error(exc)
    if failed:
        raise SystemExit(1)  # click.exceptions.Exit is swallowed with standalone_mode=False


def inspect_each(names: Iterable[str], get: Callable[[str], dict[str, Any]], fmt: str) -> None:
    """``inspect`` of images or volumes: a JSON array of what was found, or ``fmt`` rendered
    per object; each name not found is reported, and the exit status is then 1."""
    import click

    from stackctl.cli import format as F

    found: list[dict[str, Any]] = []
    failed = False
    for name in names:
        try:
            found.append(get(name))
        except StackctlError as exc:
            failed = True
            print_error(exc)
    if fmt:
        for obj in found:
            click.echo(F.render_template(F.unescape_template(fmt), obj))
    else:
        click.echo(F.to_json_array(found))
    if failed:
        raise SystemExit(1)


def print_pruned(kind: str, removed: list[str], reclaimed: str) -> None:
    """The report of a prune: ``Deleted <kind>:``, one line each, a blank line (only when
    something was removed), then the space reclaimed."""
    import click

    if removed:
        click.echo(f"Deleted {kind}:")
        for item in removed:
            click.echo(item)
        click.echo("")
    click.echo(f"Total reclaimed space: {reclaimed}")


def read_env_files(paths: Iterable[str]) -> list[str]:
    """The ``KEY=VALUE`` lines of ``--env-file`` files, in order."""
    from stackctl.runtime.imageconfig import parse_env_file

    lines: list[str] = []
    for path in paths:
        try:
            with open(path) as f:
                lines += parse_env_file(f.read(), path)
        except OSError as exc:
            raise UsageError(f"cannot read env file {path}: {exc.strerror}") from None
    return lines
