"""`stackctl network ...`: thin commands over :mod:`stackctl.net.networks`, with Docker's
output shapes."""

from __future__ import annotations

import json

import click

from stackctl.errors import UsageError


def _paths():
    from stackctl.paths import default_paths

    return default_paths()


def _labels(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid label {item!r}: expected KEY=VALUE")
        out[key] = value if sep else ""
    return out


@click.group("network")
def network() -> None:
    """Manage networks."""


@network.command("create")
@click.option("-d", "--driver", default="bridge", show_default=True, help="Network driver.")
@click.option("--subnet", help="Subnet in CIDR form (default: a free /24 from 10.89.0.0/16).")
@click.option("--gateway", help="Gateway address (default: the subnet's first address).")
@click.option("--ip-range", help="Allocate container addresses from this sub-range.")
@click.option("--internal", is_flag=True, help="No access to or from outside the network.")
@click.option("--attachable", is_flag=True, help="Let standalone containers attach.")
@click.option("-l", "--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set metadata.")
@click.option("-o", "--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="Driver options (com.docker.network.driver.mtu=N).")
@click.argument("name")
def create(driver, subnet, gateway, ip_range, internal, attachable, labels, opts, name) -> None:
    """Create a network."""
    from stackctl.net import networks

    mtu = 1500
    for key, value in _labels(opts).items():
        if key in ("com.docker.network.driver.mtu", "mtu"):
            try:
                mtu = int(value)
            except ValueError:
                raise UsageError(f"invalid MTU {value!r}") from None
        else:
            raise UsageError(f"unknown network option {key!r}")
    if gateway and not subnet:
        raise UsageError("--gateway needs --subnet")
    net = networks.create(_paths(), name, subnet=subnet, gateway=gateway, ip_range=ip_range,
                          internal=internal, attachable=attachable, labels=_labels(labels),
                          mtu=mtu, driver=driver)
    click.echo(net.id)


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def ls(quiet, no_trunc, fmt) -> None:
    """List networks."""
    from stackctl.net import networks

    nets = networks.list_networks(_paths())
    if quiet:
        for n in nets:
            click.echo(n.id if no_trunc else n.short_id)
        return
    if fmt == "json":
        for n in nets:
            click.echo(json.dumps({"ID": n.id if no_trunc else n.short_id, "Name": n.name,
                                   "Driver": n.driver, "Scope": "local",
                                   "Internal": str(n.internal).lower(),
                                   "Labels": ",".join(f"{k}={v}" for k, v in n.labels.items()),
                                   "CreatedAt": n.created}))
        return
    rows = [("NETWORK ID", "NAME", "DRIVER", "SCOPE")]
    rows += [(n.id if no_trunc else n.short_id, n.name, n.driver, "local") for n in nets]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths)) + "   " + r[3])


@network.command("inspect")
@click.argument("names", nargs=-1, required=True)
def inspect(names) -> None:
    """Display detailed information on one or more networks."""
    from stackctl.net import networks, store

    paths = _paths()
    state = store.load(paths)
    out = [networks.inspect(paths, networks.get(paths, n, state), state) for n in names]
    click.echo(json.dumps(out, indent=4))


@network.command("rm")
@click.argument("names", nargs=-1, required=True)
def rm(names) -> None:
    """Remove one or more networks."""
    from stackctl.net import networks

    paths = _paths()
    for name in names:  # one at a time, so that an error names the network that failed
        networks.remove(paths, [name])
        click.echo(name)


@network.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
def prune(force) -> None:
    """Remove all unused networks."""
    from stackctl.net import networks

    if not force:
        click.echo("WARNING! This will remove all custom networks not used by at least one container.")
        if not click.confirm("Are you sure you want to continue?", default=False):
            return
    removed = networks.prune(_paths())
    if removed:
        click.echo("Deleted Networks:")
        for name in removed:
            click.echo(name)


@network.command("connect")
@click.option("--alias", "aliases", multiple=True, help="Add network-scoped alias for the container.")
@click.option("--ip", default="", help="IPv4 address (e.g., 172.30.100.104).")
@click.argument("network_name", metavar="NETWORK")
@click.argument("container")
def connect(aliases, ip, network_name, container) -> None:
    """Connect a container to a network (one more interface, also while it runs)."""
    from stackctl.cli.common import manager
    from stackctl.runtime import container_ops

    container_ops.connect(manager(), network_name, container, aliases=list(aliases), ip=ip)


@network.command("disconnect")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect from a network.")
@click.argument("network_name", metavar="NETWORK")
@click.argument("container")
def disconnect(force, network_name, container) -> None:
    """Disconnect a container from a network."""
    from stackctl.cli.common import manager
    from stackctl.runtime import container_ops

    container_ops.disconnect(manager(), network_name, container, force=force)
