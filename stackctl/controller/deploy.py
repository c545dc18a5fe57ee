"""Applying a plan to a node: ``up``'s work once the plan is made.

Order (docs/controller.md): images (build or check), the stack's networks and named volumes,
the secret/config files of each version, then the plan — removals first (dependents before
their dependencies), then the levels in dependency order. A service of a level first waits
for its ``depends_on`` gates (service_started / service_healthy /
service_completed_successfully); a failed dependency stops it from starting and says so. Then
its *converge* wave (creates and starts, all at once) and its *update* waves, carried out by
:class:`~.rollout.Rollout`. With ``wait``, the deploy ends only once every service is ready
(running, healthy with a health check; a job completed) and raises :class:`DeployError`
otherwise; an update that paused or rolled back always raises.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from stackctl.controller.context import Ctx, DeployError, Progress
from stackctl.controller.imagepull import Pin
from stackctl.controller.rollout import Rollout
from stackctl.controller.taskops import Version, start_task, stop_task, sync_serving
from stackctl.controller.taskspec import image_ref, object_files, split_ports
from stackctl.controller.watch import FAILED, MET, READY, observe, wait_condition
from stackctl.errors import NotFoundError, StackctlError
from stackctl.node.interface import taskfiles_ref
from stackctl.scheduler.observed import StackObserved
from stackctl.scheduler.planner import CREATE, START, UPDATE, Gate, Plan, PlanOptions, \
    ServicePlan
from stackctl.scheduler.rolling import ready_deadline
from stackctl.scheduler.tasks import LABEL_PREFIX, LABEL_STACK, LOCAL_NODE, Desired, \
    desired_state
from stackctl.spec.graph import ServiceGraph
from stackctl.spec.models import Stack
from stackctl.spec.validate import build_stack

LABEL_NETWORK = LABEL_PREFIX + "network"
LABEL_VOLUME = LABEL_PREFIX + "volume"
#: pull_policy values that pull only an image a node lacks (with a ``build:``: build it)
PULL_IF_MISSING = ("missing", "if_not_present", "")
#: how long a service_started gate waits for its dependency's containers to start
STARTED_TIMEOUT = 60.0


@dataclass(frozen=True)
class DeployOptions:
    """The ``options`` of ``stack.deploy`` (docs/agent-api.md)."""

    services: tuple[str, ...] = ()
    no_deps: bool = False
    force_recreate: bool = False
    no_recreate: bool = False
    no_start: bool = False
    remove_orphans: bool = False
    wait: bool = False
    wait_timeout: float | None = None
    pull: str | None = None  # overrides every service's pull_policy
    build: bool = False
    rebalance: bool = False  # place every replicated task anew (spread them again)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DeployOptions:
        data = dict(data or {})
        timeout = data.get("wait_timeout")
        return cls(services=tuple(data.get("services") or ()),
                   no_deps=bool(data.get("no_deps")),
                   force_recreate=bool(data.get("force_recreate")),
                   no_recreate=bool(data.get("no_recreate")),
                   no_start=bool(data.get("no_start")),
                   remove_orphans=bool(data.get("remove_orphans")),
                   wait=bool(data.get("wait")),
                   wait_timeout=float(timeout) if timeout else None,
                   pull=data.get("pull") or None, build=bool(data.get("build")),
                   rebalance=bool(data.get("rebalance")))

    def plan_options(self) -> PlanOptions:
        return PlanOptions(services=self.services, no_deps=self.no_deps,
                           force_recreate=self.force_recreate, no_recreate=self.no_recreate,
                           no_start=self.no_start, remove_orphans=self.remove_orphans)


@dataclass
class Loaded:
    """A stack version as the controller keeps it: the normalized stack plus the digests of
    its secret/config contents and the image ids its hashes were made with."""

    stack: Stack
    graph: ServiceGraph
    project_dir: str
    digests: dict[str, str] = field(default_factory=dict)
    image_ids: dict[str, str] = field(default_factory=dict)
    #: the cluster's nodes: a global service's slots (one per node, before placement)
    nodes: tuple[str, ...] = (LOCAL_NODE,)

    @property
    def name(self) -> str:
        assert self.stack.name
        return self.stack.name

    def desired(self) -> Desired:
        """The desired tasks, not placed yet (:func:`stackctl.controller.placement.assign`
        places them)."""
        return desired_state(self.stack, self.graph, nodes=self.nodes, objects=self.digests,
                             image_ids=self.image_ids)

    def record(self) -> dict[str, Any]:
        """What the store keeps (``spec_json``): never a secret value, only digests."""
        from stackctl.spec.dump import stack_data
        return {"stack": stack_data(self.stack), "digests": dict(self.digests),
                "image_ids": dict(self.image_ids)}


def load_stack(stack_json: Mapping[str, Any], project_dir: str) -> tuple[Stack, ServiceGraph]:
    """The normalized stack (dump form, as the CLI sends it) as models again."""
    name = stack_json.get("name")
    if not name:
        raise StackctlError("the stack has no name")
    stack, graph, _ = build_stack(dict(stack_json), project_name=name,
                                  project_dir=project_dir, environ={}, profiles=("*",))
    return stack, graph


def load_record(record: Mapping[str, Any], project_dir: str) -> Loaded:
    stack, graph = load_stack(record["stack"], project_dir)
    return Loaded(stack, graph, project_dir, dict(record.get("digests") or {}),
                  dict(record.get("image_ids") or {}))


# --------------------------------------------------------------------------------------------
# Before the plan: images, networks, volumes, secret files


async def ensure_images(ctx: Ctx, progress: Progress, stack: Stack, project_dir: str,
                        services: list[str], options: DeployOptions,
                        registry_auth: Mapping[str, Mapping[str, str]] | None = None
                        ) -> dict[str, str]:
    """The image id of each service, building what must be built and pulling what must be
    pulled (pull_policy; :func:`pull_service_image`). ``registry_auth``: registry host ->
    ``RegistryAuth.to_dict()`` from ``up --with-registry-auth``, for this deploy's pulls
    only (kept nowhere)."""
    assert stack.name
    ids: dict[str, str] = {}
    for name in services:
        s = stack.services[name]
        ref = image_ref(stack.name, name, s)
        policy = options.pull or s.pull_policy
        if s.image and policy not in ("never", "build") and (
                s.build is None or not (options.build or policy in PULL_IF_MISSING)):
            pulled = await pull_service_image(ctx, progress, stack.name, name, ref, policy,
                                              registry_auth)
            if pulled is not None:
                ids[name] = pulled
                continue
        image_id = await ctx.node.image_id(ref)
        must_build = s.build is not None and (
            options.build or policy == "build" or image_id is None)
        if must_build:
            b = s.build
            assert b is not None
            context = b.context if os.path.isabs(b.context) else \
                os.path.join(project_dir, b.context)
            await progress(name, "build", "started", f"building {ref}")
            image_id = await ctx.node.build_image(
                context, dockerfile=b.dockerfile, tag=ref,
                args={k: v for k, v in b.args.items() if v is not None}, target=b.target)
            await progress(name, "build", "done", f"built {ref}")
        elif policy == "always":
            raise StackctlError(f"service {name}: pull_policy always needs an image: "
                                "in a registry to pull from",
                                hint=f"name the image's registry in `image:`, or build or "
                                f"load {ref} and use pull_policy missing or never")
        if image_id is None:
            raise NotFoundError(f"service {name}: image {ref} is not on this node "
                                f"(pull_policy {policy})",
                                hint=f"build it (`stackctl image build -t {ref} DIR` or a "
                                "`build:` section), load it (`stackctl image load -i "
                                "FILE`) or pull it (`stackctl pull`, or pull_policy missing)")
        if len(ctx.node.members) > 1:
            for node in service_nodes(ctx, stack.name, name) or []:
                there = await ctx.node.image_id(ref, node=node)
                if there is None:
                    raise NotFoundError(
                        f"service {name}: image {ref} is not on node {node}",
                        hint="run `stackctl up` from the machine that has the image: it "
                        "sends images to the nodes that need them")
                if there != image_id:
                    # every replica runs the very same image, whichever node it is on
                    raise StackctlError(
                        f"service {name}: image {ref} on node {node} is {there[:19]}, "
                        f"not {image_id[:19]} as elsewhere",
                        hint="run `stackctl up` from the machine that has the image you "
                        "mean: it sends that image to every node")
        ids[name] = image_id
    return ids


async def pull_service_image(ctx: Ctx, progress: Progress, stack: str, service: str,
                             ref: str, policy: str,
                             registry_auth: Mapping[str, Mapping[str, str]] | None
                             ) -> str | None:
    """Pull ``ref`` as ``policy`` says (docs/registry.md, "up"): the manager resolves the
    reference once (:meth:`~stackctl.node.interface.NodeClient.pull_image` on its own node,
    which also gives the image's config), then every other node the service's tasks are
    placed on pulls that very digest (``repo:tag@sha256:...``) itself, all at once, with
    the forwarded credentials if any. Returns the image id, or None when nothing is to be
    pulled (``missing`` and every node has the image; or an image built or loaded here,
    never pulled: the caller then checks the nodes as before)."""
    from stackctl.runtime.images.registry.reference import parse_ref

    cluster = ctx.node
    local = cluster.local if cluster.local in cluster.members else next(iter(cluster.members))
    placed = service_nodes(ctx, stack, service)
    targets = [n for n in (placed if placed is not None else [local])
               if n not in cluster.down]
    try:
        registry = parse_ref(ref).registry
    except StackctlError:
        registry = ""  # not a registry reference: the caller says what is wrong
    if policy in PULL_IF_MISSING:
        have = [await cluster.image_id(ref, node=n) for n in targets]
        if targets and all(have):
            if registry and await cluster.image_id(ref, node=local):
                # nothing to pull; what the image was pulled as, for a task placed later on
                # another node (the local records answer: no registry is asked)
                await _pin(ctx, stack, service, ref, registry, cluster.member(local), targets,
                           registry_auth)
            return None
    if not registry:
        return None
    auth = dict((registry_auth or {}).get(registry) or {}) or None
    multi = len(cluster.members) > 1

    def failed(node: str, exc: StackctlError) -> StackctlError:
        where = f"service {service}: node {node}: " if multi else f"service {service}: "
        return type(exc)(where + exc.message, hint=exc.hint) \
            if type(exc).__init__ is StackctlError.__init__ else \
            StackctlError(where + exc.message, hint=exc.hint)

    await progress(service, "pull", "started", f"pulling {ref} ({policy})")
    try:
        first = await _pull_here(cluster.member(local), progress, service, ref, policy, auth)
    except StackctlError as exc:
        raise failed(local, exc) from None
    node_ref = str(first.get("node_ref") or "")
    if not node_ref:
        return None  # here, never pulled: other nodes need it sent (`up` from this machine)
    others = sorted(set(targets) - {local})
    errors: list[StackctlError] = []

    async with trio.open_nursery() as nursery:
        async def one(node: str) -> None:
            try:
                await cluster.member(node).pull_image(node_ref, policy="missing", auth=auth)
            except StackctlError as exc:
                errors.append(failed(node, exc))
                nursery.cancel_scope.cancel()  # nothing is deployed: stop the other pulls

        for node in others:
            nursery.start_soon(one, node)
    if errors:
        raise errors[0]
    ctx.images.remember(stack, service, Pin(ref, node_ref, str(first["id"]), registry),
                        sorted({local, *others}), registry_auth)
    where = f" on {', '.join(sorted({local, *others}))}" if multi else ""
    await progress(service, "pull", "done", f"{ref} is {node_ref.rpartition('@')[2][:19]}"
                   f"{where}")
    return str(first["id"])


async def _pin(ctx: Ctx, stack: str, service: str, ref: str, registry: str, node: Any,
               nodes: list[str], registry_auth: Mapping[str, Mapping[str, str]] | None) -> None:
    """Remember (:mod:`.imagepull`) the digest ``ref`` was pulled as on ``node``, which has
    it: ``pull_image`` with ``missing`` reads it from the node's records. An image built or
    loaded there has none: nothing is remembered."""
    try:
        info = await node.pull_image(ref, policy="missing")
    except StackctlError:
        return
    if info.get("node_ref"):
        ctx.images.remember(stack, service, Pin(ref, str(info["node_ref"]), str(info["id"]),
                                                registry), nodes, registry_auth)


#: the layer steps of a pull that become ``pull`` progress events (not the byte counts)
PULL_STEPS = ("Already exists", "Download complete", "Pull complete")


async def _pull_here(node: Any, progress: Progress, service: str, ref: str, policy: str,
                     auth: dict[str, str] | None) -> dict[str, Any]:
    """The manager's own pull, its transfer heard as ``pull`` progress events (Docker's
    lines: ``1: Pulling from team/app``, ``<layer>: Download complete``/``Pull complete``)."""
    token = trio.lowlevel.current_trio_token()
    send, receive = trio.open_memory_channel[dict](math.inf)

    def heard(ev: dict) -> None:  # from the transfer threads
        if not (ev.get("line") or ev.get("status") in PULL_STEPS):
            return

        def put() -> None:
            try:
                send.send_nowait(ev)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # the pull has ended: nobody listens any more
        try:
            token.run_sync_soon(put)
        except trio.RunFinishedError:
            pass

    async def relay() -> None:
        async for ev in receive:
            text = ev.get("line") or f"{ev.get('layer')}: {ev.get('status')}"
            await progress(service, "pull", "progress", text)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay)
        try:
            return await node.pull_image(ref, policy=policy, auth=auth, progress=heard)
        finally:
            # after the events the threads queued (run_sync_soon keeps their order)
            token.run_sync_soon(send.close)


def used_networks(stack: Stack, services: list[str]) -> list[str]:
    keys = {k for name in services for k in stack.services[name].networks}
    return sorted(keys)


def used_volumes(stack: Stack, services: list[str]) -> list[str]:
    keys = {m.source for name in services for m in stack.services[name].volumes
            if m.type == "volume" and m.source}
    return sorted(k for k in keys if k in stack.volumes)


async def ensure_resources(ctx: Ctx, progress: Progress, stack: Stack,
                           services: list[str],
                           created: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """The stack's networks and named volumes, before any container (external ones are
    expected to exist). Returns (and appends to ``created`` as it goes, so that a caller that
    is cancelled half-way still knows) the ``("network" | "volume", name)`` this call made:
    each node call runs shielded — it is short — so its answer is never lost to a Ctrl-C."""
    assert stack.name
    made: list[tuple[str, str]] = created if created is not None else []
    def users(uses: Callable[[Any], bool]) -> list[str] | None:
        names = [n for n in services if uses(stack.services[n])]
        return stack_nodes(ctx, stack.name or "", names)

    for key in used_networks(stack, services):
        net = stack.networks.get(key)
        if net is None or net.external:
            continue
        name = net.name or f"{stack.name}_{key}"
        pool = net.ipam.config[0] if net.ipam and net.ipam.config else None
        if ctx.overlay is not None:  # an overlay: on every node, allocated by the manager
            with trio.CancelScope(shield=True):
                new = await ctx.overlay.ensure_network(ctx, stack, key, net, name)
            if new is not None:
                if new:
                    made.append(("network", name))
                await progress("", "network", "done", f"network {name} (overlay)")
                continue
        with trio.CancelScope(shield=True):
            new = await ctx.node.ensure_network(
                name, nodes=users(lambda s, k=key: k in s.networks), internal=net.internal, attachable=net.attachable,
                subnet=pool.subnet if pool else None, gateway=pool.gateway if pool else None,
                labels={**net.labels, LABEL_STACK: stack.name, LABEL_NETWORK: key})
        if new:
            made.append(("network", name))
        await progress("", "network", "done", f"network {name}")
    for key in used_volumes(stack, services):
        vol = stack.volumes[key]
        if vol.external:
            continue
        name = vol.name or f"{stack.name}_{key}"
        with trio.CancelScope(shield=True):
            new = await ctx.node.ensure_volume(
                name, nodes=users(lambda s, k=key: any(m.type == "volume" and m.source == k
                                                       for m in s.volumes)),
                labels={**vol.labels, LABEL_STACK: stack.name, LABEL_VOLUME: key},
                driver_opts=dict(vol.driver_opts) or None)
        if new:
            made.append(("volume", name))
        await progress("", "volume", "done", f"volume {name}")
    return made


async def remove_unused(ctx: Ctx, progress: Progress, made: list[tuple[str, str]]) -> None:
    """After an interrupted deploy: remove the networks and volumes it created that no
    container uses (the node refuses to remove one in use; that one stays)."""
    for kind, name in reversed(made):
        remove = ctx.node.remove_network if kind == "network" else ctx.node.remove_volume
        try:
            await remove(name)
        except NotFoundError:
            continue
        except StackctlError:  # ConflictError: in use (a container of the stack has it)
            continue
        await progress("", kind, "done", f"removed {kind} {name} (made by the interrupted "
                       "deploy, unused)")


async def write_objects(ctx: Ctx, loaded: Loaded, desired: Desired, services: list[str],
                        contents: Mapping[str, bytes]) -> None:
    """Write each service version's secret/config files on the nodes that run its tasks."""
    for name in services:
        files = object_files(loaded.stack, loaded.stack.services[name])
        if not files:
            continue
        await ctx.node.write_task_files(
            loaded.name, name, desired.services[name].config_hash.value, files, contents,
            nodes=service_nodes(ctx, loaded.name, name))


def service_nodes(ctx: Ctx, stack: str, service: str) -> list[str] | None:
    """The nodes the slots of ``service`` are placed on (None: every node of the cluster,
    when nothing is placed yet — one node, or a plan not made)."""
    placed = ctx.placements.get(stack)
    if not placed:
        return None
    return sorted({n for (svc, _), n in placed.items() if svc == service})


def stack_nodes(ctx: Ctx, stack: str, services: list[str]) -> list[str] | None:
    placed = ctx.placements.get(stack)
    if not placed:
        return None
    wanted = set(services)
    return sorted({n for (svc, _), n in placed.items() if svc in wanted})


def version_of(ctx: Ctx, loaded: Loaded, desired: Desired, service: str,
               image_config: dict[str, Any] | None = None) -> Version:
    st = desired.services[service]
    files = object_files(loaded.stack, loaded.stack.services[service])
    directory = taskfiles_ref(loaded.name, service, st.config_hash.value) if files else ""
    return Version(loaded.stack, service, st, directory, image_config,
                   image_id=loaded.image_ids.get(service, ""))


# --------------------------------------------------------------------------------------------
# Carrying out the plan


class Deployer:
    """Carries out one plan (see the module docstring)."""

    def __init__(self, ctx: Ctx, progress: Progress, new: Loaded, old: Loaded | None,
                 options: DeployOptions, *, rollback: bool = False,
                 desired: Desired | None = None) -> None:
        """``desired``: ``new``'s tasks as placed (default: ``new.desired()``, unplaced)."""
        self.ctx, self.progress = ctx, progress
        self.new, self.old = new, old
        self.desired = desired if desired is not None else new.desired()
        self.old_desired = old.desired() if old is not None else None
        self.options = options
        self.rollback = rollback  # `stackctl rollback`: roll out with rollback_config
        self.failed: dict[str, str] = {}  # service -> why
        self.image_configs: dict[str, dict[str, Any] | None] = {}

    def version(self, service: str) -> Version:
        return version_of(self.ctx, self.new, self.desired, service,
                          self.image_configs.get(service))

    def old_version(self, service: str) -> Version | None:
        if self.old is None or self.old_desired is None or \
                service not in self.old_desired.services:
            return None
        return version_of(self.ctx, self.old, self.old_desired, service)

    async def load_image_configs(self, services: list[str]) -> None:
        for name in services:
            ref = image_ref(self.new.name, name, self.new.stack.services[name])
            self.image_configs[name] = await self.ctx.node.image_config(ref)

    async def run(self, plan: Plan) -> None:
        async with trio.open_nursery() as outer:
            outer.start_soon(self._serve_loop)
            try:
                await self._removals(plan)
                for level in plan.levels:
                    async with trio.open_nursery() as nursery:
                        for sp in level.services:
                            nursery.start_soon(self._service, sp, level.gates)
                if self.options.wait:
                    await self._wait_ready(plan)
                await sync_serving(self.ctx, (await observe(self.ctx, self.new.name))
                                   .containers())
            finally:
                outer.cancel_scope.cancel()
        if self.failed:
            lines = [f"{name}: {why}" for name, why in sorted(self.failed.items())]
            raise DeployError(f"stack {self.new.name}: " + "; ".join(lines),
                              failures=lines)

    async def _serve_loop(self) -> None:
        """While deploying: ready replicas join their VIPs/published ports."""
        while True:
            await sync_serving(self.ctx, (await observe(self.ctx, self.new.name)).containers())
            await self.ctx.wait_change()

    async def _removals(self, plan: Plan) -> None:
        for wave in plan.removals:
            async with trio.open_nursery() as nursery:
                for a in wave.actions:
                    if a.container is not None:
                        nursery.start_soon(self._remove, a.service, a.slot, a.container,
                                           a.reason)
            if wave.service not in self.desired.services:
                await self.ctx.net.unpublish_service(self.new.name, wave.service)

    async def _remove(self, service: str, slot: str, c, reason: str) -> None:
        await self.progress(service, "remove", "started", reason, slot=slot, container=c.id)
        await stop_task(self.ctx, self.progress, service, slot, c)

    async def _gates(self, sp: ServicePlan, gates: tuple[Gate, ...]) -> bool:
        for gate in gates:
            if gate.service != sp.name:
                continue
            if gate.on in self.failed:
                self._fail(sp.name, f"not started: dependency {gate.on} failed")
                await self.progress(sp.name, "failed", "error", self.failed[sp.name])
                return False
            dep = self.desired.services[gate.on]
            await self.progress(sp.name, "waiting", "started", f"waiting for {gate.describe()}")
            state, why = await wait_condition(self.ctx, self.new.name, dep, gate.condition,
                                              self._gate_timeout(gate))
            if state != MET:
                what = why if state == FAILED else f"timed out ({why})"
                self._fail(sp.name, f"not started: dependency {gate.on} did not become "
                           f"{gate.describe().split(' ', 1)[1]}: {what}")
                await self.progress(sp.name, "failed", "error", self.failed[sp.name])
                return False
            await self.progress(sp.name, "waiting", "done", f"{gate.describe()}")
        return True

    def _gate_timeout(self, gate: Gate) -> float | None:
        if gate.condition == "service_completed_successfully":
            return self.options.wait_timeout
        if gate.condition == "service_started":
            return STARTED_TIMEOUT
        dep = self.desired.services[gate.on]
        timing = self.version(gate.on).timing
        margin = (timing.interval if timing else 0) + dep.update_config.monitor
        return (ready_deadline(timing, 0, self.version(gate.on).listen_ports) + margin) / 1e9

    def _fail(self, service: str, why: str) -> None:
        self.failed.setdefault(service, why)

    async def _network_container(self, service: str) -> str | None:
        other = self.desired.services[service].network_mode_service
        if other is None:
            return None
        observed = await observe(self.ctx, self.new.name)
        svc = observed.services.get(other)
        for so in (svc.slots.values() if svc else ()):
            if so.primary.running:
                return so.primary.id
        return None

    async def _service(self, sp: ServicePlan, gates: tuple[Gate, ...]) -> None:
        if not sp.waves:
            return
        if not await self._gates(sp, gates):
            return
        service = self.new.stack.services[sp.name]
        _, sports = split_ports(service.ports)
        if sports and not service.network_mode:
            networks = [self.version(sp.name).request("1", task_id="-").networks[0].network] \
                if service.networks else []
            await self.ctx.net.publish_service(self.new.name, sp.name,
                                               [p.text for p in sports], networks,
                                               nodes=None if self.ctx.overlay is not None
                                               and self.ctx.overlay.everywhere(
                                                   self.new.stack, sp.name, self.ctx)
                                               else service_nodes(self.ctx, self.new.name,
                                                                  sp.name))
        netc = await self._network_container(sp.name)
        version = self.version(sp.name)
        for wave in sp.waves:
            if wave.kind == UPDATE:
                continue
            async with trio.open_nursery() as nursery:
                for a in wave.actions:
                    if a.kind == CREATE:
                        nursery.start_soon(self._create, version, a.slot, netc)
                    elif a.kind == START and a.container is not None:
                        nursery.start_soon(self._start_existing, sp.name, a.slot,
                                           a.container.id)
            if sp.name in self.failed:
                return
        updates = sp.update_waves
        if updates:
            old_containers = {a.slot: a.container for w in updates for a in w.actions
                              if a.container is not None}
            # slots up to date already while others are updated: moved by an earlier run of
            # this update that was stopped (Ctrl-C, a cancelled CI job); a rollback takes them
            # back too, as Swarm's rollback reverts the whole service
            updated_before = {a.slot: a.container for a in sp.keeps
                              if a.container is not None and a.task is not None
                              and a.container.running
                              and a.container.config_hash == a.task.config_hash.value}
            rollout = Rollout(self.ctx, self.progress, version, self.old_version(sp.name),
                              updates, old_containers, network_container=netc,
                              rollback_only=self.rollback,
                              updated_before=None if self.rollback else updated_before)
            ru = await rollout.run()
            if not ru.succeeded:
                self._fail(sp.name, ru.reason or ru.state)

    async def _create(self, version: Version, slot: str, netc: str | None) -> None:
        try:
            await start_task(self.ctx, self.progress, version, slot, network_container=netc,
                             start=not self.options.no_start)
        except StackctlError as exc:
            why = f"{version.service}.{slot}: {exc.message}"
            self._fail(version.service, why)
            await self.progress(version.service, "failed", "error", why, slot=slot)

    async def _start_existing(self, service: str, slot: str, cid: str) -> None:
        await self.progress(service, "start", "started", "starting the existing container",
                            slot=slot, container=cid)
        try:
            await self.ctx.node.start_container(cid)
        except StackctlError as exc:
            why = f"{service}.{slot}: {exc.message}"
            self._fail(service, why)
            await self.progress(service, "failed", "error", why, slot=slot)
            return
        await self.progress(service, "start", "done", "started", slot=slot, container=cid)

    async def _wait_ready(self, plan: Plan) -> None:
        names = [sp.name for lv in plan.levels for sp in lv.services
                 if sp.name not in self.failed]
        deadline = self.options.wait_timeout

        async def one(name: str) -> None:
            st = self.desired.services[name]
            timeout = deadline
            if timeout is None:  # bounded anyway: the longest a health check may take
                timing = self.version(name).timing
                timeout = (ready_deadline(timing, st.update_config.monitor,
                                          self.version(name).listen_ports)
                           + (timing.interval if timing else 0)) / 1e9 + 60.0
                if st.is_job:
                    timeout = math.inf
            state, why = await wait_condition(self.ctx, self.new.name, st, READY, timeout)
            if state == MET:
                await self.progress(name, "healthy", "done", "ready")
            else:
                reason = why if state == FAILED else f"not ready in time ({why})"
                self._fail(name, reason)
                await self.progress(name, "failed", "error", reason)

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(one, name)


def kept_versions(observed: StackObserved) -> set[str]:
    """The secret directories still in use: ``<service>-<hash12>`` of every container."""
    return {f"{c.service}-{(c.config_hash or '')[:12]}" for c in observed.containers()}
