"""``exec`` into a running container: a new process in every namespace of its PID 1, in its
cgroup, with the container's capabilities, no_new_privs and seccomp filter, as its user.

The process runs in the caller's terminal: without ``tty`` it inherits the caller's stdin,
stdout and stderr; with ``tty`` it gets a pty from the container's own devpts, whose master is
passed back over a socketpair and relayed here (raw mode, window size, SIGWINCH).
"""

from __future__ import annotations

import os
import signal
import struct

from stackctl.errors import StackctlError
from stackctl.paths import NodePaths

NAMESPACES = (("ipc", 0x08000000), ("uts", 0x04000000), ("net", 0x40000000), ("pid", 0x20000000), ("mnt", 0x00020000))


class ExecError(StackctlError):
    def __init__(self, message: str, *, exit_code: int = 126, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.container_exit_code = exit_code


def exec_in_container(
    paths: NodePaths,
    cid: str,
    argv: list[str],
    *,
    env: list[str] | None = None,
    cwd: str = "",
    user: str = "",
    tty: bool = False,
    stdin: bool = True,
    privileged: bool = False,
    ready_fd: int | None = None,
) -> int:
    """Run ``argv`` in container ``cid`` and return its exit code (128+N for signal N).

    ``ready_fd`` (optional) is closed as soon as the command runs, and left open when this
    raises: a caller that only waits for the start (``exec -d``) reads it until EOF."""
    import fcntl  # noqa: F401 - loaded before fork: the mount namespace switch hides the host's library
    import resource  # noqa: F401
    import socket

    from stackctl.runtime.containers import api, caps, linux, process, seccomp, users  # noqa: F401
    from stackctl.runtime.containers.cgroups import detect

    st = api.read_state(paths, cid)
    if st.status != "running":
        raise ExecError(f"container {cid[:12]} is not running (status {st.status})",
                        hint=f"start it first: stackctl start {cid[:12]}", exit_code=1)
    if not argv:
        raise ExecError("exec needs a command", exit_code=1)
    spec = api.load_spec(paths, cid)
    procs = detect.open_cgroup(detect.layout(), paths.cgroup_parent, cid).procs_files()
    try:
        ns_fds = [(os.open(f"/proc/{st.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag) for name, flag in NAMESPACES]
    except FileNotFoundError:
        raise ExecError(f"container {cid[:12]} is not running", exit_code=1) from None
    full_env = list(spec.env) + list(env or [])
    cfg = {
        "argv": list(argv), "env": full_env, "cwd": cwd or spec.cwd or "/", "user": user or spec.user,
        "cap_add": spec.cap_add, "cap_drop": spec.cap_drop, "privileged": privileged or spec.privileged,
        "hostname": spec.hostname or cid[:12], "tty": tty,
        "host_caps": caps.host_caps(), "no_new_privileges": spec.no_new_privileges,
        "seccomp_program": None,
    }
    if not cfg["privileged"]:
        sec = process.seccomp_config(spec.to_json(), os.path.join(paths.state, "seccomp"))
        if sec.get("seccomp_program"):
            with open(sec["seccomp_program"], "rb") as f:
                cfg["seccomp_program"] = f.read()
    from stackctl.runtime.containers import forksafe

    forksafe.preload()  # the child imports nothing (a probe may fork while a start imports)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    sock_parent = sock_child = None
    if tty:
        sock_parent, sock_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        try:
            if ready_fd is not None:
                os.close(ready_fd)
            for p in procs:
                with open(p, "w") as f:
                    f.write("0")
            for fd, flag in ns_fds:
                linux.setns(fd, flag)
                os.close(fd)
            os.chdir("/")
            if not stdin and not tty:
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
            child = os.fork()
            if child == 0:
                _exec_child(cfg, err_w, sock_child.fileno() if sock_child else None)
            os.close(err_w)
            _, status = os.waitpid(child, 0)
            os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
        except BaseException as e:  # noqa: BLE001
            try:
                os.write(err_w, b"E125\n" + str(e).encode())
            finally:
                os._exit(125)
    os.close(err_w)
    for fd, _ in ns_fds:
        os.close(fd)
    master = -1
    if sock_child is not None:
        sock_child.close()
        sock_parent.settimeout(10)
        try:
            _, fds, _, _ = socket.recv_fds(sock_parent, 16, 1)
            master = fds[0] if fds else -1
        except OSError:
            master = -1
        sock_parent.close()
    if master >= 0:
        _relay_pty(master, pid, stdin=stdin)
    msg = b""
    while chunk := os.read(err_r, 65536):
        msg += chunk
    os.close(err_r)
    if ready_fd is not None and not msg.lstrip(b"R").startswith(b"E"):
        os.close(ready_fd)
    _, status = os.waitpid(pid, 0)
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    msg = msg.lstrip(b"R")
    if msg.startswith(b"E"):
        head, _, text = msg[1:].partition(b"\n")
        raise ExecError(f"exec in container {cid[:12]}: {text.decode(errors='replace')}", exit_code=int(head or 126))
    return code


def _exec_child(cfg: dict, err_w: int, sock_fd: int | None) -> None:
    """In the container's namespaces (a child of the setns'd process, so in its pid ns too)."""
    import fcntl

    from stackctl.runtime.containers import caps as capmod
    from stackctl.runtime.containers import linux, process, users

    try:
        for s in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(s, signal.SIG_DFL)
        if cfg["tty"]:
            os.setsid()
            master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY)
            fcntl.ioctl(master, linux.TIOCSPTLCK, struct.pack("i", 0))
            n = struct.unpack("I", fcntl.ioctl(master, linux.TIOCGPTN, struct.pack("I", 0)))[0]
            slave = os.open(f"/dev/pts/{n}", os.O_RDWR)
            fcntl.ioctl(slave, linux.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            process._send_master(sock_fd, master)
            os.close(master)
        who = users.resolve_user(cfg["user"], process._read_text("/etc/passwd"), process._read_text("/etc/group"))
        env = process.final_env(cfg["env"], home=who.home, hostname=cfg["hostname"])
        try:
            os.chdir(cfg["cwd"])
        except OSError as e:
            raise process.ExecFailure(126, f"chdir to cwd (\"{cfg['cwd']}\") set in config.json failed: {e.strerror}") from e
        capset = capmod.effective_set(cfg["cap_add"], cfg["cap_drop"], privileged=cfg["privileged"],
                                      last_cap=linux.cap_last_cap()) & cfg["host_caps"]
        if not cfg["privileged"] and not cfg["no_new_privileges"] and cfg["seccomp_program"] is not None:
            linux.seccomp_set_filter(cfg["seccomp_program"])  # needs CAP_SYS_ADMIN without no_new_privs
            cfg["seccomp_program"] = None
        capmod.drop_bounding(capset)
        os.setgroups(list(who.groups))
        os.setresgid(who.gid, who.gid, who.gid)
        os.setresuid(who.uid, who.uid, who.uid)
        if who.uid == 0:
            capmod.set_caps(capset)
        path = process.look_path(cfg["argv"][0], process.env_lookup(env, "PATH") or process.DEFAULT_PATH)
        if not cfg["privileged"]:
            if cfg["no_new_privileges"]:
                linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
            if cfg["seccomp_program"] is not None:
                linux.seccomp_set_filter(cfg["seccomp_program"])
        os.execve(path, cfg["argv"], dict(e.split("=", 1) if "=" in e else (e, "") for e in env))
    except process.ExecFailure as e:
        process._report(err_w, e.code, e.message)
    except users.UserLookupError as e:
        process._report(err_w, 126, str(e))
    except BaseException as e:  # noqa: BLE001
        process._report(err_w, 126, f"{type(e).__name__}: {e}")


def _relay_pty(master: int, pid: int, *, stdin: bool = True) -> None:
    """Copy the pty's output to our stdout, and (``stdin``) our stdin to the pty, until the
    process is gone; our terminal is in raw mode meanwhile and its size follows ours."""
    import select
    import termios
    import tty as ttymod

    stdin_is_tty = os.isatty(0)
    old = termios.tcgetattr(0) if stdin_is_tty else None

    def resize(*_):
        if stdin_is_tty:
            import fcntl

            ws = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(master, termios.TIOCSWINSZ, ws)

    prev = signal.signal(signal.SIGWINCH, resize)
    try:
        if stdin_is_tty:
            ttymod.setraw(0)
            resize()
        fds = [0, master] if stdin else [master]
        while master in fds:
            r, _, _ = select.select(fds, [], [])
            if 0 in r:
                data = os.read(0, 4096)
                if not data:
                    fds.remove(0)
                else:
                    os.write(master, data)
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
    finally:
        signal.signal(signal.SIGWINCH, prev)
        if old is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, old)
        os.close(master)
