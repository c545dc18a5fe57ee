"""The controller as the manager agent runs it: the stack verbs and the reconcile loop.

``Manager(paths, node, store, bus)``; every method is async (trio) and takes the request's
``progress`` callable (one progress-event dict at a time, docs/agent-api.md). Work on one
stack is serialized by a per-stack lock: a deploy, a remove and a reconcile pass of the same
stack never interleave (a reconcile pass skips a stack that is busy).

The store keeps, per stack version, the record :meth:`Loaded.record` makes — the normalized
stack, the *digests* of its secret/config contents and the image ids — never a secret value.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from stackctl.controller import objects
from stackctl.controller.cluster import Cluster
from stackctl.controller.context import Ctx, DeployError, Progress, ProgressFn
from stackctl.controller.deploy import (
    Deployer,
    DeployOptions,
    Loaded,
    ensure_images,
    ensure_resources,
    kept_versions,
    load_record,
    load_stack,
    remove_unused,
    write_objects,
)
from stackctl.controller.reconcile import RestartHistory, reconcile_stack
from stackctl.controller.taskops import stop_task
from stackctl.controller.watch import observe
from stackctl.errors import NotFoundError, StackctlError
from stackctl.paths import NodePaths
from stackctl.scheduler.confighash import content_digest
from stackctl.controller.members import Members
from stackctl.controller.placement import Placed, assign, split_networks
from stackctl.scheduler.nodes import NodeSnapshot
from stackctl.scheduler.observed import StackObserved
from stackctl.scheduler.planner import Pending, Plan, plan as make_plan

log = logging.getLogger("stackctl.controller")

#: the reconcile loop's periodic tick (events trigger it sooner)
TICK = 5.0
STATUS_STOPPED = "stopped"
#: signals whose default action does not end a process (``kill -s`` with one of them is
#: not a stop: the service stays healed)
_SIGNALS_THAT_DO_NOT_END = frozenset({"CHLD", "CONT", "URG", "WINCH", "STOP", "TSTP", "TTIN",
                                      "TTOU", "0"})
#: a deploy ended half-way (Ctrl-C, a client that hung up, an error of the node): the stack
#: is held as it was left until the next ``up`` (docs/controller.md, "Cancellation")
STATUS_INTERRUPTED = "interrupted"
STATUS_DEPLOYING = "deploying"
#: ``stopped (held)`` / ``stopped: a,b (held)``: a held stack (interrupted) that the user
#: stopped; ``start`` makes it ``interrupted`` again — only ``up`` lifts the hold
HELD_SUFFIX = " (held)"


def _field(record: Any, key: str, default: Any = None) -> Any:
    if record is None:
        return default
    if isinstance(record, Mapping):
        return record.get(key, default)
    return getattr(record, key, default)


def _spec(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


class Manager:
    def __init__(self, paths: NodePaths, node: Any, store: Any, bus: Any = None, *,
                 net: Any = None, wall: Callable[[], int] = time.time_ns,
                 tick: float = TICK, poll_interval: float | None = None,
                 drain_grace: float | None = None) -> None:
        """``node``: this node — a :class:`~stackctl.node.local.LocalNode`, or the runtime's
        operations (``NodeOps``, a fake) with ``net`` (VIPs and published ports; default:
        this node's network code), which are wrapped into one."""
        from stackctl.node.local import LocalNode

        local = node if isinstance(node, LocalNode) else LocalNode(node, net, paths=paths)
        self.paths = paths
        self.cluster = Cluster({local.name: local}, local=local.name)
        self.members = Members(self.cluster, local, paths.state, on_event=self.trigger,
                               fence=self.fence)
        self.members.load()
        self.ctx = Ctx(self.cluster, store, wall)
        from stackctl.controller.overlay import Overlay  # overlay networks (docs/networking.md)

        self.ctx.overlay = Overlay(paths.state, self.members)
        if poll_interval is not None:
            self.ctx.poll_interval = poll_interval
        if drain_grace is not None:
            self.ctx.drain_grace = drain_grace
        self.bus = bus
        self.tick = tick
        self.history = RestartHistory(store)
        self._locks: dict[str, trio.Lock] = {}
        self._old_versions: dict[tuple[str, int], Loaded] = {}  # older stored versions
        self._trigger = trio.Event()

    # -- store access --------------------------------------------------------------------------

    def _lock(self, name: str) -> trio.Lock:
        return self._locks.setdefault(name, trio.Lock())

    def _versions(self, name: str) -> tuple[Loaded | None, Loaded | None, str]:
        """(current, previous, status) of a stack in the store."""
        rec = self.ctx.store.get_stack(name)
        if rec is None:
            return None, None, ""
        project_dir = _field(rec, "project_dir", "") or "/"
        current = self._loaded(load_record(_spec(_field(rec, "spec")), project_dir))
        prev = _field(rec, "previous")
        previous = None
        if prev is not None and _field(prev, "spec") is not None:
            previous = self._loaded(load_record(
                _spec(_field(prev, "spec")), _field(prev, "project_dir", project_dir)
                or project_dir))
        return current, previous, _field(rec, "status", "") or ""

    def _current(self, name: str) -> tuple[Loaded, Loaded | None, str]:
        current, previous, status = self._versions(name)
        if current is None:
            raise NotFoundError(f"no stack named {name!r}", hint="see `stackctl ls`")
        return current, previous, status

    def _status(self, name: str, status: str) -> None:
        setter = getattr(self.ctx.store, "set_stack_status", None)
        if setter is not None:
            setter(name, status)

    @staticmethod
    def _stopped(status: str) -> set[str]:
        """Services the user stopped: status ``stopped`` (all) or ``stopped: a,b``."""
        if not status.startswith(STATUS_STOPPED):
            return set()
        rest = status[len(STATUS_STOPPED):].removesuffix(HELD_SUFFIX).lstrip(": ")
        return {s for s in rest.split(",") if s} or {"*"}

    @staticmethod
    def _held(status: str) -> bool:
        """The reconcile loop creates nothing new (docs/controller.md, "Cancellation"):
        interrupted, ``deploying`` with nobody deploying (the agent died mid-deploy), or
        either of them stopped and started by the user since."""
        return status in (STATUS_INTERRUPTED, STATUS_DEPLOYING) or status.endswith(HELD_SUFFIX)

    # -- plan and deploy -----------------------------------------------------------------------

    async def _image_ids(self, loaded: Loaded) -> dict[str, str]:
        from stackctl.controller.taskspec import image_ref
        ids = {}
        for name, s in loaded.stack.services.items():
            image_id = await self.ctx.node.image_id(image_ref(loaded.name, name, s))
            if image_id:
                ids[name] = image_id
        return ids

    async def plan(self, stack_json: Mapping[str, Any], project_dir: str,
                   options: Mapping[str, Any] | None = None, *,
                   objects_: Mapping[str, str] | None = None,
                   environ: Mapping[str, str] | None = None) -> Plan:
        """What ``deploy`` would do; changes nothing."""
        stack, graph = load_stack(stack_json, project_dir)
        opts = DeployOptions.from_json(options)
        loaded = self._loaded(Loaded(stack, graph, project_dir))
        loaded.image_ids = await self._image_ids(loaded)
        loaded.digests = self._digests(loaded, objects_, environ, strict=False)
        observed = await observe(self.ctx, loaded.name)
        placed = await self.place(loaded, observed, commit=False)
        the_plan = make_plan(placed.desired, observed, options=opts.plan_options())
        return self._with_pending(the_plan, placed)

    # -- placement -----------------------------------------------------------------------------

    def _loaded(self, loaded: Loaded) -> Loaded:
        """``loaded`` knowing the cluster's nodes (a global service's slots)."""
        loaded.nodes = tuple(self.cluster.names())
        return loaded

    async def node_snapshots(self) -> list[NodeSnapshot]:
        """Every node as the scheduler sees it now."""
        return await self.members.snapshots()

    async def place(self, loaded: Loaded, observed: StackObserved, *,
                    commit: bool = True, rebalance: bool = False) -> Placed:
        """Place ``loaded``'s tasks (:mod:`stackctl.controller.placement`); with ``commit``
        the controller creates tasks where this says."""
        nodes = await self.node_snapshots()
        placed = assign(loaded.stack, loaded.desired(), observed, nodes, rebalance=rebalance)
        if commit:
            self.ctx.placements[loaded.name] = placed.nodes
        return placed

    def _with_pending(self, the_plan: Plan, placed: Placed) -> Plan:
        pending = []
        for (svc, slot), u in sorted(placed.pending.items()):
            nodes = tuple((n, why) for n, why in sorted(u.nodes.items()) if why)
            pending.append(Pending(f"{svc}.{slot}", u.reason, nodes))
        # placed, but its node could not pull the image (controller/imagepull.py)
        notes = tuple(f"{slot}: {why} (retried on every reconcile pass)"
                      for slot, why in self.ctx.images.pending(the_plan.stack).items())
        return dataclasses.replace(the_plan, pending=tuple(pending), notes=the_plan.notes + notes,
                                   multi_node=len(self.cluster.members) > 1)

    def _digests(self, loaded: Loaded, provided: Mapping[str, str] | None,
                 environ: Mapping[str, str] | None, *, strict: bool = True,
                 needed: set[str] | None = None) -> dict[str, str]:
        contents = self._contents(loaded, provided, environ, strict=strict, needed=needed)
        return {ref: content_digest(data) for ref, data in contents.items()}

    @staticmethod
    def _contents(loaded: Loaded, provided: Mapping[str, str] | None,
                  environ: Mapping[str, str] | None, *, strict: bool = True,
                  needed: set[str] | None = None) -> dict[str, bytes]:
        if needed is None:
            needed = {f"{kind}:{ref.source}" for s in loaded.stack.services.values()
                      for kind, refs in (("secret", s.secrets), ("config", s.configs))
                      for ref in refs}
        decoded = objects.decode_provided(provided)
        if strict:
            return objects.resolve_contents(loaded.stack, provided=decoded, environ=environ,
                                            needed=needed)
        out = {}
        for ref in needed:
            try:
                out.update(objects.resolve_contents(loaded.stack, provided=decoded,
                                                    environ=environ, needed={ref}))
            except StackctlError:
                pass
        return out

    async def deploy(self, stack_json: Mapping[str, Any], project_dir: str,
                     options: Mapping[str, Any] | None, progress: ProgressFn | None, *,
                     objects_: Mapping[str, str] | None = None,
                     environ: Mapping[str, str] | None = None,
                     registry_auth: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """``up``: converge the node to ``stack_json``; raise :class:`DeployError` when a
        service did not reach its desired state (with ``wait``) or an update failed.
        ``registry_auth`` (``up --with-registry-auth``): registry -> credentials for this
        deploy's pulls only, held in memory and never stored."""
        stack, graph = load_stack(stack_json, project_dir)
        opts = DeployOptions.from_json(options)
        new = self._loaded(Loaded(stack, graph, project_dir))
        name = new.name
        prog = Progress(name, progress, self.ctx.wall)
        async with self._lock(name):
            old, previous, _ = self._versions(name)
            selected = sorted(self._selected(new, opts))
            # placed first: images are checked, networks made, files written where tasks go
            await self.place(new, await observe(self.ctx, name))
            new.image_ids = await self._image_ids(new)
            new.image_ids.update(await ensure_images(self.ctx, prog, stack, project_dir,
                                                     selected, opts, registry_auth))
            contents = self._contents(new, objects_, environ)
            new.digests = {ref: content_digest(v) for ref, v in contents.items()}
            rollback_to = old
            if old is not None and previous is not None and old.record() == new.record():
                # `up` again with the same file (resuming an interrupted or paused update):
                # what a failed slot rolls back to is still the version before it
                rollback_to = previous
            await self._apply(new, old, opts, prog, contents, selected,
                              rollback_to=rollback_to)

    def _selected(self, loaded: Loaded, opts: DeployOptions) -> set[str]:
        if not opts.services:
            return set(loaded.stack.services)
        unknown = [s for s in opts.services if s not in loaded.stack.services]
        if unknown:
            from stackctl.errors import UsageError
            raise UsageError(f"no such service: {', '.join(unknown)}")
        if opts.no_deps:
            return set(opts.services)
        return loaded.graph.with_dependencies(opts.services)

    async def _apply(self, new: Loaded, old: Loaded | None, opts: DeployOptions,
                     prog: Progress, contents: Mapping[str, bytes], selected: list[str], *,
                     rollback: bool = False, rollback_to: Loaded | None = None) -> None:
        """Store ``new`` as the current version (when it changed) and carry out the plan;
        ``rollback_to``: the version a failed update rolls back to (default ``old``)."""
        name = new.name
        if old is None or old.record() != new.record():
            self.ctx.store.put_stack(name, new.record(), new.project_dir)
        self._status(name, STATUS_DEPLOYING)
        ok = False
        made: list[tuple[str, str]] = []  # networks and volumes this deploy created
        try:
            observed = await observe(self.ctx, name)
            placed = await self.place(new, observed, rebalance=opts.rebalance)
            desired = placed.desired
            for key, why in sorted(placed.moved.items()):
                await prog(key[0], "move", "started", f"{why}: moving", slot=key[1])
            for line in ([] if self.ctx.overlay.covers(new.stack, self.ctx)
                         else split_networks(new.stack, placed.nodes)):
                await prog("", "warning", "done", line)
            await ensure_resources(self.ctx, prog, new.stack, selected, made)
            await write_objects(self.ctx, new, desired, selected, contents)
            the_plan = make_plan(desired, observed, options=opts.plan_options())
            pending = {k: u for k, u in placed.pending.items() if k[0] in selected}
            for (svc, slot), u in sorted(pending.items()):
                await prog(svc, "pending", "error", f"{svc}.{slot}: {u.reason}", slot=slot)
            deployer = Deployer(self.ctx, prog, new, rollback_to or old, opts,
                                rollback=rollback, desired=desired)
            await deployer.load_image_configs(selected)
            await deployer.run(the_plan)
            if pending and opts.wait:
                lines = [f"{svc}.{slot}: {u.reason}" for (svc, slot), u in sorted(
                    pending.items())]
                raise DeployError(f"stack {name}: " + "; ".join(lines), failures=lines,
                                  hint="see `stackctl plan` for why each node refuses")
            ok = True
        except DeployError as exc:
            self._status(name, f"failed: {exc.message}")
            raise
        finally:
            with trio.CancelScope(shield=True):
                if ok and opts.no_start:  # `up --no-start`, `create`: created, left for `start`
                    self._status(name, STATUS_STOPPED if set(selected) >= set(new.stack.services)
                                 else f"{STATUS_STOPPED}: {','.join(sorted(selected))}")
                elif ok:
                    self._status(name, "running")
                elif self._field_status(name) == STATUS_DEPLOYING:
                    # interrupted: what the deploy made and nothing uses goes again; the
                    # reconcile loop holds the stack as it is now (see reconcile_once)
                    self._status(name, STATUS_INTERRUPTED)
                    await remove_unused(self.ctx, prog, made)
                await self._prune_objects(name)
        await prog("", "done", "done", f"stack {name} deployed")

    def _field_status(self, name: str) -> str:
        return _field(self.ctx.store.get_stack(name), "status", "") or ""

    async def _prune_objects(self, name: str) -> None:
        observed = await observe(self.ctx, name)
        await self.ctx.node.prune_task_files(name, sorted(kept_versions(observed)))

    # -- the other stack verbs ---------------------------------------------------------------

    async def remove(self, name: str, volumes: bool = False, remove_orphans: bool = False,
                     progress: ProgressFn | None = None) -> None:
        """``down``: every container of the stack (orphans included: they carry its label),
        its service ports, networks, secrets and (``volumes``) named volumes."""
        prog = Progress(name, progress, self.ctx.wall)
        async with self._lock(name):
            current, _, _ = self._versions(name)
            observed = await observe(self.ctx, name)
            # dependents before their dependencies; within a level every service, and every
            # container of a service, at once (services no longer in the file go first)
            order = current.graph.stop_levels() if current else []
            ranked = {svc: i for i, level in enumerate(order) for svc in level}
            levels: dict[int, list[str]] = {}
            for svc in observed.services:
                levels.setdefault(ranked.get(svc, -1), []).append(svc)

            async def one_service(svc: str) -> None:
                async with trio.open_nursery() as nursery:
                    for so in observed.services[svc].slots.values():
                        for c in so.containers:
                            nursery.start_soon(self._remove_one, prog, svc, so.slot, c)
                await self.ctx.net.unpublish_service(name, svc)

            for rank in sorted(levels):
                async with trio.open_nursery() as nursery:
                    for svc in sorted(levels[rank]):
                        nursery.start_soon(one_service, svc)
            async with trio.open_nursery() as nursery:
                for c in observed.oneoffs + observed.strays:
                    nursery.start_soon(functools.partial(
                        stop_task, self.ctx, prog, c.service or "", c.slot or "", c,
                        drain=False))
            # first: no push (another stack's reconcile) makes its overlays again meanwhile
            self.ctx.overlay.forget_stack(name)
            if current is not None:
                await self._remove_resources(current, volumes, prog)
            await self.ctx.node.remove_task_files(name)
            self.ctx.placements.pop(name, None)
            self.ctx.images.forget(name)  # its pinned images and forwarded credentials
            if current is not None:
                self.ctx.store.delete_stack(name)
            for key in [k for k in self._old_versions if k[0] == name]:
                del self._old_versions[key]  # a new stack of that name numbers from 1
            await prog("", "done", "done", f"stack {name} removed")

    async def _remove_one(self, prog: Progress, service: str, slot: str, c) -> None:
        # the whole service goes: no replica is left to take over its requests, so no drain
        await stop_task(self.ctx, prog, service, slot, c, drain=False)

    async def _remove_resources(self, loaded: Loaded, volumes: bool, prog: Progress) -> None:
        kinds: list[tuple[str, Mapping[str, Any], Callable[[str], Any]]] = [
            ("network", loaded.stack.networks, self.ctx.node.remove_network)]
        if volumes:
            kinds.append(("volume", loaded.stack.volumes, self.ctx.node.remove_volume))
        for kind, section, remove in kinds:
            for key, obj in sorted(section.items()):
                if obj.external:
                    continue
                objname = obj.name or f"{loaded.name}_{key}"
                try:
                    await remove(objname)
                except NotFoundError:
                    continue
                await prog("", kind, "done", f"removed {kind} {objname}")

    async def scale(self, name: str, scales: Mapping[str, int],
                    progress: ProgressFn | None = None) -> None:
        """``scale web=3``: a new version with those replica counts, applied to those
        services only."""
        current, _, _ = self._current(name)
        data = copy.deepcopy(current.record())
        for service, count in scales.items():
            spec = data["stack"]["services"].get(service)
            if spec is None:
                raise NotFoundError(f"stack {name}: no service {service!r}")
            mode = spec.get("deploy", {}).get("mode", "replicated")
            if mode in ("global", "global-job"):
                raise StackctlError(f"stack {name}: service {service} is global; it runs one "
                                    "task per node and cannot be scaled")
            spec.setdefault("deploy", {})["replicas"] = int(count)
        new = self._loaded(load_record(data, current.project_dir))
        await self._redeploy(new, current, tuple(scales), progress)

    async def rollback(self, name: str, services: list[str] | tuple[str, ...] = (),
                       progress: ProgressFn | None = None) -> None:
        """Back to the previous version of ``services`` (default: all), rolled out with
        their ``rollback_config``."""
        current, previous, _ = self._current(name)
        if previous is None:
            raise StackctlError(f"stack {name} has no previous version to roll back to")
        data = copy.deepcopy(current.record())
        prev = previous.record()
        names = list(services) or sorted(set(prev["stack"]["services"])
                                         | set(data["stack"]["services"]))
        for service in names:
            if service in prev["stack"]["services"]:
                data["stack"]["services"][service] = prev["stack"]["services"][service]
                if service in prev["image_ids"]:
                    data["image_ids"][service] = prev["image_ids"][service]
            elif services:
                raise StackctlError(f"stack {name}: service {service} did not exist in the "
                                    "previous version")
        for section in ("networks", "volumes", "secrets", "configs"):
            merged = {**prev["stack"].get(section, {}), **data["stack"].get(section, {})}
            if merged:
                data["stack"][section] = merged
        data["digests"] = {**prev["digests"], **data["digests"]}
        new = self._loaded(load_record(data, current.project_dir))
        await self._redeploy(new, current, tuple(services), progress, rollback=True)

    async def _redeploy(self, new: Loaded, current: Loaded, services: tuple[str, ...],
                        progress: ProgressFn | None, *, rollback: bool = False) -> None:
        prog = Progress(new.name, progress, self.ctx.wall)
        opts = DeployOptions(services=services, no_deps=bool(services), wait=True)
        async with self._lock(new.name):
            selected = sorted(self._selected(new, opts))
            contents = self._contents(new, {}, {}, strict=False)
            await self._apply(new, current, opts, prog, contents, selected,
                              rollback=rollback)

    async def stop(self, name: str, services: list[str] | tuple[str, ...] = (),
                   timeout: float | None = None, progress: ProgressFn | None = None) -> None:
        """Stop the services' containers (kept, not removed); the restart policy leaves
        them alone until ``start``."""
        prog = Progress(name, progress, self.ctx.wall)
        current, _, status = self._current(name)
        names = self._names(current, services)
        async with self._lock(name):
            stopped = self._stopped(status)
            stopped = {"*"} if not services or "*" in stopped else (stopped | set(names))
            self._status(name, (STATUS_STOPPED if "*" in stopped
                                else f"{STATUS_STOPPED}: {','.join(sorted(stopped))}")
                         + (HELD_SUFFIX if self._held(status) else ""))
            observed = await observe(self.ctx, name)
            for level in current.graph.stop_levels():
                async with trio.open_nursery() as nursery:
                    for svc in level:
                        if svc not in names or svc not in observed.services:
                            continue
                        for so in observed.services[svc].slots.values():
                            for c in so.containers:
                                if c.running:
                                    nursery.start_soon(self._stop_one, prog, svc, so.slot, c,
                                                       timeout)

    async def _stop_one(self, prog: Progress, svc: str, slot: str, c, timeout) -> None:
        await stop_task(self.ctx, prog, svc, slot, c, remove=False, timeout=timeout)

    async def start(self, name: str, services: list[str] | tuple[str, ...] = (),
                    timeout: float | None = None, progress: ProgressFn | None = None) -> None:
        """Start the services' stopped containers (dependencies first)."""
        prog = Progress(name, progress, self.ctx.wall)
        current, _, status = self._current(name)
        names = self._names(current, services)
        async with self._lock(name):
            stopped = self._stopped(status)
            if not services or "*" in stopped and set(names) >= set(current.stack.services):
                remaining: set[str] = set()
            else:
                remaining = (set(current.stack.services) if "*" in stopped else stopped) \
                    - set(names)
            held = self._held(status)
            if remaining:
                self._status(name, f"{STATUS_STOPPED}: {','.join(sorted(remaining))}"
                             + (HELD_SUFFIX if held else ""))
            else:  # a held stack stays held: only `up` lifts it
                self._status(name, STATUS_INTERRUPTED if held else "running")
            observed = await observe(self.ctx, name)
            for level in current.graph.start_levels():
                for svc in level:
                    if svc not in names or svc not in observed.services:
                        continue
                    for so in observed.services[svc].slots.values():
                        c = so.primary
                        if not c.running:
                            await prog(svc, "start", "started", "", slot=so.slot,
                                       container=c.id)
                            await self.ctx.node.start_container(c.id)
                            await prog(svc, "start", "done", "", slot=so.slot,
                                       container=c.id)
        self.trigger()

    async def restart(self, name: str, services: list[str] | tuple[str, ...] = (),
                      timeout: float | None = None, progress: ProgressFn | None = None) -> None:
        await self.stop(name, services, timeout, progress)
        await self.start(name, services, timeout, progress)

    # -- kill and rm (the stack verbs `kill` and `rm`, as `docker compose` has them) ----------

    def _mark_stopped(self, name: str, status: str, services, names: list[str]) -> None:
        """Record the services as stopped by the user (as ``stop`` does): the reconcile loop
        leaves them alone until ``start`` or ``up``."""
        stopped = self._stopped(status)
        stopped = {"*"} if not services or "*" in stopped else (stopped | set(names))
        self._status(name, (STATUS_STOPPED if "*" in stopped
                            else f"{STATUS_STOPPED}: {','.join(sorted(stopped))}")
                     + (HELD_SUFFIX if self._held(status) else ""))

    async def kill(self, name: str, services: list[str] | tuple[str, ...] = (),
                   signal: str = "SIGKILL", progress: ProgressFn | None = None) -> list[str]:
        """Send ``signal`` to the services' running containers. A signal that ends a process
        counts as a stop by the user (Docker does not restart a container it was told to
        kill): the services are not healed back until ``start`` or ``up``. The ids
        signalled."""
        prog = Progress(name, progress, self.ctx.wall)
        current, _, status = self._current(name)
        names = self._names(current, services)
        done: list[str] = []
        async with self._lock(name):
            if signal.upper().removeprefix("SIG") not in _SIGNALS_THAT_DO_NOT_END:
                self._mark_stopped(name, status, services, names)
            observed = await observe(self.ctx, name)
            for svc in names:
                for so in (observed.services[svc].slots.values()
                           if svc in observed.services else ()):
                    for c in so.containers:
                        if c.running:
                            await prog(svc, "kill", "started", signal, slot=so.slot,
                                       container=c.id)
                            await self.ctx.node.kill_container(c.id, signal)
                            await prog(svc, "kill", "done", "", slot=so.slot, container=c.id)
                            done.append(c.id)
        return done

    async def remove_stopped(self, name: str, services: list[str] | tuple[str, ...] = (),
                             volumes: bool = False, progress: ProgressFn | None = None
                             ) -> list[str]:
        """Remove the services' containers that are not running (``rm``); the services count
        as stopped by the user, so nothing creates them again behind the user's back (``up``
        does). The ids removed."""
        prog = Progress(name, progress, self.ctx.wall)
        current, _, status = self._current(name)
        names = self._names(current, services)
        done: list[str] = []
        async with self._lock(name):
            observed = await observe(self.ctx, name)
            gone = [(svc, so.slot, c) for svc in names if svc in observed.services
                    for so in observed.services[svc].slots.values()
                    for c in so.containers if not c.running]
            if gone:
                self._mark_stopped(name, status, services, sorted({g[0] for g in gone}))
            for svc, slot, c in gone:
                await prog(svc, "remove", "started", "", slot=slot, container=c.id)
                await self.ctx.node.remove_container(c.id, volumes=volumes)
                await prog(svc, "remove", "done", "", slot=slot, container=c.id)
                done.append(c.id)
        return done

    @staticmethod
    def _names(loaded: Loaded, services) -> list[str]:
        unknown = [s for s in services if s not in loaded.stack.services]
        if unknown:
            raise NotFoundError(f"stack {loaded.name}: no such service: {', '.join(unknown)}")
        return list(services) or sorted(loaded.stack.services)

    # -- fencing -------------------------------------------------------------------------------

    async def fence(self, name: str, node: Any, *, was_down: bool = False) -> list[str]:
        """A node that comes back, before it is a member again (docs/cluster.md, "Liveness
        and fencing"): it takes this manager's fencing token (older changes are refused from
        now on), then loses every container whose slot another node runs now, or whose stack
        is gone. Returns the names removed."""
        await node.raise_fence()
        others: set[tuple[str, str, str]] = set()
        for other, member in list(self.cluster.members.items()):
            if other == name or other in self.cluster.down:
                continue
            try:
                listed = await member.list_containers()
            except StackctlError:
                continue  # not reachable now: nothing of it counts as taken
            others |= {(c.stack or "", c.service or "", c.slot or "") for c in listed
                       if c.running and c.stack and not c.oneoff}
        known = set(self._stack_names())
        removed = []
        for c in await node.list_containers():
            if not c.stack or c.oneoff:
                continue
            key = (c.stack, c.service or "", c.slot or "")
            why = ("its stack was removed" if c.stack not in known else
                   "its slot runs on another node now" if key in others else None)
            if why is None:
                continue
            log.warning("node %s is back: removing %s (%s)", name, c.name, why)
            with trio.CancelScope(shield=True):
                await node.remove_container(c.id)
            removed.append(c.name)
        return removed

    # -- the reconcile loop --------------------------------------------------------------------

    def trigger(self, event: Any = None) -> None:
        """Something happened (a bus event): re-read and reconcile soon."""
        self.ctx.kick()
        self._trigger.set()

    async def reconcile_once(self) -> int | None:
        """One pass over every stack in the store; the next restart due (wall ns)."""
        wake: int | None = None
        for name in self._stack_names():
            lock = self._lock(name)
            if lock.locked():
                continue
            async with lock:
                try:
                    current, previous, status = self._versions(name)
                    if current is None:
                        continue
                    stopped = self._stopped(status)
                    if "*" in stopped:
                        continue
                    # interrupted (or `deploying` with nobody deploying: the agent died
                    # mid-deploy): heal what exists, create nothing new until the next `up`
                    hold = self._held(status)
                    observed = await observe(self.ctx, name)
                    placed = await self.place(current, observed)
                    moving = sorted({svc for svc, _ in placed.moved} - set(stopped))
                    if moving and not hold:
                        # a node drained (or no longer meeting constraints): its tasks move
                        # as an update moves them (update_config: start-first keeps serving)
                        await self._move(current, previous, moving, placed)
                        continue
                    when = await reconcile_stack(
                        self.ctx, current, self.history, stopped=stopped, hold=hold,
                        desired=placed.desired, observed=observed,
                        versions=self._version_finder(name, current, previous))
                except StackctlError as exc:
                    log.warning("reconcile %s: %s", name, exc.message)
                    continue
                except Exception:  # noqa: BLE001 - a bug in one pass must not end the agent
                    log.exception("reconcile %s: unexpected error (a bug); retrying later", name)
                    continue
            if when is not None:
                wake = when if wake is None else min(wake, when)
        return wake

    async def _move(self, current: Loaded, previous: Loaded | None, services: list[str],
                    placed: Placed) -> None:
        """Move the tasks the placement moved off their nodes, service by service, with the
        service's update_config (the lock is held)."""
        prog = Progress(current.name, None, self.ctx.wall)
        for (svc, slot), why in sorted(placed.moved.items()):
            log.info("stack %s: %s.%s: %s: moving it", current.name, svc, slot, why)
        contents = self._contents(current, {}, {}, strict=False)
        try:
            await self._apply(current, current, DeployOptions(services=tuple(services),
                                                              no_deps=True),
                              prog, contents, services, rollback_to=previous)
        except DeployError as exc:
            log.warning("stack %s: moving %s: %s", current.name, ", ".join(services),
                        exc.message)

    async def resume(self, name: str) -> None:
        """A stack this manager was deploying when it stopped (status ``deploying`` at
        start): carry the update on from the stored state, as Swarm's manager does — every
        slot ends on the new version once, or the update rolls back as ``failure_action``
        says (docs/controller.md, "A manager that restarts")."""
        await self.members.wait_connected(self.cluster.names(), 30.0)
        async with self._lock(name):
            current, previous, status = self._versions(name)
            if current is None or status != STATUS_DEPLOYING:
                return
            log.info("stack %s: resuming the deploy the manager was doing when it stopped",
                     name)
            prog = Progress(name, None, self.ctx.wall)
            contents = self._contents(current, {}, {}, strict=False)
            try:
                await self._apply(current, current, DeployOptions(), prog, contents,
                                  sorted(current.stack.services), rollback_to=previous)
            except StackctlError as exc:
                log.warning("stack %s: the resumed deploy ended: %s", name, exc.message)

    def _version_finder(self, name: str, current: Loaded, previous: Loaded | None):
        """``find(service, config_hash)``: the stored version of stack ``name`` whose
        ``service`` has that config hash (newest first), or None — what the reconcile loop
        replaces a dead task with, so that a task is replaced by one of its own version."""
        rec = self.ctx.store.get_stack(name)
        numbers = {_field(rec, "version"), _field(_field(rec, "previous"), "version")}

        def candidates():
            yield current
            if previous is not None:
                yield previous
            listed = getattr(self.ctx.store, "stack_versions", None)
            get = getattr(self.ctx.store, "get_stack_version", None)
            if listed is None or get is None:
                return
            for number in sorted(listed(name), reverse=True):
                if number in numbers:
                    continue
                key = (name, number)
                if key not in self._old_versions:
                    v = get(name, number)
                    if v is None:
                        continue
                    self._old_versions[key] = self._loaded(load_record(
                        _spec(_field(v, "spec")), _field(v, "project_dir", "") or "/"))
                yield self._old_versions[key]

        def find(service: str, config_hash: str) -> Loaded | None:
            for loaded in candidates():
                st = loaded.desired().services.get(service)
                if st is not None and st.config_hash.value == config_hash:
                    return loaded
            return None

        return find

    def _stack_names(self) -> list[str]:
        out = []
        for item in self.ctx.store.list_stacks():
            n = item if isinstance(item, str) else _field(item, "name")
            if n:
                out.append(n)
        return out

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The reconcile loop: a pass on every bus event and every ``tick`` seconds (sooner
        when a restart is due)."""
        self.members.start_term()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.members.run)
            for name in self._stack_names():
                _, _, status = self._versions(name)
                if status == STATUS_DEPLOYING:
                    nursery.start_soon(self.resume, name)
            if self.bus is not None and hasattr(self.bus, "subscribe"):
                await nursery.start(self._listen)
            task_status.started()
            while True:
                self._trigger = trio.Event()
                wake = await self.reconcile_once()
                timeout = self.tick
                if wake is not None:
                    timeout = min(timeout, max(0.0, (wake - self.ctx.wall()) / 1e9))
                with trio.move_on_after(timeout):
                    await self._trigger.wait()

    async def _listen(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with self.bus.subscribe() as events:
            task_status.started()
            async for event in events:
                self.trigger(event)


__all__ = ["DeployError", "DeployOptions", "Manager"]
