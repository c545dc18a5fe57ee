"""The container manager: names, records, life cycle and queries of a node's containers.

It turns user options plus an image into a :class:`ContainerSpec` (via
:mod:`stackctl.runtime.imageconfig`), stores it, and drives the execution core
(:mod:`stackctl.runtime.containers`) to start, signal, stop and clean up. Records live in
``<state>/containers/<id>/``: ``config.json`` (the spec; the core rewrites it as started at
each start), ``meta.json`` (what ``inspect`` shows that the spec does not keep) and
``state.json`` (written by the container's monitor). What a record is, and the pure views of
records (filters, inspect, top), are in :mod:`stackctl.runtime.records`.

Two ``stackctl`` processes may run at once: every change of records or volumes happens under
an exclusive ``flock`` on ``<state>/runtime.lock``; reads need no lock (files are replaced
atomically). Any failure while creating removes everything that call made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal as _signal
import time
from collections.abc import Iterator
from typing import Any

from stackctl.errors import ConflictError, NotFoundError, StackctlError
from stackctl.paths import NodePaths
from stackctl.runtime import names
from stackctl.runtime.imageconfig import RunOptions, build_plan, normalize_signal
from stackctl.runtime.jsonfile import write_json
from stackctl.runtime.records import Record, inspect_record, parse_ps_table, record_matches
from stackctl.runtime.spec import ContainerSpec, ContainerState
from stackctl.runtime.volumes import VolumeStore


def image_config_of(image: Any) -> dict[str, Any]:
    """The ``config`` object (Env, Cmd, ...) of an image, whether the store hands out the whole
    OCI config blob or only its ``config`` member."""
    cfg = getattr(image, "config", None) or {}
    inner = cfg.get("config")
    if isinstance(inner, dict) and "Cmd" not in cfg and "Env" not in cfg:
        return inner
    return cfg


# --- the manager --------------------------------------------------------------------------

class ContainerManager:
    def __init__(self, paths: NodePaths, images: Any = None, core: Any = None) -> None:
        self.paths = paths
        self._images = images
        self._core = core
        self.volumes = VolumeStore(paths)

    # collaborators, imported only when needed (ps must not pay for the image store)
    @property
    def images(self) -> Any:
        if self._images is None:
            from stackctl.runtime.images.store import ImageStore

            self._images = ImageStore(self.paths.images)
        return self._images

    @property
    def core(self) -> Any:
        if self._core is None:
            from stackctl.runtime.containers import api as core

            self._core = core
        return self._core

    # --- records ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fd = self._acquire()
        try:
            yield
        finally:
            os.close(fd)

    def _acquire(self) -> int:
        """The runtime lock, held until the returned descriptor is closed."""
        os.makedirs(self.paths.state, mode=0o700, exist_ok=True)  # root-only: docs/security.md
        fd = os.open(os.path.join(self.paths.state, "runtime.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _acquire_start(self, cid: str) -> int:
        """The container's own start lock (-1: it has no directory), held until the returned
        descriptor is closed; taken under the runtime lock only. A start holds it for its
        whole length but lets the runtime lock go once the rest is the container's own work,
        so starts of different containers run at once; a removal takes it (under the
        runtime lock) and so waits for a start of the same container to end. Its holder never
        waits for the runtime lock: the order runtime lock -> start lock cannot deadlock."""
        try:
            fd = os.open(os.path.join(self._dir(cid), "start.lock"),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            return -1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _dir(self, cid: str) -> str:
        return os.path.join(self.paths.containers, cid)

    def log_path(self, cid: str) -> str:
        return os.path.join(self._dir(cid), f"{cid}-json.log")

    def ids(self) -> list[str]:
        try:
            entries = os.listdir(self.paths.containers)
        except FileNotFoundError:
            return []
        return [e for e in entries if names.ID_RE.match(e) and os.path.exists(os.path.join(self.paths.containers, e, "config.json"))]

    def read_state(self, cid: str) -> ContainerState:
        if os.path.exists(os.path.join(self._dir(cid), "state.json")):
            try:
                st = self.core.read_state(self.paths, cid)
                # a frozen container (``pause``) runs on for its monitor; one stat tells
                st.paused = st.status == "running" and os.path.exists(os.path.join(self._dir(cid), "paused"))
                return st
            except (FileNotFoundError, NotFoundError):
                pass
            except (ValueError, TypeError) as exc:  # garbage (a disk error): written by rename
                return ContainerState(status="dead", error=_corrupt(self._dir(cid), "state.json", exc))
        return ContainerState()

    def load(self, cid: str) -> Record:
        d = self._dir(cid)
        try:
            with open(os.path.join(d, "config.json")) as f:
                spec = ContainerSpec.from_json(json.load(f))
        except FileNotFoundError:
            raise NotFoundError(f"no such container: {cid}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # Written by rename, so garbage means a disk error: list it as dead (``rm -f``
            # removes it) rather than hide it or fail the listing of every other container.
            spec = ContainerSpec(id=cid, name=cid[:12], image="<corrupt>", image_id="", rootfs_layers=[], argv=[])
            return Record(spec, {}, ContainerState(status="dead", error=_corrupt(d, "config.json", exc)))
        try:
            with open(os.path.join(d, "meta.json")) as f:
                meta = json.load(f)
        except FileNotFoundError:
            meta = {}
        return Record(spec, meta, self.read_state(cid))

    def records(self) -> list[Record]:
        out = []
        for cid in self.ids():
            try:
                out.append(self.load(cid))
            except (NotFoundError, ValueError):
                continue  # removed meanwhile, or being written
        return out

    def _names(self) -> list[tuple[str, str]]:
        out = []
        for cid in self.ids():
            try:
                with open(os.path.join(self._dir(cid), "config.json")) as f:
                    out.append((cid, json.load(f)["name"]))
            except OSError:
                continue
            except (ValueError, KeyError, TypeError):
                out.append((cid, ""))  # a corrupt record: reachable by its ID (see load)
        return out

    def resolve(self, query: str) -> str:
        """A container's full ID from its name, full ID or unique ID prefix."""
        q = query[1:] if query.startswith("/") else query
        if names.ID_RE.match(q) and os.path.exists(os.path.join(self._dir(q), "config.json")):
            return q  # a full ID wins over everything (names.match): no need to read the rest
        return names.match(query, self._names())

    def get(self, query: str) -> Record:
        return self.load(self.resolve(query))

    def resolve_running(self, query: str) -> str:
        """The full ID of a running container (name, full ID or unique ID prefix), for
        ``--network container:NAME``; a clear error when it is missing or not running."""
        cid = self.resolve(query)
        state = self.read_state(cid)
        if state.status != "running" or not state.pid or not _pid_alive(state.pid):
            raise StackctlError(f"container {query} is not running",
                                hint=f"start it first: stackctl start {query}")
        return cid

    # --- create ----------------------------------------------------------------------------

    def prepare_start(self, opts: RunOptions, *, attach: bool = False) -> Any:
        """For ``run``: begin starting the container that ``create(opts, prepared=...)`` will
        make — its cgroup, setup child and monitor — before its record exists, so that the
        kernel's slow first cgroup attach overlaps with ``create`` (see
        ``core.PreparedStart``). A context manager: leaving it cancels what was not used.
        Takes no lock (the launcher must not inherit it); bad resource options raise here."""
        from stackctl.runtime.imageconfig import resources_of

        draft = ContainerSpec(id=names.new_id(), name="", image=opts.image, image_id="", rootfs_layers=[], argv=[],
                              tty=opts.tty, stdin_open=opts.stdin_open, privileged=opts.privileged,
                              resources=resources_of(opts), auto_remove=opts.auto_remove)
        return self.core.prepare_start(self.paths, draft, attach=attach)

    # A container being created holds its name (and the named volumes it uses) with a
    # reservation: its directory with ``creating.json`` ({pid, name, volumes}), written under
    # the lock, before the record. The slow part of a create — putting it on its networks and
    # making sure the DNS server runs — then happens outside the lock, so that creates, starts
    # and removals of other containers go on meanwhile. A reservation whose process is gone
    # (a crash) counts for nothing and is swept by the next create.
    RESERVATION = "creating.json"

    def _reservations(self, *, sweep: bool = False) -> dict[str, dict[str, Any]]:
        """Reservations of live processes: cid -> {pid, name, volumes}. ``sweep`` (under the
        lock) removes those of dead processes."""
        out: dict[str, dict[str, Any]] = {}
        try:
            entries = os.listdir(self.paths.containers)
        except FileNotFoundError:
            return out
        for e in entries:
            path = os.path.join(self.paths.containers, e, self.RESERVATION)
            try:
                with open(path) as f:
                    res = json.load(f)
            except (OSError, ValueError):
                continue
            if _pid_alive(int(res.get("pid") or 0)):
                out[e] = res
            elif sweep and not os.path.exists(os.path.join(self.paths.containers, e, "config.json")):
                shutil.rmtree(os.path.join(self.paths.containers, e), ignore_errors=True)
        return out

    def live_ids(self) -> list[str]:
        """Containers with a record, and those being created (their networking is theirs)."""
        return sorted(set(self.ids()) | set(self._reservations()))

    def create(self, opts: RunOptions, name: str | None = None, *, environ: dict[str, str] | None = None,
               cwd: str | None = None, prepared: Any = None) -> Record:
        """Make a container (status ``created``); nothing is left behind if this fails.
        With ``prepared`` (from :meth:`prepare_start`) the container gets its id.

        Locking: the name check, volumes and the reservation happen under the lock; the
        network attach (which has its own lock) outside it; the record is written under the
        lock again (see ``RESERVATION``)."""
        if name:
            name = names.validate_name(name)
        check_default_network_options(opts)
        image = self.images.resolve(opts.image)  # NotFoundError names the image
        link_hosts = self._link_hosts(opts)
        if opts.network.startswith("container:"):
            # the core joins ``container:<full id>`` (its state directory); users give a name
            opts = dataclasses.replace(opts, network=f"container:{self.resolve_running(opts.network[10:])}")
        made_volumes: list[str] = []
        made_dirs: list[str] = []
        cid = ""
        networked = _wants_bridge(opts.network)
        attached = False
        try:
            with self.locked():
                reserved = self._reservations(sweep=True)
                taken = dict((n, cid) for cid, n in self._names())
                taken.update((r.get("name"), c) for c, r in reserved.items())
                if name and name in taken:
                    raise ConflictError(
                        f'the container name "/{name}" is already in use by container "{taken[name]}"',
                        hint="remove (or rename) that container to be able to reuse that name",
                    )
                if not name:
                    name = names.random_name(lambda n: n in taken)
                cid = prepared.cid if prepared is not None else names.new_id()
                while os.path.exists(self._dir(cid)):
                    cid = names.new_id()
                from stackctl.runtime.logs import format_rfc3339

                plan = build_plan(
                    opts,
                    image_id=image.id,
                    image_config=image_config_of(image),
                    layer_dirs=list(image.layer_dirs()),
                    container_id=cid,
                    name=name,
                    environ=dict(os.environ if environ is None else environ),
                    host_hostname=os.uname().nodename,
                    cwd=cwd or os.getcwd(),
                    created=format_rfc3339(time.time_ns()),
                )
                d = self._dir(cid)
                os.makedirs(d, mode=0o700)
                made_dirs.append(d)
                spec = plan.spec
                spec.extra_hosts.extend(link_hosts)
                nocopy = []
                for req in plan.mounts:
                    m = req.mount
                    if m.type == "bind":
                        if not os.path.exists(m.source):
                            if not req.create_source:
                                raise StackctlError(
                                    f'invalid mount config for type "bind": bind source path does not exist: {m.source}',
                                    hint="create it first, or use -v, which creates a missing directory",
                                )
                            made_dirs.extend(_makedirs(m.source))
                    elif m.type == "volume":
                        if req.anonymous:
                            vol = self.volumes.create(labels={"stackctl.anonymous": "true"})
                            made_volumes.append(vol.name)
                        elif self.volumes.exists(m.volume_name):
                            vol = self.volumes.get(m.volume_name)
                        else:
                            vol = self.volumes.create(m.volume_name)
                            made_volumes.append(vol.name)
                        m.volume_name = vol.name
                        m.source = vol.mountpoint
                        if req.nocopy:
                            nocopy.append(m.target)
                    spec.mounts.append(m)
                write_json(os.path.join(d, self.RESERVATION), {
                    "pid": os.getpid(), "name": name,
                    "volumes": [m.volume_name for m in spec.mounts if m.type == "volume"]})
            meta = {
                "Config": plan.config,
                "NoCopy": nocopy,
                "AnonymousVolumes": [m.volume_name for r, m in zip(plan.mounts, spec.mounts) if r.anonymous],
                "ImageRepoTags": list(getattr(image, "repo_tags", []) or []),
            }
            if networked:
                attached = True
                meta["NetworkSettings"] = self._attach_network(spec, opts, list(plan.config.get("ExposedPorts") or {}))
            with self.locked():
                write_json(os.path.join(d, "meta.json"), meta)
                write_json(os.path.join(d, "config.json"), spec.to_json())
                os.unlink(os.path.join(d, self.RESERVATION))
        except BaseException:
            if attached:
                with contextlib.suppress(Exception):  # the original error is the one to show
                    from stackctl.net import runtime_hooks

                    runtime_hooks.release(self.paths, cid)
            with self.locked():
                if cid and made_dirs and made_dirs[0] == self._dir(cid):
                    shutil.rmtree(self._dir(cid), ignore_errors=True)
                for v in made_volumes:
                    shutil.rmtree(os.path.dirname(self.volumes.get(v).mountpoint), ignore_errors=True)
                for p in reversed(made_dirs):
                    with contextlib.suppress(OSError):
                        os.rmdir(p)
            raise
        return Record(spec, meta, ContainerState())

    def _attach_network(self, spec: ContainerSpec, opts: RunOptions, exposed: list[str]) -> dict[str, Any]:
        """Put a new container on its bridge network (netns, veth, address, published ports;
        refusals such as a host port in use come before anything is made), make sure the
        node's DNS server runs, and return Docker's NetworkSettings for ``meta.json``."""
        from stackctl.net import dnsd, runtime_hooks, store

        self._release_orphans()  # not under the lock: see RESERVATION
        membership = self._network_membership(opts)
        setup = runtime_hooks.attach(self.paths, spec, **membership,
                                     ports=opts.publish, publish_all=opts.publish_all, exposed=exposed)
        if any(_attachment_name(a) != DEFAULT_NETWORK for a in membership["networks"]):
            dnsd.ensure_running(self.paths)  # the default bridge has no name resolution
        state = setup.state if setup.state is not None else store.load(self.paths)
        return runtime_hooks.network_settings(state, spec.id, exposed)

    def _link_hosts(self, opts: RunOptions) -> list[str]:
        """``--link NAME[:ALIAS]`` as /etc/hosts entries (``ALIAS``, the target's name and short
        ID at its address), as Docker's legacy links on the default bridge. The target must
        run and have an address; an unknown one is ``no such container``."""
        out: list[str] = []
        for link in getattr(opts, "links", None) or []:
            target, _, alias = link.partition(":")
            rec = self.get(target)
            if rec.state.status != "running":
                raise StackctlError(f"cannot link to a non running container: /{rec.name} AS /{alias or rec.name}",
                                    hint=f"start it first: stackctl start {rec.name}")
            networks = (rec.meta.get("NetworkSettings") or {}).get("Networks") or {}
            ep = networks.get(opts.network) or next(iter(networks.values()), None)
            if not ep or not ep.get("IPAddress"):
                raise StackctlError(f"cannot link to container {rec.name}: it has no address on a network",
                                    hint="link to a container on the default bridge (run without --network)")
            for host in dict.fromkeys([alias or rec.name, rec.name, names.short_id(rec.id)]):
                out.append(f"{host}:{ep['IPAddress']}")
        return out

    def _network_membership(self, opts: RunOptions) -> dict[str, Any]:
        """Which networks a new container joins, as keyword arguments of
        :func:`stackctl.net.runtime_hooks.attach`: here the one of ``--network``. The agent's
        stack containers join several, as a service (:mod:`stackctl.agent.nodeops`)."""
        from stackctl.net import sandbox

        return {"networks": [sandbox.Attachment(opts.network, aliases=list(opts.network_aliases),
                                                ipv4_address=opts.ipv4_address or None)]}

    def _has_record(self, cid: str) -> bool:
        """A record, or a reservation of a live create (its sandbox is being made)."""
        d = self._dir(cid)
        if os.path.exists(os.path.join(d, "config.json")):
            return True
        return cid in self._reservations() if os.path.exists(os.path.join(d, self.RESERVATION)) else False

    def _release_orphans(self) -> None:
        """Networking of containers whose record is gone (``run -d --rm``: the monitor removes
        the record but does not import networking). Costs a ``stat`` without networks, one
        file read with them; takes the lock only when there is something to release."""
        if not os.path.exists(os.path.join(self.paths.state, "networks", "state.json")):
            return
        from stackctl.net import store

        if any(not self._has_record(cid) for cid in store.load(self.paths).sandboxes):
            with self.locked():
                self._release_orphans_locked()

    def _release_orphans_locked(self) -> None:
        if not os.path.exists(os.path.join(self.paths.state, "networks", "state.json")):
            return
        from stackctl.net import runtime_hooks

        runtime_hooks.release_orphans(self.paths, self._has_record)

    # --- life cycle ------------------------------------------------------------------------

    def start(self, query: str, *, attach: bool = False, prepared: Any = None) -> Record:
        """Start a created or stopped container; a running one is left as it is. With
        ``attach`` the container waits for a client on its attach socket before it runs.
        ``prepared``: from :meth:`prepare_start` (used if it fits, else cancelled)."""
        lock = self._acquire()
        own = -1
        try:
            cid = self.resolve(query)
            own = self._acquire_start(cid)
            rec = self.load(cid)  # as it is now that no other start of it runs (read once)
            if rec.state.status == "running":
                if rec.state.paused:
                    raise ConflictError(f"cannot start a paused container {rec.name}, try unpause instead")
                return rec
            with contextlib.suppress(FileNotFoundError):  # a pause mark left by a crash
                os.unlink(os.path.join(self._dir(rec.id), "paused"))
            spec = rec.spec
            nocopy = set(rec.meta.get("NoCopy", []))
            populate = []
            for m in spec.mounts:
                if m.type != "volume":
                    continue
                opts = [o for o in m.options if o != "nocopy"]
                try:
                    populated = self.volumes.get(m.volume_name).populated
                except NotFoundError:
                    raise StackctlError(
                        f"container {spec.name}: volume {m.volume_name} was removed", hint="remove and re-create the container"
                    ) from None
                if m.target in nocopy or populated:
                    opts.append("nocopy")
                else:
                    populate.append(m.volume_name)
                m.options = opts
            if not populate and own >= 0:
                # the rest is this container's own work (its files, setup child, monitor and
                # cgroup): other containers start meanwhile; a first volume copy stays locked
                os.close(lock)
                lock = -1
            try:
                if prepared is not None:
                    state = self.core.start_container(self.paths, spec, attach=attach, prepared=prepared)
                elif attach:
                    state = self.core.start_container(self.paths, spec, attach=True)
                else:
                    state = self.core.start_container(self.paths, spec)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.core.cleanup_container(self.paths, spec.id)
                raise
            for v in populate:  # the first mount had its chance to copy; later ones don't
                with contextlib.suppress(NotFoundError):
                    self.volumes.mark_populated(v)
            return Record(spec, rec.meta, state)
        finally:
            for fd in (own, lock):
                if fd >= 0:
                    os.close(fd)

    def kill(self, query: str, sig: str | int = "SIGKILL") -> Record:
        rec = self.get(query)
        if rec.state.status != "running":
            raise ConflictError(f"cannot kill container {rec.name}: container {names.short_id(rec.id)} is not running")
        signame = normalize_signal(sig)
        self.core.signal_container(self.paths, rec.id, getattr(_signal, signame))
        self._thaw_after_signal(rec)
        return rec

    def _thaw_after_signal(self, rec: Record) -> None:
        """A paused container gets its signal once thawed (as Docker's kill and stop of a
        paused container): thaw it right after sending."""
        if rec.state.paused:
            from stackctl.runtime.containers import control

            control.thaw_container(self.paths, rec.id, strict=False)

    def stop(self, query: str, timeout: float | None = None, sig: str | None = None) -> Record:
        """The stop signal, then SIGKILL after the grace period; a stopped container is fine."""
        rec = self.get(query)
        if rec.state.status != "running":
            return rec
        t = rec.spec.stop_timeout if timeout is None else timeout
        if rec.state.paused:
            sig = sig or rec.spec.stop_signal or "SIGTERM"
            self.core.signal_container(self.paths, rec.id, getattr(_signal, normalize_signal(sig)))
            self._thaw_after_signal(rec)
            if not self.wait_stopped(rec.id, t if t >= 0 else None):
                self.core.signal_container(self.paths, rec.id, _signal.SIGKILL)
                self.wait_stopped(rec.id, None)
            return self.load(rec.id)
        if sig is None or normalize_signal(sig) == rec.spec.stop_signal:
            self.core.stop_container(self.paths, rec.id, t)
        else:
            self.core.signal_container(self.paths, rec.id, getattr(_signal, normalize_signal(sig)))
            if not self.wait_stopped(rec.id, t if t >= 0 else None):
                self.core.signal_container(self.paths, rec.id, _signal.SIGKILL)
                self.wait_stopped(rec.id, None)
        return self.load(rec.id)

    def wait_stopped(self, cid: str, timeout: float | None) -> bool:
        """Poll the monitor's state until the container is not running (or time runs out)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.read_state(cid).status != "running":
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def restart(self, query: str, timeout: float | None = None, sig: str | None = None) -> Record:
        rec = self.stop(query, timeout, sig)
        return self.start(rec.id)

    def wait(self, query: str) -> int:
        """Block until the container is not running; its exit code."""
        rec = self.get(query)
        if rec.state.status == "running":
            self.core.wait_container(self.paths, rec.id)
        state = self.read_state(rec.id)
        return state.exit_code if state.exit_code is not None else 0

    def remove(self, query: str, *, force: bool = False, volumes: bool = False) -> str:
        """Remove a container (``force`` kills a running one first; ``volumes`` also removes its
        anonymous volumes). Afterwards no process, mount, cgroup or record of it remains."""
        with self.locked():
            rec = self.get(query)
            own = self._acquire_start(rec.id)  # a start of it under way ends first
            try:
                rec = self.get(rec.id)
                if rec.state.status == "running":
                    if not force:
                        raise ConflictError(
                            f'cannot remove container "/{rec.name}": container is running',
                            hint="stop the container before removing, or force remove with rm -f",
                        )
                    self.core.signal_container(self.paths, rec.id, _signal.SIGKILL)
                    self._thaw_after_signal(rec)
                    self.wait_stopped(rec.id, None)
                trash = self._remove_dir_locked(rec, volumes)
            finally:
                if own >= 0:
                    os.close(own)
        # the files go once the lock is free: removals of several containers (`down`) no
        # longer wait for each other's unlinks; nothing lists `<state>/removing`
        if trash:
            shutil.rmtree(trash, ignore_errors=True)
        return rec.id

    def _remove_locked(self, rec: Record, volumes: bool) -> None:
        own = self._acquire_start(rec.id)  # a start of it under way ends first
        try:
            trash = self._remove_dir_locked(rec, volumes)
            if trash:
                shutil.rmtree(trash, ignore_errors=True)
        finally:
            if own >= 0:
                os.close(own)

    def _remove_dir_locked(self, rec: Record, volumes: bool) -> str:
        """Everything of the container but its files, which are moved out of
        ``<state>/containers`` (or removed in place if they cannot be): the path that holds
        them now, for the caller to remove (after letting the runtime lock go)."""
        from stackctl.runtime.containers.monitor import set_aside

        if os.path.exists(os.path.join(self._dir(rec.id), "state.json")) or rec.state.status != "created":
            self.core.cleanup_container(self.paths, rec.id)
        self._release_network_locked(rec)
        trash = set_aside(self._dir(rec.id))
        if not trash:
            shutil.rmtree(self._dir(rec.id), ignore_errors=True)
        if volumes:
            self._remove_anonymous_locked(rec)
        return trash

    def _release_network_locked(self, rec: Record) -> None:
        if "NetworkSettings" in rec.meta:
            from stackctl.errors import DiskFullError
            from stackctl.net import runtime_hooks

            # Removing never needs free space: on a full disk the kernel side is gone but the
            # networking state still lists the sandbox; the next create or ps releases it
            # again (release_orphans: idempotent) once the state can be written.
            with contextlib.suppress(DiskFullError):
                runtime_hooks.release(self.paths, rec.id)

    def _remove_anonymous_locked(self, rec: Record) -> None:
        if not rec.meta.get("AnonymousVolumes"):
            return  # (the users' scan reads every record)
        used = self._volume_users()
        for v in rec.meta.get("AnonymousVolumes", []):
            if v not in used and self.volumes.exists(v):
                self.volumes.remove(v)

    def forget(self, rec: Record) -> None:
        """After an ``--rm`` container's monitor removed its directory: drop what is left of
        it (its anonymous volumes, and the record if the monitor did not get to it)."""
        with self.locked():
            if os.path.isdir(self._dir(rec.id)):
                with contextlib.suppress(NotFoundError):
                    self._remove_locked(self.load(rec.id), True)
                    return
            self._release_network_locked(rec)
            self._remove_anonymous_locked(rec)

    def reap_auto_remove(self, recs: list[Record]) -> list[Record]:
        """Remove exited ``--rm`` containers whose starter is gone (the monitor records the exit;
        the record is ours to drop). Returns the records still there."""
        left = []
        for rec in recs:
            if rec.spec.auto_remove and rec.state.status in ("exited", "dead"):
                with self.locked(), contextlib.suppress(NotFoundError):
                    self._remove_locked(self.load(rec.id), True)
                continue
            left.append(rec)
        return left

    # --- queries ---------------------------------------------------------------------------

    def list(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
             last: int | None = None) -> list[Record]:
        """Newest first, like ``docker ps``. ``last`` implies ``all`` (as ``-n``/``-l``)."""
        recs = self.reap_auto_remove(self.records())
        self._release_orphans()
        recs.sort(key=lambda r: r.spec.created, reverse=True)
        filters = filters or {}
        if last is not None:
            recs = recs[:last] if last > 0 else recs
        elif not all and "status" not in filters and "exited" not in filters:
            recs = [r for r in recs if r.state.status == "running"]
        if filters:
            recs = [r for r in recs if record_matches(r, filters)]
        return recs

    def _volume_users(self) -> dict[str, list[str]]:
        used: dict[str, list[str]] = {}
        for rec in self.records():
            for m in rec.spec.mounts:
                if m.type == "volume" and m.volume_name:
                    used.setdefault(m.volume_name, []).append(rec.name)
        for res in self._reservations().values():  # containers being created
            for v in res.get("volumes") or []:
                used.setdefault(v, []).append(res.get("name") or "")
        return used

    def remove_volume(self, name: str, force: bool = False) -> None:
        with self.locked():
            users = self._volume_users().get(name, [])
            if force and not self.volumes.exists(name):
                return
            self.volumes.remove(name, users)

    def prune_volumes(self, *, all_volumes: bool = False, filters: dict[str, list[str]] | None = None) -> tuple[list[str], int]:
        with self.locked():
            return self.volumes.prune(set(self._volume_users()), all_volumes=all_volumes, filters=filters)

    def dangling_volumes(self) -> set[str]:
        used = self._volume_users()
        return {v.name for v in self.volumes.list() if v.name not in used}

    def inspect(self, query: str) -> dict[str, Any]:
        """``docker inspect`` shape."""
        return inspect_record(self.get(query), self.log_path)

    def top(self, query: str, ps_args: list[str] | None = None) -> tuple[list[str], list[list[str]]]:
        import subprocess

        rec = self.get(query)
        if rec.state.status != "running":
            raise ConflictError(f"container {rec.name} is not running")
        pids = set(self.core.container_pids(self.paths, rec.id))
        out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True)
        if out.returncode != 0:
            raise StackctlError(f"ps {' '.join(ps_args or ['-ef'])} failed: {out.stderr.strip()}")
        return parse_ps_table(out.stdout, pids)

    def stats(self, query: str) -> Any:
        rec = self.get(query)
        if rec.state.status != "running":
            return rec, None
        return rec, self.core.container_stats(self.paths, rec.id)


DEFAULT_NETWORK = "bridge"  # Docker's default network (stackctl.net.model.DEFAULT_BRIDGE)


def _attachment_name(att: Any) -> str:
    return att if isinstance(att, str) else att.network


def check_default_network_options(opts: RunOptions) -> None:
    """Docker's refusals for the default bridge: aliases and a chosen address need a network
    the user made (pure)."""
    if opts.network != DEFAULT_NETWORK:
        return
    if opts.network_aliases:
        raise StackctlError("network-scoped aliases are supported only for containers in user defined networks",
                            hint="create one with `stackctl network create NAME`, then --network NAME")
    if opts.ipv4_address:
        raise StackctlError("user specified IP address is supported on user defined networks only",
                            hint="create one with `stackctl network create NAME`, then --network NAME")


def _wants_bridge(network: str) -> bool:
    """A network *name* (Docker's user-defined network), not a mode: the same rule as
    :func:`stackctl.net.runtime_hooks.wants_bridge`, without importing networking."""
    return bool(network) and network not in ("none", "host") and not network.startswith(("container:", "netns:"))


def _corrupt(cdir: str, name: str, exc: Exception) -> str:
    return (f"{os.path.join(cdir, name)} is corrupt ({type(exc).__name__}: {exc}); "
            f"remove the container with `stackctl rm -f {os.path.basename(cdir)[:12]}`")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _makedirs(path: str) -> list[str]:
    """``os.makedirs`` that returns the directories it made (top first), for a rollback."""
    made = []
    p = path
    while p and p != "/" and not os.path.exists(p):
        made.append(p)
        p = os.path.dirname(p)
    os.makedirs(path, exist_ok=True)
    return list(reversed(made))
