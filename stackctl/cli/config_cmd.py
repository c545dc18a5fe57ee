"""``stackctl config``: validate a stack and print it normalized (like ``docker compose config``).

The common forms run without click (:mod:`stackctl.cli.config_fast`); this command parses
everything else (``--help``, ``--output=X``, a typo) and gives the same result.
"""

from __future__ import annotations

import click

from stackctl.cli.config_fast import _text
from stackctl.cli.stack_options import StackArgs, stack_options


@click.command(name="config")
@stack_options
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True, help="Output format.")
@click.option("--services", "list_services", is_flag=True, help="Print the service names.")
@click.option("--volumes", "list_volumes", is_flag=True, help="Print the volume names.")
@click.option("--networks", "list_networks", is_flag=True, help="Print the network names.")
@click.option("--profiles", "list_profiles", is_flag=True,
              help="Print the profile names used in the stack.")
@click.option("-q", "--quiet", is_flag=True, help="Only validate; print nothing.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
def config(stack: StackArgs, fmt: str, list_services: bool, list_volumes: bool,
           list_networks: bool, list_profiles: bool, quiet: bool, output: str | None) -> None:
    """Validate a stack file and print it normalized: short syntax expanded, defaults
    filled, variables resolved. Exits 2 with located errors if the stack is invalid."""
    project = stack.load_project()
    if quiet:
        return
    text = _text(project, fmt, list_services, list_volumes, list_networks, list_profiles)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)
