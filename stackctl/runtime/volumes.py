"""Named and anonymous volumes of the ``local`` driver.

A volume is a directory ``<state>/volumes/<name>/_data`` plus ``<name>/volume.json`` (driver,
labels, options, creation time, whether it is anonymous, whether it was populated). Anonymous
volumes (an image VOLUME, ``-v /path``) get a random 64-hex name.

Which containers use a volume is the container manager's knowledge; this module only stores
volumes. The manager holds its lock around every change made here.

The first mount of an empty volume onto a non-empty image directory copies that directory in
(Docker's behaviour). The execution core does the copy while it mounts the container's root
(the merged image is at hand there); the manager passes ``nocopy`` for a volume that asked for
it or that was already populated once (``populated`` here).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from stackctl.errors import ConflictError, NotFoundError, StackctlError, UsageError
from stackctl.paths import NodePaths
from stackctl.runtime.jsonfile import write_json
from stackctl.runtime.names import NAME_RE, new_id

META = "volume.json"


@dataclass
class Volume:
    name: str
    mountpoint: str
    driver: str = "local"
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    anonymous: bool = False
    populated: bool = False  # the image content was copied in (or the chance has passed)

    def inspect(self) -> dict:
        """``docker volume inspect`` shape."""
        return {
            "CreatedAt": self.created_at,
            "Driver": self.driver,
            "Labels": self.labels or None,
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": self.options or None,
            "Scope": "local",
        }


def matches(vol: Volume, filters: dict[str, list[str]], dangling: set[str] | None = None) -> bool:
    """``--filter`` for volumes: name=, label=KEY[=VALUE], dangling=true|false, driver=."""
    for key, values in filters.items():
        if key == "name":
            if not any(v in vol.name for v in values):
                return False
        elif key == "label":
            for v in values:
                k, sep, val = v.partition("=")
                if k not in vol.labels or (sep and vol.labels[k] != val):
                    return False
        elif key == "dangling":
            if dangling is None:
                continue
            want = {v.lower() in ("true", "1") for v in values}
            if (vol.name in dangling) not in want:
                return False
        elif key == "driver":
            if vol.driver not in values:
                return False
        else:
            raise UsageError(f"invalid filter {key!r} for volumes (name, label, dangling, driver)")
    return True


class VolumeStore:
    def __init__(self, paths: NodePaths) -> None:
        self.paths = paths
        self.root = paths.volumes

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _meta_path(self, name: str) -> str:
        return os.path.join(self.root, name, META)

    def _write(self, vol: Volume) -> None:
        write_json(self._meta_path(vol.name), asdict(vol))

    def exists(self, name: str) -> bool:
        return os.path.exists(self._meta_path(name))

    def get(self, name: str) -> Volume:
        try:
            with open(self._meta_path(name)) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise NotFoundError(f"no such volume: {name}") from None
        except ValueError as exc:
            raise StackctlError(f"volume {name}: corrupt metadata {self._meta_path(name)}: {exc}") from None
        data["mountpoint"] = os.path.join(self._dir(name), "_data")
        return Volume(**data)

    def list(self) -> list[Volume]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            if os.path.exists(self._meta_path(n)):
                try:
                    out.append(self.get(n))
                except StackctlError:
                    continue
        return out

    def create(self, name: str | None = None, *, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None, driver: str = "local") -> Volume:
        """Create a volume; an existing one of that name is returned as it is (like Docker)."""
        if driver != "local":
            raise UsageError(f"volume driver {driver!r} is not available: only 'local' exists")
        for k in options or {}:
            if k not in ("type", "device", "o"):
                raise UsageError(f"invalid volume option {k!r}: the local driver knows type, device, o")
        if options:
            raise UsageError("mount options for local volumes (type/device/o) are not supported yet")
        anonymous = name is None
        if name is None:
            name = new_id()
        elif not NAME_RE.match(name):
            raise UsageError(f"invalid volume name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
                             "allowed, at least two characters")
        if self.exists(name):
            return self.get(name)
        vdir = self._dir(name)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.makedirs(os.path.join(vdir, "_data"), mode=0o755, exist_ok=True)
            os.chmod(os.path.join(vdir, "_data"), 0o755)
            vol = Volume(
                name=name,
                mountpoint=os.path.join(vdir, "_data"),
                labels=dict(labels or {}),
                options=dict(options or {}),
                created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                anonymous=anonymous,
            )
            self._write(vol)
        except BaseException:
            shutil.rmtree(vdir, ignore_errors=True)
            raise
        return vol

    def remove(self, name: str, users: Iterable[str] = ()) -> None:
        """Remove a volume; ``users`` are the containers (names) that still use it."""
        vol = self.get(name)
        users = list(users)
        if users:
            raise ConflictError(
                f"volume {name} is in use by container {', '.join(users)}",
                hint="remove the container first (stackctl rm), or use `rm -v` on it",
            )
        shutil.rmtree(os.path.dirname(vol.mountpoint))

    def size(self, name: str) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.get(name).mountpoint):
            for fn in files:
                try:
                    total += os.lstat(os.path.join(dirpath, fn)).st_size
                except OSError:
                    pass
        return total

    def prune(self, used: set[str], *, all_volumes: bool = False,
              filters: dict[str, list[str]] | None = None) -> tuple[list[str], int]:
        """Remove unused volumes: anonymous ones only, or every unused one with ``all_volumes``
        (Docker 23 and later). Returns the names removed and the bytes reclaimed."""
        removed, reclaimed = [], 0
        for vol in self.list():
            if vol.name in used or not (vol.anonymous or all_volumes):
                continue
            if filters and not matches(vol, filters):
                continue
            reclaimed += self.size(vol.name)
            shutil.rmtree(self._dir(vol.name), ignore_errors=True)
            removed.append(vol.name)
        return removed, reclaimed

    def is_empty(self, name: str) -> bool:
        with os.scandir(self.get(name).mountpoint) as it:
            return next(it, None) is None

    def mark_populated(self, name: str) -> None:
        vol = self.get(name)
        if not vol.populated:
            vol.populated = True
            self._write(vol)
