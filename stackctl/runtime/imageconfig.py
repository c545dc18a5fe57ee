"""Combine an image's config with the user's options into a :class:`ContainerSpec`, the way
Docker combines them. Pure: no disk, no environment lookups except through arguments.

The rules (Docker's, from its ``run`` reference and the daemon's config merge):

- **Entrypoint and command.** ``--entrypoint`` replaces the image's ENTRYPOINT *and* resets
  its CMD (only the command given on the command line is used); ``--entrypoint ""`` clears the
  entrypoint. Without ``--entrypoint``, a command given replaces the image's CMD. The process
  is ``entrypoint + cmd``; if that is empty, the container cannot be created.
- **Environment.** The user's variables (``--env-file`` files first, then ``-e`` flags, a later
  value replacing an earlier one) come first, then every image variable the user did not set.
  ``-e NAME`` without ``=`` takes NAME from the caller's environment and is dropped if unset.
  The process gets ``PATH`` (a default when neither sets it), ``HOSTNAME``, and
  ``TERM=xterm`` with a tty, overridden in place by the container's variables.
- **Everything else.** ``-w``/``-u``/``--stop-signal`` win over WORKDIR/USER/STOPSIGNAL;
  labels merge (user wins); each image VOLUME that no user mount covers becomes an anonymous
  volume; the hostname defaults to the first 12 characters of the ID.
"""

from __future__ import annotations

import posixpath
import re
import signal as _signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stackctl import shellwords
from stackctl.errors import UsageError
from stackctl.runtime.names import NAME_RE
from stackctl.runtime.security import check_sysctl_network, parse_security_opts
from stackctl.runtime.spec import ContainerSpec, Mount, Resources

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_SHM = 64 * 1024 * 1024
_TMPFS_DEFAULTS = ["nosuid", "nodev", "noexec"]


@dataclass
class RunOptions:
    """What a user asked for (from ``run`` flags, or later from a stack service)."""

    image: str
    command: list[str] | None = None  # None or [] = use the image's CMD
    entrypoint: list[str] | None = None  # None = not given; [] = cleared (--entrypoint "")
    env: list[str] = field(default_factory=list)  # -e values, in order
    env_file_lines: list[str] = field(default_factory=list)  # --env-file contents, in order
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    stop_timeout: float | None = None
    tty: bool = False
    stdin_open: bool = False
    init: bool = False
    read_only: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)  # -v
    mounts: list[str] = field(default_factory=list)  # --mount
    tmpfs: list[str] = field(default_factory=list)  # --tmpfs
    memory: str | int | None = None
    memory_reservation: str | int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    shm_size: str | int | None = None
    network: str = ""
    add_hosts: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    ulimits: list[str] = field(default_factory=list)
    sysctls: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)  # --security-opt
    expose: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)  # -p [IP:][HOST:]CONTAINER[/PROTO]
    publish_all: bool = False  # -P
    network_aliases: list[str] = field(default_factory=list)  # --network-alias
    ipv4_address: str = ""  # --ip
    auto_remove: bool = False
    links: list[str] = field(default_factory=list)  # --link NAME[:ALIAS] (/etc/hosts entries)


@dataclass
class MountRequest:
    """A mount as asked for, before the manager resolves volumes to host directories."""

    mount: Mount
    nocopy: bool = False  # volume: do not copy the image's content into an empty volume
    create_source: bool = False  # -v /host:/x creates a missing host directory (as Docker)
    anonymous: bool = False  # volume with no name: the manager makes one


@dataclass
class CreatePlan:
    """The spec (mounts unresolved) plus what `inspect` shows that the spec does not keep."""

    spec: ContainerSpec
    mounts: list[MountRequest]
    config: dict[str, Any]  # Docker's Config object, shaped for inspect


# --- small parsers -------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^([0-9]{1,30}(?:\.[0-9]{1,30})?)\s*([kmgtp]?)(i?b)?$", re.IGNORECASE)
MAX_BYTES = 2**63 - 1  # what the kernel's cgroup files and Docker's int64 take


def parse_bytes(value: str | int | None, what: str = "size") -> int | None:
    """Docker's RAMInBytes: ``32m``, ``1g``, ``512k``, ``1024``, ``1.5GB`` (1024-based)."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    m = _SIZE_RE.match(value.strip())
    if not m:
        raise UsageError(f"invalid {what} {value!r}: expected a number with an optional unit (b, k, m, g)")
    mult = 1024 ** "bkmgtp".index((m.group(2) or "b").lower())
    whole, _, frac = m.group(1).partition(".")
    n = int(whole) * mult + (int(frac) * mult) // 10 ** len(frac) if frac else int(whole) * mult
    if n > MAX_BYTES:
        raise UsageError(f"invalid {what} {value!r}: larger than {MAX_BYTES} bytes")
    return n


def normalize_signal(value: str | int) -> str:
    """``TERM``, ``SIGTERM``, ``15`` -> ``SIGTERM``."""
    s = str(value).strip().upper()
    try:
        if s.isdigit():
            return _signal.Signals(int(s)).name
        name = s if s.startswith("SIG") else "SIG" + s
        return _signal.Signals[name].name
    except (KeyError, ValueError):
        raise UsageError(f"invalid signal: {value!r}") from None


def parse_env_file(text: str, source: str = "env file") -> list[str]:
    """Lines of an ``--env-file``: ``K=V`` or ``K``; blank lines and ``#`` comments skipped.
    Values are taken literally (no quotes removed), as Docker does."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key = line.split("=", 1)[0]
        if not key or any(c.isspace() for c in key):
            raise UsageError(f"{source}:{n}: variable {key!r} contains whitespaces")
        out.append(line if "=" in line else line.rstrip())
    return out


def resolve_env(entries: list[str], environ: Mapping[str, str]) -> list[str]:
    """``K=V`` kept; ``K`` takes K from ``environ`` (dropped if unset); later K replaces earlier."""
    out: dict[str, str] = {}
    for e in entries:
        if "=" in e:
            k, v = e.split("=", 1)
        else:
            k = e
            if k not in environ:
                continue
            v = environ[k]
        if not k:
            raise UsageError(f"invalid environment variable: {e!r}")
        out[k] = v
    return [f"{k}={v}" for k, v in out.items()]


def replace_or_append_env(base: list[str], overrides: list[str]) -> list[str]:
    """Docker's ReplaceOrAppendEnvValues: an override replaces the same key in place."""
    out = list(base)
    index = {e.split("=", 1)[0]: i for i, e in enumerate(out)}
    for e in overrides:
        k = e.split("=", 1)[0]
        if k in index:
            out[index[k]] = e
        else:
            index[k] = len(out)
            out.append(e)
    return out


def parse_labels(entries: list[str]) -> dict[str, str]:
    out = {}
    for e in entries:
        k, _, v = e.partition("=")
        if not k:
            raise UsageError(f"invalid label: {e!r}")
        out[k] = v
    return out


def parse_ulimit(value: str) -> tuple[str, tuple[int, int]]:
    """``nofile=1024:2048`` or ``nofile=1024``."""
    name, sep, rest = value.partition("=")
    if not sep or not name:
        raise UsageError(f"invalid ulimit {value!r}: expected NAME=SOFT[:HARD]")
    soft_s, _, hard_s = rest.partition(":")
    if not all(re.fullmatch(r"-?[0-9]{1,20}", t) for t in ([soft_s, hard_s] if hard_s else [soft_s])):
        raise UsageError(f"invalid ulimit {value!r}: limits must be integers")
    soft = int(soft_s)
    hard = int(hard_s) if hard_s else soft
    if soft > hard:
        raise UsageError(f"invalid ulimit {value!r}: soft limit {soft} is above hard limit {hard}")
    return name, (soft, hard)


def parse_add_host(value: str) -> str:
    """``name:ip`` (also ``name=ip``, as newer Docker accepts)."""
    sep = "=" if "=" in value else ":"
    name, s, ip = value.partition(sep)
    if not s or not name or not ip:
        raise UsageError(f"invalid --add-host {value!r}: expected HOST:IP")
    return f"{name}:{ip}"


def shell_split(value: str | list[str] | None) -> list[str] | None:
    """A stack file's string form of ``command``/``entrypoint`` (split like a shell)."""
    if value is None or isinstance(value, list):
        return value
    return shellwords.split(value)


# --- mounts --------------------------------------------------------------------------------

def _clean_target(target: str, flag: str) -> str:
    if not target.startswith("/"):
        raise UsageError(f"invalid {flag}: mount destination {target!r} is not an absolute path")
    target = posixpath.normpath(target)
    if target in ("/", "//"):
        raise UsageError(f"invalid {flag}: mount destination can't be '/' (the container's root)")
    return target


def _is_path(source: str) -> bool:
    return source.startswith(("/", ".", "~"))


def parse_volume_flag(value: str, cwd: str = "/") -> MountRequest:
    """``-v``: ``/path`` (anonymous), ``name:/path[:opts]``, ``/host:/path[:opts]``."""
    parts = value.split(":")
    if len(parts) == 1:
        return MountRequest(Mount("volume", _clean_target(parts[0], "-v")), anonymous=True)
    if len(parts) > 3:
        raise UsageError(f"invalid -v {value!r}: expected [SOURCE:]TARGET[:OPTIONS]")
    source, target = parts[0], _clean_target(parts[1], "-v")
    opts = parts[2].split(",") if len(parts) == 3 else []
    read_only, nocopy, extra = False, False, []
    for o in opts:
        if o == "ro":
            read_only = True
        elif o == "rw":
            read_only = False
        elif o == "nocopy":
            nocopy = True
        elif o in ("z", "Z", ""):
            pass  # SELinux relabelling: nothing to do here
        elif o in ("shared", "rshared", "slave", "rslave", "private", "rprivate"):
            extra.append(o)
        else:
            raise UsageError(f"invalid -v {value!r}: unknown option {o!r}")
    if not source:
        raise UsageError(f"invalid -v {value!r}: empty source")
    if _is_path(source):
        if source.startswith("~"):
            raise UsageError(f"invalid -v {value!r}: give the host path without '~'")
        src = posixpath.normpath(posixpath.join(cwd, source))
        if nocopy:
            raise UsageError(f"invalid -v {value!r}: nocopy applies to volumes, not bind mounts")
        return MountRequest(Mount("bind", target, src, read_only, extra), create_source=True)
    if not NAME_RE.match(source):
        raise UsageError(
            f"invalid -v {value!r}: {source!r} is neither an absolute host path nor a valid "
            "volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
        )
    if extra:
        raise UsageError(f"invalid -v {value!r}: propagation options apply to bind mounts only")
    return MountRequest(Mount("volume", target, "", read_only, [], source), nocopy=nocopy)


def _bool(v: str, key: str, value: str) -> bool:
    if v in ("", "1", "true", "True"):
        return True
    if v in ("0", "false", "False"):
        return False
    raise UsageError(f"invalid --mount {value!r}: {key} takes true or false")


def parse_mount_flag(value: str, cwd: str = "/") -> MountRequest:
    """``--mount type=bind|volume|tmpfs,source=..,target=..,readonly,...``."""
    kv: dict[str, str] = {}
    flags: set[str] = set()
    for field_ in value.split(","):
        k, sep, v = field_.partition("=")
        k = k.strip().lower()
        if not k:
            continue
        kv[k] = v
        if not sep:
            flags.add(k)
    mtype = kv.pop("type", "volume")
    source = kv.pop("source", kv.pop("src", ""))
    target = kv.pop("target", kv.pop("destination", kv.pop("dst", "")))
    if not target:
        raise UsageError(f"invalid --mount {value!r}: target is required")
    target = _clean_target(target, "--mount")
    ro = False
    for k in ("readonly", "ro"):
        if k in kv:
            ro = _bool(kv.pop(k), k, value)
    if mtype == "bind":
        if not source:
            raise UsageError(f"invalid --mount {value!r}: a bind mount needs a source")
        src = posixpath.normpath(posixpath.join(cwd, source))
        opts = []
        if "bind-propagation" in kv:
            opts.append(kv.pop("bind-propagation"))
        if "bind-nonrecursive" in kv and _bool(kv.pop("bind-nonrecursive"), "bind-nonrecursive", value):
            opts.append("nonrecursive")
        _no_extra(kv, value)
        return MountRequest(Mount("bind", target, src, ro, opts))
    if mtype == "volume":
        nocopy = False
        if "volume-nocopy" in kv:
            nocopy = _bool(kv.pop("volume-nocopy"), "volume-nocopy", value)
        if kv.pop("volume-driver", "local") != "local":
            raise UsageError(f"invalid --mount {value!r}: only the 'local' volume driver exists")
        kv.pop("volume-label", None)
        _no_extra(kv, value)
        if source and not NAME_RE.match(source):
            raise UsageError(f"invalid --mount {value!r}: {source!r} is not a valid volume name")
        return MountRequest(Mount("volume", target, "", ro, [], source), nocopy=nocopy,
                            anonymous=not source)
    if mtype == "tmpfs":
        if source:
            raise UsageError(f"invalid --mount {value!r}: a tmpfs mount takes no source")
        opts = list(_TMPFS_DEFAULTS)
        if "tmpfs-size" in kv:
            opts.append(f"size={parse_bytes(kv.pop('tmpfs-size'), 'tmpfs-size')}")
        if "tmpfs-mode" in kv:
            mode = kv.pop("tmpfs-mode")
            try:
                opts.append(f"mode={int(mode, 8):o}")
            except ValueError:
                raise UsageError(f"invalid --mount {value!r}: tmpfs-mode must be octal") from None
        _no_extra(kv, value)
        return MountRequest(Mount("tmpfs", target, "", ro, opts))
    raise UsageError(f"invalid --mount {value!r}: type must be bind, volume or tmpfs")


def _no_extra(kv: dict[str, str], value: str) -> None:
    if kv:
        raise UsageError(f"invalid --mount {value!r}: unexpected key {sorted(kv)[0]!r}")


def parse_tmpfs_flag(value: str) -> MountRequest:
    """``--tmpfs /run[:opt,opt]``; Docker's defaults are noexec,nosuid,nodev."""
    target, _, opts_s = value.partition(":")
    target = _clean_target(target, "--tmpfs")
    given = [o for o in opts_s.split(",") if o] if opts_s else []
    opts = [d for d in _TMPFS_DEFAULTS if not any(g in (d, d[2:]) for g in given)] + given
    ro = "ro" in given
    opts = [o for o in opts if o not in ("ro", "rw")]
    return MountRequest(Mount("tmpfs", target, "", ro, opts))


# --- the combination -----------------------------------------------------------------------

def combine_command(image_config: Mapping[str, Any], opts: RunOptions) -> tuple[list[str], list[str]]:
    """(entrypoint, cmd) as Docker combines image and user settings."""
    img_ep = list(image_config.get("Entrypoint") or [])
    img_cmd = list(image_config.get("Cmd") or [])
    if opts.entrypoint is not None:
        ep = [a for a in opts.entrypoint] if opts.entrypoint != [""] else []
        cmd = list(opts.command or [])
    else:
        ep = img_ep
        cmd = list(opts.command) if opts.command else img_cmd
    return ep, cmd


def host_cpus() -> int:
    """The CPUs this process may run on (Docker's NumCPU: the affinity mask)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except OSError:  # pragma: no cover
        return os.cpu_count() or 1


def check_cpus(cpus: float, available: int | None = None) -> None:
    """Docker's rule for ``--cpus`` (and a service's ``cpus`` limit): a finite number from
    0.01 to the number of CPUs of the host."""
    import math

    if not isinstance(cpus, (int, float)) or isinstance(cpus, bool) or not math.isfinite(cpus) \
            or cpus <= 0:
        raise UsageError(f"invalid --cpus {cpus!r}: expected a number of CPUs above 0, e.g. 0.5")
    available = host_cpus() if available is None else available
    if cpus < 0.01 or cpus > available:
        raise UsageError(f"range of CPUs is from 0.01 to {available}.00, as there are only "
                         f"{available} CPUs available")


MAX_ARG_STRLEN = 128 * 1024  # the kernel's limit on one argument or environment string


def check_exec_sizes(argv: list[str], env: list[str]) -> None:
    """An argument or a variable longer than the kernel takes (MAX_ARG_STRLEN, with its NUL)
    would make the container's exec fail with E2BIG after start: refused before, naming it."""
    for entry in env:
        size = len(entry.encode("utf-8", "surrogateescape")) + 1
        if size > MAX_ARG_STRLEN:
            name = entry.split("=", 1)[0]
            raise UsageError(f"environment variable {name[:64]} is {size} bytes; the kernel "
                             f"takes at most {MAX_ARG_STRLEN} bytes (128 KiB, MAX_ARG_STRLEN) "
                             "per variable", hint="pass large values in a file (a volume or a config)")
    for i, arg in enumerate(argv):
        size = len(arg.encode("utf-8", "surrogateescape")) + 1
        if size > MAX_ARG_STRLEN:
            raise UsageError(f"argument {i} of the command is {size} bytes; the kernel takes at "
                             f"most {MAX_ARG_STRLEN} bytes (128 KiB, MAX_ARG_STRLEN) per argument")


_EXPOSE = re.compile(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?(?:/([a-zA-Z]+))?$")


def check_expose(entry: str) -> str:
    """One ``--expose`` entry (``80``, ``8000-8002/udp``) as Docker's ``PORT/PROTO`` key."""
    m = _EXPOSE.match(entry.strip())
    if not m:
        raise UsageError(f"invalid --expose {entry!r}: expected PORT[-PORT][/tcp|udp]")
    lo, hi, proto = int(m[1]), int(m[2] or m[1]), (m[3] or "tcp").lower()
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise UsageError(f"invalid --expose {entry!r}: ports are 1 to 65535")
    if hi < lo:
        raise UsageError(f"invalid --expose {entry!r}: the range ends before it starts")
    if proto not in ("tcp", "udp"):
        raise UsageError(f"invalid --expose {entry!r}: the protocol must be tcp or udp")
    return f"{lo}/{proto}" if lo == hi else f"{lo}-{hi}/{proto}"


def check_dns(servers: list[str]) -> None:
    if not servers:
        return  # without --dns, no ipaddress import (not preloaded: ~0.3 ms of a warm run)
    import ipaddress

    for d in servers:
        try:
            ipaddress.ip_address(d)
        except ValueError:
            raise UsageError(f"invalid --dns {d!r}: not an IP address") from None


def resources_of(opts: RunOptions) -> Resources:
    """The container's resources from the options alone (a prepared start creates the cgroup
    from them before the image is looked at)."""
    if opts.cpus is not None:
        check_cpus(opts.cpus)
    if opts.pids_limit is not None and not -(2**63) <= opts.pids_limit <= MAX_BYTES:
        raise UsageError(f"invalid --pids-limit {opts.pids_limit}: out of range")
    memory = parse_bytes(opts.memory, "--memory")
    if memory is not None and memory < 6 * 1024 * 1024:
        raise UsageError("minimum memory limit allowed is 6MB")
    reservation = parse_bytes(opts.memory_reservation, "--memory-reservation")
    if reservation is not None and memory is not None and reservation > memory:
        raise UsageError("minimum memory limit can not be less than memory reservation limit, "
                         "see usage (--memory-reservation above --memory)")
    return Resources(
        memory=memory,
        memory_reservation=reservation,
        cpus=opts.cpus,
        pids=opts.pids_limit if opts.pids_limit and opts.pids_limit > 0 else None,
        shm_size=parse_bytes(opts.shm_size, "--shm-size") or DEFAULT_SHM,
    )


def build_plan(
    opts: RunOptions,
    *,
    image_id: str,
    image_config: Mapping[str, Any],
    layer_dirs: list[str],
    container_id: str,
    name: str,
    environ: Mapping[str, str] | None = None,
    host_hostname: str = "",
    cwd: str = "/",
    created: str = "",
) -> CreatePlan:
    """Everything `create` needs, or a UsageError naming the bad option."""
    environ = environ or {}
    ep, cmd = combine_command(image_config, opts)
    argv = ep + cmd
    if not argv:
        raise UsageError(f"no command specified: image {opts.image} has no CMD or ENTRYPOINT",
                         hint="give a command after the image name")

    user_env = resolve_env(list(opts.env_file_lines) + list(opts.env), environ)
    user_keys = {e.split("=", 1)[0] for e in user_env}
    image_env = [e for e in (image_config.get("Env") or []) if e.split("=", 1)[0] not in user_keys]
    config_env = user_env + image_env

    network = opts.network or "none"
    bridge = network not in ("none", "host") and not network.startswith(("container:", "netns:"))
    if not bridge:  # a network name is resolved by the manager (stackctl.net.runtime_hooks)
        if opts.publish or opts.publish_all:
            raise UsageError(f"published ports (-p, -P) need a bridge network, not --network {network}",
                             hint="create one with `stackctl network create NAME`, then --network NAME")
        if opts.network_aliases or opts.ipv4_address:
            raise UsageError("--network-alias and --ip are supported only for containers on a network you created",
                             hint="--network NAME")
    if opts.hostname:
        hostname = opts.hostname
    elif network == "host" and host_hostname:
        hostname = host_hostname
    else:
        hostname = container_id[:12]
    if len(hostname) > 64:
        raise UsageError(f"invalid hostname {hostname!r}: longer than 64 characters")

    process_env = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if opts.tty:
        process_env.append("TERM=xterm")
    process_env = replace_or_append_env(process_env, config_env)
    check_exec_sizes(argv, process_env)

    workdir = opts.workdir or image_config.get("WorkingDir") or "/"
    if not workdir.startswith("/"):
        raise UsageError(f"the working directory {workdir!r} is invalid: it must be an absolute path")
    workdir = posixpath.normpath(workdir)
    user = opts.user or image_config.get("User") or ""
    stop_signal = normalize_signal(opts.stop_signal or image_config.get("StopSignal") or "SIGTERM")
    labels = dict(image_config.get("Labels") or {})
    labels.update(opts.labels)

    requests = [parse_volume_flag(v, cwd) for v in opts.volumes]
    requests += [parse_mount_flag(m, cwd) for m in opts.mounts]
    requests += [parse_tmpfs_flag(t) for t in opts.tmpfs]
    seen: set[str] = set()
    for r in requests:
        if r.mount.target in seen:
            raise UsageError(f"duplicate mount point: {r.mount.target}")
        seen.add(r.mount.target)
    for vol in sorted(image_config.get("Volumes") or {}):
        target = posixpath.normpath(vol)
        if target not in seen:
            requests.append(MountRequest(Mount("volume", target), anonymous=True))
            seen.add(target)
    # Parents before children, whatever the order on the command line.
    requests.sort(key=lambda r: len([p for p in r.mount.target.split("/") if p]))

    exposed = dict(image_config.get("ExposedPorts") or {})
    for e in opts.expose:
        exposed[check_expose(e)] = {}
    check_dns(list(opts.dns))
    if opts.publish:
        from stackctl.net import ports as _ports  # refused before anything is made

        for p in opts.publish:
            _ports.parse(p)

    ulimits = dict(parse_ulimit(u) for u in opts.ulimits)
    sysctls = {}
    for s in opts.sysctls:
        k, sep, v = s.partition("=")
        if not sep:
            raise UsageError(f"invalid sysctl {s!r}: expected NAME=VALUE")
        sysctls[k] = v
        why = check_sysctl_network(k, network)
        if why:
            raise UsageError(why, hint="give the container its own network (--network NAME or "
                             "the default), or drop the sysctl")
    sec = parse_security_opts(list(opts.security_opt))
    seccomp_profile = None
    if sec.seccomp == "custom":
        from stackctl.runtime.containers.seccomp import load_profile_file

        seccomp_profile = load_profile_file(posixpath.join(cwd, sec.seccomp_path))
    stop_timeout = opts.stop_timeout if opts.stop_timeout is not None else DEFAULT_STOP_TIMEOUT
    if not -(2**31) <= stop_timeout < 2**31:  # Docker's StopTimeout is an int
        raise UsageError(f"invalid --stop-timeout {stop_timeout}: out of range")

    spec = ContainerSpec(
        id=container_id,
        name=name,
        image=opts.image,
        image_id=image_id,
        rootfs_layers=list(layer_dirs),
        argv=argv,
        env=process_env,
        cwd=workdir,
        user=user,
        hostname=hostname,
        domainname=opts.domainname,
        tty=opts.tty,
        stdin_open=opts.stdin_open,
        init=opts.init,
        read_only=opts.read_only,
        privileged=opts.privileged,
        cap_add=[_cap(c) for c in opts.cap_add],
        cap_drop=[_cap(c) for c in opts.cap_drop],
        mounts=[],
        resources=resources_of(opts),
        network=network,
        extra_hosts=[parse_add_host(h) for h in opts.add_hosts],
        dns=list(opts.dns),
        dns_search=list(opts.dns_search),
        dns_options=list(opts.dns_options),
        sysctls=sysctls,
        seccomp=sec.seccomp,
        seccomp_profile=seccomp_profile,
        no_new_privileges=sec.no_new_privileges,
        apparmor=sec.apparmor,
        security_opt=list(opts.security_opt),
        ulimits=ulimits,
        stop_signal=stop_signal,
        stop_timeout=float(stop_timeout),
        labels=labels,
        auto_remove=opts.auto_remove,
        created=created,
    )
    config = {
        "Hostname": hostname,
        "Domainname": opts.domainname,
        "User": user,
        "AttachStdin": opts.stdin_open,
        "Tty": opts.tty,
        "OpenStdin": opts.stdin_open,
        "ExposedPorts": exposed or None,
        "Env": config_env,
        "Cmd": cmd or None,
        "Image": opts.image,
        "Volumes": {r.mount.target: {} for r in requests if r.mount.type == "volume"} or None,
        "WorkingDir": workdir if (opts.workdir or image_config.get("WorkingDir")) else "",
        "Entrypoint": ep or None,
        "Labels": labels,
        "StopSignal": stop_signal,
        "StopTimeout": int(stop_timeout) if opts.stop_timeout is not None else None,
    }
    return CreatePlan(spec=spec, mounts=requests, config=config)


def _cap(c: str) -> str:
    c = c.strip().upper()
    if c == "ALL":
        return c
    return c if c.startswith("CAP_") else "CAP_" + c
