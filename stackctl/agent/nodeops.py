"""The node operations the controller drives: containers, networks, volumes, images — trio
async wrappers around the blocking runtime, network and image code.

Every blocking call runs in a worker thread (``trio.to_thread.run_sync``). Container create,
start, stop and remove are not serialized here: the runtime holds ``<state>/runtime.lock``
only for short critical sections (a create's network attach runs outside it, under the
network state's own lock), so independent containers are created, started and removed
concurrently. Network and volume ensure/remove (check, then act) are serialized by one
``trio.Lock``.

Failures leave nothing behind: the runtime's ``create`` undoes itself (record, volumes, network
endpoint), and a failure after it (persisting the health check) removes the container.

Network attachment: ``ContainerManager.create`` attaches one bridge network (``opts.network``)
through :mod:`stackctl.net.runtime_hooks`; a stack's container needs several, plus its service
name for the VIP and its endpoint mode. :class:`_StackContainers` overrides the manager's one
seam for that (``_network_membership``: which networks, as which service). When the runtime
grows ``RunOptions.networks`` / ``service`` / ``endpoint_mode``, this goes away.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from stackctl.errors import ConflictError, NotFoundError, StackctlError
from stackctl.paths import NodePaths
from stackctl.runtime.imageconfig import RunOptions
from stackctl.runtime.manager import ContainerManager
from stackctl.runtime.records import Record
from stackctl.scheduler.observed import ContainerInfo
from stackctl.runtime.listening import listening_tcp_ports
from stackctl.scheduler.tasks import LABEL_LISTEN_PORTS, LABEL_STACK, LOCAL_NODE

if TYPE_CHECKING:
    from stackctl.agent.events import EventBus
    from stackctl.agent.store import Store
    from stackctl.net.sandbox import Attachment

log = logging.getLogger("stackctl.agent")

HealthOf = Callable[[str], "str | None"]


class _StackContainers(ContainerManager):
    """A ContainerManager whose bridge attachment takes several networks, published ports, a
    service (VIP, ``tasks.<service>``) and an endpoint mode — for one ``create`` call."""

    def __init__(self, base: ContainerManager, networks: list[Attachment], service: str,
                 endpoint_mode: str) -> None:
        super().__init__(base.paths, images=base._images, core=base._core)
        self._networks = networks
        self._service = service
        self._endpoint_mode = endpoint_mode

    def _network_membership(self, opts: RunOptions) -> dict[str, Any]:
        return {"networks": self._networks, "service": self._service, "endpoint_mode": self._endpoint_mode}


def container_info(rec: Record, health: str | None = None, node: str = LOCAL_NODE,
                   listening: frozenset[int] | None = None) -> ContainerInfo:
    st = rec.state
    return ContainerInfo(
        id=rec.id, name=rec.name, labels=dict(rec.spec.labels), state=st.status,
        health=health if st.status == "running" else None,
        exit_code=st.exit_code, started_at=st.started_at, finished_at=st.finished_at, node=node,
        listening=listening if st.status == "running" else None,
    )


def listening_of(rec: Record, proc: str = "/proc") -> frozenset[int] | None:
    """(blocking) The TCP ports listening in a running container's network namespace, read
    only for a container with ports to wait for (label ``com.stackctl.listen-ports``)."""
    if rec.state.status != "running" or not rec.state.pid or \
            LABEL_LISTEN_PORTS not in rec.spec.labels:
        return None
    return listening_tcp_ports(rec.state.pid, proc)


def service_port_map(paths: NodePaths) -> dict[str, list[Any]]:
    """The stacks' service ports on this node: ``<stack>_<service>`` -> its PortBindings."""
    try:
        from stackctl.net import service_ports
    except ImportError:
        return {}
    return {sp.key: list(sp.ports) for sp in service_ports.list_service_ports(paths)}


def container_json(rec: Record, health: str | None = None, node: str = LOCAL_NODE,
                   service_ports: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """The API's container info (docs/agent-api.md). ``service_ports``
    (:func:`service_port_map`): a running replica of a stack service shows its service's
    published ports too, as ``docker compose ps`` does."""
    from stackctl.runtime.records import ZERO_TIME

    info = container_info(rec, health, node)
    ports = ""
    settings = rec.meta.get("NetworkSettings")
    extra: list[Any] = []
    if (service_ports and info.stack and info.service and rec.state.status == "running"
            and rec.spec.labels.get("com.stackctl.oneoff") != "true"):
        extra = service_ports.get(f"{info.stack}_{info.service}", [])
    if settings or extra:
        from stackctl.humanize import ports_column

        ports = ports_column(settings, extra)
    return {
        "id": rec.id, "name": rec.name, "stack": info.stack or "", "service": info.service or "",
        "slot": info.slot or "", "task_id": info.task_id or "",
        "config_hash": info.config_hash or "", "image": rec.spec.image,
        "image_id": rec.spec.image_id, "command": list(rec.spec.argv), "state": info.state,
        "health": info.health or "", "exit_code": info.exit_code,
        "oom_killed": rec.state.oom_killed, "error": rec.state.error,
        "created": rec.spec.created, "started_at": info.started_at or ZERO_TIME,
        "finished_at": info.finished_at or ZERO_TIME, "ports": ports,
        "labels": dict(rec.spec.labels), "node": node,
    }


class NodeOps:
    """What the controller can do on this node. All methods are trio async."""

    def __init__(self, paths: NodePaths, bus: EventBus, store: Store, *,
                 containers: ContainerManager | None = None, node: str = LOCAL_NODE,
                 proc: str = "/proc") -> None:
        self.paths = paths
        self.proc = proc  # where the containers' /proc/<pid>/net/tcp are read
        self.bus = bus
        self.store = store
        self.node = node
        self.containers = containers or ContainerManager(paths)
        self._lock = trio.Lock()
        self._build_lock = trio.Lock()
        self._health_of: HealthOf = lambda cid: None
        self._on_change: Callable[[], None] = lambda: None

    def attach_supervisor(self, health_of: HealthOf, on_change: Callable[[], None]) -> None:
        """The supervisor reports health and wants to hear of starts/removals at once."""
        self._health_of = health_of
        self._on_change = on_change

    async def _run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await trio.to_thread.run_sync(lambda: fn(*args, **kw))

    def _event(self, kind: str, rec: Record | None = None, **extra: Any) -> None:
        ev: dict[str, Any] = {"event": kind}
        if rec is not None:
            labels = rec.spec.labels
            ev.update(id=rec.id, name=rec.name, stack=labels.get("com.stackctl.stack", ""),
                      service=labels.get("com.stackctl.service", ""),
                      slot=labels.get("com.stackctl.slot", ""))
        ev.update(extra)
        self.bus.publish(ev)

    # -- containers --------------------------------------------------------------------------

    async def records(self) -> list[Record]:
        return await self._run(self.containers.records)

    async def service_ports(self) -> dict[str, list[Any]]:
        """:func:`service_port_map` of this node (for the PORTS of ``stack.ps``)."""
        return await self._run(service_port_map, self.paths)

    async def list_containers(self, *, stack: str | None = None) -> list[ContainerInfo]:
        """The containers (of ``stack``), with what readiness needs: health from the
        supervisor, listening ports read from /proc for replicas that wait for them."""
        def read() -> list[tuple[Record, frozenset[int] | None]]:
            recs = self.containers.records()
            if stack is not None:
                recs = [r for r in recs if r.spec.labels.get(LABEL_STACK) == stack]
            return [(r, listening_of(r, self.proc)) for r in recs]

        return [container_info(r, self._health_of(r.id), self.node, listening)
                for r, listening in await self._run(read)]

    async def create_container(self, opts: RunOptions, *, name: str,
                               networks: list[Attachment] | None = None,
                               ports: list[str] | None = None, service: str = "",
                               endpoint_mode: str = "vip",
                               health: dict[str, Any] | None = None) -> str:
        """Create (not start) a container; its id. ``networks`` in attach order (the first
        non-internal one carries the default route and the published ports)."""
        from stackctl.agent.health import HealthConfig

        import dataclasses

        opts = dataclasses.replace(opts)  # the caller's options stay as they were
        networks = list(networks or [])
        ports = list(ports or [])
        hc = HealthConfig.from_dict(health) if health else None
        if hc is not None and not hc.enabled:
            hc = None
        if networks:
            opts.network = networks[0].network
            opts.publish = ports
            cm: ContainerManager = _StackContainers(self.containers, networks, service,
                                                    endpoint_mode)
        else:
            if ports:
                raise StackctlError(f"container {name}: published ports need a network")
            cm = self.containers
        # not under self._lock: the runtime holds its lock only briefly (name, volumes,
        # record), so creates of independent containers overlap (their network attach too,
        # up to the network state's own lock)
        rec = await self._run(cm.create, opts, name, environ={}, cwd="/")
        try:
            if hc is not None:
                self.store.put_health_config(rec.id, hc.to_dict())
                # no VIP traffic until the first probe passes (a service's endpoints are
                # made not serving at create already: runtime_hooks.attach)
                if networks and not service:
                    from stackctl.net import sandbox

                    await self._run(sandbox.set_health, self.paths, rec.id, False)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._run(self.containers.remove, rec.id, force=True, volumes=True)
                self.store.delete_health(rec.id)
            raise
        self._event("container.create", rec, image=rec.spec.image)
        return rec.id

    async def start_container(self, cid: str) -> None:
        await self._run(self.containers.start, cid)
        self._on_change()

    async def stop_container(self, cid: str, timeout: float | None = None) -> None:
        await self._run(self.containers.stop, cid, timeout)
        self._on_change()

    async def kill_container(self, cid: str, signal: str = "SIGKILL") -> None:
        with contextlib.suppress(ConflictError):  # not running: nothing to kill
            await self._run(self.containers.kill, cid, signal)

    async def remove_container(self, cid: str, *, volumes: bool = False) -> None:
        """Remove (killing it if it runs), with its network endpoint; a missing container is
        fine (removal is idempotent)."""
        try:
            rec = await self._run(self.containers.get, cid)
        except NotFoundError:
            return
        try:
            await self._run(self.containers.remove, rec.id, force=True, volumes=volumes)
        except NotFoundError:  # removed meanwhile by another caller
            return
        self.store.delete_health(rec.id)
        self._on_change()
        self._event("container.destroy", rec)

    def release_orphans(self) -> None:
        """(blocking) Release the networking of containers whose record is gone: an
        auto-removed (``--rm``) container's monitor removes its directory but cannot touch
        networking, which the runtime otherwise releases on its next ``list``."""
        self.containers._release_orphans()  # the runtime's own seam for exactly this

    async def inspect_container(self, cid: str) -> dict[str, Any]:
        return await self._run(self.containers.inspect, cid)

    # -- networks ----------------------------------------------------------------------------

    async def ensure_network(self, name: str, *, internal: bool = False, attachable: bool = False,
                             subnet: str | None = None, gateway: str | None = None,
                             labels: dict[str, str] | None = None) -> bool:
        """Create the network unless it exists; True when this call created it."""
        from stackctl.net import networks as nets

        async with self._lock:
            try:
                await self._run(nets.get, self.paths, name)
                return False
            except NotFoundError:
                pass
            await self._run(nets.create, self.paths, name, subnet=subnet, gateway=gateway,
                            internal=internal, attachable=attachable, labels=labels)
        self._event("network.create", name=name,
                    stack=(labels or {}).get("com.stackctl.stack", ""))
        return True

    async def remove_network(self, name: str) -> None:
        from stackctl.net import networks as nets

        async with self._lock:
            # an exited `run -d --rm` container took its record with it, not its endpoint
            await self._run(self.release_orphans)
            try:
                await self._run(nets.remove, self.paths, [name])
            except NotFoundError:
                return
        self._event("network.destroy", name=name)

    # -- volumes -----------------------------------------------------------------------------

    async def ensure_volume(self, name: str, *, labels: dict[str, str] | None = None,
                            driver_opts: dict[str, str] | None = None) -> bool:
        """Create the volume unless it exists; True when this call created it."""
        vols = self.containers.volumes

        def create() -> bool:
            with self.containers.locked():
                if vols.exists(name):
                    return False
                vols.create(name, labels=labels, options=driver_opts or None)
                return True

        async with self._lock:
            made = await self._run(create)
        if made:
            self._event("volume.create", name=name,
                        stack=(labels or {}).get("com.stackctl.stack", ""))
        return made

    async def remove_volume(self, name: str) -> None:
        """Remove a volume; missing is fine, in use is a ConflictError."""
        async with self._lock:
            if not await self._run(self.containers.volumes.exists, name):
                return
            await self._run(self.containers.remove_volume, name)
        self._event("volume.destroy", name=name)

    # -- images ------------------------------------------------------------------------------

    async def image_id(self, ref: str) -> str | None:
        try:
            img = await self._run(self.containers.images.resolve, ref)
        except NotFoundError:
            return None
        return img.id

    async def image_config(self, ref: str) -> dict[str, Any] | None:
        """The image's run config (the OCI config's ``config``: ``Env``, ``Cmd``,
        ``Healthcheck`` in Docker's form with nanoseconds, ...); None if the image is
        missing. The controller takes a service's health check from it when the stack file
        gives none."""
        try:
            img = await self._run(self.containers.images.resolve, ref)
        except NotFoundError:
            return None
        return dict(img.config.get("config") or {})

    async def pull_image(self, ref: str, *, policy: str = "missing",
                         auth: dict[str, Any] | None = None,
                         progress: Callable[[dict[str, Any]], None] | None = None
                         ) -> dict[str, Any]:
        """Make ``ref`` present on this node as ``policy`` says, pulling it from its registry
        (:func:`~stackctl.runtime.images.registry.policy.ensure_image`, docs/registry.md).
        ``auth`` (``RegistryAuth.to_dict()``) is used for this pull only and never stored;
        without it the node's own credentials are used (or none). Returns ``{"id", "pinned",
        "node_ref", "pulled"}``. A ``repo:tag@sha256:...`` reference leaves ``repo:tag`` on
        that very image, also when the digest was here already. ``progress``: called (from
        the transfer threads) with ``CallbackProgress``'s dicts."""
        from stackctl.runtime.images.registry.auth import RegistryAuth
        from stackctl.runtime.images.registry.policy import ensure_image
        from stackctl.runtime.images.registry.reference import parse_ref

        creds = RegistryAuth.from_dict(auth) if auth else None
        images = self.containers.images

        def work() -> dict[str, Any]:
            from stackctl.runtime.images.registry.progress import CallbackProgress

            e = ensure_image(self.paths, ref, policy, creds,
                             CallbackProgress(progress) if progress is not None else None)
            r = parse_ref(ref)
            if r.digest and r.local_tag:
                try:
                    current: str | None = images.resolve(r.local_tag).id
                except NotFoundError:
                    current = None
                if current != e.image_id:
                    images.tag(e.image_id, r.local_tag)
            return {"id": e.image_id, "pinned": e.pinned, "node_ref": e.node_ref,
                    "pulled": e.pulled}

        out = await self._run(work)
        if out["pulled"]:
            self._event("image.pull", name=ref, image_id=out["id"])
        return out

    async def build_image(self, context: str, *, dockerfile: str, tag: str,
                          args: dict[str, str], target: str | None,
                          log_line: Callable[[str], None] | None = None) -> str:
        """Build ``tag`` from ``context``; its image id. Builds run one at a time."""
        from stackctl.runtime.images.build.builder import BuildOptions, build

        opts = BuildOptions(context=context, dockerfile=dockerfile or None, tags=[tag],
                            build_args=dict(args), target=target or "")
        sink = log_line or (lambda line: log.info("build %s: %s", tag, line))

        def line_from_thread(line: str) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(sink, line)

        async with self._build_lock:
            img = await self._run(build, self.paths, self.containers.images, opts,
                                  log=line_from_thread, step_output="devnull")
        self._event("image.build", name=tag, image_id=img.id)
        return img.id
