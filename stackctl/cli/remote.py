"""Container verbs on another node of the stack's cluster: ``exec``, ``top``, ``cp`` and the
attached part of ``run`` work on the node's own runtime, so for a container on another machine the CLI
runs the same stackctl command there, over OpenSSH (the user's config, keys and agent, as
``ssh`` uses them; ``-tt`` for a terminal). The manager placed the container; the node runs
it; the CLI's terminal is joined to it end to end by ssh — which is also how ``docker -H
ssh://`` reaches a remote engine.

Host keys are checked strictly, as everywhere (docs/transport.md).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from stackctl.errors import StackctlError


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


# --- cp ---------------------------------------------------------------------------------------
# A copy to or from a container on another node streams a tar over the ssh channel: the node
# runs `stackctl cp` with '-' on its side (`CONTAINER:SRC -` writes the archive of SRC;
# `--place - CONTAINER:DEST` places an archive of one path as `cp SRC CONTAINER:DEST` would),
# and this side makes or unpacks the archive with the same code a local copy uses.


def _failed(proc: subprocess.CompletedProcess, label: str) -> StackctlError:
    """The node's own error line (``error: ...``, with its hint), or ssh's, as one error."""
    lines = [ln.strip() for ln in (proc.stderr or b"").decode(errors="replace").splitlines()
             if ln.strip()]
    errors = [ln[len("error: "):] for ln in lines if ln.startswith("error: ")]
    hints = [ln[len("hint: "):] for ln in lines if ln.startswith("hint: ")]
    message = errors[0] if errors else (lines[-1] if lines else f"exit status {proc.returncode}")
    return StackctlError(f"{label}: {message}", hint=hints[0] if hints else None)


def copy_from(where: Any, label: str, cid: str, path: str, dest: str, *,
              follow_link: bool = False, quiet: bool = False) -> None:
    """``cp SERVICE:PATH DEST`` for a container on another node (``label``: how the error
    names it, e.g. ``web.1 on node n2``): the node writes the archive of PATH; ``DEST`` ``-``
    passes it on to stdout, else it is unpacked here by ``docker cp``'s rules."""
    from stackctl.cli import container_extra_cmd as X
    from stackctl.errors import UsageError
    from stackctl.runtime import container_fs as fs

    if not path:  # as a local copy says it (exit 2), before anything travels
        raise UsageError("the source path inside the container must not be empty")
    argv = ["cp", *(["-L"] if follow_link else []), f"{cid}:{path}", "-"]
    if dest == "-":
        if sys.stdout.isatty():
            raise StackctlError("cowardly refusing to write an archive to a terminal",
                                hint="redirect stdout")
        sys.stdout.flush()
        proc = subprocess.run(ssh_argv(where, argv), stdin=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise _failed(proc, label)
        return
    with X._spool() as tmp:
        proc = subprocess.run(ssh_argv(where, argv), stdin=subprocess.DEVNULL, stdout=tmp,
                              stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise _failed(proc, label)
        size = tmp.seek(0, 2)
        tmp.seek(0)
        local = os.path.abspath(dest) + ("/" if dest.endswith("/") else "")
        root = X._host_root()
        try:
            fs.extract_archive(tmp, root, local, keep_owner=True, what="local filesystem")
        finally:
            os.close(root)
    if not quiet:
        print(f"Successfully copied {X._size(size)} to {dest}", file=sys.stderr)


def copy_to(where: Any, label: str, cid: str, path: str, src: str, *, archive: bool = False,
            follow_link: bool = False, quiet: bool = False, name: str = "",
            spooled: Any = None) -> Any:
    """``cp SRC SERVICE:PATH`` for a container on another node: ``SRC`` ``-`` passes stdin
    (a tar, unpacked into the directory PATH) to the node; else the archive of SRC is made
    here (once: ``spooled``, returned, serves the next container of ``--all``) and the node
    places it by ``docker cp``'s rules."""
    from stackctl.cli import container_extra_cmd as X
    from stackctl.runtime import container_fs as fs

    flags = ["-q", *(["-a"] if archive else [])]
    if src == "-":
        proc = subprocess.run(ssh_argv(where, ["cp", *flags, "-", f"{cid}:{path}"]),
                              stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise _failed(proc, label)
        return None
    tmp = spooled
    if tmp is None:
        local = os.path.abspath(src)
        if not os.path.lexists(local):
            raise StackctlError(f"could not find the file {src}: no such file or directory")
        tmp = X._spool()
        root = X._host_root()
        try:
            fs.write_archive(root, local, tmp, follow=follow_link, contents_only=src.endswith("/."))
        finally:
            os.close(root)
    size = tmp.seek(0, 2)
    tmp.seek(0)
    proc = subprocess.run(ssh_argv(where, ["cp", *flags, "--place", "-", f"{cid}:{path}"]),
                          stdin=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise _failed(proc, label)
    if not quiet:
        print(f"Successfully copied {X._size(size)} to {name or cid[:12]}:{path}", file=sys.stderr)
    return tmp
