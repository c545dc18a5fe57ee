"""cgroup v1: one directory per controller hierarchy, ``<mount>/<parent>/<id>``.

memory: ``memory.limit_in_bytes`` (hard), ``memory.soft_limit_in_bytes`` (reservation); OOM
kills are counted in ``memory.oom_control``'s ``oom_kill`` line (kernel ≥ 4.13).
cpu: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``. pids: ``pids.max``. devices: Docker's
allow-list (deny all, then the standard character devices and ptys), so that the MKNOD
capability cannot be used to reach the host's disks.
"""

from __future__ import annotations

import os

from stackctl.runtime.containers.cgroups import common
from stackctl.runtime.containers.cgroups.detect import CgroupError

CFS_PERIOD = 100_000

DEVICE_ALLOW = (
    "c *:* m", "b *:* m",
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",  # null zero full random urandom
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm",  # tty console ptmx
    "c 136:* rwm",  # pts
    "c 10:200 rwm",  # tun
)


class V1Cgroup:
    version = 1

    def __init__(self, mounts: dict[str, str], parent: str, cid: str) -> None:
        self.parent = parent
        self.id = cid
        # controller -> directory; co-mounted controllers share one directory
        self.dirs = {c: os.path.join(m, parent, cid) for c, m in mounts.items()}

    def _unique_dirs(self) -> list[str]:
        return sorted(set(self.dirs.values()))

    def create(self, resources: dict) -> None:
        """mkdir in every hierarchy, then write the limits; on any failure remove what was
        made and raise."""
        made: list[str] = []
        try:
            for d in self._unique_dirs():
                os.makedirs(os.path.dirname(d), exist_ok=True)
                try:
                    os.mkdir(d)
                    made.append(d)
                except FileExistsError:
                    pass
            self._write_limits(resources)
        except (OSError, CgroupError) as e:
            for d in reversed(made):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            if isinstance(e, CgroupError):
                raise
            raise CgroupError(f"create cgroup {e.filename}: {e.strerror}") from e

    def set_limits(self, resources: dict) -> None:
        """Write the limits of an existing cgroup (a pooled start's, once claimed); the
        devices allow-list was written by :meth:`create`."""
        try:
            self._write_limits(resources, devices=False)
        except OSError as e:
            raise CgroupError(f"set cgroup limits {e.filename}: {e.strerror}") from e

    def rename(self, new_id: str) -> None:
        """Rename the cgroup to ``new_id`` in every hierarchy (v1 allows a rename within one
        parent); its processes stay in it. All or nothing: on a failure the renamed
        directories are renamed back and CgroupError is raised."""
        moved: list[tuple[str, str]] = []
        try:
            for d in self._unique_dirs():
                new = os.path.join(os.path.dirname(d), new_id)
                os.rename(d, new)
                moved.append((d, new))
        except OSError as e:
            for old, new in reversed(moved):
                try:
                    os.rename(new, old)
                except OSError:
                    pass
            raise CgroupError(f"rename cgroup {e.filename}: {e.strerror}") from e
        self.id = new_id
        self.dirs = {c: os.path.join(os.path.dirname(d), new_id) for c, d in self.dirs.items()}

    def _write_limits(self, r: dict, devices: bool = True) -> None:
        mem = self.dirs.get("memory")
        if r.get("memory"):
            if not mem:
                raise CgroupError("a memory limit needs the memory cgroup controller, which is not mounted")
            common.write(os.path.join(mem, "memory.limit_in_bytes"), str(int(r["memory"])))
        if r.get("memory_reservation") and mem:
            common.write(os.path.join(mem, "memory.soft_limit_in_bytes"), str(int(r["memory_reservation"])))
        if r.get("cpus"):
            cpu = self.dirs.get("cpu")
            if not cpu:
                raise CgroupError("a cpu limit needs the cpu cgroup controller, which is not mounted")
            common.write(os.path.join(cpu, "cpu.cfs_period_us"), str(CFS_PERIOD))
            common.write(os.path.join(cpu, "cpu.cfs_quota_us"), str(max(1000, int(r["cpus"] * CFS_PERIOD))))
        if r.get("pids"):
            pids = self.dirs.get("pids")
            if not pids:
                raise CgroupError("a pids limit needs the pids cgroup controller, which is not mounted")
            common.write(os.path.join(pids, "pids.max"), str(int(r["pids"])) if r["pids"] > 0 else "max")
        dev = self.dirs.get("devices")
        if devices and dev and not r.get("privileged"):
            common.write(os.path.join(dev, "devices.deny"), "a")
            for rule in DEVICE_ALLOW:
                common.write(os.path.join(dev, "devices.allow"), rule)

    # --- a running container's cgroup: freeze (pause) and new limits (update) ---------------

    def freeze(self, timeout: float = 5.0) -> None:
        """``freezer.state`` FROZEN, then wait until the kernel reports every task frozen
        (FREEZING meanwhile)."""
        d = self._freezer()
        common.write(os.path.join(d, "freezer.state"), "FROZEN")
        common.wait_for(lambda: common.read(os.path.join(d, "freezer.state")).strip() == "FROZEN", timeout,
                        f"the tasks of {d} did not freeze")

    def thaw(self) -> None:
        common.write(os.path.join(self._freezer(), "freezer.state"), "THAWED")

    def frozen(self) -> bool:
        d = self.dirs.get("freezer")
        return bool(d) and common.read(os.path.join(d, "freezer.state")).strip() in ("FROZEN", "FREEZING")

    def _freezer(self) -> str:
        d = self.dirs.get("freezer")
        if not d:
            raise CgroupError("pausing needs the freezer cgroup controller, which is not mounted")
        return d

    def update(self, r: dict) -> None:
        """Write new limits into a live cgroup: memory (with ``memory_swap``, memory + swap, -1
        unlimited: ``memory.memsw.limit_in_bytes``, which must never be below the memory limit,
        so the two are written in the order that keeps that true), reservation, cpus, pids."""
        mem = self.dirs.get("memory")
        swap = r.get("memory_swap")
        if (r.get("memory") or swap) and not mem:
            raise CgroupError("a memory limit needs the memory cgroup controller, which is not mounted")
        memsw = os.path.join(mem, "memory.memsw.limit_in_bytes") if mem else ""
        if swap and not os.path.exists(memsw):
            raise CgroupError("a swap limit needs swap accounting (memory.memsw.*), which this kernel does not have")
        writes: list[tuple[str, str]] = []
        if r.get("memory"):
            writes.append((os.path.join(mem, "memory.limit_in_bytes"), str(int(r["memory"]))))
        if swap:
            writes.append((memsw, "-1" if swap < 0 else str(int(swap))))
            current = common.read_int(os.path.join(mem, "memory.memsw.limit_in_bytes"), -1)
            if swap < 0 or (r.get("memory") and current >= 0 and int(r["memory"]) > current):
                writes.reverse()  # raise the ceiling (memsw) before the memory limit
        for path, value in writes:
            common.write(path, value)
        self._write_limits({k: v for k, v in r.items() if k in ("memory_reservation", "cpus", "pids")
                            and not (k == "cpus" and v == -1)}, devices=False)
        if r.get("cpus") == -1:  # unlimited again
            common.write(os.path.join(self.dirs["cpu"], "cpu.cfs_quota_us"), "-1")

    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self._unique_dirs()]

    def _main_dir(self) -> str:
        return self.dirs.get("pids") or self.dirs.get("memory") or self._unique_dirs()[0]

    def pids(self) -> list[int]:
        return common.pids_in(self._main_dir())

    def oom_kills(self) -> int:
        mem = self.dirs.get("memory")
        if not mem:
            return 0
        return common.keyed(common.read(os.path.join(mem, "memory.oom_control"))).get("oom_kill", 0)

    def stats(self) -> dict:
        mem = self.dirs.get("memory", "")
        cpuacct = self.dirs.get("cpuacct", "")
        pids = self.dirs.get("pids", "")
        mstat = common.keyed(common.read(os.path.join(mem, "memory.stat"))) if mem else {}
        return {
            "memory_usage": common.read_int(os.path.join(mem, "memory.usage_in_bytes")) if mem else 0,
            "memory_limit": common.read_int(os.path.join(mem, "memory.limit_in_bytes")) if mem else -1,
            "memory_cache": mstat.get("total_inactive_file", 0),
            "cpu_usage_ns": common.read_int(os.path.join(cpuacct, "cpuacct.usage")) if cpuacct else 0,
            "pids_current": common.read_int(os.path.join(pids, "pids.current")) if pids else len(self.pids()),
            "pids_limit": common.read_int(os.path.join(pids, "pids.max"), -1) if pids else -1,
        }

    def kill_all(self) -> None:
        # a container's processes join the hierarchies in procs_files() order, so any process
        # of it is in the first one: if that is empty, so are the others
        first = self._unique_dirs()[0]
        if os.path.isdir(first) and not common.pids_in(first):
            return
        freezer = self.dirs.get("freezer")
        # freezing first stops a fork bomb from outrunning the kill loop
        if freezer and os.path.isdir(freezer):
            try:
                common.write(os.path.join(freezer, "freezer.state"), "FROZEN")
                common.kill_pids(freezer)
                common.write(os.path.join(freezer, "freezer.state"), "THAWED")
            except CgroupError:
                if os.path.isdir(freezer):  # not just removed by the monitor meanwhile
                    raise
        for d in self._unique_dirs():
            if os.path.isdir(d):
                common.kill_pids(d)

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._unique_dirs())

    def remove(self) -> None:
        for d in self._unique_dirs():
            common.rmdir_retry(d)
