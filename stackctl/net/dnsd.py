"""The node's DNS server as a small daemon, started on demand — until the agent owns it.

``stackctl run --network NAME`` has no long-running process to host the embedded DNS server
(:mod:`stackctl.net.dnsserver`), and a container's monitor must stay small. So, like the monitor,
a detached process runs it: the first container put on a network starts it
(:func:`ensure_running`), and it exits by itself once no container of the node has networking
left (after a short grace period, so that a series of ``run``s does not restart it each time).

Races are settled by one ``flock`` (``<run>/net/dns.lock``): ``ensure_running`` holds it while it
checks the pid file and starts a daemon; the daemon holds it while it decides to exit, and
removes its pid file (and its sockets) before letting go. A container's sandbox is recorded
before ``ensure_running`` is called, so a daemon that saw "no sandboxes" under the lock cannot
miss a container that needs it.

Run as ``python3 -m stackctl.net.dnsd STATE RUN CGROUP_PARENT READY_FD``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import time
from collections.abc import Iterator

from stackctl.net.model import NetworkError
from stackctl.paths import NodePaths

IDLE_GRACE = 2.0  # seconds without any sandbox before the daemon exits
MODULE = "stackctl.net.dnsd"


def _dir(paths: NodePaths) -> str:
    return os.path.join(paths.run, "net")


def pid_file(paths: NodePaths) -> str:
    return os.path.join(_dir(paths), "dns.pid")


@contextlib.contextmanager
def _locked(paths: NodePaths) -> Iterator[None]:
    os.makedirs(_dir(paths), exist_ok=True)
    fd = os.open(os.path.join(_dir(paths), "dns.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def parse_pid(text: str) -> int | None:
    """The pid in a pid file's text (pure)."""
    text = text.strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def is_daemon_cmdline(cmdline: bytes, paths: NodePaths) -> bool:
    """Whether ``/proc/PID/cmdline`` is this node's daemon (pure; guards against pid reuse)."""
    args = cmdline.split(b"\0")
    return MODULE.encode() in args and paths.state.encode() in args


def running_pid(paths: NodePaths) -> int | None:
    """The daemon's pid if it runs (for this state dir), else None."""
    try:
        with open(pid_file(paths)) as f:
            pid = parse_pid(f.read())
        if pid is None:
            return None
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return pid if is_daemon_cmdline(f.read(), paths) else None
    except OSError:
        return None


def ensure_running(paths: NodePaths, timeout: float = 10.0) -> int:
    """Start the daemon unless it runs; returns its pid once it listens."""
    with _locked(paths):
        pid = running_pid(paths)
        if pid is not None:
            return pid
        from stackctl.net.spawn import spawn_daemon

        text = spawn_daemon(MODULE, [paths.state, paths.run, paths.cgroup_parent], timeout)
        if text is None:
            raise NetworkError(f"the DNS server did not start within {timeout:g} s")
        pid = parse_pid(text.partition("\n")[0])
        if pid is None:
            raise NetworkError(f"the DNS server could not start: {text.strip() or 'it exited without a word'}",
                               hint="names between containers need it; is port 53 of the gateways free?")
        tmp = pid_file(paths) + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{pid}\n")
        os.replace(tmp, pid_file(paths))
        return pid


def stop(paths: NodePaths, timeout: float = 5.0) -> None:
    """Stop the daemon if it runs (tests, and whoever takes over DNS, such as the agent)."""
    with _locked(paths):
        pid = running_pid(paths)
        if pid is not None:
            _terminate(pid, timeout)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file(paths))


def stop_if_idle(paths: NodePaths, timeout: float = 5.0) -> bool:
    """Stop the daemon now if no container of the node has networking; True if none runs
    afterwards. The agent calls this when a stack is removed and when it stops, so that
    nothing outlives ``down`` by the daemon's own grace period. Under the lock, like the
    daemon's own decision: a container recorded after the check calls ``ensure_running``
    after the lock is released, and gets a new daemon."""
    from stackctl.net import store

    with _locked(paths):
        if os.path.exists(store.state_file(paths)) and store.load(paths).sandboxes:
            return False
        pid = running_pid(paths)
        if pid is not None:
            _terminate(pid, timeout)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file(paths))
    return True


def _terminate(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # another process's exit: nothing to wait on but polling
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is still a process that has not exited (a zombie counts as gone: the
    daemon's parent is init, which reaps it when it gets to it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _serve_until_idle(paths: NodePaths, ready_w: int) -> None:
    from stackctl.net import dnsserver, store

    try:
        thread, stop_ev = dnsserver.start_in_thread(paths)
    except BaseException as e:  # noqa: BLE001 - reported to the starter
        os.write(ready_w, f"E {e}\n".encode())
        return
    signal.signal(signal.SIGTERM, lambda *_: stop_ev.set())
    signal.signal(signal.SIGINT, lambda *_: stop_ev.set())
    os.write(ready_w, f"{os.getpid()}\n".encode())
    os.close(ready_w)
    idle_since: float | None = None
    try:
        while not stop_ev.wait(0.25) and thread.is_alive():
            if store.load(paths).sandboxes:
                idle_since = None
                continue
            now = time.monotonic()
            idle_since = idle_since or now
            if now - idle_since < IDLE_GRACE:
                continue
            with _locked(paths):
                if store.load(paths).sandboxes:
                    idle_since = None
                    continue
                stop_ev.set()
                thread.join(5)
                with contextlib.suppress(FileNotFoundError):
                    if running_pid(paths) == os.getpid():
                        os.unlink(pid_file(paths))
                return
    finally:
        stop_ev.set()
        thread.join(5)


def main(argv: list[str]) -> None:
    state, run, cgroup_parent, fd = argv
    ready_w = int(fd)
    if os.fork() != 0:  # the starter waits for this process; the daemon is its child
        os._exit(0)
    _serve_until_idle(NodePaths(state=state, run=run, cgroup_parent=cgroup_parent), ready_w)


if __name__ == "__main__":
    main(sys.argv[1:])
