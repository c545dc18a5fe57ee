"""The options every stack verb shares: ``-f``, ``-p``, ``--profile``, ``--env-file``,
``--project-directory``.

Usage::

    @click.command()
    @stack_options
    def up(stack: StackArgs, ...): ...

The decorated function receives one ``stack`` argument (:class:`StackArgs`);
:meth:`StackArgs.load_options` turns it into the loader's ``LoadOptions``,
:meth:`StackArgs.load_project` loads and validates the project. Only click is
imported here, so the top-level CLI stays fast.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True)
class StackArgs:
    files: tuple[str, ...] = ()
    project_name: str | None = None
    profiles: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    project_directory: str | None = None
    nodes: str | None = None  # --nodes: the inventory file

    def inventory_file(self) -> str | None:
        """The inventory that applies (``--nodes``, ``$STACKCTL_NODES``, ``nodes.yml`` next
        to the stack file), or None: this machine alone."""
        from stackctl.cluster.inventory import find_inventory

        return find_inventory(self.files[0] if self.files else None, self.nodes,
                              os.environ)

    def load_options(self) -> Any:
        """The loader's options (imports the spec loader)."""
        from stackctl.spec.load import LoadOptions

        return LoadOptions(
            files=list(self.files),
            project_name=self.project_name,
            profiles=list(self.profiles),
            env_files=list(self.env_files),
            project_directory=self.project_directory,
            environ=dict(os.environ),
            cwd=os.getcwd(),
        )

    def load_project(self) -> Any:
        """The validated project (exit 2 with located errors if invalid); its warnings are
        printed to stderr."""
        from stackctl.spec.load import load_project

        project = load_project(self.load_options())
        for warning in project.warnings:
            click.echo(f"warning: {warning}", err=True)
        return project

    @property
    def explicit(self) -> bool:
        """Whether the user named a stack (``-f`` or ``-p``), for the container verbs."""
        return bool(self.files or self.project_name)


def stack_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared stack options; pass them to ``func`` as ``stack=StackArgs(...)``."""

    @functools.wraps(func)
    def wrapper(*args: Any, file: tuple[str, ...], project_name: str | None,
                profile: tuple[str, ...], env_file: tuple[str, ...],
                project_directory: str | None, nodes: str | None, **kwargs: Any) -> Any:
        stack = StackArgs(files=file, project_name=project_name, profiles=profile,
                          env_files=env_file, project_directory=project_directory,
                          nodes=nodes)
        from stackctl.cli import stack_client

        stack_client.select_stack(stack)  # the verb's agent: this stack's manager
        return func(*args, stack=stack, **kwargs)

    options = [
        click.option("-f", "--file", multiple=True, metavar="FILE",
                     help="Stack file (repeat to merge overrides). Default: stack.yml, "
                          "compose.yaml, compose.yml or docker-compose.yml here."),
        click.option("-p", "--project-name", metavar="NAME",
                     help="Project name (default: name:, $STACKCTL_PROJECT_NAME, or the "
                          "directory's name)."),
        click.option("--profile", multiple=True, metavar="PROFILE",
                     help="Activate a profile (repeatable; also $STACKCTL_PROFILES)."),
        click.option("--env-file", multiple=True, metavar="FILE",
                     help="Read variables from this file instead of .env (repeatable)."),
        click.option("--nodes", metavar="FILE", default=None,
                     help="Inventory of nodes (default: $STACKCTL_NODES, else nodes.yml next "
                     "to the stack file; none: this machine alone)."),
        click.option("--project-directory", metavar="DIR",
                     help="Base directory for relative paths (default: the first file's)."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
