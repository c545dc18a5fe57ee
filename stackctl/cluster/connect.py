"""How the CLI reaches the nodes of an inventory and its manager.

- :func:`manager_client`: a blocking :class:`~stackctl.agent.client.AgentClient` to the
  manager — the local agent when there is no inventory or the manager is ``local``, else over
  SSH (the manager's agent through ``stackctl agent dial-stdio`` there).
- :func:`node_statuses` / :func:`notify_inventory`: ``cluster.nodes`` and
  ``cluster.update_inventory`` on the manager, which a CLI command survives without (a
  warning line, never an error): `node ls` shows ``Unknown`` then.
- :func:`open_node`: one kept asyncssh connection to a node for the steps of a bootstrap.
- :func:`check_host_key`: `node add`'s host-key check (refuse an unknown key with its
  fingerprint; with ``accept``, write it to the known_hosts file after printing it).

SSH options per node come from the inventory (``identity``, ``known_hosts``, relative to the
inventory's folder); everything else from the user's ``~/.ssh/config`` as ``ssh`` reads it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from stackctl.cluster.inventory import Inventory, Node
from stackctl.errors import StackctlError

# What the CLI's own key runs on a node to reach its agent: the launcher under the node's
# prefix (a per-node STACKCTL_PREFIX comes from the node's sshd environment, hence the shell
# expansion there). The manager's key does not need it: the node forces its command.
# When the prefix has none (a node set up by hand, the demo cluster), the stackctl on PATH.
from stackctl.transport.target import REMOTE_COMMAND  # noqa: E402,F401  (one definition)
STATUS_TIMEOUT = 5.0


def ssh_target(node: Node):
    from stackctl.transport.target import SSHTarget

    return SSHTarget.parse(node.url)


def ssh_options(inv: Inventory, node: Node, *, connect_timeout: float | None = None):
    from stackctl.transport.ssh import CONNECT_TIMEOUT, SSHOptions

    identity = inv.resolve(node.identity)
    if identity and not os.path.isfile(identity):
        raise StackctlError(f"the identity file of node {node.name} does not exist: {identity}",
                            hint=f"fix `identity:` of {node.name} in {inv.path or 'the inventory'}")
    return SSHOptions(identity=identity, known_hosts=inv.resolve(node.known_hosts),
                      connect_timeout=connect_timeout or CONNECT_TIMEOUT,
                      remote_command=REMOTE_COMMAND)


@asynccontextmanager
async def open_node(inv: Inventory, node: Node) -> AsyncIterator[Any]:
    """An :class:`~stackctl.transport.ssh.SSHConnection` to ``node`` for the block (None for
    the ``local`` node: this machine, no SSH)."""
    if node.is_local:
        yield None
        return
    from stackctl.transport.ssh import connect_ssh

    async with connect_ssh(ssh_target(node), ssh_options(inv, node), name=node.name) as conn:
        yield conn


def manager_is_local(inv: Inventory | None) -> bool:
    return inv is None or inv.manager is None or inv.manager.is_local


def manager_client(inv: Inventory | None, *, timeout: float | None = 30.0):
    """A blocking agent client to the manager (not yet connected: use it in ``with``). The
    local agent when ``inv`` is None, empty, or its manager is ``local``; else the manager's
    agent over OpenSSH (``ssh -T ... stackctl agent dial-stdio``), so the user's
    ``~/.ssh/config``, agent and ControlMaster apply as they do for ``ssh``."""
    from stackctl.agent.client import AgentClient
    from stackctl.paths import default_paths

    if manager_is_local(inv):
        return AgentClient(default_paths(), timeout=timeout)
    assert inv is not None and inv.manager is not None
    from stackctl.transport import openssh  # helper-7's blocking OpenSSH path

    options = ssh_options(inv, inv.manager, connect_timeout=timeout and min(timeout, 10.0))
    return openssh.ssh_agent_client(ssh_target(inv.manager), options,
                                    node=inv.manager.name, timeout=timeout)


def _method_missing(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    return code == "bad_request" and "unknown method" in str(exc) or code == "not_found" and \
        "method" in str(exc)


def manager_call(inv: Inventory | None, method: str, params: dict[str, Any] | None = None,
                 *, timeout: float = STATUS_TIMEOUT) -> Any:
    """One call on the manager through :func:`manager_client` (the local socket, or OpenSSH
    with the user's SSH setup). Raises the agent's error, AgentUnavailable or the transport's
    NodeUnreachable / host-key errors."""
    with manager_client(inv, timeout=timeout) as c:
        return c.call(method, params or {})


def _reason(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


def node_statuses(inv: Inventory) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The manager's view of each node (``cluster.nodes``: name -> {status, last_heartbeat,
    engine_version}), and a warning when it has none to give (unreachable, or an agent that
    does not serve the method: then the manager's own row comes from ``agent.info``)."""
    manager = inv.manager
    if manager is None:
        return {}, None
    try:
        rows = manager_call(inv, "cluster.nodes")
    except StackctlError as exc:
        from stackctl.agent.client import AgentUnavailable

        if isinstance(exc, AgentUnavailable) and manager_is_local(inv):
            return {}, ("this machine's agent is not running (a stack command starts it, or "
                        "`stackctl agent serve`); STATUS is Unknown")
        if not _method_missing(exc):
            return {}, f"the manager ({manager.name}) does not answer: {_reason(exc)}; STATUS is Unknown"
        try:
            info = manager_call(inv, "agent.info")
        except StackctlError as exc2:
            return {}, f"the manager ({manager.name}) does not answer: {_reason(exc2)}"
        return ({manager.name: {"status": "ready", "engine_version": info.get("version"),
                                "last_heartbeat": None}},
                f"the manager ({manager.name}) does not serve cluster.nodes; only its own "
                "status is known")
    out: dict[str, dict[str, Any]] = {}
    for row in rows or []:
        if isinstance(row, dict) and row.get("name"):
            out[str(row["name"])] = row
    return out, None


def inventory_params(inv: Inventory) -> dict[str, Any]:
    """``cluster.update_inventory``'s params: every node (files' paths resolved from the
    inventory's folder) and the manager's name."""
    nodes = []
    for n in inv.nodes:
        row = n.public(inv.role_of(n))
        row["identity"] = inv.resolve(n.identity)
        row["known_hosts"] = inv.resolve(n.known_hosts)
        nodes.append(row)
    return {"nodes": nodes, "manager": inv.manager.name if inv.manager else None}


def notify_inventory(inv: Inventory) -> str | None:
    """Tell the manager the inventory changed (``cluster.update_inventory``); a warning when
    it cannot be told (it reads the file again when it starts)."""
    manager = inv.manager
    if manager is None:
        return None
    try:
        manager_call(inv, "cluster.update_inventory", inventory_params(inv))
    except StackctlError as exc:
        if _method_missing(exc):
            return (f"the manager ({manager.name}) does not serve cluster.update_inventory: "
                    "it sees the change when it reads the inventory again")
        from stackctl.agent.client import AgentUnavailable

        if isinstance(exc, AgentUnavailable) and manager_is_local(inv):
            return None  # no local agent running: it reads the file when it starts
        return f"the manager ({manager.name}) was not told: {_reason(exc)}"
    return None


# -- host keys --------------------------------------------------------------------------------


def known_hosts_file(inv: Inventory, node: Node) -> str:
    return inv.resolve(node.known_hosts) or os.path.expanduser("~/.ssh/known_hosts")


def check_host_key(inv: Inventory, node: Node, *, accept: bool,
                   echo: Callable[[str], None] = print) -> str:
    """Connect to ``node`` once (host key and login). An unknown host key is refused
    (:class:`~stackctl.transport.errors.HostKeyUnknown`, with its fingerprint) unless
    ``accept``: then its fingerprint is printed, the key appended to the node's known_hosts
    file, and the connection tried again. A changed key is always refused. Returns the
    known_hosts file used."""
    import trio

    from stackctl.transport.errors import HostKeyUnknown

    path = known_hosts_file(inv, node)

    async def connect_once() -> None:
        async with open_node(inv, node):
            pass

    try:
        trio.run(connect_once)
        return path
    except HostKeyUnknown:
        if not accept:
            raise
    from stackctl.transport.ssh import fetch_host_key

    line, fingerprint = trio.run(fetch_host_key, ssh_target(node), ssh_options(inv, node))
    echo(f"host key of {node.name} ({node.url}): {line.split()[1]} {fingerprint}; "
         f"accepted (--accept-host-key), written to {path}")
    append_known_host(path, line)
    trio.run(connect_once)
    return path


def append_known_host(path: str, line: str) -> None:
    d = os.path.dirname(path)
    if d and not os.path.isdir(d):
        os.makedirs(d, mode=0o700, exist_ok=True)
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    if line.strip() in (x.strip() for x in text.splitlines()):
        return
    with open(path, "a") as f:
        if text and not text.endswith("\n"):
            f.write("\n")
        f.write(line.strip() + "\n")


def trusted_host_key_lines(inv: Inventory, node: Node) -> list[str]:
    """``node``'s host keys as the CLI's known_hosts trusts them, as known_hosts lines under
    the name the manager will look up (the URL's host, ``[host]:port`` off port 22)."""
    if node.is_local:
        return []
    import asyncssh

    from stackctl.transport.errors import _known_name

    target = ssh_target(node)
    path = known_hosts_file(inv, node)
    if not os.path.isfile(path):
        return []
    port = target.port or 22
    try:
        keys = asyncssh.match_known_hosts([path], target.host, "", port if port != 22 else None)[0]
    except (OSError, ValueError, asyncssh.KeyImportError):
        return []
    name = _known_name(target.host, port)
    return [f"{name} {k.export_public_key('openssh').decode().split()[0]} "
            f"{k.export_public_key('openssh').decode().split()[1]}" for k in keys]
