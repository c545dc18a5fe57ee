"""cgroup v2: one directory ``<root>/<parent>/<id>`` in the unified hierarchy.

``memory.max`` (hard), ``memory.low`` (reservation), ``cpu.max`` ("quota period"), ``pids.max``;
OOM kills are counted in ``memory.events``'s ``oom_kill`` line. Controllers are enabled by
writing ``cgroup.subtree_control`` in our own directories only (``<parent>`` and any level
below it); if the host's root does not delegate a controller to us we say so and stop — the
root is not ours to change. v2 has no devices files: device access is an eBPF program attached
at create (:mod:`.devices_bpf`, Docker's allow-list; not for privileged containers).
"""

from __future__ import annotations

import os

from stackctl.runtime.containers.cgroups import common
from stackctl.runtime.containers.cgroups.detect import CgroupError

CFS_PERIOD = 100_000
WANTED = ("cpu", "memory", "pids")


class V2Cgroup:
    version = 2

    def __init__(self, root: str, parent: str, cid: str) -> None:
        self.root = root
        self.parent = parent
        self.id = cid
        self.dir = os.path.join(root, parent, cid)
        self.dirs = {"unified": self.dir}

    def _enable_controllers(self, resources: dict) -> None:
        needed = [c for c, key in (("memory", "memory"), ("cpu", "cpus"), ("pids", "pids")) if resources.get(key)]
        levels = self.parent.split("/")
        cur = self.root
        for name in levels:
            cur = os.path.join(cur, name)
            os.makedirs(cur, exist_ok=True)
            available = common.read(os.path.join(cur, "cgroup.controllers")).split()
            missing = [c for c in needed if c not in available]
            if missing:
                raise CgroupError(
                    f"cgroup controllers {', '.join(missing)} are not delegated to {cur} "
                    f"(add them to {os.path.dirname(cur)}/cgroup.subtree_control as the host's admin)"
                )
            enabled = common.read(os.path.join(cur, "cgroup.subtree_control")).split()
            todo = [c for c in WANTED if c in available and c not in enabled]
            if todo:
                common.write(os.path.join(cur, "cgroup.subtree_control"), " ".join("+" + c for c in todo))

    def create(self, resources: dict) -> None:
        made = False
        try:
            self._enable_controllers(resources)
            try:
                os.mkdir(self.dir)
                made = True
            except FileExistsError:
                pass
            self._write_limits(resources)
            if made and not resources.get("privileged"):
                self._restrict_devices()
        except (OSError, CgroupError) as e:
            if made:
                try:
                    os.rmdir(self.dir)
                except OSError:
                    pass
            if isinstance(e, CgroupError):
                raise
            raise CgroupError(f"create cgroup {e.filename}: {e.strerror}") from e

    def _restrict_devices(self) -> None:
        """Docker's device allow-list (the one v1 writes to devices.allow) as an eBPF program
        on the cgroup: without it CAP_MKNOD could open a node made for the host's disk."""
        from stackctl.runtime.containers.cgroups import devices_bpf
        from stackctl.runtime.containers.cgroups.v1 import DEVICE_ALLOW

        if not os.path.exists(os.path.join(self.dir, "cgroup.controllers")):
            return  # not a cgroup2 filesystem (the kernel makes this file): a test's fake tree
        try:
            devices_bpf.attach(self.dir, DEVICE_ALLOW)
        except devices_bpf.DeviceFilterError as e:
            raise CgroupError(f"cannot restrict device access of {self.dir}: {e.strerror}") from None

    def _write_limits(self, resources: dict) -> None:
        if resources.get("memory"):
            common.write(os.path.join(self.dir, "memory.max"), str(int(resources["memory"])))
        if resources.get("memory_reservation"):
            common.write(os.path.join(self.dir, "memory.low"), str(int(resources["memory_reservation"])))
        if resources.get("cpus"):
            quota = max(1000, int(resources["cpus"] * CFS_PERIOD))
            common.write(os.path.join(self.dir, "cpu.max"), f"{quota} {CFS_PERIOD}")
        if resources.get("pids"):
            common.write(os.path.join(self.dir, "pids.max"), str(int(resources["pids"])) if resources["pids"] > 0 else "max")

    def set_limits(self, resources: dict) -> None:
        """Write the limits of an existing cgroup (a pooled start's, once claimed)."""
        try:
            self._enable_controllers(resources)
            self._write_limits(resources)
        except OSError as e:
            raise CgroupError(f"set cgroup limits {e.filename}: {e.strerror}") from e

    def rename(self, new_id: str) -> None:
        """Rename the cgroup to ``new_id``. The unified hierarchy does not support a rename
        (cgroup2 has no rename operation): CgroupError, and the caller starts the
        container the ordinary way."""
        new = os.path.join(os.path.dirname(self.dir), new_id)
        try:
            os.rename(self.dir, new)
        except OSError as e:
            raise CgroupError(f"rename cgroup {self.dir}: {e.strerror}") from e
        self.id, self.dir = new_id, new
        self.dirs = {"unified": new}

    # --- a running container's cgroup: freeze (pause) and new limits (update) ---------------

    def freeze(self, timeout: float = 5.0) -> None:
        """``cgroup.freeze`` 1, then wait for ``frozen 1`` in ``cgroup.events``."""
        common.write(os.path.join(self.dir, "cgroup.freeze"), "1")
        common.wait_for(self.frozen, timeout, f"the tasks of {self.dir} did not freeze")

    def thaw(self) -> None:
        common.write(os.path.join(self.dir, "cgroup.freeze"), "0")

    def frozen(self) -> bool:
        return common.keyed(common.read(os.path.join(self.dir, "cgroup.events"))).get("frozen", 0) == 1

    def update(self, r: dict) -> None:
        """Write new limits into a live cgroup; ``memory_swap`` is memory + swap as Docker takes
        it (-1: unlimited), so ``memory.swap.max`` gets the difference."""
        self._enable_controllers(r)
        self._write_limits({k: v for k, v in r.items() if not (k == "cpus" and v == -1)})
        swap = r.get("memory_swap")
        if swap:
            path = os.path.join(self.dir, "memory.swap.max")
            if not os.path.exists(path):
                raise CgroupError("a swap limit needs swap accounting (memory.swap.max), which this kernel does not have")
            memory = r.get("memory") or common.read_int(os.path.join(self.dir, "memory.max"), -1)
            common.write(path, "max" if swap < 0 else str(max(0, int(swap) - max(0, int(memory)))))
        if r.get("cpus") == -1:
            common.write(os.path.join(self.dir, "cpu.max"), f"max {CFS_PERIOD}")

    def procs_files(self) -> list[str]:
        return [os.path.join(self.dir, "cgroup.procs")]

    def pids(self) -> list[int]:
        return common.pids_in(self.dir)

    def oom_kills(self) -> int:
        return common.keyed(common.read(os.path.join(self.dir, "memory.events"))).get("oom_kill", 0)

    def stats(self) -> dict:
        cpu = common.keyed(common.read(os.path.join(self.dir, "cpu.stat")))
        mstat = common.keyed(common.read(os.path.join(self.dir, "memory.stat")))
        return {
            "memory_usage": common.read_int(os.path.join(self.dir, "memory.current")),
            "memory_limit": common.read_int(os.path.join(self.dir, "memory.max"), -1),
            "memory_cache": mstat.get("inactive_file", 0),
            "cpu_usage_ns": cpu.get("usage_usec", 0) * 1000,
            "pids_current": common.read_int(os.path.join(self.dir, "pids.current")),
            "pids_limit": common.read_int(os.path.join(self.dir, "pids.max"), -1),
        }

    def kill_all(self) -> None:
        kill = os.path.join(self.dir, "cgroup.kill")
        if os.path.exists(kill):
            common.write(kill, "1")
        common.kill_pids(self.dir)

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def remove(self) -> None:
        common.rmdir_retry(self.dir)
