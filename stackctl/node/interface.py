"""What the controller can do on one node, and how requests and results travel.

:class:`NodeClient` is the one interface the controller calls: containers, networks, volumes,
images, task files (secrets and configs) and serving state (VIPs and published ports). The
local node implements it in-process (:class:`stackctl.node.local.LocalNode`), a remote node
over the agent protocol (:class:`stackctl.node.remote.RemoteNode`); unit tests use one shared
fake (``tests/unit/controller/fakes.py``).

Every request and result serialises to JSON: :class:`ContainerRequest` (a task's container:
:class:`~stackctl.runtime.imageconfig.RunOptions` plus its networks, ports, service and health
check), :func:`info_to_json` / :func:`info_from_json` for
:class:`~stackctl.scheduler.observed.ContainerInfo`, and :func:`file_to_json` /
:func:`file_from_json` for the task files.

Creating a task is idempotent, keyed by the task id (``com.stackctl.task-id``): a create
retried after a lost reply returns the container the first one made.

Task files: a task's secret and config files live on the node that runs it, in a directory
the node chooses. The controller names that directory :func:`taskfiles_ref` (``taskfiles:
<stack>/<service>-<hash12>``) in the container's bind mounts; the node resolves the name to
its own path when it creates the container.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from stackctl.errors import StackctlError
from stackctl.net.sandbox import Attachment
from stackctl.runtime.imageconfig import RunOptions
from stackctl.scheduler.observed import ContainerInfo

#: the prefix of a bind-mount source that names a task-files directory (see the docstring)
TASKFILES_PREFIX = "taskfiles:"


def taskfiles_ref(stack: str, service: str, config_hash: str) -> str:
    """The node-independent name of a service version's task-files directory."""
    return f"{TASKFILES_PREFIX}{stack}/{service}-{config_hash[:12]}"


class WireError(StackctlError):
    """A node request or result that does not decode (a peer of another version, a bug)."""


# --------------------------------------------------------------------------------------------
# Containers


@dataclass
class ContainerRequest:
    """One container to create on a node (what ``create_container`` takes), wire-ready."""

    opts: RunOptions
    name: str
    networks: list[Attachment] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)  # per-container (-p syntax)
    service: str = ""
    endpoint_mode: str = "vip"
    health: dict[str, Any] | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"name": self.name, "networks": list(self.networks), "ports": list(self.ports),
                "service": self.service, "endpoint_mode": self.endpoint_mode,
                "health": self.health}

    def to_json(self) -> dict[str, Any]:
        return {"opts": dataclasses.asdict(self.opts), "name": self.name,
                "networks": [dataclasses.asdict(a) for a in self.networks],
                "ports": list(self.ports), "service": self.service,
                "endpoint_mode": self.endpoint_mode, "health": self.health}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContainerRequest:
        try:
            opts = _dataclass_from(RunOptions, data["opts"])
            nets = [_dataclass_from(Attachment, a) for a in data.get("networks") or []]
            return cls(opts=opts, name=str(data["name"]), networks=nets,
                       ports=[str(p) for p in data.get("ports") or []],
                       service=str(data.get("service") or ""),
                       endpoint_mode=str(data.get("endpoint_mode") or "vip"),
                       health=dict(data["health"]) if data.get("health") else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"a container request that does not decode: {exc}") from None


def _dataclass_from(cls: type, data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__}: expected an object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:  # a newer peer: refuse rather than silently drop what it asked for
        raise TypeError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    return cls(**dict(data))


def info_to_json(c: ContainerInfo) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "labels": dict(c.labels), "state": c.state,
            "health": c.health, "exit_code": c.exit_code, "started_at": c.started_at,
            "finished_at": c.finished_at, "node": c.node,
            "listening": sorted(c.listening) if c.listening is not None else None}


def info_from_json(data: Mapping[str, Any], node: str | None = None) -> ContainerInfo:
    """``node``: the name the manager knows the node by (wins over what the node says)."""
    try:
        listening = data.get("listening")
        return ContainerInfo(
            id=str(data["id"]), name=str(data["name"]), labels=dict(data.get("labels") or {}),
            state=str(data.get("state") or "created"), health=data.get("health"),
            exit_code=data.get("exit_code"), started_at=str(data.get("started_at") or ""),
            finished_at=str(data.get("finished_at") or ""),
            node=node if node is not None else str(data.get("node") or "local"),
            listening=frozenset(int(p) for p in listening) if listening is not None else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"container info that does not decode: {exc}") from None


# --------------------------------------------------------------------------------------------
# Task files


def file_to_json(f: Any) -> dict[str, Any]:
    return dataclasses.asdict(f)


def file_from_json(data: Mapping[str, Any]) -> Any:
    from stackctl.controller.taskspec import ObjectFile

    try:
        return _dataclass_from(ObjectFile, data)
    except TypeError as exc:
        raise WireError(f"a task file that does not decode: {exc}") from None


# --------------------------------------------------------------------------------------------
# The interface


@runtime_checkable
class NodeClient(Protocol):
    """One node as the controller sees it. Every method is trio async; errors are
    :class:`~stackctl.errors.StackctlError` s (``NotFoundError``, ``ConflictError``, ...),
    and a node that cannot be reached raises one naming the node."""

    name: str

    # containers
    async def list_containers(self, *, stack: str | None = None) -> list[ContainerInfo]: ...

    async def create_container(self, opts: RunOptions, *, name: str,
                               networks: list[Attachment] | None = None,
                               ports: list[str] | None = None, service: str = "",
                               endpoint_mode: str = "vip",
                               health: dict[str, Any] | None = None) -> str: ...

    async def start_container(self, cid: str) -> None: ...

    async def stop_container(self, cid: str, timeout: float | None = None) -> None: ...

    async def kill_container(self, cid: str, signal: str = "SIGKILL") -> None: ...

    async def remove_container(self, cid: str, *, volumes: bool = False) -> None: ...

    async def inspect_container(self, cid: str) -> dict[str, Any]: ...

    # networks and volumes
    async def ensure_network(self, name: str, *, internal: bool = False,
                             attachable: bool = False, subnet: str | None = None,
                             gateway: str | None = None,
                             labels: dict[str, str] | None = None) -> bool: ...

    async def remove_network(self, name: str) -> None: ...

    async def ensure_volume(self, name: str, *, labels: dict[str, str] | None = None,
                            driver_opts: dict[str, str] | None = None) -> bool: ...

    async def remove_volume(self, name: str) -> None: ...

    # images
    async def image_id(self, ref: str) -> str | None: ...

    async def image_config(self, ref: str) -> dict[str, Any] | None: ...

    async def build_image(self, context: str, *, dockerfile: str, tag: str,
                          args: dict[str, str], target: str | None) -> str: ...

    async def pull_image(self, ref: str, *, policy: str = "missing",
                         auth: dict[str, Any] | None = None,
                         progress: Any = None) -> dict[str, Any]: ...

    # serving state: VIPs and published ports
    async def set_serving(self, container_id: str, serving: bool) -> None: ...

    async def publish_service(self, stack: str, service: str, ports: list[str],
                              networks: list[str]) -> None: ...

    async def unpublish_service(self, stack: str, service: str) -> None: ...

    # overlay networks (stackctl/net/overlay.py): the manager's whole view of one network
    async def overlay_sync(self, view: dict[str, Any]) -> dict[str, Any]: ...

    async def overlay_caps(self) -> dict[str, Any]: ...

    # task files (secrets and configs)
    async def write_task_files(self, stack: str, service: str, config_hash: str,
                               files: list[Any], contents: Mapping[str, bytes]) -> None: ...

    async def has_task_files(self, stack: str, service: str, config_hash: str) -> bool: ...

    async def prune_task_files(self, stack: str, keep: list[str]) -> None: ...

    async def remove_task_files(self, stack: str) -> None: ...
