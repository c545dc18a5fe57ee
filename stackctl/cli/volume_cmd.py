"""``stackctl volume create | ls | inspect | rm | prune``, shaped like ``docker volume``."""

from __future__ import annotations

import click

from stackctl.cli.common import for_each, inspect_each, print_pruned
from stackctl.cli.common import manager as _manager


def _kv(entries: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for e in entries:
        k, _, v = e.partition("=")
        out[k] = v
    return out


@click.group()
def volume() -> None:
    """Manage named volumes."""


@volume.command()
@click.option("-d", "--driver", default="local", show_default=True, help="Specify volume driver name.")
@click.option("--label", multiple=True, help="Set metadata for a volume (K=V).")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options.")
@click.option("--name", "name_opt", default=None, hidden=True)
@click.argument("name", required=False)
def create(driver: str, label: tuple[str, ...], opt: tuple[str, ...], name_opt: str | None, name: str | None) -> None:
    """Create a volume (a random name if none is given)."""
    mgr = _manager()
    with mgr.locked():
        vol = mgr.volumes.create(name or name_opt, labels=_kv(label), options=_kv(opt), driver=driver)
    click.echo(vol.name)


@volume.command(name="ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter (name=, label=, dangling=, driver=).")
@click.option("--format", "fmt", default="", help="table, json, or a template.")
def ls(quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List volumes."""
    from stackctl.cli import format as F
    from stackctl.runtime.records import parse_filters
    from stackctl.runtime.volumes import matches

    mgr = _manager()
    flt = parse_filters(filters)
    dangling = mgr.dangling_volumes() if "dangling" in flt else None
    vols = [v for v in mgr.volumes.list() if matches(v, flt, dangling)]
    if quiet:
        for v in vols:
            click.echo(v.name)
        return
    rows = [{"Driver": v.driver, "Name": v.name, "Labels": ",".join(f"{k}={x}" for k, x in v.labels.items()),
             "Mountpoint": v.mountpoint, "Scope": "local", "CreatedAt": v.created_at} for v in vols]
    if fmt == "json":
        if rows:
            click.echo(F.to_json_lines(rows))
    elif fmt and fmt != "table":
        for r in rows:
            click.echo(F.render_template(F.unescape_template(fmt), r))
    else:
        click.echo(F.table(["DRIVER", "VOLUME NAME"], [[r["Driver"], r["Name"]] for r in rows]))


volume.add_command(ls, name="list")


@volume.command()
@click.option("-f", "--format", "fmt", default="", help="Format output using a template.")
@click.argument("names", nargs=-1, required=True)
def inspect(fmt: str, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more volumes."""
    mgr = _manager()
    inspect_each(names, lambda n: mgr.volumes.get(n).inspect(), fmt)


@volume.command()
@click.option("-f", "--force", is_flag=True, help="Do not fail when a volume does not exist.")
@click.argument("names", nargs=-1, required=True)
def rm(force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more volumes. A volume in use by a container cannot be removed."""
    mgr = _manager()

    def one(n: str) -> None:
        mgr.remove_volume(n, force=force)
        click.echo(n)

    for_each(names, one)


volume.add_command(rm, name="remove")


@volume.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused volumes, not just anonymous ones.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Provide filter values (label=...).")
def prune(all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused anonymous volumes (all unused ones with -a)."""
    from stackctl.cli.format import human_size
    from stackctl.runtime.records import parse_filters

    what = "all local volumes" if all_ else "anonymous local volumes"
    if not force and not click.confirm(
            f"WARNING! This will remove {what} not used by at least one container.\n"
            "Are you sure you want to continue?"):
        return
    removed, size = _manager().prune_volumes(all_volumes=all_, filters=parse_filters(filters))
    print_pruned("Volumes", removed, human_size(size))
