"""``stackctl config``: validate a stack and print it normalized (like ``docker compose config``).
"""

from __future__ import annotations

import click

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
    from stackctl.spec.dump import render

    project = stack.load_project()
    if quiet:
        return
    if list_services:
        text = _lines(project.stack.services)
    elif list_volumes:
        text = _lines(project.stack.volumes)
    elif list_networks:
        text = _lines(project.stack.networks)
    elif list_profiles:
        text = _lines(_all_profiles(project))
    else:
        text = render(project.stack, fmt)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)


def _lines(names) -> str:
    return "".join(f"{name}\n" for name in sorted(names))


def _all_profiles(project) -> set[str]:
    """Profiles named anywhere in the file, also by services the active profiles leave off."""
    from stackctl.spec.models import Stack

    names: set[str] = set()
    services = project.raw.get("services") if isinstance(project.raw, dict) else None
    if isinstance(services, dict):
        for svc in services.values():
            profiles = svc.get("profiles") if isinstance(svc, dict) else None
            if isinstance(profiles, list):
                names.update(str(p) for p in profiles)
    if isinstance(project.stack, Stack):
        for svc in project.stack.services.values():
            names.update(svc.profiles)
    return names
