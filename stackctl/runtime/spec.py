"""What a container is made of, fully resolved: the contract between the container manager
(names, images, volumes, CLI) and the execution core (namespaces, rootfs, cgroups, monitor).

The manager turns `stackctl run` flags (or a stack service) plus the image config into a
:class:`ContainerSpec`; the core runs exactly that and records what happened in a
:class:`ContainerState`. Both are plain data, stored as JSON in the container's directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

MountType = Literal["bind", "volume", "tmpfs"]
Status = Literal["created", "running", "exited", "dead"]


@dataclass
class Mount:
    """One mount inside the container. For ``volume`` the manager has already resolved the
    named volume to its directory on the host (``source``)."""

    type: MountType
    target: str
    source: str = ""  # host path (bind, volume); unused for tmpfs
    read_only: bool = False
    options: list[str] = field(default_factory=list)  # e.g. ["size=65536k", "mode=1777"] for tmpfs
    volume_name: str = ""  # the named volume, for `inspect`; "" otherwise


@dataclass
class Resources:
    memory: int | None = None  # bytes (hard limit)
    memory_reservation: int | None = None  # bytes (soft limit)
    cpus: float | None = None  # e.g. 0.5 = half a CPU (CFS quota)
    pids: int | None = None
    memory_swap: int | None = None  # bytes of memory + swap (-1: unlimited), as Docker's --memory-swap
    shm_size: int = 64 * 1024 * 1024


@dataclass
class ContainerSpec:
    """Everything needed to start the container process; no defaults left to look up."""

    id: str  # 64 hex chars
    name: str
    image: str  # the reference the user gave, for display
    image_id: str  # sha256:... of the image config
    rootfs_layers: list[str]  # unpacked layer directories, bottom -> top (overlay lowerdirs)
    argv: list[str]  # entrypoint + cmd, already combined as Docker combines them
    env: list[str] = field(default_factory=list)  # "K=V"
    cwd: str = "/"
    user: str = ""  # "uid:gid" or a name / "name:group" resolved by the core from the rootfs
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    stdin_open: bool = False
    init: bool = False  # a small reaping init as PID 1
    read_only: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    # "none": own netns with only lo; "host": the host's; "netns:/path": join that netns file
    # (networking creates and wires it); "container:<id>": share another container's netns.
    network: str = "none"
    extra_hosts: list[str] = field(default_factory=list)  # "name:ip" lines for /etc/hosts
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    # --security-opt: "default" | "unconfined" | "custom" (then seccomp_profile holds the
    # profile's JSON object, read when the container was created, as Docker keeps it)
    seccomp: str = "default"
    seccomp_profile: dict[str, Any] | None = None
    no_new_privileges: bool = True  # stricter than Docker's default (off); =false turns it off
    apparmor: str = ""
    security_opt: list[str] = field(default_factory=list)  # as given, for inspect
    ulimits: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (soft, hard)
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 10.0
    labels: dict[str, str] = field(default_factory=dict)
    auto_remove: bool = False  # --rm
    created: str = ""  # RFC 3339

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resources_json(self) -> dict[str, Any]:
        """``to_json()["resources"]`` without converting the whole spec (``asdict`` copies every
        field deeply; a start needs the resources alone three times)."""
        return dataclasses.asdict(self.resources)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerSpec:
        data = dict(data)
        data["mounts"] = [Mount(**m) for m in data.get("mounts", [])]
        data["resources"] = Resources(**data.get("resources", {}))
        data["ulimits"] = {k: tuple(v) for k, v in data.get("ulimits", {}).items()}
        return cls(**data)


@dataclass
class ContainerState:
    """What happened to the container, written by its monitor."""

    status: Status = "created"
    pid: int = 0  # the container's PID 1, as seen from the host
    monitor_pid: int = 0
    monitor_start: int = 0  # its start time (/proc/PID/stat, clock ticks): tells it from a reused pid
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""  # why it failed to start, if it did
    started_at: str = ""
    finished_at: str = ""
    # not persisted by the monitor: what start_container adjusted (e.g. ulimits clamped to the
    # host's hard limits), for the CLI to print
    warnings: list[str] = field(default_factory=list)
    # not persisted by the monitor: a running container whose cgroup is frozen (``pause``),
    # as the manager reads it (stackctl.runtime.containers.control)
    paused: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerState:
        return cls(**data)
