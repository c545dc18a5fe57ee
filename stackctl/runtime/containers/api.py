"""The execution core's public API, used by the container manager and the agent.

``start_container`` launches the container's monitor detached (double fork + setsid, stdio on
/dev/null) and returns once the container runs or has failed to start; everything else reads
the monitor's ``state.json`` and acts on the processes and cgroup it names. All functions take
:class:`~stackctl.paths.NodePaths` and never touch anything outside it (and the cgroup subtree
``paths.cgroup_parent``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal as _signal
import sys
import time

from stackctl.errors import ConflictError, DiskFullError, NotFoundError, StackctlError
from stackctl.paths import NodePaths
from stackctl.runtime.jsonfile import write_json
from stackctl.runtime.spec import ContainerSpec, ContainerState

MONITOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monitor.py")
# The monitor runs as `python3 -S -I -c MONITOR_BOOT ...`: imported as a module rather than run
# as a script, so its bytecode comes from __pycache__ instead of being compiled at every start.
_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MONITOR_BOOT = (f"import sys; sys.path.insert(0, {_PKG_ROOT!r}); "
                "from stackctl.runtime.containers.monitor import main; sys.exit(main(sys.argv))")


class ContainerStartError(StackctlError):
    """The container could not be started; nothing of it is left running or mounted."""

    def __init__(self, message: str, *, exit_code: int = 125, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.container_exit_code = exit_code


class ContainerNotRunningError(StackctlError):
    pass


def container_dir(paths: NodePaths, cid: str) -> str:
    return os.path.join(paths.containers, cid)


def run_dir(paths: NodePaths, cid: str) -> str:
    return os.path.join(paths.run, "containers", cid)


def _short(spec_or_id) -> str:
    if isinstance(spec_or_id, ContainerSpec):
        return spec_or_id.name or spec_or_id.id[:12]
    return spec_or_id[:12]


def host_hard_limits() -> dict[str, int]:
    import resource

    from stackctl.runtime.containers.process import RLIMITS

    out = {}
    for name, res in RLIMITS.items():
        hard = resource.getrlimit(res)[1]
        out[name] = -1 if hard == resource.RLIM_INFINITY else hard
    return out


def _write_etc_files(cdir: str, spec: ContainerSpec) -> None:
    from stackctl.runtime.containers import etcfiles

    hostname = spec.hostname or spec.id[:12]

    def host(path: str) -> str:
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    try:
        hosts = etcfiles.hosts_file(hostname, spec.extra_hosts, network=spec.network, host_hosts=host("/etc/hosts"))
    except ValueError as e:
        raise StackctlError(f"container {_short(spec)}: {e}") from e
    files = {
        "hostname": etcfiles.hostname_file(hostname),
        "hosts": hosts,
        "resolv.conf": etcfiles.resolv_file(host("/etc/resolv.conf"), dns=spec.dns, dns_search=spec.dns_search,
                                            dns_options=spec.dns_options, network=spec.network),
    }
    for name, text in files.items():
        with open(os.path.join(cdir, name), "w") as f:
            f.write(text)


def _write_json_if_changed(path: str, obj) -> None:
    """:func:`write_json` unless ``path`` holds that JSON already (a start of a container whose
    record create wrote, unchanged: one read instead of a file written and renamed)."""
    try:
        with open(path) as f:
            if f.read() == json.dumps(obj):  # write_json's own text (json.dump, defaults)
                return
    except (OSError, UnicodeDecodeError):
        pass
    write_json(path, obj)


def _check_spec(spec: ContainerSpec) -> list[str]:
    from stackctl.runtime.containers import caps, process

    name = _short(spec)
    if not spec.argv:
        raise ContainerStartError(f"container {name}: no command specified", hint="give a command or use an image with CMD/ENTRYPOINT")
    for d in spec.rootfs_layers:
        if not os.path.isdir(d):
            raise ContainerStartError(f"container {name}: image layer {d} is missing", hint="pull or build the image again")
    try:
        caps.effective_set(spec.cap_add, spec.cap_drop, privileged=spec.privileged)
    except caps.CapabilityError as e:
        raise ContainerStartError(f"container {name}: {e}") from e
    from stackctl.runtime.security import check_sysctl_network

    for k in spec.sysctls:
        try:
            process.check_sysctl(k)
        except ValueError as e:
            raise ContainerStartError(f"container {name}: {e}") from e
        why = check_sysctl_network(k, spec.network)
        if why:
            raise ContainerStartError(f"container {name}: {why}")
    warnings = []
    if spec.privileged:
        _, missing = caps.privileged_set(frozenset(caps.CAPS), caps.host_caps())
        known = set(n for n, v in caps.CAPS.items() if v <= _last_cap())
        missing = [m for m in missing if m in known]
        if missing:
            warnings.append("privileged: this host lacks " + ", ".join(f"CAP_{m}" for m in missing)
                            + "; the container runs without them")
    if spec.init and process.find_init() is None:
        raise ContainerStartError(f"container {name}: --init needs catatonit or tini on the host", hint="apt-get install catatonit")
    for m in spec.mounts:
        if m.type in ("bind", "volume") and not os.path.exists(m.source):
            raise ContainerStartError(f"container {name}: bind source path does not exist: {m.source}")
    net = spec.network
    if not (net in ("none", "host") or net.startswith(("netns:", "container:"))):
        raise ContainerStartError(f"container {name}: unknown network mode {net!r} (none, host, netns:PATH, container:ID)")
    try:
        ulimits, clamped = process.clamp_ulimits(spec.ulimits, host_hard_limits())
    except ValueError as e:
        raise ContainerStartError(f"container {name}: {e}") from e
    spec.ulimits = ulimits
    return warnings + clamped


def _last_cap() -> int:
    from stackctl.runtime.containers import linux

    return linux.cap_last_cap()


class PreparedStart:
    """A start begun before the container's record is written (``run``): the detached
    launcher has created the cgroup and forked the setup child, which joins the cgroup at once
    and then waits for its configuration; the monitor's interpreter starts meanwhile. On
    cgroup v1 the first attach waits for an RCU grace period (~20 ms here), and this way it
    overlaps with the caller's own work (creating the record). :func:`start_container` with
    ``prepared=`` finishes it; :meth:`cancel` (also on leaving a ``with`` block) tells the
    launcher to remove everything and waits until it has — nothing is left behind."""

    def __init__(self, cid: str, key: tuple, cfg_w: int, ready_r: int) -> None:
        self.cid, self.key = cid, key
        self.cfg_w, self.ready_r = cfg_w, ready_r

    def matches(self, spec: ContainerSpec, attach: bool) -> bool:
        return self.cfg_w >= 0 and self.cid == spec.id and self.key == _start_key(spec, attach)

    def finish(self, cfg: dict) -> dict:
        """Send the setup child its configuration; the monitor's report (or ``{}``)."""
        w, self.cfg_w = self.cfg_w, -1
        try:
            os.write(w, json.dumps(cfg).encode())  # the child reads while we write: no pipe limit
        except BrokenPipeError:  # the launcher failed: its report says why
            pass
        finally:
            os.close(w)
        return self._result()

    def _result(self) -> dict:
        r, self.ready_r = self.ready_r, -1
        if r < 0:
            return {}
        from stackctl.runtime.containers.fdio import read_to_eof

        data = read_to_eof(r)
        try:
            return json.loads(data or b"{}")
        except ValueError:
            return {}

    def cancel(self) -> None:
        """Idempotent; a no-op once finished."""
        if self.cfg_w >= 0:
            os.close(self.cfg_w)
            self.cfg_w = -1
            self._result()  # EOF once the monitor has removed the cgroup and exited

    def __enter__(self) -> PreparedStart:
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()


def _start_key(spec: ContainerSpec, attach: bool) -> tuple:
    """What the launcher fixes before it sees the spec (pure)."""
    return (json.dumps(spec.resources_json(), sort_keys=True), spec.privileged, spec.tty,
            spec.stdin_open, attach, spec.auto_remove)


def prepare_start(paths: NodePaths, spec: ContainerSpec, *, attach: bool = False) -> PreparedStart:
    """Begin starting ``spec`` (only its id, resources, privileged, tty, stdin_open and
    auto_remove are used, so it may be a draft) before its record exists; see
    :class:`PreparedStart`. Takes no lock: call it before taking the runtime lock, so that the
    launcher does not inherit it."""
    from stackctl.trace import mark

    from stackctl.runtime.containers import pool

    claimed = pool.claim(paths, spec, attach)  # a slot held, or borrowed from the warm server
    if claimed is not None:
        return claimed
    # Loaded before fork, so that the launcher and the setup child do not pay for imports —
    # and must not import (several starts run at once: see forksafe)
    from stackctl.runtime.containers import forksafe

    forksafe.preload()

    rdir = run_dir(paths, spec.id)
    os.makedirs(os.path.dirname(rdir), exist_ok=True)
    res = dict(spec.resources_json(), privileged=spec.privileged)
    flags = ("a" if attach else "") + ("r" if spec.auto_remove else "") + "-"
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    cfg_r, cfg_w = os.pipe2(os.O_CLOEXEC)
    mark("core: prepare_start")
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                # only its own pipes: another thread's start (the agent starts several at
                # once) has its pipes open now too, and a copy held here would hide their
                # EOFs until this container's setup ends — each start waiting on the other
                from stackctl.runtime.containers.pool import _close_all_but

                _close_all_but({ready_w, cfg_r})
                _launch(paths, spec.id, res, spec.tty, spec.stdin_open, flags, ready_w, cfg_r)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(cfg_r)
    os.waitpid(pid, 0)
    return PreparedStart(spec.id, _start_key(spec, attach), cfg_w, ready_r)


def start_container(paths: NodePaths, spec: ContainerSpec, *, attach: bool = False,
                    prepared: PreparedStart | None = None) -> ContainerState:
    """Start ``spec`` under a new detached monitor and return its state (``running``).

    With ``attach=True`` the container is held just before exec until a client connects to
    its attach socket (:func:`stackctl.runtime.containers.attach.connect`), so a foreground
    ``run`` sees all of its output; after 30 s without a client it starts anyway.
    ``prepared`` (from :func:`prepare_start`) is used when it was made for this spec and
    ``attach``, else cancelled. Raises :class:`ContainerStartError` (exit code 125/126/127 as
    Docker) if it cannot start; the monitor has then removed the cgroup and no process or
    mount remains."""
    try:
        return _start(paths, spec, attach, prepared)
    finally:
        if prepared is not None:
            prepared.cancel()


def _start(paths: NodePaths, spec: ContainerSpec, attach: bool, prepared: PreparedStart | None) -> ContainerState:
    cdir = container_dir(paths, spec.id)
    os.makedirs(cdir, exist_ok=True)
    old = _read_state_file(cdir)
    if old is not None and old.status == "running" and _alive(old.monitor_pid):
        raise ConflictError(f"container {_short(spec)} is already running", hint=f"stackctl stop {_short(spec)}")
    from stackctl.trace import mark

    mark("core: start_container")
    warnings = _check_spec(spec)
    for d in ("upper", "work", "rootfs"):
        os.makedirs(os.path.join(cdir, d), exist_ok=True)
    _write_etc_files(cdir, spec)
    sj = spec.to_json()
    # the container's one spec file: the manager's record (written at create), now as started
    _write_json_if_changed(os.path.join(cdir, "config.json"), sj)
    try:
        os.unlink(os.path.join(cdir, "state.json"))
    except FileNotFoundError:
        pass
    from stackctl.runtime.containers import process

    try:
        cfg = process.config_from_spec(sj, cdir, paths.containers)
    except (process.ExecFailure, OSError) as e:
        # recorded as every failed start is (the launcher did this while it built the config)
        code, msg = (e.code, e.message) if isinstance(e, process.ExecFailure) else (125, str(e))
        write_json(os.path.join(cdir, "state.json"), ContainerState(status="exited", exit_code=code, error=msg).to_json())
        raise ContainerStartError(f"container {_short(spec)}: {msg}", exit_code=code) from e
    if prepared is None or not prepared.matches(spec, attach):
        if prepared is not None:
            prepared.cancel()
        prepared = prepare_start(paths, spec, attach=attach)
    mark("core: files written")
    result = prepared.finish(cfg)
    mark("core: monitor reported")
    if result.get("status") != "running" and "error" in result:
        if os.path.isdir(cdir) and _read_state_file(cdir) is None:  # the launcher failed before the record existed
            write_json(os.path.join(cdir, "state.json"),
                        ContainerState(status="exited", exit_code=int(result.get("code", 125)), error=result["error"]).to_json())
        raise ContainerStartError(f"container {_short(spec)}: {result['error']}", exit_code=int(result.get("code", 125)))
    if "pid" not in result:
        st = _read_state_file(cdir)
        why = st.error if st and st.error else "the monitor exited without reporting"
        raise ContainerStartError(f"container {_short(spec)}: failed to start: {why}")
    state = read_state(paths, spec.id)
    state.warnings = warnings
    return state


def _launch(paths: NodePaths, cid: str, res: dict, tty: bool, stdin_open: bool, flags: str, ready_w: int,
            cfg_r: int, claim_r: int = -1) -> None:
    """In the detached grandchild: create the cgroup, unshare a pid namespace, fork the
    container's setup child (it joins the cgroup, then waits for its configuration on
    ``cfg_r``), then exec the monitor, which thereby stays the container's parent. The
    child's setup overlaps with the monitor's interpreter start. Never returns.

    With ``claim_r`` (flag ``p``, :mod:`~stackctl.runtime.containers.pool`) this is a pool
    slot: ``cid`` names the cgroup only, and the monitor learns the container's directories and
    flags when the slot is claimed; the setup child always waits for the monitor's release; and
    this process becomes the monitor without exec (the warm server that forked it has the
    monitor's modules loaded, and shares their memory with it)."""
    from stackctl.runtime.containers import linux, process
    from stackctl.runtime.containers.cgroups import detect
    from stackctl.trace import mark

    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    pooled = claim_r >= 0
    cdir, rdir = ("", "") if pooled else (container_dir(paths, cid), run_dir(paths, cid))
    cg = child = None
    try:
        cg = detect.open_cgroup(detect.layout(), paths.cgroup_parent, cid)
        cg.create(res)
        mark("launch: cgroup created")
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        stdio = [null, null, null]
        keep = {"out": -1, "errout": -1, "stdin": -1, "console": -1}
        console_child = None
        if tty:
            import socket

            parent_sock, console_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            keep["console"] = parent_sock.detach()
        else:
            keep["out"], stdio[1] = os.pipe2(os.O_CLOEXEC)
            keep["errout"], stdio[2] = os.pipe2(os.O_CLOEXEC)
            if stdin_open:
                stdio[0], keep["stdin"] = os.pipe2(os.O_CLOEXEC)
        linux.unshare(linux.CLONE_NEWPID)
        child = os.fork()
        if child == 0:
            # the monitor's ends: held here they would hide its EOFs (ready, sync, output)
            for fd in (ready_w, err_r, sync_w, *(v for v in keep.values() if v >= 0)):
                os.close(fd)
            for i, fd in enumerate(stdio):
                os.dup2(fd, i)
            # without an attach to wait for, the child execs at once: the monitor's interpreter
            # start then overlaps with the container's run (output waits in the pipes)
            if pooled:
                os.close(claim_r)
            process.setup_and_exec(cfg_r, err_w, sync_r if "a" in flags or pooled else None,
                                   console_child.fileno() if console_child else None, cgroup_procs=cg.procs_files())
        os.close(cfg_r)
        for fd in {err_w, sync_r, *stdio}:
            if fd != null:
                os.close(fd)
        if console_child:
            console_child.close()
        fds = [child, ready_w, err_r, sync_w, keep["out"], keep["errout"], keep["stdin"], keep["console"], claim_r]
        for fd in fds[1:]:
            if fd >= 0:
                os.set_inheritable(fd, True)
        margv = [cdir or cid, rdir, paths.cgroup_parent, flags, ",".join(map(str, fds))]
        if pooled:
            # forked from the warm server, which has the monitor loaded: no interpreter to start
            from stackctl.runtime.containers import monitor

            mark("launch: monitor (pooled)")
            os._exit(monitor.main(["monitor", *margv]))
        mark("launch: exec monitor")
        os.execv(sys.executable, [sys.executable, "-S", "-I", "-c", MONITOR_BOOT, *margv])
    except BaseException as e:  # noqa: BLE001 - report to the starter; leave nothing behind
        code = e.code if isinstance(e, process.ExecFailure) else 125
        msg = e.message if isinstance(e, process.ExecFailure) else str(e)
        if child:
            try:
                os.kill(child, _signal.SIGKILL)
                os.waitpid(child, 0)
            except OSError:
                pass
        if cg is not None:
            try:
                cg.kill_all()
                cg.remove()
            except Exception:  # noqa: BLE001
                pass
        try:
            if os.path.isdir(cdir):  # a prepared start may fail before the record exists
                write_json(os.path.join(cdir, "state.json"),
                            ContainerState(status="exited", exit_code=code, error=msg).to_json())
        except OSError:
            pass
        try:
            os.write(ready_w, json.dumps({"error": msg, "code": code}).encode())
        finally:
            os._exit(1)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _ppid(pid: int) -> int | None:
    """The parent of ``pid`` (None when it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _read_state_file(cdir: str) -> ContainerState | None:
    try:
        with open(os.path.join(cdir, "state.json")) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return ContainerState(status="dead", error="state.json is unreadable")
    known = ContainerState.__dataclass_fields__
    return ContainerState(**{k: v for k, v in data.items() if k in known})


def read_state(paths: NodePaths, cid: str) -> ContainerState:
    """The container's state. A container whose monitor died while it was running is
    reported as ``dead`` with an error (its processes may still run: cleanup_container)."""
    cdir = container_dir(paths, cid)
    st = _read_state_file(cdir)
    if st is None:
        if not os.path.isdir(cdir):
            raise NotFoundError(f"no such container: {cid[:12]}")
        return ContainerState(status="created")
    if st.status == "running" and not _alive(st.monitor_pid):
        st = _read_state_file(cdir) or st  # it may have just written its final state
        if st.status == "running":
            st.status = "dead"
            st.error = st.error or f"the container's monitor (pid {st.monitor_pid}) died; its exit status is unknown"
    return st


def _running_state(paths: NodePaths, cid: str, what: str) -> ContainerState:
    st = read_state(paths, cid)
    if st.status != "running":
        raise ContainerNotRunningError(f"container {cid[:12]} is not running (status {st.status}): cannot {what}",
                                       hint=f"stackctl start {cid[:12]}")
    return st


def parse_signal(sig: int | str) -> int:
    if isinstance(sig, int):
        return sig
    s = sig.strip().upper()
    if s.isdigit():
        return int(s)
    if not s.startswith("SIG"):
        s = "SIG" + s
    try:
        return int(getattr(_signal.Signals, s))
    except AttributeError:
        raise StackctlError(f"invalid signal: {sig}") from None


def signal_container(paths: NodePaths, cid: str, sig: int | str) -> None:
    st = _running_state(paths, cid, "send a signal")
    # the pid must still be the monitor's child (guards against pid reuse)
    if _ppid(st.pid) != st.monitor_pid:
        return
    try:
        os.kill(st.pid, parse_signal(sig))
    except ProcessLookupError:
        pass


def _wait_pid_exit(pid: int, timeout: float | None) -> bool:
    """Wait until ``pid`` has exited (any process, not only our children)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        r, _, _ = select.select([fd], [], [], timeout)
        return bool(r)
    finally:
        os.close(fd)


def wait_container(paths: NodePaths, cid: str, timeout: float | None = None) -> ContainerState:
    """Wait until the container has exited and its monitor has cleaned up; returns the
    final state. Raises StackctlError on timeout."""
    cdir = container_dir(paths, cid)
    st = read_state(paths, cid)
    # an exited container's monitor may still be tearing down (it writes the final state and
    # sends the exit frame first): wait for it too
    if st.status == "running" or (st.monitor_pid > 0 and _is_our_monitor(st.monitor_pid, cdir, st)):
        if not _wait_pid_exit(st.monitor_pid, timeout):
            raise StackctlError(f"container {cid[:12]} did not exit within {timeout} s")
    final = _read_state_file(cdir)
    if final is None:  # auto_remove took the directory: the last known state is all we have
        return ContainerState(status="exited", pid=st.pid, monitor_pid=st.monitor_pid, exit_code=st.exit_code)
    return read_state(paths, cid) if os.path.isdir(cdir) else final


def stop_container(paths: NodePaths, cid: str, timeout: float | None = None) -> ContainerState:
    """The stop signal (spec.stop_signal), then SIGKILL after ``timeout`` (default
    spec.stop_timeout); returns the final state once the monitor has finished."""
    st = read_state(paths, cid)
    if st.status != "running":
        return st
    spec = load_spec(paths, cid)
    grace = spec.stop_timeout if timeout is None else timeout
    try:
        signal_container(paths, cid, spec.stop_signal or "SIGTERM")
    except ContainerNotRunningError:
        return read_state(paths, cid)
    if not _wait_pid_exit(st.pid, grace):
        try:
            signal_container(paths, cid, _signal.SIGKILL)
        except ContainerNotRunningError:
            pass
    return wait_container(paths, cid, timeout=30)


def load_spec(paths: NodePaths, cid: str) -> ContainerSpec:
    try:
        with open(os.path.join(container_dir(paths, cid), "config.json")) as f:
            return ContainerSpec.from_json(json.load(f))
    except FileNotFoundError:
        raise NotFoundError(f"no such container: {cid[:12]}") from None


def _cgroup(paths: NodePaths, cid: str):
    from stackctl.runtime.containers.cgroups import detect

    return detect.open_cgroup(detect.layout(), paths.cgroup_parent, cid)


def container_pids(paths: NodePaths, cid: str) -> list[int]:
    """Host pids of every process of the container (for ``top``)."""
    st = _running_state(paths, cid, "list processes")
    pids = _cgroup(paths, cid).pids()
    if st.pid and st.pid not in pids and _alive(st.pid):
        pids.insert(0, st.pid)
    return sorted(set(pids))


def container_stats(paths: NodePaths, cid: str) -> dict:
    """``memory_usage``, ``memory_limit`` (-1: none), ``memory_cache``, ``cpu_usage_ns``,
    ``pids_current``, ``pids_limit`` (-1: none), plus ``read_at`` (time.time())."""
    _running_state(paths, cid, "read stats")
    stats = _cgroup(paths, cid).stats()
    stats["read_at"] = time.time()
    return stats


def cleanup_container(paths: NodePaths, cid: str) -> None:
    """Idempotent: kill whatever is left of the container (monitor included), remove its
    cgroup and attach socket. Mounts live only in the container's mount namespace and go
    with its last process. For ``rm -f`` and for leftovers of a crash."""
    cdir = container_dir(paths, cid)
    st = _read_state_file(cdir)
    cg = _cgroup(paths, cid)
    if st is not None and st.status == "running" and _alive(st.pid) and _ppid(st.pid) == st.monitor_pid:
        with contextlib.suppress(OSError):
            os.kill(st.pid, _signal.SIGKILL)
    if cg.exists():
        cg.kill_all()
    if st is not None and _alive(st.monitor_pid) and _is_our_monitor(st.monitor_pid, cdir, st):
        if not _wait_pid_exit(st.monitor_pid, 5):
            os.kill(st.monitor_pid, _signal.SIGKILL)
            _wait_pid_exit(st.monitor_pid, 5)
    if cg.exists():
        cg.remove()
    rdir = run_dir(paths, cid)
    try:
        os.unlink(os.path.join(rdir, "attach.sock"))
    except FileNotFoundError:
        pass
    try:
        os.rmdir(rdir)
    except OSError:
        pass
    if st is not None and st.status == "running" and os.path.isdir(cdir):
        st = _read_state_file(cdir) or st
        if st.status == "running":
            st.status = "exited"
            st.exit_code = 137 if st.exit_code is None else st.exit_code
            st.error = st.error or "killed by cleanup"
            # Best effort: on a full disk the record keeps "running" with its monitor gone,
            # which reads as dead; a removal deletes the directory right after anyway.
            with contextlib.suppress(DiskFullError):
                write_json(os.path.join(cdir, "state.json"), st.to_json())


def _is_our_monitor(pid: int, cdir: str, st: ContainerState | None = None) -> bool:
    """Whether ``pid`` is still the monitor of the container in ``cdir`` (not a reused pid):
    its start time as the monitor recorded it, or (records from before that, and monitors
    exec'd with their directory in argv) its command line."""
    if st is not None and st.monitor_start:
        from stackctl.runtime.containers.monitor import start_time

        return start_time(pid) == st.monitor_start
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return cdir.encode() in f.read()
    except OSError:
        return False
