"""Container verbs on another node of the stack's cluster: ``exec``, ``top`` and the attached
part of ``run`` work on the node's own runtime, so for a container on another machine the CLI
runs the same stackctl command there, over OpenSSH (the user's config, keys and agent, as
``ssh`` uses them; ``-tt`` for a terminal). The manager placed the container; the node runs
it; the CLI's terminal is joined to it end to end by ssh — which is also how ``docker -H
ssh://`` reaches a remote engine.

Host keys are checked strictly, as everywhere (docs/transport.md).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence
from typing import Any



def remote_node(node: str | None) -> Any:
    """The inventory node a container row names, when it is another machine; else None."""
    if not node or node == "local":
        return None
    from stackctl.cli.stack_client import selected_inventory

    inv = selected_inventory()
    if inv is None:
        return None
    n = inv.get(node)
    return None if n.is_local else (inv, n)


def ssh_argv(where: Any, argv: Sequence[str], *, tty: bool = False) -> list[str]:
    """``ssh ... NODE 'stackctl ARGV...'`` for ``where`` (from :func:`remote_node`)."""
    from stackctl.cluster.connect import ssh_options, ssh_target
    from stackctl.transport import openssh

    inv, node = where
    from stackctl.transport.target import NODE_STACKCTL

    command = NODE_STACKCTL + 'exec "$p" ' + shlex.join(list(argv))
    out = openssh.ssh_argv(ssh_target(node), ssh_options(inv, node), command)
    if tty:
        out[out.index("-T")] = "-tt"
    return out


def run_there(where: Any, argv: Sequence[str], *, tty: bool = False) -> int:
    """Run ``stackctl ARGV`` on the node with this terminal; its exit status (ssh's 255 when
    ssh itself failed: its own message is on stderr)."""
    sys.stdout.flush()
    return subprocess.call(ssh_argv(where, argv, tty=tty))
