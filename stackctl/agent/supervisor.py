"""The supervisor: watches every container of the node, reports exits, runs health checks.

- **Exits.** Each container's monitor records its life in ``state.json``; the supervisor wakes
  on changes (:mod:`stackctl.agent.watch`, inotify) and every :attr:`rescan_every` seconds,
  re-reads all records and compares them with what it saw last: a new ``started_at`` is a
  ``container.start``, a running container that is now exited or dead a ``container.die``
  (``exit_code``, ``oom_killed``). Nothing is restarted here: restart policies are the
  controller's, which listens to these events and re-reads.
- **Health.** A running container with a health check (persisted in the store by
  :meth:`NodeOps.create_container`) gets a check task in the supervisor's nursery, one per
  container start, with Docker's semantics (:mod:`stackctl.agent.health`); probes run through
  :mod:`stackctl.agent.probe`. Status changes publish ``container.health`` and go to
  :func:`stackctl.net.sandbox.set_health`, so VIPs and ``tasks.<service>`` only point at
  healthy replicas; a stopped container is taken out too, and a started container without a
  check is put in.
- **Re-adoption.** :meth:`Supervisor.run` first adopts what is there: removes the network
  leftovers of containers that are gone (:func:`stackctl.net.gc.gc_stale`, under the runtime's
  lock so a container being created is never taken), drops the health of vanished containers,
  resumes every health check where it was (same container start: the persisted status,
  streak and log), and makes sure the node's DNS server runs — then signals readiness.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from stackctl.agent.events import EventBus
from stackctl.agent.health import STARTING, HEALTHY, HealthConfig, HealthState, ProbeResult, \
    cut_output, timeout_result
from stackctl.agent.store import Store
from stackctl.agent.watch import DirWatcher
from stackctl.errors import NotFoundError, StackctlError
from stackctl.paths import NodePaths
from stackctl.runtime.manager import ContainerManager
from stackctl.runtime.records import Record

log = logging.getLogger("stackctl.agent")

Prober = Callable[[str, list[str], float], Awaitable[ProbeResult]]
DNS_CHECK_EVERY = 5.0
COALESCE = 0.02
SCAN_PAUSE_MAX = 0.25  # seconds: the longest pause between two scans in a burst


def probe_command(paths: NodePaths, cid: str, argv: list[str]) -> list[str]:
    import json

    return [sys.executable, "-m", "stackctl.agent.probe", paths.state, paths.run,
            paths.cgroup_parent, cid, json.dumps(argv)]


def exec_prober(paths: NodePaths) -> Prober:
    """The real prober: run the probe helper with a pipe for its output; kill its whole
    process group (the command inside the container included) when it times out."""

    async def kill_group(proc: trio.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)

    async def probe(cid: str, argv: list[str], timeout: float) -> ProbeResult:
        start = time.time()
        with trio.move_on_after(timeout) as scope:
            done = await trio.run_process(
                probe_command(paths, cid, argv), stdin=subprocess.DEVNULL, capture_stdout=True,
                stderr=subprocess.STDOUT, check=False, start_new_session=True,
                deliver_cancel=kill_group)
        if scope.cancelled_caught:
            return timeout_result(start, time.time(), timeout)
        return ProbeResult(start, time.time(), done.returncode, cut_output(done.stdout))

    return probe


@dataclass
class _Seen:
    status: str
    started_at: str
    networked: bool


@dataclass
class _Check:
    started_at: str
    state: HealthState
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class Supervisor:
    def __init__(self, paths: NodePaths, bus: EventBus, store: Store, *,
                 containers: ContainerManager | None = None, prober: Prober | None = None,
                 rescan_every: float = 2.0, wall: Callable[[], float] = time.time) -> None:
        self.paths = paths
        self.bus = bus
        self.store = store
        self.containers = containers or ContainerManager(paths)
        self.prober = prober or exec_prober(paths)
        self.rescan_every = rescan_every
        self.wall = wall
        self._seen: dict[str, _Seen] = {}
        self._checks: dict[str, _Check] = {}
        self._no_health: set[str] = set()
        self._poke = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._watcher: DirWatcher | None = None
        self.scans = 0
        self._scanning = False
        self._scanned = trio.Event()
        self._dns_idle = False
        self._scan_ended = self._scan_took = 0.0  # monotonic: the last scan's end, its length

    # -- queries (for NodeOps, ps, inspect) ----------------------------------------------------

    def health_of(self, cid: str) -> str | None:
        """The container's health: None without a check. A container with a check that the
        supervisor has not picked up yet (it was started a moment ago and the next scan has
        not run) is ``starting`` — never None, which would read as "no check: ready" and
        let a ``service_healthy`` gate through before the first probe."""
        check = self._checks.get(cid)
        if check is not None:
            return check.state.status
        if cid in self._no_health:
            return None
        hrec = self.store.get_health(cid)
        if hrec is None:
            return None
        try:
            enabled = HealthConfig.from_dict(hrec.config).enabled
        except StackctlError:
            return None
        return STARTING if enabled else None

    def health_json(self, cid: str) -> dict[str, Any] | None:
        check = self._checks.get(cid)
        return check.state.to_json() if check else None

    def poke(self) -> None:
        """Rescan soon (NodeOps calls this after a start, stop or remove)."""
        self._poke.set()

    async def wait_scanned(self) -> None:
        """Wait for a complete scan that began after this call (tests; a caller that changed
        something and wants the supervisor to have seen it)."""
        target = self.scans + (2 if self._scanning else 1)
        self.poke()
        while self.scans < target:
            await self._scanned.wait()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._watcher = DirWatcher()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self.adopt()
                task_status.started()
                nursery.start_soon(self._dns_loop)
                await self._watch_loop()
        finally:
            self._watcher.close()
            self._nursery = None

    async def adopt(self) -> None:
        """Take over the node as it is: network leftovers, stale health, every container."""
        await trio.to_thread.run_sync(self._gc_network)
        await self.scan(initial=True)
        gone = self.store.prune_health(self._seen)
        if gone:
            log.info("forgot the health of %d removed containers", len(gone))
        await self._ensure_dns()
        await self._ensure_tunnels()

    def _gc_network(self) -> None:
        from stackctl.net import store as netstore

        if not os.path.exists(netstore.state_file(self.paths)):
            return
        from stackctl.net.gc import gc_stale

        try:
            with self.containers.locked():
                report = gc_stale(self.paths, live_containers=self.containers.live_ids())
        except StackctlError as exc:
            log.warning("network clean-up failed: %s", exc.message)
            return
        if report:
            log.info("network clean-up: sandboxes %s, links %s, netns %s",
                     report.sandboxes, report.links, report.netns_files)

    async def _watch_loop(self) -> None:
        assert self._watcher is not None
        while True:
            self._watcher.watch(self.paths.containers)
            with trio.move_on_after(self.rescan_every):
                async with trio.open_nursery() as race:
                    async def on_poke() -> None:
                        await self._poke.wait()
                        race.cancel_scope.cancel()

                    async def on_change() -> None:
                        await self._watcher.wait_changed(self.rescan_every)
                        # one scan for a burst of changes (a `run --rm` writes its record,
                        # starts, exits and is removed within ~20 ms), not one per file
                        await trio.sleep(COALESCE)
                        race.cancel_scope.cancel()

                    race.start_soon(on_poke)
                    race.start_soon(on_change)
            # a burst of changes (many replicas starting at once) would keep it scanning back
            # to back, each scan reading every record: at most half of the time goes to scans
            # (real time: a scan's length is its threads' work, which a test's virtual
            # clock does not measure)
            rest = self._scan_ended + self._scan_took - time.monotonic()
            if rest > 0:
                await trio.sleep(min(rest, SCAN_PAUSE_MAX))
            self._poke = trio.Event()
            began = time.monotonic()
            try:
                await self.scan()
            except Exception:  # noqa: BLE001 - one bad scan must not end supervision
                log.exception("supervisor scan failed")
            finally:
                self._scan_ended = time.monotonic()
                self._scan_took = self._scan_ended - began

    async def _dns_loop(self) -> None:
        while True:
            await trio.sleep(DNS_CHECK_EVERY)
            await self._ensure_dns(stop_idle=True)
            await self._ensure_tunnels()

    async def _ensure_tunnels(self) -> None:
        """Encrypted overlays on the userspace data path (:mod:`stackctl.net.tunneld`): a
        tunnel process that died is started again from its configuration, one whose network
        is gone is ended. Like the DNS server, tunnels outlive an agent restart."""
        from stackctl.net import tunneld

        try:
            await trio.to_thread.run_sync(tunneld.check, self.paths)
        except (StackctlError, OSError) as exc:
            log.warning("overlay tunnel: %s", getattr(exc, "message", exc))

    async def _ensure_dns(self, *, stop_idle: bool = False) -> None:
        """The node's DNS server (:mod:`stackctl.net.dnsd`) runs while containers have
        networking; it lives in a process of its own so that names keep resolving while the
        agent restarts. Started again here if it died. While an agent runs, the agent also
        ends it: once no container has networking for a whole check period (``stop_idle``),
        and at once after a ``down`` (:meth:`stop_dns_if_idle`)."""
        from stackctl.net import dnsd, store as netstore

        def check() -> None:
            if os.path.exists(netstore.state_file(self.paths)) and \
                    netstore.load(self.paths).sandboxes:
                self._dns_idle = False
                dnsd.ensure_running(self.paths)
            elif stop_idle:
                if self._dns_idle:
                    dnsd.stop_if_idle(self.paths)
                self._dns_idle = True

        try:
            await trio.to_thread.run_sync(check)
        except StackctlError as exc:
            log.warning("DNS server: %s", exc.message)

    async def stop_dns_if_idle(self) -> None:
        """End the DNS server now if no container has networking (after ``down``)."""
        from stackctl.net import dnsd

        try:
            await trio.to_thread.run_sync(dnsd.stop_if_idle, self.paths)
        except StackctlError as exc:
            log.warning("DNS server: %s", exc.message)

    # -- one scan ----------------------------------------------------------------------------

    async def scan(self, *, initial: bool = False) -> None:
        self._scanning = True
        try:
            await self._scan(initial)
        finally:
            self._scanning = False
            self.scans += 1
            done, self._scanned = self._scanned, trio.Event()
            done.set()

    async def _scan(self, initial: bool) -> None:
        recs: list[Record] = await trio.to_thread.run_sync(self.containers.records)
        now_ids = {r.id for r in recs}
        if self._watcher is not None:
            dirs = {os.path.join(self.paths.containers, cid) for cid in now_ids}
            for d in dirs:
                self._watcher.watch(d)
            self._watcher.keep_only(dirs | {self.paths.containers})
        for rec in recs:
            await self._observe(rec, initial)
        gone = [c for c in self._seen if c not in now_ids]
        for cid in gone:
            del self._seen[cid]
            self._no_health.discard(cid)
            self._stop_check(cid)
        if gone and not initial:
            # an auto-removed (`--rm`) container's monitor removed its record, not its
            # network endpoint: release it, so that its address and DNS names go now
            try:
                await trio.to_thread.run_sync(self.containers._release_orphans)
            except StackctlError as exc:
                log.warning("cannot release the networking of removed containers: %s",
                            exc.message)

    async def _observe(self, rec: Record, initial: bool) -> None:
        st = rec.state
        prev = self._seen.get(rec.id)
        networked = "NetworkSettings" in rec.meta
        self._seen[rec.id] = _Seen(st.status, st.started_at, networked)
        restarted = st.started_at and (prev is None or prev.started_at != st.started_at)
        if not initial and restarted and (prev is not None or st.status == "running"):
            self._publish("container.start", rec)
        running = st.status == "running"
        if running:
            check = self._checks.get(rec.id)
            if check is None or check.started_at != st.started_at:
                self._stop_check(rec.id)
                started = await self._start_check(rec, initial)
                if not started and networked and (initial or restarted):
                    await self._set_routable(rec, True)
            return
        self._stop_check(rec.id)
        died = st.status in ("exited", "dead") and st.started_at and (
            (prev is not None and (prev.status == "running" or prev.started_at != st.started_at))
            or (prev is None and not initial))
        if died and not initial:
            self._publish("container.die", rec, exit_code=st.exit_code,
                          oom_killed=st.oom_killed, error=st.error)
        if networked and (died or initial):
            await self._set_routable(rec, False)

    def _publish(self, name: str, rec: Record, **extra: Any) -> None:
        labels = rec.spec.labels
        self.bus.publish({"event": name, "id": rec.id, "name": rec.name,
                          "stack": labels.get("com.stackctl.stack", ""),
                          "service": labels.get("com.stackctl.service", ""),
                          "slot": labels.get("com.stackctl.slot", ""), **extra})

    async def _set_routable(self, rec: Record, healthy: bool) -> None:
        """Take a dead or unhealthy container out of its VIPs and published service ports.

        Putting a *stack* task back in is the controller's decision (it adds a replica once it
        is ready and drains one before stopping it, see stackctl/controller/taskops.py); a
        probe passing during a drain must not route traffic to a replica being stopped. So
        for stack containers the supervisor only ever takes out.
        """
        from stackctl.net import sandbox

        cid = rec.id
        if healthy and rec.spec.labels.get("com.stackctl.stack"):
            return

        try:
            await trio.to_thread.run_sync(sandbox.set_health, self.paths, cid, healthy)
        except NotFoundError:
            pass  # no network of ours (any more)
        except StackctlError as exc:
            log.warning("container %s: cannot mark it %s: %s", cid[:12],
                        "healthy" if healthy else "unhealthy", exc.message)

    # -- health checks -----------------------------------------------------------------------

    async def _start_check(self, rec: Record, initial: bool) -> bool:
        """Start the health check of a running container; False if it has none."""
        if rec.id in self._no_health:
            return False
        hrec = self.store.get_health(rec.id)
        if hrec is None:
            self._no_health.add(rec.id)
            return False
        try:
            config = HealthConfig.from_dict(hrec.config)
        except StackctlError as exc:
            log.warning("container %s: bad health check %r: %s", rec.id[:12], hrec.config,
                        exc.message)
            self._no_health.add(rec.id)
            return False
        if not config.enabled:
            self._no_health.add(rec.id)
            return False
        started = trio.current_time() - max(0.0, self.wall() - _wall_seconds(rec.state.started_at))
        state = HealthState(config, started)
        resumed = hrec.started_at == rec.state.started_at and hrec.status
        if resumed:
            state.restore(hrec.status, hrec.failing_streak, hrec.log)
        check = _Check(rec.state.started_at, state)
        self._checks[rec.id] = check
        assert self._nursery is not None
        self._nursery.start_soon(self._check_loop, rec, check)
        if not resumed:
            self._persist(rec.id, check)
            self._publish("container.health", rec, health=STARTING)
        await self._set_routable(rec, state.status == HEALTHY)
        return True

    def _stop_check(self, cid: str) -> None:
        check = self._checks.pop(cid, None)
        if check is not None:
            check.scope.cancel()

    def _persist(self, cid: str, check: _Check) -> None:
        s = check.state
        try:
            self.store.save_health_state(cid, s.status, s.failing_streak,
                                         [r.to_json() for r in s.log], check.started_at)
        except Exception:  # noqa: BLE001 - health must go on even if the disk is full
            log.exception("cannot persist the health of %s", cid[:12])

    async def _check_loop(self, rec: Record, check: _Check) -> None:
        state = check.state
        argv = state.config.argv()
        with check.scope:
            while True:
                await trio.sleep(state.interval(trio.current_time()))
                began = trio.current_time()
                try:
                    result = await self.prober(rec.id, argv, state.config.timeout)
                except Exception as exc:  # noqa: BLE001 - a probe that cannot run fails
                    log.exception("health probe of %s failed to run", rec.id[:12])
                    now = self.wall()
                    result = ProbeResult(now, now, -1, f"health check could not run: {exc}")
                changed = state.record(result, began)
                self._persist(rec.id, check)
                if changed:
                    self._publish("container.health", rec, health=changed,
                                  exit_code=result.exit_code, output=result.output[-512:])
                    if self._seen.get(rec.id, _Seen("", "", False)).networked:
                        await self._set_routable(rec, changed == HEALTHY)


def _wall_seconds(rfc3339: str) -> float:
    if not rfc3339:
        return time.time()
    from stackctl.runtime.logs import NS, parse_rfc3339_ns

    try:
        return parse_rfc3339_ns(rfc3339) / NS
    except ValueError:
        return time.time()
