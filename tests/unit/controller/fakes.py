"""In-memory fakes of what the controller talks to: NodeOps, NetOps and the store.

The fake node's containers follow a *behaviour* chosen by image (``Behavior``): how long
until healthy, whether the health check fails, when the process exits and with what code, and
when its server listens on its ports (what the real node reads from ``/proc/<pid>/net/tcp``
for a replica labelled ``com.stackctl.listen-ports``).
States are computed from trio's clock, so tests run under ``MockClock(autojump_threshold=0)``
and never sleep.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

import trio

from stackctl.errors import ConflictError, NotFoundError
from stackctl.scheduler.observed import ContainerInfo, parse_listen_ports
from stackctl.scheduler.tasks import LABEL_LISTEN_PORTS

BASE_WALL = 1_700_000_000 * 10**9


def wall() -> int:
    return BASE_WALL + int(trio.current_time() * 1e9)


def iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat().replace(
        "+00:00", "Z")


@dataclass
class Behavior:
    healthy_after: float = 1.0  # seconds after start (with a health check)
    unhealthy: bool = False  # the health check fails (after healthy_after)
    exit_after: float | None = None  # the process exits this long after start
    exit_code: int = 1
    listen_after: float | None = 0.0  # its server listens this long after start (None: never)
    listens_on: tuple[int, ...] | None = None  # the ports it listens on (None: its label's)


@dataclass
class FakeContainer:
    id: str
    name: str
    labels: dict[str, str]
    opts: Any
    kwargs: dict[str, Any]
    behavior: Behavior
    state: str = "created"
    started: float | None = None
    finished_ns: int | None = None
    exit_code: int | None = None

    def info(self, now: float) -> ContainerInfo:
        state, health, code, finished = self.state, None, self.exit_code, self.finished_ns
        b = self.behavior
        if state == "running" and b.exit_after is not None and \
                now >= self.started + b.exit_after:
            state, code = "exited", b.exit_code
            finished = BASE_WALL + int((self.started + b.exit_after) * 1e9)
        listening = None
        if state == "running" and LABEL_LISTEN_PORTS in self.labels:  # as NodeOps reads it
            wanted = parse_listen_ports(self.labels[LABEL_LISTEN_PORTS])
            ports = b.listens_on if b.listens_on is not None else wanted
            up = b.listen_after is not None and now >= self.started + b.listen_after
            listening = frozenset(ports) if up else frozenset()
        hc = self.kwargs.get("health")
        if state == "running" and hc and hc.get("test") != ["NONE"]:
            if now < self.started + b.healthy_after:
                health = "starting"
            else:
                health = "unhealthy" if b.unhealthy else "healthy"
        return ContainerInfo(
            id=self.id, name=self.name, labels=dict(self.labels), state=state, health=health,
            exit_code=code, listening=listening,
            started_at=iso(BASE_WALL + int(self.started * 1e9)) if self.started is not None
            else "",
            finished_at=iso(finished) if finished else "")


class FakeNode:
    """The runtime side of a node (NodeOps) in memory; with :class:`FakeNet` and a state
    directory, ``LocalNode`` makes it a whole node (the controller's NodeClient)."""

    def __init__(self, images: dict[str, str] | None = None) -> None:
        self.images = dict(images or {})  # ref -> id
        self.image_configs: dict[str, dict] = {}  # ref -> the image's run config
        self.behaviors: dict[str, Behavior] = {}  # image ref -> behaviour
        self.containers: dict[str, FakeContainer] = {}
        self.networks: dict[str, dict] = {}
        self.volumes: dict[str, dict] = {}
        self.log: list[tuple] = []
        self.builds: list[dict] = []
        #: a fake registry: ref (``repo:tag`` or ``repo@digest``) -> (digest, image id); a
        #: ref mapped to an exception instance raises it; ``pulls`` logs (ref, policy, auth)
        self.registry: dict[str, Any] = {}
        self.pulls: list[tuple[str, str, dict | None]] = []
        self.fail_create: set[str] = set()  # image refs whose create fails
        self.create_delay = 0.0
        self.start_delay = 0.0
        self._ids = itertools.count(1)
        self.last_time = 0.0

    # containers
    async def list_containers(self, *, stack: str | None = None) -> list[ContainerInfo]:
        await trio.lowlevel.checkpoint()
        now = self.last_time = trio.current_time()
        return [c.info(now) for c in self.containers.values()
                if stack is None or c.labels.get("com.stackctl.stack") == stack]

    async def create_container(self, opts, *, name, networks, ports, service="",
                               endpoint_mode="vip", health=None) -> str:
        if self.create_delay:
            await trio.sleep(self.create_delay)
        await trio.lowlevel.checkpoint()
        if opts.image in self.fail_create:
            from stackctl.errors import StackctlError
            raise StackctlError(f"cannot create {name}: broken image")
        if any(c.name == name for c in self.containers.values()):
            raise ConflictError(f"the container name {name!r} is already in use")
        cid = f"{next(self._ids):064x}"
        self.containers[cid] = FakeContainer(
            cid, name, dict(opts.labels), copy.deepcopy(opts),
            {"networks": networks, "ports": ports, "service": service,
             "endpoint_mode": endpoint_mode, "health": health},
            self.behaviors.get(opts.image, Behavior()))
        self.log.append(("create", name, cid))
        return cid

    def _get(self, cid: str) -> FakeContainer:
        if cid not in self.containers:
            raise NotFoundError(f"no such container: {cid[:12]}")
        return self.containers[cid]

    async def start_container(self, cid: str) -> None:
        if self.start_delay:
            await trio.sleep(self.start_delay)
        await trio.lowlevel.checkpoint()
        c = self._get(cid)
        c.state, c.started, c.exit_code, c.finished_ns = "running", trio.current_time(), \
            None, None
        self.log.append(("start", c.name, cid))

    async def stop_container(self, cid: str, timeout=None) -> None:
        await trio.lowlevel.checkpoint()
        c = self._get(cid)
        info = c.info(trio.current_time())
        if info.state == "running":
            c.state, c.exit_code, c.finished_ns = "exited", 0, wall()
        else:
            c.state, c.exit_code = info.state, info.exit_code
            c.finished_ns = c.finished_ns or wall()
        c.behavior = Behavior()  # no more scripted exits
        self.log.append(("stop", c.name, cid))

    async def remove_container(self, cid: str, *, volumes: bool = False) -> None:
        await trio.lowlevel.checkpoint()
        c = self.containers.pop(cid, None)
        if c is not None:
            self.log.append(("remove", c.name, cid))

    # networks, volumes, images
    async def ensure_network(self, name, *, internal=False, attachable=False, subnet=None,
                             gateway=None, labels=None):
        await trio.lowlevel.checkpoint()
        new = name not in self.networks
        self.networks.setdefault(name, {"internal": internal, "labels": labels or {}})
        self.log.append(("network", name))
        return new

    async def remove_network(self, name):
        await trio.lowlevel.checkpoint()
        if name not in self.networks:
            raise NotFoundError(f"no such network: {name}")
        users = [c.name for c in self.containers.values()
                 if any(getattr(a, "network", None) == name for a in c.kwargs["networks"])]
        if users:  # as the real node: refused while a container has an endpoint on it
            raise ConflictError(f"network {name!r} has active endpoints ({', '.join(users)})")
        del self.networks[name]
        self.log.append(("remove-network", name))

    async def ensure_volume(self, name, *, labels=None, driver_opts=None):
        await trio.lowlevel.checkpoint()
        new = name not in self.volumes
        self.volumes.setdefault(name, {"labels": labels or {}})
        self.log.append(("volume", name))
        return new

    async def remove_volume(self, name):
        await trio.lowlevel.checkpoint()
        if name not in self.volumes:
            raise NotFoundError(f"no such volume: {name}")
        users = [c.name for c in self.containers.values()
                 if any(f"type=volume,source={name}," in m + "," for m in c.opts.mounts)]
        if users:  # as the real node: refused while a container (even a stopped one) uses it
            raise ConflictError(f"volume {name} is in use by container {', '.join(users)}")
        del self.volumes[name]
        self.log.append(("remove-volume", name))

    async def image_id(self, ref):
        await trio.lowlevel.checkpoint()
        return self.images.get(ref)

    async def image_config(self, ref):
        await trio.lowlevel.checkpoint()
        return self.image_configs.get(ref)

    async def kill_container(self, cid: str, signal: str = "SIGKILL") -> None:
        await self.stop_container(cid)

    async def inspect_container(self, cid: str) -> dict:
        await trio.lowlevel.checkpoint()
        c = self._get(cid)
        return {"Id": c.id, "Name": c.name, "State": {"Status": c.state}}

    async def pull_image(self, ref, *, policy="missing", auth=None, progress=None):
        """As NodeOps.pull_image, against :attr:`registry`."""
        await trio.lowlevel.checkpoint()
        self.pulls.append((ref, policy, auth))
        name, _, digest = ref.partition("@")
        present = self.images.get(name) if not digest else next(
            (i for d, i in self.registry.values() if d == digest and i in self.images.values()),
            None)
        if present is not None and policy != "always":
            known = next((d for d, i in self.registry.values() if i == present), "")
            return {"id": present, "pinned": "", "node_ref": f"{name}@{known}" if known else "",
                    "pulled": False}
        if policy in ("never", "build"):
            raise NotFoundError(f"image {ref} is not on this node and pull_policy is {policy}")
        entry = self.registry.get(ref) if not digest else next(
            (v for v in self.registry.values() if not isinstance(v, Exception) and v[0] == digest),
            None)
        if entry is None:
            raise NotFoundError(f"pull {ref}: repository {name} not found")
        if isinstance(entry, Exception):
            raise entry
        got_digest, image_id = entry
        if progress is not None:
            progress({"layer": got_digest[7:19], "status": "Pull complete", "current": 0,
                      "total": 0})
        self.images[name] = image_id
        return {"id": image_id, "pinned": f"{name.rpartition(':')[0]}@{got_digest}",
                "node_ref": f"{name}@{got_digest}", "pulled": True}

    async def build_image(self, context, *, dockerfile, tag, args, target):
        await trio.lowlevel.checkpoint()
        self.builds.append({"context": context, "dockerfile": dockerfile, "tag": tag,
                            "args": args, "target": target})
        self.images[tag] = f"sha256:built-{len(self.builds)}"
        return self.images[tag]

    # helpers for tests
    def running(self, service: str | None = None) -> list[ContainerInfo]:
        try:
            now = trio.current_time()
        except RuntimeError:  # after trio.run: the time the test ended
            now = self.last_time
        return sorted((c.info(now) for c in self.containers.values()
                       if c.info(now).state == "running" and
                       (service is None or c.labels.get("com.stackctl.service") == service)),
                      key=lambda c: c.name)

    def kinds(self, kind: str) -> list[str]:
        return [e[1] for e in self.log if e[0] == kind]


class FakeNet:
    def __init__(self) -> None:
        self.serving: dict[str, bool] = {}
        self.calls: list[tuple[str, bool]] = []
        self.published: dict[tuple[str, str], tuple[list[str], list[str]]] = {}

    async def set_serving(self, cid: str, serving: bool) -> None:
        await trio.lowlevel.checkpoint()
        self.serving[cid] = serving
        self.calls.append((cid, serving))

    async def publish_service(self, stack, service, ports, networks):
        await trio.lowlevel.checkpoint()
        self.published[(stack, service)] = (list(ports), list(networks))

    async def unpublish_service(self, stack, service):
        await trio.lowlevel.checkpoint()
        self.published.pop((stack, service), None)


@dataclass
class _Rec:
    name: str
    spec: Any
    project_dir: str
    version: int
    status: str = ""
    previous: dict | None = None


@dataclass
class FakeStore:
    stacks: dict[str, _Rec] = field(default_factory=dict)
    restarts: dict[tuple, list[int]] = field(default_factory=dict)

    def put_stack(self, name, spec_json, project_dir):
        old = self.stacks.get(name)
        prev = {"spec": old.spec, "project_dir": old.project_dir, "version": old.version} \
            if old else None
        version = old.version + 1 if old else 1
        self.stacks[name] = _Rec(name, copy.deepcopy(spec_json), project_dir, version,
                                 old.status if old else "", prev)
        return version

    def get_stack(self, name):
        rec = self.stacks.get(name)
        if rec is None:
            return None
        return {"name": rec.name, "spec": rec.spec, "project_dir": rec.project_dir,
                "version": rec.version, "status": rec.status, "previous": rec.previous}

    def list_stacks(self):
        return [{"name": n} for n in sorted(self.stacks)]

    def delete_stack(self, name):
        self.stacks.pop(name, None)

    def set_stack_status(self, name, status):
        if name in self.stacks:
            self.stacks[name].status = status

    def record_restart(self, stack, service, slot, config_hash, at):
        self.restarts.setdefault((stack, service, slot, config_hash), []).append(at)

    def restart_history(self, stack, service, slot, config_hash):
        return list(self.restarts.get((stack, service, slot, config_hash), []))
