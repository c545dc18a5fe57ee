"""Pooled starts: a container's cgroup, setup child and monitor made before anyone asks.

A start spends most of its time on three things that do not depend on the container: the
launcher's cgroup, the setup child's first cgroup-v1 attach (the kernel waits for an RCU grace
period, 12–20 ms here) and the monitor's interpreter start (~13 ms). A long-lived process (the
warm server, :mod:`stackctl.warm.server`) keeps a few *slots* with all three done: a cgroup
named ``pool-<hex>`` under the node's cgroup parent, the setup child already in it waiting for
its configuration, and the monitor waiting to learn whose it is.

Claiming a slot (:func:`claim`, called by :func:`stackctl.runtime.containers.api.prepare_start`
with a slot this process holds, or one it borrows from the warm server: :func:`borrow`) renames the cgroup to the container's id in every hierarchy, writes
the container's limits, tells the monitor the container's directories and flags, and returns an
ordinary :class:`~stackctl.runtime.containers.api.PreparedStart`: the rest of the start is the
one every container takes. A slot fits a container without a tty, stdin or ``privileged`` on
cgroup v1 (cgroup2 has no rename); anything else starts the ordinary way.

A slot belongs to whoever holds its three pipe ends. When they are closed without a claim (the
holder exited, was killed, or did not need it) the monitor kills the setup child and removes
the cgroup: a slot cannot outlive its holder.
"""

from __future__ import annotations

import os
import secrets

from stackctl.paths import NodePaths

POOL_PREFIX = "pool-"

# the slots this process holds (the warm server's worker gets the one it was handed)
_held: list[Slot] = []


class Slot:
    def __init__(self, paths: NodePaths, name: str, claim_w: int, cfg_w: int, ready_r: int, pid: int = 0) -> None:
        self.paths, self.name, self.pid = paths, name, pid  # pid: the monitor's (0: unknown)
        self.claim_w, self.cfg_w, self.ready_r = claim_w, cfg_w, ready_r

    def fds(self) -> tuple[int, int, int]:
        return self.claim_w, self.cfg_w, self.ready_r

    def fits(self, paths: NodePaths, spec, attach: bool) -> bool:  # noqa: ARG002 - attach is a monitor flag, any fits
        return self.claim_w >= 0 and paths == self.paths and fits_any(spec)

    def close(self) -> None:
        """Give the slot up (idempotent): it removes itself."""
        for fd in self.fds():
            if fd >= 0:
                os.close(fd)
        self.claim_w = self.cfg_w = self.ready_r = -1


def hold(slots: list[Slot]) -> None:
    """Make ``slots`` the ones this process claims from."""
    _held[:] = slots


def held() -> list[Slot]:
    return list(_held)


def fill(paths: NodePaths) -> Slot:
    """Start one slot (returns at once; the slot gets ready in the background)."""
    from stackctl.runtime.containers import api

    name = POOL_PREFIX + secrets.token_hex(6)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    cfg_r, cfg_w = os.pipe2(os.O_CLOEXEC)
    claim_r, claim_w = os.pipe2(os.O_CLOEXEC)
    keep = {ready_w, cfg_r, claim_r}
    # One fork, not the detaching double fork of an ordinary start: the slot's monitor stays a
    # child of the caller (a long-lived server, which reaps it whenever it ends) and forking a
    # large process twice would cost the start that runs meanwhile.
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            _reset_signals()
            _close_all_but(keep)
            api._launch(paths, name, {"privileged": False}, False, False, "p", ready_w, cfg_r, claim_r)
        finally:
            os._exit(0)
    for fd in keep:
        os.close(fd)
    return Slot(paths, name, claim_w, cfg_w, ready_r, pid)


def _reset_signals() -> None:
    """The forker's signal handling is not the monitor's: defaults, no wakeup descriptor."""
    import signal

    signal.set_wakeup_fd(-1)
    for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _close_all_but(keep: set[int]) -> None:
    """Close every descriptor above 2 but ``keep``: the slot's processes must not hold another
    slot's pipes (each would keep the other alive) or the warm server's socket."""
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    from stackctl import trace

    trace._fd = -1  # its file was closed too: reopened at the next mark


# what a borrower asks the warm server for (see :func:`borrow`)
SLOT_REQUEST = b"S1\0\0\0\0"
BORROW_TIMEOUT = 2.0


def fits_any(spec) -> bool:
    """Whether any slot could take ``spec`` (pure)."""
    return not spec.tty and not spec.stdin_open and not spec.privileged


def describe(slot: Slot) -> bytes:
    """How a slot travels with its descriptors (SCM_RIGHTS, in :meth:`Slot.fds` order) between
    processes: ``name pid state run cgroup_parent`` (NUL-separated), so that the receiver can
    check it is for its own node (:func:`received`)."""
    p = slot.paths
    return b"\0".join(s.encode() for s in (slot.name, str(slot.pid), p.state, p.run, p.cgroup_parent))


def received(msg: bytes, fds: list[int]) -> Slot | None:
    """The slot :func:`describe` sent with ``fds``; None (and the descriptors closed: the slot
    removes itself) when the message is not one."""
    parts = msg.split(b"\0")
    if len(fds) != 3 or len(parts) != 5:
        for fd in fds:
            os.close(fd)
        return None
    name, pid, state, run, parent = (p.decode() for p in parts)
    return Slot(NodePaths(state=state, run=run, cgroup_parent=parent), name, *fds, int(pid))


def borrow(paths: NodePaths) -> Slot | None:
    """A slot from the node's warm server (:mod:`stackctl.warm.server`), or None: no server
    answers, it has no slot ready, or its slot is for other node paths. The agent's own
    starts (a stack's tasks) come this way; so does any start a warm worker has no slot for."""
    import socket

    from stackctl.warm.files import socket_path

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(BORROW_TIMEOUT)
    try:
        s.connect(socket_path(paths))
        s.sendall(SLOT_REQUEST)
        msg, fds, _flags, _addr = socket.recv_fds(s, 4096, 3)
    except OSError:
        return None
    finally:
        s.close()
    slot = received(msg, fds)
    if slot is not None and slot.paths != paths:
        slot.close()  # another node's: it removes itself
        return None
    return slot


def claim(paths: NodePaths, spec, attach: bool):
    """A :class:`PreparedStart` for ``spec`` from a held slot that fits, else from one
    borrowed from the node's warm server; or None (no slot, or it could not be claimed: then
    it is given up and the caller starts the ordinary way)."""
    slot = next((s for s in _held if s.fits(paths, spec, attach)), None)
    if slot is not None:
        _held.remove(slot)
    elif fits_any(spec):
        slot = borrow(paths)
    if slot is None:
        return None
    return claim_slot(slot, paths, spec, attach)


def claim_slot(slot: Slot, paths: NodePaths, spec, attach: bool):
    """Claim ``slot`` for ``spec`` (see :func:`claim`)."""
    from stackctl.runtime.containers import api
    from stackctl.runtime.containers.cgroups import detect
    from stackctl.trace import mark

    res = dict(spec.resources_json(), privileged=False)
    try:
        cg = detect.open_cgroup(detect.layout(), paths.cgroup_parent, slot.name)
        # a slot just made (the agent starts several tasks at once, and borrows each new
        # one at once) may have its setup child still joining the cgroup by its pool name:
        # renamed now, the child would not find it. It joins the hierarchies in order, so a
        # process in the last one means it is done; else the start goes the ordinary way.
        with open(cg.procs_files()[-1]) as f:
            if not f.read().strip():
                raise LookupError("the slot's setup child has not joined its cgroup yet")
        cg.rename(spec.id)
    except Exception:  # noqa: BLE001 - cgroup2 (no rename), the slot not ready or gone: start the ordinary way
        slot.close()
        return None
    flags = ("a" if attach else "") + ("r" if spec.auto_remove else "") + "-"
    claim_w, slot.claim_w = slot.claim_w, -1
    try:
        os.write(claim_w, f"{api.container_dir(paths, spec.id)}\n{api.run_dir(paths, spec.id)}\n{flags}".encode())
    except OSError:  # the slot died: its cgroup (now the container's) goes with a cancel
        pass
    finally:
        os.close(claim_w)
    prepared = api.PreparedStart(spec.id, api._start_key(spec, attach), slot.cfg_w, slot.ready_r)
    slot.cfg_w = slot.ready_r = -1
    try:
        cg.set_limits(res)
    except Exception:  # noqa: BLE001 - e.g. no memory controller: the ordinary start reports it
        prepared.cancel()  # the monitor removes the cgroup (now named by the id) before EOF
        return None
    mark("core: pool slot claimed")
    return prepared
