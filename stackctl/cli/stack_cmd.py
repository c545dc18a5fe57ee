"""The stack verbs: ``up``, ``down``, ``plan``, ``ls``, ``scale``, ``rollback``.

Thin, like every command: load the project locally (so every validation error is reported
before anything is sent), call the agent (docs/agent-api.md), render what it says
(:mod:`stackctl.cli.progress`). The local agent is started when it does not answer.

Exit codes (as ``docker compose``, plus what a CI pipeline needs): 0 success; 1 a failed or
rolled-back update, or another failure the agent reports; 2 an invalid stack file or bad
usage; 130 interrupted (Ctrl-C). See docs/cli-stacks.md.
"""

from __future__ import annotations

import json
from typing import Any

import click

from stackctl.cli.stack_options import StackArgs, stack_options
from stackctl.cli.stack_common import (agent, check_services, deploy_params, run_stream,
                                        stack_name)
from stackctl.errors import StackctlError, UsageError

PULL_POLICIES = ("always", "missing", "never", "build")


# --- shared helpers -----------------------------------------------------------------------

def _format_option(f):
    return click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                        show_default=True, help="Progress output: text, or one JSON object "
                        "per event.")(f)


# --- up -----------------------------------------------------------------------------------

@click.command(name="up")
@stack_options
@click.option("-d", "--detach", is_flag=True,
              help="Detached mode: return once the containers are created and started.")
@click.option("--wait", is_flag=True, help="Wait for services to be running|healthy. "
              "Implies detached mode.")
@click.option("--wait-timeout", type=float, default=None, metavar="SECONDS",
              help="Maximum duration to wait for the stack to be running|healthy.")
@click.option("--build", is_flag=True, help="Build images before starting containers.")
@click.option("--pull", type=click.Choice(PULL_POLICIES), default=None,
              help='Pull image before running ("always"|"missing"|"never"|"build").')
@click.option("--with-registry-auth", is_flag=True,
              help="Send this machine's registry credentials (stackctl login, Docker's "
                   "config.json) to the nodes for this deploy's pulls (never stored there).")
@click.option("--remove-orphans", is_flag=True,
              help="Remove containers for services not defined in the stack file.")
@click.option("--force-recreate", is_flag=True,
              help="Recreate containers even if their configuration hasn't changed.")
@click.option("--no-recreate", is_flag=True,
              help="If containers already exist, don't recreate them.")
@click.option("--rebalance", is_flag=True,
              help="On a cluster: place every replicated task anew, spreading them over the "
                   "nodes as if none ran (after nodes joined); moved tasks roll as an update.")
@click.option("--no-start", is_flag=True, help="Don't start the services after creating them.")
@click.option("--no-deps", is_flag=True, hidden=True)
@click.option("--no-color", is_flag=True, help="Produce monochrome output.")
@_format_option
@click.argument("services", nargs=-1)
def up(stack: StackArgs, detach: bool, wait: bool, wait_timeout: float | None, build: bool,
       pull: str | None, remove_orphans: bool, force_recreate: bool, no_recreate: bool,
       no_start: bool, no_deps: bool, no_color: bool, fmt: str,
       services: tuple[str, ...], rebalance: bool = False,
       with_registry_auth: bool = False) -> None:
    """Create and start the stack's services (rolling updates for changed ones).

    Without -d, attaches to the logs of the stack's containers once deployed; Ctrl-C then
    stops the stack, as docker compose does."""
    if force_recreate and no_recreate:
        raise UsageError("--force-recreate and --no-recreate are incompatible")
    if wait_timeout is not None and not wait:
        wait = True  # compose: --wait-timeout only makes sense with --wait
    if wait or no_start:
        detach = True
    project = stack.load_project()
    from stackctl.spec.validate import refuse_not_runnable

    refuse_not_runnable(project.stack, project.raw)  # drivers/providers `config` only warns of
    check_services(project, services)
    params = deploy_params(project, services=services, force_recreate=force_recreate,
                           no_recreate=no_recreate, no_start=no_start,
                           remove_orphans=remove_orphans, wait=wait, wait_timeout=wait_timeout,
                           pull=pull, build=build)
    params["options"]["rebalance"] = rebalance
    if build:
        from stackctl.cli.stack_build import build_services

        build_services(project, services, fmt)
    with agent() as client:
        from stackctl.cli.stack_client import selected_inventory

        inv = selected_inventory()
        if inv is not None and any(not n.is_local for n in inv.nodes):
            send_images(client, project, params, services, fmt, built=build, pull=pull)
        request = dict(params)
        if with_registry_auth:
            request["registry_auth"] = registry_credentials(project, services)
        run_stream(client, "stack.deploy", request, fmt, title=f"Running {project.name}",
                   stack=project.name, services=services)
        if detach:
            return
        from stackctl.cli.stack_verbs import attach_and_stop

        attach_and_stop(client, project.name, services, colour=not no_color)


def registry_credentials(project, services: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``up --with-registry-auth``: this user's credentials (stackctl's auth.json, Docker's
    config.json and credential helpers) for the registries of the stack's ``image:``s, as
    ``{registry: RegistryAuth.to_dict()}``; the manager uses them for this deploy's pulls
    only. A registry without stored credentials is left out (pulled anonymously)."""
    from stackctl.runtime.images.registry.auth import CredentialStore
    from stackctl.runtime.images.registry.reference import parse_ref

    store = CredentialStore()
    out: dict[str, dict[str, str]] = {}
    for name, svc in project.stack.services.items():
        if services and name not in services or not svc.image:
            continue
        try:
            registry = parse_ref(svc.image).registry
        except StackctlError:
            continue
        if registry not in out:
            auth = store.get(registry)
            if auth is not None:
                out[registry] = auth.to_dict()
    return out


def send_images(client, project, params: dict[str, Any], services: tuple[str, ...],
                fmt: str, *, built: bool, pull: str | None = None) -> None:
    """On a cluster: the images of this machine's store that the stack's services need go to
    every node that could run them — the nodes whose labels meet the service's placement
    constraints, not only where its tasks are now, so that a task moved off a lost or drained
    node finds its image where it lands (only the layers a node lacks travel). Services with
    a ``build:`` whose image is not here are built here first, as Compose builds where it
    runs. An image this machine does not have is left to the nodes (already there, or
    pulled from its registry), and so is an ``image:`` with ``pull_policy: always`` or
    ``--pull always``: each node pulls it itself."""
    from stackctl.cli.progress import renderer_for
    from stackctl.cli.remote import ssh_argv
    from stackctl.cli.stack_build import build_services, image_name
    from stackctl.cli.stack_client import selected_inventory
    from stackctl.cluster.ship import ship
    from stackctl.paths import default_paths
    from stackctl.runtime.images.store import ImageStore
    from stackctl.scheduler.constraints import matches_all
    from stackctl.scheduler.nodes import NodeSnapshot

    store = ImageStore(default_paths().images)
    wanted = {name: image_name(project.name, name, svc)
              for name, svc in project.stack.services.items()
              if not services or name in services}
    for name in list(wanted):
        svc = project.stack.services[name]
        if svc.image and (pull or svc.pull_policy) == "always":
            del wanted[name]  # the nodes pull it from its registry
    if not built:
        missing = tuple(n for n, ref in wanted.items()
                        if getattr(project.stack.services[n], "build", None) is not None
                        and not store.exists(ref))
        if missing:
            build_services(project, missing, fmt)
    local = {n: ref for n, ref in wanted.items() if store.exists(ref)}
    if not local:
        return
    inv = selected_inventory()
    snapshots = {n.name: NodeSnapshot(n.name, id=n.id, role=inv.role_of(n),
                                      labels=dict(n.labels))
                 for n in inv.nodes if not n.is_local}
    per_node: dict[str, set[str]] = {}
    for name, ref in local.items():
        constraints = project.stack.services[name].deploy.placement.parsed_constraints()
        for node, snap in snapshots.items():
            if not constraints or matches_all(constraints, snap):
                per_node.setdefault(node, set()).add(ref)
    if not per_node:
        return
    out = renderer_for(fmt, title=f"Sending images of {project.name}")
    try:
        ship(store, {n: sorted(refs) for n, refs in per_node.items()},
             lambda node: (lambda argv: ssh_argv((inv, inv.get(node)), argv)), out=out)
    finally:
        out.close()


# --- down ---------------------------------------------------------------------------------

@click.command(name="down")
@stack_options
@click.option("-v", "--volumes", is_flag=True,
              help="Remove named volumes declared in the stack and anonymous volumes.")
@click.option("--remove-orphans", is_flag=True,
              help="Remove containers for services not defined in the stack file.")
@click.option("-t", "--timeout", type=int, default=None,
              help="Shutdown timeout in seconds.")
@_format_option
def down(stack: StackArgs, volumes: bool, remove_orphans: bool, timeout: int | None,
         fmt: str) -> None:
    """Stop and remove the stack's containers, networks (and with -v, volumes)."""
    from stackctl.cli.stack_client import StackCommandError

    name = stack_name(stack)
    with agent() as client:
        try:
            run_stream(client, "stack.remove", {"name": name, "volumes": volumes,
                                                "remove_orphans": remove_orphans,
                                                "timeout": timeout},
                       fmt, title=f"Running {name}", stack=name)
        except StackCommandError as exc:
            if exc.code != "not_found":
                raise
            # as docker compose: nothing to remove is not an error
            click.echo(f"warning: no resource found to remove for stack {name}", err=True)


# --- plan ---------------------------------------------------------------------------------

@click.command(name="plan")
@stack_options
@click.option("--force-recreate", is_flag=True, help="Plan as if given to up.")
@click.option("--no-recreate", is_flag=True, help="Plan as if given to up.")
@click.option("--no-start", is_flag=True, help="Plan as if given to up.")
@click.option("--remove-orphans", is_flag=True, help="Plan as if given to up.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.argument("services", nargs=-1)
def plan(stack: StackArgs, force_recreate: bool, no_recreate: bool, no_start: bool,
         remove_orphans: bool, fmt: str, services: tuple[str, ...]) -> None:
    """Show what `up` would do: create / recreate / start / remove per slot, in waves, with
    the reason for each. Changes nothing."""
    if force_recreate and no_recreate:
        raise UsageError("--force-recreate and --no-recreate are incompatible")
    project = stack.load_project()
    check_services(project, services)
    params = deploy_params(project, services=services, force_recreate=force_recreate,
                           no_recreate=no_recreate, no_start=no_start,
                           remove_orphans=remove_orphans)
    with agent() as client:
        result = client.call("stack.plan", params)
    if fmt == "json":
        click.echo(json.dumps(result.get("plan"), indent=2))
    else:
        click.echo(result.get("text", ""), nl=False)


# --- ls -----------------------------------------------------------------------------------

@click.command(name="ls")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all stopped stacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only display stack names.")
@click.option("--filter", "filters", multiple=True, help="Filter output (name=...).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def ls(all_: bool, quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List stacks (NAME STATUS CONFIG FILES, like docker compose ls)."""
    with agent() as client:
        stacks = client.call("stack.list", {}) or []
    rows = ls_rows(stacks, all_=all_, filters=filters)
    if quiet:
        for r in rows:
            click.echo(r["Name"])
    elif fmt == "json":
        click.echo(json.dumps(rows))
    else:
        click.echo(ls_table(rows))


def ls_rows(stacks: list[dict[str, Any]], *, all_: bool = False,
            filters: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """``docker compose ls --format json`` rows; without ``-a`` only stacks with something
    running."""
    wanted = {}
    for f in filters:
        key, eq, value = f.partition("=")
        if not eq or key != "name":
            raise UsageError(f"invalid filter {f!r}", hint="supported: name=NAME")
        wanted[key] = value
    rows = []
    for s in sorted(stacks, key=lambda s: s.get("name", "")):
        status = s.get("status") or ""
        if not all_ and "running" not in status:
            continue
        if "name" in wanted and wanted["name"] not in s.get("name", ""):
            continue
        files = s.get("files") or []
        rows.append({"Name": s.get("name", ""), "Status": status,
                     "ConfigFiles": ",".join(files) if isinstance(files, list) else str(files)})
    return rows


def ls_table(rows: list[dict[str, str]]) -> str:
    from stackctl.cli.format import table

    return table(("NAME", "STATUS", "CONFIG FILES"),
                 [[r["Name"], r["Status"], r["ConfigFiles"]] for r in rows])


# --- scale / rollback ---------------------------------------------------------------------

def parse_scales(items: tuple[str, ...]) -> dict[str, int]:
    scales: dict[str, int] = {}
    for item in items:
        service, eq, n = item.partition("=")
        if not eq or not service or not n.isdigit():
            raise UsageError(f"invalid scale {item!r}: expected SERVICE=REPLICAS, e.g. web=3")
        scales[service] = int(n)
    return scales


@click.command(name="scale")
@stack_options
@_format_option
@click.argument("scales", nargs=-1, required=True, metavar="SERVICE=REPLICAS...")
def scale(stack: StackArgs, fmt: str, scales: tuple[str, ...]) -> None:
    """Set the number of replicas of services (kept until the next `up`)."""
    wanted = parse_scales(scales)
    name = stack_name(stack)
    with agent() as client:
        run_stream(client, "stack.scale", {"name": name, "scales": wanted}, fmt,
                   title=f"Scaling {name}", stack=name, services=tuple(wanted))


@click.command(name="rollback")
@stack_options
@_format_option
@click.argument("services", nargs=-1)
def rollback(stack: StackArgs, fmt: str, services: tuple[str, ...]) -> None:
    """Roll services back to their previous version (all services when none is named)."""
    name = stack_name(stack)
    with agent() as client:
        run_stream(client, "stack.rollback", {"name": name, "services": list(services)}, fmt,
                   title=f"Rolling back {name}", stack=name, services=services)
