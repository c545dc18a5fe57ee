"""Which cgroup version a host runs, from the text of /proc/self/mountinfo. Pure parser plus
one small reader.

- **v2** (unified): ``/sys/fs/cgroup`` (or wherever) is a ``cgroup2`` mount.
- **v1**: one ``cgroup`` mount per controller (or co-mounted, like ``cpu,cpuacct``); a
  ``cgroup2`` mount next to them (systemd's "hybrid" layout, ``/sys/fs/cgroup/unified``) holds
  no controllers we need and is ignored.
"""

from __future__ import annotations

V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "devices", "freezer")


class CgroupError(Exception):
    """A cgroup could not be created, configured or removed; the message says which file."""


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def parse_mountinfo(text: str) -> list[tuple[str, str, str, list[str]]]:
    """``(mount_point, root, fstype, super_options)`` per line of mountinfo."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if "-" not in f:
            continue
        sep = f.index("-")
        if sep < 5 or len(f) < sep + 4:
            continue
        out.append((_unescape(f[4]), _unescape(f[3]), f[sep + 1], f[sep + 3].split(",")))
    return out


def read_mounts() -> list[tuple[str, str, str, list[str]]]:
    """This process's mounts (:func:`parse_mountinfo` of ``/proc/self/mountinfo``); empty if
    it cannot be read."""
    try:
        with open("/proc/self/mountinfo") as f:
            return parse_mountinfo(f.read())
    except OSError:
        return []


def layout_from_mountinfo(text: str) -> dict:
    """``{"version": 1, "v1": {controller: mount_point}, "v2": path_or_None}`` or
    ``{"version": 2, "v1": {}, "v2": path}``. v1 wins when any v1 controller we use is mounted
    (a hybrid host); v2 otherwise."""
    v1: dict[str, str] = {}
    v2 = None
    for mnt, _root, fstype, opts in parse_mountinfo(text):
        if fstype == "cgroup2":
            if v2 is None or mnt == "/sys/fs/cgroup":
                v2 = mnt
        elif fstype == "cgroup":
            for c in opts:
                if c in V1_CONTROLLERS and c not in v1:
                    v1[c] = mnt
    if "memory" in v1 or "pids" in v1 or "cpu" in v1:
        return {"version": 1, "v1": v1, "v2": v2}
    if v2 is not None:
        return {"version": 2, "v1": {}, "v2": v2}
    return {"version": 0, "v1": {}, "v2": None}


def layout() -> dict:
    with open("/proc/self/mountinfo") as f:
        return layout_from_mountinfo(f.read())


def open_cgroup(lay: dict, parent: str, cid: str):
    """The cgroup object for container ``cid`` under ``parent`` (never outside it)."""
    if not parent or parent.startswith("/") or ".." in parent.split("/"):
        raise CgroupError(f"invalid cgroup parent {parent!r}: must be a relative path such as 'stackctl'")
    if lay["version"] == 1:
        from stackctl.runtime.containers.cgroups.v1 import V1Cgroup

        return V1Cgroup(lay["v1"], parent, cid)
    if lay["version"] == 2:
        from stackctl.runtime.containers.cgroups.v2 import V2Cgroup

        return V2Cgroup(lay["v2"], parent, cid)
    raise CgroupError("no cgroup filesystem is mounted (need cgroup v1 controllers or cgroup2 at /sys/fs/cgroup)")
