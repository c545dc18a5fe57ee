"""`stackctl node ...`: the inventory's nodes (stackctl/cluster/, docs/nodes.md).

The inventory file is the source of truth for which nodes exist and how they are reached;
STATUS and ENGINE VERSION come from the manager (``cluster.nodes``). Every change is saved
to the file first, then the manager is told (``cluster.update_inventory``) when it answers.
Output shapes are Docker's (`docker node ls`, `inspect`, `promote`, `demote`, `update`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import click

from stackctl.cluster import inventory as I
from stackctl.errors import StackctlError, UsageError


def _inventory_options(fn: Callable) -> Callable:
    fn = click.option("-f", "--file", "stack_file", default=None, metavar="STACK",
                      help="The stack file: its folder holds nodes.yml.")(fn)
    fn = click.option("--nodes", "nodes_file", default=None, metavar="FILE",
                      help="The inventory file (default $STACKCTL_NODES, else nodes.yml next "
                           "to the stack file or in this folder).")(fn)
    return fn


class _Ctx:
    """The inventory a command works on: loaded from its file, or the local node alone."""

    def __init__(self, stack_file: str | None, nodes_file: str | None) -> None:
        self.path, _why = I.inventory_path(stack_file, nodes_file, os.environ)
        found = I.find_inventory(stack_file, nodes_file, os.environ)
        self.exists = found is not None
        self.inv = I.load_inventory(found) if found else I.Inventory(path=self.path)

    def view(self) -> I.Inventory:
        """What `ls`/`inspect` show: the file's nodes, or this machine when there is none."""
        if self.inv.nodes:
            return self.inv
        import socket

        name = os.environ.get("STACKCTL_NODE_NAME") or socket.gethostname()
        return I.Inventory(path=None, nodes=[I.Node(name=name, url=I.LOCAL_URL, role="manager")])

    def need_file(self) -> I.Inventory:
        if not self.exists or not self.inv.nodes:
            raise StackctlError(f"no inventory ({self.path} does not exist or lists no node): "
                                "stackctl manages this machine alone",
                                hint="add nodes with `stackctl node add ssh://user@host --name NAME`")
        return self.inv

    def save_and_notify(self) -> None:
        I.save_inventory(self.inv, self.path)
        from stackctl.cluster import connect

        warning = connect.notify_inventory(self.inv)
        if warning:
            click.echo(f"warning: {warning}", err=True)


@click.group("node")
def node() -> None:
    """Manage the cluster's nodes (the inventory file, nodes.yml)."""


# -- ls / inspect ---------------------------------------------------------------------------------


def _natural(s: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s.lower())]


_STATUS = {"ready": "Ready", "down": "Down", "unknown": "Unknown", "disconnected": "Disconnected"}


def _rows(inv: I.Inventory, live: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for n in sorted(inv.nodes, key=lambda n: _natural(n.name)):
        manager = inv.role_of(n) == "manager"
        st = live.get(n.name) or (_managers_row(live) if manager else {})
        rows.append({
            "ID": n.id, "Hostname": n.name,
            "Status": _STATUS.get(str(st.get("status") or "unknown"), "Unknown"),
            "Availability": n.availability.capitalize(),
            "ManagerStatus": "Leader" if manager else "",
            "EngineVersion": st.get("engine_version") or "",
            # Docker's `*` marks the node the CLI talks to: here always the manager
            "Self": manager, "URL": n.url, "Labels": dict(n.labels),
            "LastHeartbeat": st.get("last_heartbeat"),
        })
    return rows


def _managers_row(live: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The manager's own row when it calls itself by another name (an agent told no
    inventory yet names itself after $STACKCTL_NODE_NAME or the host)."""
    return next((r for r in live.values() if r.get("manager")), {})


def _live(inv: I.Inventory) -> dict[str, dict[str, Any]]:
    from stackctl.cluster import connect

    live, warning = connect.node_statuses(inv)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    return live


@node.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs.")
@click.option("--format", "fmt", default="table", metavar="table|json",
              help="Output format: table (default) or json (one object per line).")
@_inventory_options
def ls(quiet: bool, fmt: str, stack_file: str | None, nodes_file: str | None) -> None:
    """List nodes (`*` after the ID marks the manager, the node the CLI talks to)."""
    from stackctl.cli import format as F

    ctx = _Ctx(stack_file, nodes_file)
    inv = ctx.view()
    if quiet:
        for n in sorted(inv.nodes, key=lambda n: _natural(n.name)):
            click.echo(n.id)
        return
    rows = _rows(inv, _live(inv))
    if fmt == "json":
        if rows:
            click.echo(F.to_json_lines(rows))
        return
    if fmt != "table":
        raise UsageError(f'--format: expected table or json, got "{fmt}"')
    headers = ("ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION")
    body = [(f"{r['ID']} *" if r["Self"] else f"{r['ID']}  ", r["Hostname"], r["Status"],
             r["Availability"], r["ManagerStatus"], r["EngineVersion"]) for r in rows]
    click.echo(F.table(headers, body))


def _inspect_obj(inv: I.Inventory, n: I.Node, live: dict[str, dict[str, Any]]) -> dict[str, Any]:
    role = inv.role_of(n)
    st = live.get(n.name) or (_managers_row(live) if role == "manager" else {})
    addr = n.address
    obj: dict[str, Any] = {
        "ID": n.id,
        "Spec": {"Name": n.name, "Labels": dict(n.labels), "Role": role,
                 "Availability": n.availability},
        "Description": {"Hostname": n.name,
                        "Engine": {"EngineVersion": st.get("engine_version") or ""}},
        "Status": {"State": str(st.get("status") or "unknown"),
                   "Addr": addr.host if addr else "127.0.0.1",
                   "LastHeartbeat": st.get("last_heartbeat")},
        "URL": n.url,
        "Identity": n.identity, "KnownHosts": n.known_hosts,
    }
    if role == "manager":
        obj["ManagerStatus"] = {"Leader": True, "Reachability": "reachable" if st else "unknown",
                                "Addr": obj["Status"]["Addr"]}
    return obj


def _pretty(obj: dict[str, Any]) -> str:
    labels = obj["Spec"]["Labels"]
    lines = [f"ID:\t\t\t{obj['ID']}", f"Hostname:\t\t{obj['Description']['Hostname']}",
             f"URL:\t\t\t{obj['URL']}", "Status:", f" State:\t\t\t{obj['Status']['State'].capitalize()}",
             f" Availability:\t\t{obj['Spec']['Availability'].capitalize()}",
             f" Address:\t\t{obj['Status']['Addr']}"]
    if "ManagerStatus" in obj:
        lines += ["Manager Status:", f" Address:\t\t{obj['ManagerStatus']['Addr']}",
                  f" Reachability:\t\t{obj['ManagerStatus']['Reachability'].capitalize()}",
                  " Leader:\t\tYes"]
    if labels:
        lines.append("Labels:")
        lines += [f" - {k}={v}" for k, v in labels.items()]
    lines.append(f"Engine Version:\t\t{obj['Description']['Engine']['EngineVersion']}")
    return "\n".join(line.expandtabs(8).rstrip() for line in lines)


@node.command("inspect")
@click.argument("refs", nargs=-1, required=True, metavar="NODE...")
@click.option("--pretty", is_flag=True, help="Print in a human friendly format.")
@_inventory_options
def inspect(refs: tuple[str, ...], pretty: bool, stack_file: str | None, nodes_file: str | None) -> None:
    """Display detailed information on one or more nodes (`self`: the manager)."""
    from stackctl.cli import format as F
    from stackctl.cli.common import print_error

    ctx = _Ctx(stack_file, nodes_file)
    inv = ctx.view()
    found, failed = [], False
    for ref in refs:
        try:
            found.append(inv.manager if ref == "self" and inv.manager else inv.get(ref))
        except StackctlError as exc:
            failed = True
            print_error(exc)
    if found:
        live = _live(inv)
        objs = [_inspect_obj(inv, n, live) for n in found]
        click.echo("\n\n".join(_pretty(o) for o in objs) if pretty else F.to_json_array(objs))
    if failed:
        raise SystemExit(1)


# -- add / rm -----------------------------------------------------------------------------------


def _default_name(url: str) -> str:
    addr = I.parse_url(url)
    if addr is None:
        import socket

        return socket.gethostname().split(".")[0]
    host = addr.host
    try:
        import ipaddress

        ipaddress.ip_address(host)
        return re.sub(r"[^A-Za-z0-9]+", "-", host).strip("-")
    except ValueError:
        return host.split(".")[0]


@node.command("add")
@click.argument("url", metavar="ssh://[USER@]HOST[:PORT]|local")
@click.option("--name", default=None, help="The node's name (default: its host's first label).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A node label (repeatable).")
@click.option("--identity", default=None, metavar="KEY", help="The SSH private key to log in with.")
@click.option("--known-hosts", "known_hosts", default=None, metavar="FILE",
              help="The known_hosts file for this node (default ~/.ssh/known_hosts).")
@click.option("--role", type=click.Choice(["manager", "worker"]), default=None,
              help="manager or worker (default: the first node manages, the others work).")
@click.option("--availability", type=click.Choice(list(I.AVAILABILITIES)), default="active",
              show_default=True)
@click.option("--accept-host-key", is_flag=True,
              help="Trust the node's SSH host key on first contact (its fingerprint is printed "
                   "and written to the known_hosts file).")
@_inventory_options
def add(url: str, name: str | None, labels: tuple[str, ...], identity: str | None,
        known_hosts: str | None, role: str | None, availability: str, accept_host_key: bool,
        stack_file: str | None, nodes_file: str | None) -> None:
    """Add a node to the inventory (its SSH host key must be known, or accepted explicitly).

    Prints the new node's ID."""
    try:
        I.parse_url(url)
    except ValueError as exc:
        raise UsageError(f'invalid URL "{url}": {exc}') from None
    ctx = _Ctx(stack_file, nodes_file)
    name = I.check_name(name or _default_name(url))
    node = I.Node(name=name, url=url, id=I.new_node_id(), role=role, availability=availability,
                  labels=dict(I.parse_label(t) for t in labels), identity=identity,
                  known_hosts=known_hosts)
    ctx.inv.add(node)  # checks names, ids, addresses and the one manager before any network
    if not node.is_local:
        from stackctl.cluster import connect

        connect.check_host_key(ctx.inv, node, accept=accept_host_key, echo=_err)
    ctx.save_and_notify()
    click.echo(node.id)


def _err(line: str) -> None:
    click.echo(line, err=True)


@node.command("rm")
@click.argument("refs", nargs=-1, required=True, metavar="NODE...")
@click.option("--force", is_flag=True, help="Also remove the manager while other nodes remain.")
@_inventory_options
def rm(refs: tuple[str, ...], force: bool, stack_file: str | None, nodes_file: str | None) -> None:
    """Remove nodes from the inventory (their containers are not touched)."""
    from stackctl.cli.common import print_error

    ctx = _Ctx(stack_file, nodes_file)
    inv = ctx.need_file()
    removed, failed = [], False
    for ref in refs:
        try:
            inv.remove(ref, force=force)
            removed.append(ref)
        except StackctlError as exc:
            failed = True
            print_error(exc)
    if removed:
        ctx.save_and_notify()
        for ref in removed:
            click.echo(ref)
    if failed:
        raise SystemExit(1)


# -- label / update / promote / demote ------------------------------------------------------------


def _apply_labels(n: I.Node, add_: tuple[str, ...], rm_: tuple[str, ...]) -> None:
    for key in rm_:
        if key not in n.labels:
            raise StackctlError(f'node {n.name} has no label "{key}"')
        del n.labels[key]
    for text in add_:
        k, v = I.parse_label(text)
        n.labels[k] = v


@node.command("label")
@click.argument("ref", metavar="NODE")
@click.option("--add", "add_", multiple=True, metavar="KEY=VALUE", help="Add or change a label.")
@click.option("--rm", "rm_", multiple=True, metavar="KEY", help="Remove a label.")
@_inventory_options
def label(ref: str, add_: tuple[str, ...], rm_: tuple[str, ...], stack_file: str | None,
          nodes_file: str | None) -> None:
    """Add, change or remove a node's labels (used by placement constraints and spread)."""
    if not add_ and not rm_:
        raise UsageError("nothing to do: give --add KEY=VALUE and/or --rm KEY")
    ctx = _Ctx(stack_file, nodes_file)
    n = ctx.need_file().get(ref)
    _apply_labels(n, add_, rm_)
    ctx.save_and_notify()
    click.echo(ref)


@node.command("update")
@click.argument("ref", metavar="NODE")
@click.option("--availability", type=click.Choice(list(I.AVAILABILITIES)), default=None,
              help="active: takes tasks; pause: keeps its tasks, takes no new ones; drain: its "
                   "tasks move elsewhere.")
@click.option("--label-add", "add_", multiple=True, metavar="KEY=VALUE", help="Add or change a label.")
@click.option("--label-rm", "rm_", multiple=True, metavar="KEY", help="Remove a label.")
@click.option("--role", type=click.Choice(["manager", "worker"]), default=None,
              help="Make the node the manager (one manager for now) or a worker.")
@_inventory_options
def update(ref: str, availability: str | None, add_: tuple[str, ...], rm_: tuple[str, ...],
           role: str | None, stack_file: str | None, nodes_file: str | None) -> None:
    """Update a node's availability, labels or role (as `docker node update`)."""
    if availability is None and not add_ and not rm_ and role is None:
        raise UsageError("nothing to do: give --availability, --label-add, --label-rm or --role")
    ctx = _Ctx(stack_file, nodes_file)
    inv = ctx.need_file()
    n = inv.get(ref)
    if availability is not None:
        n.availability = availability
    _apply_labels(n, add_, rm_)
    if role == "manager":
        inv.promote(ref)
    elif role == "worker":
        _demote(inv, n)
    ctx.save_and_notify()
    click.echo(ref)


def _demote(inv: I.Inventory, n: I.Node) -> bool:
    """False if ``n`` is a worker already."""
    if inv.role_of(n) == "worker":
        return False
    raise StackctlError(f"{n.name} is the only manager: one manager for now, so it cannot be "
                        "demoted", hint="promote another node instead: its role moves there")


@node.command("promote")
@click.argument("refs", nargs=-1, required=True, metavar="NODE")
@_inventory_options
def promote(refs: tuple[str, ...], stack_file: str | None, nodes_file: str | None) -> None:
    """Make a node the manager. One manager for now: the former one becomes a worker."""
    if len(refs) > 1:
        raise UsageError("one manager for now: promote one node")
    ctx = _Ctx(stack_file, nodes_file)
    inv = ctx.need_file()
    new, old = inv.promote(refs[0])
    if old is None:
        click.echo(f"Node {refs[0]} is already a manager.")
        return
    ctx.save_and_notify()
    click.echo(f"Node {refs[0]} promoted to a manager in the swarm.")
    click.echo(f"Manager {old.name} demoted in the swarm (one manager for now).")


@node.command("demote")
@click.argument("refs", nargs=-1, required=True, metavar="NODE...")
@_inventory_options
def demote(refs: tuple[str, ...], stack_file: str | None, nodes_file: str | None) -> None:
    """Demote a manager to a worker (refused for the only manager: promote another node)."""
    ctx = _Ctx(stack_file, nodes_file)
    inv = ctx.need_file()
    for ref in refs:
        if not _demote(inv, inv.get(ref)):
            click.echo(f"Node {ref} is already a worker.")


# -- bootstrap --------------------------------------------------------------------------------


@node.command("bootstrap")
@click.argument("refs", nargs=-1, required=True, metavar="NODE...")
@click.option("--dry-run", is_flag=True, help="Print the steps, change nothing.")
@_inventory_options
def bootstrap(refs: tuple[str, ...], dry_run: bool, stack_file: str | None,
              nodes_file: str | None) -> None:
    """Install (or upgrade) this stackctl on nodes over SSH and (re)start their agents.

    Containers keep running across an upgrade. The manager gets a key of its own, authorized
    on each node for the agent protocol only. See docs/nodes.md."""
    from stackctl.cluster import bootstrap as B

    ctx = _Ctx(stack_file, nodes_file)
    inv = ctx.need_file()
    from stackctl.cli.common import print_error

    nodes = [inv.get(r) for r in refs]
    if dry_run:
        for n in nodes:
            B.bootstrap_node(inv, n, dry_run=True, echo=click.echo)
        return
    results = B.bootstrap_nodes(inv, nodes, echo=click.echo)
    failed = [r for r in results.values() if isinstance(r, StackctlError)]
    for exc in failed:
        print_error(exc)
    from stackctl.cluster import connect

    warning = connect.notify_inventory(inv)  # the manager (re)connects to its nodes
    if warning:
        click.echo(f"warning: {warning}", err=True)
    if failed:
        raise SystemExit(1)
