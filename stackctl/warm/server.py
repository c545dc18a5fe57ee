"""The warm server: runs ``stackctl`` commands in workers forked from a warm interpreter.

A ``stackctl run`` started cold spends most of its time before the container does anything:
starting Python and importing the runtime (~40 ms), the kernel's first cgroup-v1 attach of the
setup child (an RCU grace period) and the monitor's interpreter start (~13 ms each). This
process pays all of that once. It imports the run path, keeps a small pool of prepared starts
(:mod:`stackctl.runtime.containers.pool`), and for every connection on ``<run>/warm.sock``
forks a worker that takes the client's stdin, stdout, stderr, working directory, umask,
environment and arguments (:mod:`stackctl.warm.client`) and runs the very same
:func:`stackctl.cli.main.main` the client would have run — same code, same output, same exit
status — handing it one pool slot.

The agent starts it (``stackctl agent serve``, see :func:`spawn`) and stops it; started by
hand it is ``python3 -m stackctl.warm.server STATE RUN CGROUP_PARENT``. One per node:
``<run>/warm.lock``; a newer server replaces a running one (an upgraded stackctl takes over).
Only clients with the server's own uid are served (SO_PEERCRED; the socket is 0600 in the
0700 run directory). SIGTERM/SIGINT: stop accepting, give the pool up (each slot removes
itself), leave running workers to finish, exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import time

from stackctl.errors import StackctlError
from stackctl.paths import NodePaths
from stackctl.pidlock import holder_pid, write_pid
from stackctl.runtime.containers import pool
from stackctl.warm import client
from stackctl.warm.client import decode_request, frame, run_socket

POOL_SIZE = 2
# commands that may start a container (and so claim a pool slot); other workers give it back
SLOT_COMMANDS = frozenset({"run", "start", "restart"})
REFILL_QUIET = 0.1
SLOT_CLEANUP_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0
MAX_REQUEST = 8 << 20


from stackctl.warm.files import lock_path, pid_path, running_pid  # noqa: E402,F401


def preload() -> None:
    """Import what the warm commands run, so that a worker starts with it loaded."""
    import json  # noqa: F401
    import resource  # noqa: F401
    import termios  # noqa: F401
    import threading  # noqa: F401
    import tty  # noqa: F401

    from stackctl.cli import attach_client, common, main, run_cmd  # noqa: F401
    from stackctl.runtime import imageconfig, logs, manager, names, records  # noqa: F401
    from stackctl.runtime.containers import api, caps, etcfiles, fdio, linux, process, rootfs, seccomp, users  # noqa: F401
    from stackctl.runtime.containers.cgroups import detect, v1, v2  # noqa: F401
    from stackctl.runtime.images import refs, store  # noqa: F401

    # `run` puts a container on Docker's default bridge network unless told otherwise: the
    # networking modules and pyroute2 (~0.15-1 s to import here) are loaded once, not per run.
    # Importing them starts no thread and no event loop, so forking stays safe.
    from pyroute2 import IPRoute  # noqa: F401

    from stackctl.net import bridge, firewall, netns, networks, runtime_hooks, sandbox, veth  # noqa: F401
    from stackctl.net import store as net_store  # noqa: F401

    main._cli()  # click and the command group, for the runs fast_run hands to click
    from stackctl import trace  # noqa: F401
    from stackctl.cli import stack_scoped  # noqa: F401
    from stackctl.runtime.containers import monitor  # noqa: F401 - pool slots become monitors by fork
    # `pull`/`push`: httpx and its parts (~0.12 s of a cold pull, mostly regexes compiled at import)
    from stackctl.cli import registry_fast  # noqa: F401
    from stackctl.runtime.images.registry import client as _rc, pull as _rp, push as _rs, unpack  # noqa: F401

    # Objects made so far are never collected: a forked worker or monitor then does not write
    # to (and so copy) the server's pages when its collector runs.
    import gc

    gc.freeze()


class Server:
    """The zygote. It never talks to a client itself: one pre-forked *spare* worker waits in
    ``accept`` holding a pool slot, so a connection meets a process that is already forked and
    set up. Having accepted, the spare passes the connection to the server over its control
    socket (the server reports a worker killed by a signal to its client); once it has read
    the request it passes its slot back too if the command starts no container
    (``SLOT_COMMANDS``), and serves it. The server forks the next spare at once and tops the
    pool up once the newest worker is REFILL_QUIET old."""

    def __init__(self, paths: NodePaths, pool_size: int = POOL_SIZE) -> None:
        self.paths, self.pool_size = paths, pool_size
        self.slots: list[pool.Slot] = []  # ready, not handed out
        # busy worker pid -> [its client's connection, when it took it, its control socket
        # until it has said whether it gives its slot back (else None)]
        self.workers: dict[int, list] = {}
        self.spare: tuple[int, socket.socket] | None = None  # (pid, our end of its control socket)
        self.spare_slot = 0  # the monitor pid of the slot the spare holds (0: none)
        self.listener: socket.socket | None = None
        self.socket_ino = 0
        self.stopping = False

    # -- lifetime --
    def serve(self) -> None:
        lock_fd = _take_over(self.paths)
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._wake = (wake_r, wake_w)
        signal.set_wakeup_fd(wake_w)
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self._on_signal)
        try:
            self.listener = _listen(run_socket(self.paths.run))
            self.socket_ino = os.stat(run_socket(self.paths.run)).st_ino
            write_pid(pid_path(self.paths))
            _log(f"warm server {os.getpid()} ready on {run_socket(self.paths.run)}, pool of {self.pool_size}")
            while not self.stopping:
                self._reap()
                if self.spare is None:
                    self._fork_spare()
                self._refill()
                ctls = {w[2]: pid for pid, w in self.workers.items() if w[2] is not None}
                watch = [wake_r, *ctls] + ([self.spare[1]] if self.spare else [])
                short = len(self.slots) + bool(self.spare_slot) < self.pool_size
                wait = self._refill_wait() if short else None  # wake to refill when quiet
                if self.spare is None:  # could not fork one: try again soon
                    wait = min(wait or 1.0, 1.0)
                ready, _, _ = select.select(watch, [], [], wait)
                if wake_r in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 512)
                if self.spare is not None and self.spare[1] in ready:
                    self._spare_took()
                for c in ready:
                    if c in ctls:
                        self._slot_back(ctls[c], c)
        finally:
            self._shut_down(lock_fd)

    def _shut_down(self, lock_fd: int) -> None:
        if self.listener is not None:
            path = run_socket(self.paths.run)
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == self.socket_ino:  # not a newer server's
                    os.unlink(path)
            self.listener.close()
        unclaimed = [s.pid for s in self.slots] + [self.spare_slot]
        if self.spare is not None:
            pid, ctl = self.spare
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)  # it only waits in accept; its slot removes itself
                os.waitpid(pid, 0)
            ctl.close()
        for slot in self.slots:
            slot.close()
        self.slots.clear()
        # the unclaimed slots remove their cgroups: once the server has exited, its pool is gone
        _wait_children([p for p in unclaimed if p], SLOT_CLEANUP_TIMEOUT)
        with contextlib.suppress(OSError):
            os.unlink(pid_path(self.paths))
        os.close(lock_fd)
        _log(f"warm server {os.getpid()} stopped")

    def _on_signal(self, signum: int, _frame) -> None:
        if signum != signal.SIGCHLD:
            self.stopping = True

    def _refill(self) -> None:
        """Top the pool up while no worker is busy (a refill's work would compete with it); a
        spare without a slot gets one."""
        while (not self.stopping and len(self.slots) + bool(self.spare_slot) < self.pool_size
               and self._refill_wait() == 0):
            try:
                self.slots.append(pool.fill(self.paths))
            except OSError as e:
                _log(f"cannot fill the start pool: {e}")
                break
        if self.spare is not None and not self.spare_slot and self.slots:
            slot = self.slots.pop(0)
            try:
                socket.send_fds(self.spare[1], [pool.describe(slot)], list(slot.fds()))
                self.spare_slot = slot.pid
            except OSError:
                pass
            slot.close()  # our copies

    def _refill_wait(self) -> float:
        """Seconds until the pool may be refilled: not while a worker is in its first
        REFILL_QUIET seconds (the refill's forks would slow its start), else now."""
        now = time.monotonic()
        return max([0.0] + [w[1] + REFILL_QUIET - now for w in self.workers.values()])

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare[0]:  # died before taking a client
                self.spare[1].close()
                self.spare, self.spare_slot = None, 0
                continue
            conn, _started, ctl = self.workers.pop(pid, (None, 0.0, None))
            if ctl is not None:
                self._slot_back(pid, ctl)
            if conn is None:
                continue
            if os.WIFSIGNALED(status):  # it could not say how it ended: say it for it
                with contextlib.suppress(OSError):
                    conn.sendall(frame(b"X", 128 + os.WTERMSIG(status)))
            conn.close()

    # -- workers --
    def _fork_spare(self) -> None:
        slot = self.slots.pop(0) if self.slots else None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError as e:
            _log(f"cannot fork a worker: {e}")
            ours.close()
            theirs.close()
            if slot is not None:
                self.slots.insert(0, slot)
            return
        if pid == 0:
            code = 70
            try:
                ours.close()
                code = self._in_spare(theirs, slot)
            except BaseException:  # noqa: BLE001 - a worker never returns into the server's loop
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        theirs.close()
        self.spare, self.spare_slot = (pid, ours), slot.pid if slot is not None else 0
        if slot is not None:
            slot.close()  # our copies only: the spare holds the slot now

    def _spare_took(self) -> None:
        pid, ctl = self.spare
        try:
            _msg, fds, _flags, _addr = socket.recv_fds(ctl, 16, 1)
        except OSError:
            fds = []
        self.spare, self.spare_slot = None, 0
        if fds:
            self.workers[pid] = [socket.socket(fileno=fds[0]), time.monotonic(), ctl]
        else:
            ctl.close()  # it died; _reap collects it

    def _slot_back(self, pid: int, ctl: socket.socket) -> None:
        """A worker's word on its slot: the slot back (its command starts no container), or
        EOF (it keeps it)."""
        try:
            msg, fds, _flags, _addr = socket.recv_fds(ctl, 4096, 3)
        except OSError:
            msg, fds = b"", []
        ctl.close()
        if pid in self.workers:
            self.workers[pid][2] = None
        slot = pool.received(msg, fds)
        if slot is not None:
            self.slots.insert(0, slot)
        # else: it died; _reap collects it

    def _in_spare(self, ctl: socket.socket, slot: pool.Slot | None) -> int:
        """The spare, then the worker: wait for a client (and take a slot if the server sends
        one meanwhile), hand the connection to the server, read the request, give an unneeded
        slot back, serve the request. The exit status of this process (0 once the client has its
        status frame)."""
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in self._wake:
            os.close(fd)
        for other in self.slots:
            other.close()
        for c, _started, wctl in self.workers.values():
            c.close()
            if wctl is not None:
                wctl.close()
        pool.hold([slot] if slot is not None else [])
        client.in_worker = True
        os.setsid()
        while True:
            ready, _, _ = select.select([self.listener, ctl], [], [])
            if ctl in ready:
                msg, fds, _flags, _addr = socket.recv_fds(ctl, 4096, 3)
                if not msg:
                    return 0  # the server is gone
                slot = pool.received(msg, fds)
                if slot is not None:
                    pool.hold([slot])
            if self.listener in ready:
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    continue
                break
        self.listener.close()
        # the connection to the server at once (it reports a worker killed by a signal, and
        # forks the next spare: a client slow to send its request holds up nobody else)
        socket.send_fds(ctl, [b"T"], [conn.fileno()])
        from stackctl.trace import mark

        try:
            kind, argv, environ, umask, fds = _receive(conn)
        except (OSError, ValueError) as e:
            _log(f"warm worker {os.getpid()}: bad request: {e}")
            return 0  # the client sees EOF before a pid: it runs the command itself
        if kind == "slot":  # a borrower (the agent starting a stack's task) takes the slot
            ctl.close()
            mine = pool.held()
            pool.hold([])
            with contextlib.suppress(OSError):
                if mine:
                    socket.send_fds(conn, [pool.describe(mine[0])], list(mine[0].fds()))
                else:
                    conn.sendall(b"-")  # none ready: it starts the ordinary way
            for slot in mine:
                slot.close()
            return 0
        # the slot back to the pool if this command starts no container
        mine = pool.held()
        if mine and os.fsdecode(argv[1] if len(argv) > 1 else b"") not in SLOT_COMMANDS:
            slot = mine[0]
            pool.hold([])
            with contextlib.suppress(OSError):
                socket.send_fds(ctl, [pool.describe(slot)], list(slot.fds()))
            slot.close()
        ctl.close()
        _adopt(fds, environ, umask)
        mark("warm: worker has the request")
        conn.sendall(frame(b"P", os.getpid()))
        sys.argv = [os.fsdecode(a) for a in argv]
        code = run_cli(sys.argv[1:])
        _let_go_of_stdio()
        with contextlib.suppress(OSError):
            conn.sendall(frame(b"X", code))
        return 0


def _let_go_of_stdio() -> None:
    """Drop this worker's copies of the client's stdin, stdout and stderr (run_cli has flushed
    them) before the status goes out: whoever reads the client's output to its end (a pipe,
    ``$(stackctl ...)``, the benchmark's capture) then sees EOF when the client exits, not
    once this process has exited too (tearing down a fork of the server: ~1-3 ms)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def run_cli(args: list[str]) -> int:
    """:func:`stackctl.cli.main.main` as the client would have run it; its exit status."""
    from stackctl import trace
    from stackctl.cli.main import main

    code: int = 0
    try:
        main(args)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            sys.stderr.write(f"{e.code}\n")
            code = 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        code = 130
    finally:
        trace.report_now()
        for f in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                f.flush()
    return code


def _receive(conn: socket.socket) -> tuple[str, list[bytes], list[bytes], int, list[int]]:
    """The request: ``("run", argv, environ, umask, fds)``, or ``("slot", ...)`` for a
    borrower's :data:`pool.SLOT_REQUEST`."""
    uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
    if uid != os.geteuid():
        raise ValueError(f"client uid {uid} is not the server's {os.geteuid()}")
    conn.settimeout(REQUEST_TIMEOUT)
    fds: list[int] = []
    msg, anc, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder) for i in range(0, len(data) - len(data) % 4, 4)]
    if msg.startswith(pool.SLOT_REQUEST[:2]) and not fds:
        conn.settimeout(None)
        return "slot", [], [], 0, []
    try:
        if len(fds) != 4:
            raise ValueError(f"expected 4 descriptors, got {len(fds)}")
        if msg[:2] != b"W1" or len(msg) < 6:
            raise ValueError("not a warm request")
        size = int.from_bytes(msg[2:6], "big")
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        body = msg[6:]
        while len(body) < size:
            chunk = conn.recv(min(1 << 20, size - len(body)))
            if not chunk:
                raise ValueError("truncated request")
            body += chunk
        argv, environ, umask = decode_request(body[:size])
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    conn.settimeout(None)
    return "run", argv, environ, umask, fds


def _adopt(fds: list[int], environ: list[bytes], umask: int) -> None:
    """Become the client: its stdio, directory, umask and environment."""
    from stackctl import trace

    for i in (0, 1, 2):
        os.dup2(fds[i], i)
    os.fchdir(fds[3])
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.umask(umask)
    new = {}
    for entry in environ:
        k, sep, v = entry.partition(b"=")
        if sep and k:
            new[k] = v
    # only what differs (each change is a putenv: the C environment is what exec'd children get)
    for k in [k for k in os.environb if k not in new]:
        del os.environb[k]
    for k, v in new.items():
        if os.environb.get(k) != v:
            os.environb[k] = v
    trace.configure(os.environ)
    # streams as a fresh interpreter would make them for these descriptors (a terminal gets
    # line buffering)
    enc, errs = sys.stdout.encoding, sys.stdout.errors
    sys.stdin = open(0, "r", encoding=enc, errors=errs, closefd=False)  # noqa: SIM115 - the process's own
    sys.stdout = open(1, "w", encoding=enc, errors=errs, closefd=False, buffering=1 if os.isatty(1) else -1)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding=enc, errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115


def _listen(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    tmp = path + f".{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    old = os.umask(0o177)
    try:
        s.bind(tmp)
    finally:
        os.umask(old)
    s.listen(64)
    os.replace(tmp, path)  # atomically: a client never finds no socket while one is replaced
    return s


def _take_over(paths: NodePaths, timeout: float = 5.0) -> int:
    """This node's warm lock, asking a running server to stop first."""
    os.makedirs(paths.run, mode=0o700, exist_ok=True)
    fd = os.open(lock_path(paths), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + timeout
    asked = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        if not asked:
            asked = True
            with contextlib.suppress(OSError, ValueError):
                with open(pid_path(paths)) as f:
                    os.kill(int(f.read().strip()), signal.SIGTERM)
        if time.monotonic() > deadline:
            os.close(fd)
            raise StackctlError(f"warm server: another one holds {lock_path(paths)} and did not stop",
                                hint="stackctl agent stop, then start the agent again")
        time.sleep(0.02)


def _wait_children(pids: list[int], timeout: float) -> set[int]:
    """Reap the child processes ``pids``, waiting at most ``timeout`` seconds; those still
    running."""
    deadline = time.monotonic() + timeout
    left = set(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                left.discard(pid)
        if left:
            time.sleep(0.005)
    return left


def _log(text: str) -> None:
    sys.stderr.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + text + "\n")
    sys.stderr.flush()


def spawn(paths: NodePaths, log_fd: int) -> int:
    """Start a warm server for ``paths`` in the background (stdout/stderr on ``log_fd``); its pid."""
    import subprocess

    p = subprocess.Popen([sys.executable, "-m", "stackctl.warm.server", paths.state, paths.run, paths.cgroup_parent,
                          str(os.getpid())],
                         stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, cwd="/", start_new_session=True)
    return p.pid


def stop(paths: NodePaths, pid: int, timeout: float = 5.0) -> None:
    """Stop the server ``spawn`` started (its workers finish on their own)."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    if _wait_children([pid], timeout):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def main(argv: list[str]) -> int:
    """``STATE RUN CGROUP_PARENT [PARENT_PID]``: with PARENT_PID (the agent that spawned it)
    the server lives no longer than that process, also when it is SIGKILLed: the kernel
    sends SIGTERM (PR_SET_PDEATHSIG), and the server shuts down as on any SIGTERM."""
    state, run, cgroup_parent = argv[1:4]
    paths = NodePaths(state=state, run=run, cgroup_parent=cgroup_parent)
    if len(argv) > 4:
        from stackctl.runtime.containers import linux

        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != int(argv[4]):  # it died before the line above
            return 0
    os.chdir("/")
    preload()
    size = int(os.environ.get("STACKCTL_WARM_POOL", POOL_SIZE))
    try:
        Server(paths, pool_size=max(0, size)).serve()
    except StackctlError as e:
        _log(f"error: {e.message}" + (f" ({e.hint})" if e.hint else ""))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
