"""``stackctl agent serve``: the node agent's process.

Files (``<run>`` is volatile, ``<state>`` persistent):

- ``<run>/agent.lock`` — held (``flock``) for the agent's whole life: one agent per node;
  a second one started by a racing CLI exits at once with :class:`AgentAlreadyRunning`.
- ``<run>/agent.pid`` — its pid, written after the lock is taken, removed on the way out.
- ``<run>/agent.sock`` — the API (mode 0600, root only), removed on the way out.
- ``<state>/agent.db`` — :mod:`stackctl.agent.store`; ``<state>/agent.log`` — its log.
- ``<run>/warm.sock`` — the warm server's (:mod:`stackctl.warm.server`), a child process the
  agent starts and stops: it makes ``stackctl run`` start in a third of the time.

The process: take the lock, open the store, adopt the node (:class:`Supervisor`), start the
controller's loop when there is one (the manager role), serve the socket. SIGTERM / SIGINT (or
``agent.shutdown``) cancel everything and the agent exits; **no container is stopped** — each
one's monitor owns it, so the agent can be stopped, upgraded or SIGKILLed at any time and a
new agent re-adopts what runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import time
from typing import Any

import trio

from stackctl.agent.client import lock_path, log_path, pid_path, socket_path
from stackctl.errors import StackctlError
from stackctl.paths import NodePaths
from stackctl.pidlock import write_pid

log = logging.getLogger("stackctl.agent")

ROLE_MANAGER = "manager"


class AgentAlreadyRunning(StackctlError):
    """Another agent holds this node's lock."""


class InsecureStateError(StackctlError):
    """The node's state or run directory is open to other users and cannot be closed."""


# files of the agent that hold stack data (environment values, specs) or its log
_PRIVATE_FILES = ("agent.db", "agent.db-wal", "agent.db-shm", "agent.log")


def secure_node_dirs(paths: NodePaths) -> list[str]:
    """Make the state and run directories root-only (0700, owned by us) and the agent's
    files 0600; return what was changed. Everything a container or stack keeps (specs with
    environment values, logs, volumes, secrets) lives below these two directories, so no
    other local user can reach any of it. Raises :class:`InsecureStateError` when a
    directory cannot be closed (another owner, a read-only filesystem)."""
    changed = []
    for d in (paths.state, paths.run):
        os.makedirs(d, mode=0o700, exist_ok=True)
        st = os.stat(d)
        if st.st_mode & 0o077:
            try:
                os.chmod(d, 0o700)
            except OSError as e:
                raise InsecureStateError(f"{d} is readable by other users (mode {st.st_mode & 0o777:o}) "
                                         f"and cannot be made private: {e.strerror}",
                                         hint=f"chmod 700 {d}") from None
            changed.append(f"{d} {st.st_mode & 0o777:o} -> 700")
        if st.st_uid != os.geteuid():
            raise InsecureStateError(f"{d} belongs to uid {st.st_uid}, not to the agent's user "
                                     f"(uid {os.geteuid()}): that user could read every stack's data",
                                     hint=f"chown root:root {d} && chmod 700 {d}")
    for name in _PRIVATE_FILES:
        f = os.path.join(paths.state, name)
        try:
            st = os.stat(f)
        except FileNotFoundError:
            continue
        if st.st_mode & 0o077:
            os.chmod(f, 0o600)
            changed.append(f"{f} {st.st_mode & 0o777:o} -> 600")
    return changed


def _take_lock(paths: NodePaths) -> int:
    for what in secure_node_dirs(paths):
        log.warning("made private: %s", what)
    fd = os.open(lock_path(paths), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AgentAlreadyRunning(f"an agent already runs for {paths.state} "
                                  f"(pid {running_pid(paths) or '?'})",
                                  hint="stackctl agent status") from None
    return fd


def running_pid(paths: NodePaths) -> int | None:
    """The agent's pid if one holds this node's lock, else None."""
    from stackctl.pidlock import holder_pid

    return holder_pid(lock_path(paths), pid_path(paths))


def stop_agent(paths: NodePaths, timeout: float = 15.0) -> int | None:
    """SIGTERM the node's agent and wait until it is gone (SIGKILL after ``timeout``).
    Containers keep running. Returns the pid stopped, None if none ran."""
    pid = running_pid(paths)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running_pid(paths) == pid and time.monotonic() < deadline:
        time.sleep(0.02)  # another process's exit: nothing to wait on but polling
    if running_pid(paths) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while running_pid(paths) == pid:
            time.sleep(0.02)
    return pid


def load_manager() -> Any:
    """The controller's Manager class, or None while it does not exist."""
    try:
        from stackctl.controller.manager import Manager
    except ImportError as exc:
        if "stackctl.controller" not in str(exc):
            raise
        return None
    return Manager


def setup_logging(paths: NodePaths, *, to_file: bool) -> None:
    root = logging.getLogger("stackctl")
    root.setLevel(logging.INFO)
    if to_file:
        os.close(os.open(log_path(paths), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
        handler: logging.Handler = logging.FileHandler(log_path(paths))
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)


def serve(paths: NodePaths, *, manager_class: Any = "auto", log_to_file: bool = True) -> None:
    """Run the agent until SIGTERM/SIGINT. Blocks; raises AgentAlreadyRunning."""
    lock_fd = _take_lock(paths)
    try:
        setup_logging(paths, to_file=log_to_file)
        write_pid(pid_path(paths))
        if manager_class == "auto":
            manager_class = load_manager()
        warm_pid = _start_warm_server(paths)
        try:
            trio.run(run_agent, paths, manager_class)
        finally:
            if warm_pid:
                from stackctl.warm import server as warm

                warm.stop(paths, warm_pid)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_path(paths))
        os.close(lock_fd)


def _start_warm_server(paths: NodePaths) -> int | None:
    """The node's warm server (:mod:`stackctl.warm.server`: fast ``stackctl run``), run beside
    the agent and stopped with it; its lines go to the agent's log. ``STACKCTL_WARM=0`` in the
    agent's environment leaves it out."""
    if os.environ.get("STACKCTL_WARM") == "0":
        return None
    from stackctl.warm import server as warm

    try:
        with open(log_path(paths), "ab") as logf:
            pid = warm.spawn(paths, logf.fileno())
    except OSError as e:
        log.warning("cannot start the warm server: %s (stackctl run starts cold)", e)
        return None
    log.info("warm server %d started", pid)
    return pid


async def run_agent(paths: NodePaths, manager_class: Any = None, *,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
    """The agent's body, in a trio run (tests start it with ``nursery.start``)."""
    from stackctl.agent.api import AgentAPI
    from stackctl.agent.events import EventBus
    from stackctl.agent.nodeops import NodeOps
    from stackctl.agent.server import AgentServer
    from stackctl.agent.store import Store
    from stackctl.agent.supervisor import Supervisor
    from stackctl.node.local import LocalNode
    from stackctl.node.service import node_methods

    log.info("agent %d starting for %s", os.getpid(), paths.state)
    for what in secure_node_dirs(paths):
        log.warning("made private: %s", what)
    store = Store.open(paths)
    try:
        bus = EventBus()
        supervisor = Supervisor(paths, bus, store)
        node = NodeOps(paths, bus, store, containers=supervisor.containers)
        node.attach_supervisor(supervisor.health_of, supervisor.poke)
        local = LocalNode(node, name=os.environ.get("STACKCTL_NODE_NAME") or None)
        manager = manager_class(paths, local, store, bus) if manager_class else None
        if manager is None:
            log.info("no controller: stack.* methods are unavailable")
        async with trio.open_nursery() as nursery:
            info = {"node": socket.gethostname(), "role": ROLE_MANAGER,
                    "paths": {"state": paths.state, "run": paths.run,
                              "cgroup_parent": paths.cgroup_parent}}
            api = AgentAPI(store=store, bus=bus, node=node, supervisor=supervisor,
                           manager=manager, info=info,
                           shutdown=nursery.cancel_scope.cancel)
            nursery.start_soon(_wait_signals, nursery.cancel_scope)
            await nursery.start(supervisor.run)
            if manager is not None:
                await nursery.start(manager.run)
            methods = {**api.methods(), **node_methods(local)}
            server = AgentServer(methods, node={"name": info["node"], "role": ROLE_MANAGER,
                                                      "pid": os.getpid()})
            await nursery.start(server.serve, socket_path(paths))
            log.info("agent %d ready on %s", os.getpid(), socket_path(paths))
            task_status.started(api)
    finally:
        store.close()
        _stop_dns_if_idle(paths)
        log.info("agent %d stopped (containers keep running)", os.getpid())


def _stop_dns_if_idle(paths: NodePaths) -> None:
    """On the way out: the node's DNS server keeps running for containers that have
    networking (names resolve while no agent runs), else it goes with the agent."""
    from stackctl.net import dnsd

    try:
        dnsd.stop_if_idle(paths)
    except Exception:  # noqa: BLE001 - the agent stops either way
        log.exception("cannot stop the idle DNS server")


async def _wait_signals(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("agent: %s, shutting down", signal.Signals(signum).name)
            scope.cancel()
            return
