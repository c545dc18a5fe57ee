"""Service volumes (``services.*.volumes``): named volumes, bind mounts and tmpfs.

Short syntax ``[SOURCE:]TARGET[:MODE]``: a SOURCE starting with ``/``, ``.`` or ``~`` is a bind
mount (created on the host if missing, as Compose does for the short syntax), any other SOURCE
names a volume, no SOURCE is an anonymous volume. MODE is a comma list of ``ro``/``rw``,
``nocopy``, ``z``/``Z`` and bind propagation modes.
"""

from typing import Annotated, Any, ClassVar

from stackctl.spec import units
from stackctl.spec.models.core import PlainSerializer, PlainValidator, field_validator

from stackctl.spec.models.base import (
    FileMode,
    Bool,
    Choice,
    Model,
    Str,
    describe,
    fail,
)

MOUNT_TYPES = ("volume", "bind", "tmpfs", "npipe", "cluster", "image")
PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")


def is_host_path(source: str) -> bool:
    """Compose's rule: a path (bind mount) rather than a volume name."""
    return source.startswith(("/", ".", "~")) or (len(source) > 1 and source[1] == ":")


class BindOptions(Model):
    area: ClassVar[str] = "bind"
    omit_false: ClassVar[frozenset[str]] = frozenset({"create_host_path"})

    propagation: Choice(*PROPAGATIONS) | None = None  # type: ignore[valid-type]
    create_host_path: Bool = False
    selinux: Choice("z", "Z") | None = None  # type: ignore[valid-type]


class VolumeOptions(Model):
    area: ClassVar[str] = "volume_options"
    omit_false: ClassVar[frozenset[str]] = frozenset({"nocopy"})

    nocopy: Bool = False
    subpath: Str | None = None


def _tmpfs_size(value: Any) -> int:
    """An integer number of bytes, or a size string (``64m``); not a fractional number."""
    if isinstance(value, float) and not value.is_integer():
        raise fail(f"expected an integer number of bytes or a size such as 64m, "
                   f"got {describe(value)}")
    try:
        return units.parse_bytes(value)
    except ValueError as exc:
        raise fail(str(exc)) from None


class TmpfsOptions(Model):
    area: ClassVar[str] = "tmpfs_options"

    size: Annotated[int, PlainValidator(_tmpfs_size),
                    PlainSerializer(units.format_bytes)] | None = None
    mode: FileMode | None = None


class Mount(Model):
    """One service volume, long syntax."""

    area: ClassVar[str] = "mount"
    omit_false: ClassVar[frozenset[str]] = frozenset({"read_only"})

    type: Choice(*MOUNT_TYPES)  # type: ignore[valid-type]
    source: Str | None = None
    target: Str
    read_only: Bool = False
    bind: BindOptions | None = None
    volume: VolumeOptions | None = None
    tmpfs: TmpfsOptions | None = None

    @field_validator("target", mode="after")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise fail(f"expected an absolute path in the container, got {describe(value)}")
        return value

    def finish(self, data: dict[str, Any]) -> None:
        if self.type == "tmpfs" and self.source:
            raise fail("a tmpfs mount takes no source")
        if self.type == "bind" and not self.source:
            raise fail("a bind mount needs a source (a path on the host)")
        wrong = {"bind": self.type != "bind", "volume": self.type != "volume",
                 "tmpfs": self.type != "tmpfs"}
        for key, bad in wrong.items():
            if bad and getattr(self, key) is not None:
                raise fail(f"{key} options given for a mount of type {self.type}")


def parse_mount_short(value: Any) -> dict[str, Any]:
    """The long syntax of ``[SOURCE:]TARGET[:MODE]``."""
    if not isinstance(value, str):
        raise fail(f'expected a volume spec such as "data:/var/lib/data" or a mapping, '
                   f"got {describe(value)}")
    parts = value.split(":")
    if len(parts) > 3 or not all(parts[:2]) or (len(parts) == 3 and not parts[2]):
        raise fail(f'invalid volume spec {describe(value)}: expected [SOURCE:]TARGET[:MODE]')
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    source, target = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    out: dict[str, Any] = {"source": source, "target": target}
    bind: dict[str, Any] = {}
    volume: dict[str, Any] = {}
    for mode in modes:
        if mode == "ro":
            out["read_only"] = True
        elif mode == "rw":
            out["read_only"] = False
        elif mode == "nocopy":
            volume["nocopy"] = True
        elif mode in ("z", "Z"):
            bind["selinux"] = mode
        elif mode in PROPAGATIONS:
            bind["propagation"] = mode
        else:
            raise fail(f"invalid volume mode {describe(mode)} in {describe(value)}: expected "
                       "ro, rw, nocopy, z, Z or a propagation mode (rprivate, shared, ...)")
    if is_host_path(source):
        out["type"] = "bind"
        bind["create_host_path"] = True
        out["bind"] = bind
        if volume:
            raise fail(f"nocopy applies to volumes, not to the bind mount {describe(value)}")
    else:
        out["type"] = "volume"
        if bind:
            raise fail(f"z, Z and propagation modes apply to bind mounts, not to the volume "
                       f"{describe(value)}")
        if volume:
            out["volume"] = volume
    return out


def mount_item(value: Any) -> Any:
    if isinstance(value, dict):
        return value
    return parse_mount_short(value)
