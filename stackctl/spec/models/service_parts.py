"""The smaller parts of a service: build, healthcheck, depends_on, logging, ulimits,
secret/config references and env_file entries."""

import re
from typing import Any, ClassVar

from stackctl.spec.models.core import Field, field_validator

from stackctl.spec import units
from stackctl.spec.models.base import (
    FileMode,
    Bool,
    Choice,
    Duration,
    Model,
    NonNegInt,
    OptsMap,
    Str,
    describe,
    fail,
    key_value_map,
)

# --------------------------------------------------------------------------------------------
# build


class Build(Model):
    """``build``: a context path (string form) or the long form."""

    area: ClassVar[str] = "build"
    extensible: ClassVar[bool] = True

    context: Str = "."
    dockerfile: Str = "Dockerfile"
    args: dict[str, str | None] = Field(default_factory=dict)
    target: Str | None = None

    @field_validator("args", mode="plain")
    @classmethod
    def _args(cls, value: Any) -> dict[str, str | None]:
        return key_value_map(value, allow_missing=True)


def build_item(value: Any) -> Any:
    if isinstance(value, str):
        return {"context": value}
    return value


# --------------------------------------------------------------------------------------------
# healthcheck

#: Docker's defaults for the timing of a health check
HEALTHCHECK_DEFAULTS = {
    "interval": 30 * units.SECOND,
    "timeout": 30 * units.SECOND,
    "start_period": 0,
    "start_interval": 5 * units.SECOND,
    "retries": 3,
}


class Healthcheck(Model):
    """``healthcheck``. ``test`` is always a list: ``["CMD", ...]`` or ``["CMD-SHELL", cmd]``;
    ``test: ["NONE"]`` is the same as ``disable: true``. Unset timings get Docker's defaults.
    ``test`` may be missing: the image's health check is then used with these timings."""

    area: ClassVar[str] = "healthcheck"
    extensible: ClassVar[bool] = True
    omit_false: ClassVar[frozenset[str]] = frozenset({"disable"})

    test: list[str] | None = None
    interval: Duration = HEALTHCHECK_DEFAULTS["interval"]
    timeout: Duration = HEALTHCHECK_DEFAULTS["timeout"]
    retries: NonNegInt = HEALTHCHECK_DEFAULTS["retries"]
    start_period: Duration = HEALTHCHECK_DEFAULTS["start_period"]
    start_interval: Duration = HEALTHCHECK_DEFAULTS["start_interval"]
    disable: Bool = False

    @field_validator("test", mode="plain")
    @classmethod
    def _test(cls, value: Any) -> list[str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            return ["CMD-SHELL", value]
        if not isinstance(value, list) or not value:
            raise fail('expected a command string or a list starting with "CMD", "CMD-SHELL" '
                       f'or "NONE", got {describe(value)}')
        items = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise fail(f"item {i + 1}: expected a string, got {describe(item)}")
            items.append(str(item))
        if items[0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise fail('a test list must start with "CMD", "CMD-SHELL" or "NONE", got '
                       f"{describe(items[0])}")
        if items[0] == "CMD-SHELL" and len(items) != 2:
            raise fail('a "CMD-SHELL" test takes exactly one command string')
        if items[0] == "CMD" and len(items) < 2:
            raise fail('a "CMD" test needs a command after "CMD"')
        return items

    def finish(self, data: dict[str, Any]) -> None:
        # `disable: true` wins over a test (typical after extends or an override file)
        if self.test == ["NONE"]:
            self.disable = True

    @property
    def enabled(self) -> bool:
        return not self.disable


# --------------------------------------------------------------------------------------------
# depends_on

CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


class Dependency(Model):
    """One ``depends_on`` entry (printed as compose-go prints it: ``restart`` only when
    true)."""

    area: ClassVar[str] = "depends_on"
    omit_false: ClassVar[frozenset[str]] = frozenset({"restart"})

    condition: Choice(*CONDITIONS) = "service_started"  # type: ignore[valid-type]
    required: Bool = True
    restart: Bool = False


def depends_on_map(value: Any) -> Any:
    """The list form (``[db, cache]``) becomes the map form with defaults."""
    if value is None:
        return {}
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise fail(f"item {i + 1}: expected a service name, got {describe(item)}")
            out[item] = {}
        return out
    if isinstance(value, dict):
        return {str(k): ({} if v is None else v) for k, v in value.items()}
    raise fail(f"expected a list of service names or a mapping, got {describe(value)}")


# --------------------------------------------------------------------------------------------
# logging, ulimits


class Logging(Model):
    area: ClassVar[str] = "logging"

    driver: Str = "json-file"
    options: OptsMap = Field(default_factory=dict)


class Ulimit(Model):
    area: ClassVar[str] = "ulimit"

    soft: int
    hard: int

    @field_validator("soft", "hard", mode="plain")
    @classmethod
    def _limit(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise fail(f"expected an integer (-1 for unlimited), got {describe(value)}")
        if isinstance(value, str) and not re.fullmatch(r"\s*[-+]?[0-9]{1,30}\s*", value):
            raise fail(f"expected an integer (-1 for unlimited), got {describe(value)}")
        number = int(value)
        if number < -1:
            raise fail(f"expected an integer (-1 for unlimited), got {describe(value)}")
        return number

    def finish(self, data: dict[str, Any]) -> None:
        if self.hard != -1 and (self.soft == -1 or self.soft > self.hard):
            raise fail(f"the soft limit {self.soft} is above the hard limit {self.hard}")


def ulimits_map(value: Any) -> Any:
    """``nofile: 1024`` means soft and hard 1024."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"expected a mapping of limits, got {describe(value)}")
    out = {}
    for key, limit in value.items():
        out[str(key)] = limit if isinstance(limit, dict) else {"soft": limit, "hard": limit}
    return out


# --------------------------------------------------------------------------------------------
# secrets and configs of a service


class FileRef(Model):
    """A service's use of a secret or config: ``source``, where (``target``), owner, mode."""

    area: ClassVar[str] = "file_ref"

    source: Str
    target: Str | None = None
    uid: Str | None = None
    gid: Str | None = None
    mode: FileMode | None = None


def file_ref_item(value: Any) -> Any:
    if isinstance(value, str):
        return {"source": value}
    return value


# --------------------------------------------------------------------------------------------
# env_file


class EnvFile(Model):
    """An ``env_file`` entry; printed as compose-go prints it (``required`` only when
    false)."""

    area: ClassVar[str] = "env_file"
    extensible: ClassVar[bool] = False  # the schema has no x-* here

    path: Str
    required: Bool = True
    format: Str | None = None

    def dump_plain(self) -> dict[str, Any]:
        out = super().dump_plain()
        if out.get("required") is True:
            del out["required"]
        return out


def env_file_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise fail(f"expected a path or a list of paths, got {describe(value)}")
    return [{"path": item} if isinstance(item, str) else item for item in value]


# --------------------------------------------------------------------------------------------
# command / entrypoint


def command_list(value: Any) -> list[str] | None:
    """A string is split as a shell would (no expansion); a list is taken as it is."""
    if value is None:
        return None
    if isinstance(value, str):
        from stackctl import shellwords  # (only string commands need it)

        try:
            return shellwords.split(value)
        except ValueError as exc:
            raise fail(f"cannot split the command {describe(value)}: {exc}") from None
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise fail(f"item {i + 1}: expected a string, got {describe(item)}")
            out.append(str(item))
        return out
    raise fail(f"expected a command string or a list of strings, got {describe(value)}")
