"""The container's setup child: from a fresh fork to ``execve`` of the container's command.

Runs as PID 1 of the container's new pid namespace (forked by the monitor, or by
:mod:`oneshot`). Everything is driven by a plain ``cfg`` dict (built by :func:`child_config`)
so that only stdlib modules are needed. Sequence: namespaces → rootfs → hostname → sysctls →
rlimits → pivot_root → masks → user → cgroup join → caps → no_new_privs → seccomp → exec.

The child talks to its parent over ``errfd`` (CLOEXEC): ``R`` when set up, then it waits on
``syncfd`` for one byte (so the parent can wire networking or an attach first), and execs.
Any failure sends ``E<code>\\n<message>`` and exits with ``code`` (127: command not found,
126: not executable, 125: anything else), so the parent can raise a clear error. Because every
mount lives in the child's own mount namespace, a failed start leaves no mount behind.
"""

from __future__ import annotations

import os
import signal
import struct

from stackctl.runtime.containers import linux

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

RLIMITS = {
    "as": 9, "core": 4, "cpu": 0, "data": 2, "fsize": 1, "locks": 10, "memlock": 8, "msgqueue": 12,
    "nice": 13, "nofile": 7, "nproc": 6, "rss": 5, "rtprio": 14, "rttime": 15, "sigpending": 11, "stack": 3,
}
NAMESPACED_SYSCTL_PREFIXES = ("net.", "kernel.shm", "kernel.msg", "fs.mqueue.")
NAMESPACED_SYSCTLS = ("kernel.sem", "kernel.domainname", "kernel.hostname")


class ExecFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def clamp_ulimits(ulimits: dict[str, tuple[int, int]], hard_limits: dict[str, int]) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Keep every requested limit within the host's hard limit (this process cannot raise a
    hard limit without CAP_SYS_RESOURCE). Pure; returns the clamped limits and a warning per
    change. ``-1`` means unlimited."""
    out, warnings = {}, []
    for name, (soft, hard) in ulimits.items():
        if name not in RLIMITS:
            raise ValueError(f"unknown ulimit {name!r} (one of {', '.join(sorted(RLIMITS))})")
        cap = hard_limits.get(name, -1)
        s, h = soft, hard
        if cap != -1:
            if h == -1 or h > cap:
                h = cap
            if s == -1 or s > h:
                s = h
        if (s, h) != (soft, hard):
            warnings.append(f"ulimit {name}={soft}:{hard} exceeds the host's hard limit {cap}; using {s}:{h}")
        out[name] = (s, h)
    return out, warnings


def check_sysctl(name: str) -> None:
    if name in NAMESPACED_SYSCTLS or name.startswith(NAMESPACED_SYSCTL_PREFIXES):
        return
    raise ValueError(f"sysctl {name!r} is not namespaced and cannot be set per container")


def look_path(argv0: str, path_env: str, root: str = "/") -> str:
    """Find ``argv0`` as execve would through $PATH, inside ``root``; errors as Docker's."""
    import stat as _stat

    def check(p: str) -> str | None:
        full = os.path.join(root, p.lstrip("/")) if root != "/" else p
        try:
            st = os.stat(full)
        except OSError:
            return None
        if _stat.S_ISDIR(st.st_mode):
            raise ExecFailure(126, f'exec: "{argv0}": is a directory')
        if not os.access(full, os.X_OK):
            raise ExecFailure(126, f'exec: "{argv0}": permission denied')
        return p

    if "/" in argv0:
        if check(argv0) is None:
            raise ExecFailure(127, f'exec: "{argv0}": stat {argv0}: no such file or directory')
        return argv0
    for d in (path_env or DEFAULT_PATH).split(":"):
        cand = os.path.join(d or ".", argv0)
        try:
            if check(cand):
                return cand
        except ExecFailure:
            continue
    raise ExecFailure(127, f'exec: "{argv0}": executable file not found in $PATH')


def env_lookup(env: list[str], key: str) -> str | None:
    pre = key + "="
    for e in reversed(env):
        if e.startswith(pre):
            return e[len(pre):]
    return None


def final_env(env: list[str], *, home: str, hostname: str) -> list[str]:
    out = list(env)
    if env_lookup(out, "PATH") is None:
        out.insert(0, "PATH=" + DEFAULT_PATH)
    if hostname and env_lookup(out, "HOSTNAME") is None:
        out.insert(1, "HOSTNAME=" + hostname)
    if env_lookup(out, "HOME") is None:
        out.append("HOME=" + home)
    return out


def lo_up() -> None:
    import fcntl
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = fcntl.ioctl(s.fileno(), 0x8913, struct.pack("16sh14x", b"lo", 0))  # SIOCGIFFLAGS
        flags = struct.unpack("16sh14x", ifr)[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sh14x", b"lo", flags | 0x1 | 0x40))  # IFF_UP|IFF_RUNNING
    finally:
        s.close()


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _join_network(network: str) -> bool:
    """Returns True if the child must unshare a new net namespace."""
    if network == "none":
        return True
    if network == "host":
        return False
    path = network.split(":", 1)[1] if ":" in network else network
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(fd, linux.CLONE_NEWNET)
    finally:
        os.close(fd)
    return False


def _open_pty(root: str) -> tuple[int, int, str]:
    """A pty from the container's own devpts instance (so its name resolves inside)."""
    import fcntl

    master = os.open(os.path.join(root, "dev/pts/ptmx"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, linux.TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, linux.TIOCGPTN, struct.pack("I", 0)))[0]
    slave_path = os.path.join(root, "dev/pts", str(n))
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    return master, slave, slave_path


def _send_master(sock_fd: int | None, master: int) -> None:
    import socket

    if sock_fd is None:
        raise ExecFailure(125, "tty requested without a console socket")
    s = socket.socket(fileno=os.dup(sock_fd))
    try:
        socket.send_fds(s, [b"m"], [master])
    finally:
        s.close()


def setup_and_exec(cfg: dict | int, errfd: int, syncfd: int | None = None, console_sock: int | None = None,
                   cgroup_procs: list[str] | None = None) -> None:
    """Never returns: execs the command or reports and ``os._exit``s. ``cfg`` is the
    configuration, or a pipe to read it from (JSON, up to EOF) after joining ``cgroup_procs``:
    a prepared start (:class:`stackctl.runtime.containers.api.PreparedStart`). EOF without a
    configuration cancels the start: the child writes ``C`` and exits."""
    try:
        _setup_and_exec(cfg, errfd, syncfd, console_sock, cgroup_procs)
        raise ExecFailure(125, "internal error: exec returned")
    except ExecFailure as e:
        _report(errfd, e.code, e.message)
    except linux.SyscallError as e:
        _report(errfd, 125, str(e.strerror))
    except OSError as e:
        _report(errfd, 125, f"{e.strerror}: {e.filename}" if e.filename else str(e))
    except BaseException as e:  # noqa: BLE001 - the child must never return into the caller
        _report(errfd, 125, f"{type(e).__name__}: {e}")


def _report(errfd: int, code: int, message: str) -> None:
    try:
        os.write(errfd, b"E%d\n%s" % (code, message.encode(errors="replace")))
    finally:
        os._exit(code)


def _read_config(fd: int) -> dict | None:
    import json

    from stackctl.runtime.containers.fdio import read_to_eof

    data = read_to_eof(fd)
    return json.loads(data) if data else None


def _setup_and_exec(cfg: dict | int, errfd: int, syncfd: int | None, console_sock: int | None,
                    cgroup_procs: list[str] | None) -> None:
    # every import happens here, before pivot_root hides the host's Python library
    import fcntl
    import resource
    import socket  # noqa: F401 - used by _send_master after pivot_root

    from stackctl.runtime.containers import caps as capmod
    from stackctl.runtime.containers import rootfs, seccomp, users
    from stackctl.trace import mark

    mark("child: start")

    for s in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(s, signal.SIG_DFL)
    os.setsid()
    os.umask(0)
    # Join the cgroups first: on cgroup v1 the first attach waits for an RCU grace period
    # (~20 ms here), and the monitor's interpreter start (and, for a prepared start, the
    # starter's own work) overlaps with it. The setup's own few MB of page faults are charged
    # to the container from here on.
    for p in (cgroup_procs if isinstance(cfg, int) else cfg.get("cgroup_procs", [])) or []:
        fd = os.open(p, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    mark("child: cgroups joined")
    if isinstance(cfg, int):
        got = _read_config(cfg)
        if got is None:  # cancelled: the monitor removes the cgroup
            os.write(errfd, b"C")
            os._exit(0)
        cfg = got
        mark("child: config read")
    new_net = _join_network(cfg.get("network", "none"))
    linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | (linux.CLONE_NEWNET if new_net else 0))
    if new_net:
        lo_up()
    if cfg.get("hostname"):
        linux.sethostname(cfg["hostname"])
    if cfg.get("domainname"):
        linux.setdomainname(cfg["domainname"])


    rootfs.make_private()
    root = cfg["rootfs"]
    os.makedirs(root, exist_ok=True)
    try:
        rootfs.mount_overlay(root, cfg["lowers"], cfg.get("upper"), cfg.get("work"), cfg.get("overlay_options", ""))
    except OSError as e:
        raise ExecFailure(125, f"mount the container's root filesystem: {e.strerror}") from e
    privileged = bool(cfg.get("privileged"))
    rootfs.mount_proc_sys(root, privileged=privileged)
    host_caps = capmod.host_caps()  # what this process can hand on (read before pivot_root)
    seccomp_program = None
    if not privileged and cfg.get("seccomp", True) and cfg.get("seccomp_program"):
        with open(cfg["seccomp_program"], "rb") as f:
            seccomp_program = f.read()

    rootfs.mount_dev(root, shm_size=cfg.get("shm_size", 64 << 20), init_binary=cfg.get("init_binary"))
    master = slave = -1
    if cfg.get("tty"):
        master, slave, slave_path = _open_pty(root)
        rootfs.bind_console(root, slave_path)
    rootfs.bind_etc_files(root, cfg.get("etc_files", {}), read_only_root=bool(cfg.get("read_only") or cfg.get("etc_no_create")))
    rootfs.mount_user(root, cfg.get("mounts", []), read_only_root=bool(cfg.get("read_only")))

    for name, value in cfg.get("sysctls", {}).items():
        check_sysctl(name)
        with open(os.path.join(root, "proc/sys", name.replace(".", "/")), "w") as f:
            f.write(str(value))

    mark("child: mounts made")
    rootfs.pivot(root)
    if not privileged:
        rootfs.mask_paths()
    if cfg.get("read_only"):
        rootfs.remount_root_readonly()

    for name, (soft, hard) in cfg.get("ulimits", {}).items():
        res = RLIMITS[name]
        cur_hard = resource.getrlimit(res)[1]
        if cur_hard != resource.RLIM_INFINITY:
            hard = cur_hard if hard == -1 or hard > cur_hard else hard
            soft = hard if soft == -1 or soft > hard else soft
        resource.setrlimit(res, (resource.RLIM_INFINITY if soft == -1 else soft, resource.RLIM_INFINITY if hard == -1 else hard))

    try:
        who = users.resolve_user(cfg.get("user", ""), _read_text("/etc/passwd"), _read_text("/etc/group"))
    except users.UserLookupError as e:
        raise ExecFailure(125, str(e)) from e
    env = final_env(cfg.get("env", []), home=who.home, hostname=cfg.get("hostname", ""))

    if master >= 0:
        _send_master(console_sock, master)
        os.close(master)
        fcntl.ioctl(slave, linux.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)

    cwd = cfg.get("cwd") or "/"
    try:
        os.makedirs(cwd, exist_ok=True)
        os.chdir(cwd)
    except OSError as e:
        raise ExecFailure(125, f"working directory {cwd}: {e.strerror}") from e

    capset = capmod.effective_set(cfg.get("cap_add", []), cfg.get("cap_drop", []), privileged=privileged,
                                  last_cap=linux.cap_last_cap()) & host_caps
    nnp = cfg.get("no_new_privileges", True)
    if not privileged and not nnp and seccomp_program is not None:
        # without no_new_privs only CAP_SYS_ADMIN may install a filter: now, before the drop
        # (what follows until execve is allowed by any profile that lets a container run)
        linux.seccomp_set_filter(seccomp_program)
        seccomp_program = None
    capmod.drop_bounding(capset)

    os.setgroups(list(who.groups))
    os.setresgid(who.gid, who.gid, who.gid)
    os.setresuid(who.uid, who.uid, who.uid)
    if who.uid == 0:
        capmod.set_caps(capset)
    os.chdir(cwd)

    argv = list(cfg["argv"])
    if not argv:
        raise ExecFailure(125, "no command specified")
    path = look_path(argv[0], env_lookup(env, "PATH") or DEFAULT_PATH)
    if cfg.get("init_binary"):
        path, argv = "/dev/init", ["/dev/init", "--", path] + argv[1:]

    mark("child: ready")
    os.write(errfd, b"R")
    if syncfd is not None:
        os.read(syncfd, 1)
        os.close(syncfd)
    os.umask(0o022)
    if cfg.get("apparmor") and cfg["apparmor"] != "unconfined":
        _apparmor_exec(cfg["apparmor"])
    if not privileged:
        if nnp:
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        if seccomp_program is not None:
            linux.seccomp_set_filter(seccomp_program)
        elif cfg.get("seccomp", True) and not cfg.get("seccomp_program"):
            seccomp.install(linux.MACHINE, capset)  # a cfg without a compiled program (builds)
    try:
        os.execve(path, argv, dict(e.split("=", 1) if "=" in e else (e, "") for e in env))
    except OSError as e:
        code = 127 if e.errno == 2 else 126
        raise ExecFailure(code, f'exec: "{argv[0]}": {e.strerror.lower()}') from e


INIT_CANDIDATES = ("/usr/bin/catatonit", "/usr/libexec/podman/catatonit", "/usr/bin/tini-static", "/usr/bin/tini", "/sbin/tini")


def find_init() -> str | None:
    for p in INIT_CANDIDATES:
        if os.access(p, os.X_OK):
            return p
    return None


def _apparmor_exec(profile: str) -> None:
    """Run the command under AppArmor ``profile`` (loaded on the host) from its execve on."""
    for attr in ("/proc/self/attr/apparmor/exec", "/proc/self/attr/exec"):
        try:
            with open(attr, "w") as f:
                f.write(f"exec {profile}")
            return
        except FileNotFoundError:
            continue
        except OSError as e:
            raise ExecFailure(125, f"apparmor profile {profile}: {e.strerror}") from e
    raise ExecFailure(125, f"apparmor profile {profile}: this kernel has no AppArmor")


def seccomp_config(spec: dict, cache_dir: str) -> dict:
    """The setup child's seccomp and no_new_privs settings for a container of ``spec``: the
    path of its compiled filter (compiled once per node and capability set, see
    :func:`stackctl.runtime.containers.seccomp.program_file`), or none when privileged or
    ``seccomp=unconfined``."""
    from stackctl.runtime.containers import caps as capmod
    from stackctl.runtime.containers import seccomp

    mode = spec.get("seccomp") or "default"
    out = {"seccomp": mode != "unconfined" and not spec.get("privileged"),
           "no_new_privileges": spec.get("no_new_privileges", True)}
    if out["seccomp"]:
        capset = capmod.effective_set(spec.get("cap_add", []), spec.get("cap_drop", []),
                                      last_cap=linux.cap_last_cap()) & capmod.host_caps()
        profile = spec.get("seccomp_profile") if mode == "custom" else None
        out["seccomp_program"] = seccomp.program_file(cache_dir, linux.MACHINE, capset, profile)
    return out


def config_from_spec(spec: dict, container_dir: str, containers_dir: str, procs_files: list[str] | None = None) -> dict:
    """The setup child's ``cfg`` for a container of ``spec`` (a ContainerSpec as JSON)."""
    from stackctl.runtime.containers.rootfs import VOLATILE

    cid = spec["id"]
    network = spec.get("network") or "none"
    if network.startswith("container:"):
        import json

        other = network.split(":", 1)[1]
        with open(os.path.join(containers_dir, other, "state.json")) as f:
            pid = json.load(f).get("pid") or 0
        if not pid:
            raise ExecFailure(125, f"cannot join the network of container {other[:12]}: it is not running")
        network = f"netns:/proc/{pid}/ns/net"
    etc = {}
    for target, name in (("/etc/hostname", "hostname"), ("/etc/hosts", "hosts"), ("/etc/resolv.conf", "resolv.conf")):
        p = os.path.join(container_dir, name)
        if os.path.exists(p):
            etc[target] = p
    res = spec.get("resources", {})
    init_binary = None
    if spec.get("init"):
        init_binary = find_init()
        if init_binary is None:
            raise ExecFailure(125, "init: true needs catatonit or tini on the host (apt-get install catatonit)")
    return {
        "rootfs": os.path.join(container_dir, "rootfs"),
        "lowers": list(spec["rootfs_layers"]),
        "upper": os.path.join(container_dir, "upper"),
        "work": os.path.join(container_dir, "work"),
        # an --rm container's upper directory is removed when it exits: not worth a sync
        "overlay_options": VOLATILE if spec.get("auto_remove") else "",
        "hostname": spec.get("hostname") or cid[:12],
        "domainname": spec.get("domainname", ""),
        "network": network,
        "etc_files": etc,
        "mounts": spec.get("mounts", []),
        "read_only": spec.get("read_only", False),
        "privileged": spec.get("privileged", False),
        "cap_add": spec.get("cap_add", []),
        "cap_drop": spec.get("cap_drop", []),
        "user": spec.get("user", ""),
        "env": spec.get("env", []),
        "cwd": spec.get("cwd") or "/",
        "argv": spec.get("argv", []),
        "tty": spec.get("tty", False),
        "shm_size": res.get("shm_size") or (64 << 20),
        "ulimits": spec.get("ulimits", {}),
        "sysctls": spec.get("sysctls", {}),
        "apparmor": spec.get("apparmor", ""),
        **seccomp_config(spec, os.path.join(os.path.dirname(containers_dir), "seccomp")),
        "init_binary": init_binary,
        "cgroup_procs": list(procs_files or []),
    }
