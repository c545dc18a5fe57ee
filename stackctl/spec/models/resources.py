"""Top-level ``volumes``, ``secrets`` and ``configs``.

A secret's value never appears in ``stackctl config`` output: inline ``content`` is printed
as :data:`REDACTED` (a secret taken from ``environment`` shows the variable's name only, which
is not the value).
"""

from typing import Any, ClassVar

from stackctl.spec.models.core import Field, SecretStr, field_serializer, field_validator

from stackctl.spec.models.base import Bool, OptsMap, Str, StrMap, TopLevel, describe, fail

REDACTED = "<redacted>"


class Volume(TopLevel):
    """A top-level named volume."""

    area: ClassVar[str] = "volume"
    extensible: ClassVar[bool] = True
    omit_false: ClassVar[frozenset[str]] = frozenset({"external"})

    name: Str | None = None
    driver: Str | None = None
    driver_opts: OptsMap = Field(default_factory=dict)
    external: Bool = False
    labels: StrMap = Field(default_factory=dict)

    def finish(self, data: dict[str, Any]) -> None:
        self.refuse_when_external(data, ("driver", "driver_opts", "labels"))

    @property
    def implemented(self) -> bool:
        """Whether stackctl can create this volume (local driver); others are accepted by
        ``config`` with a warning and refused by ``up``."""
        return self.external or self.driver in (None, "local")


class _FileObject(TopLevel):
    """What secrets and configs share: where the data comes from."""

    extensible: ClassVar[bool] = True
    omit_false: ClassVar[frozenset[str]] = frozenset({"external"})
    kind: ClassVar[str] = "object"

    name: Str | None = None
    file: Str | None = None
    environment: Str | None = None
    external: Bool = False
    labels: StrMap = Field(default_factory=dict)

    def finish(self, data: dict[str, Any]) -> None:
        sources = [k for k in ("file", "environment", "content") if data.get(k) is not None]
        if self.external:
            sources.append("external")
        if not sources and not self.driven:
            raise fail(f"a {self.kind} needs one of: file, environment, content, external"
                       + (", driver" if self.kind == "secret" else ", template_driver"))
        if len(sources) > 1:
            raise fail(f'a {self.kind} takes only one of file, environment, content and '
                       f'external; got "{sources[0]}" and "{sources[1]}"')

    @property
    def driven(self) -> bool:
        """Whether the data comes from a driver (Swarm's secret drivers, template drivers):
        valid in Compose, not carried out by stackctl."""
        return bool(self._unsupported.get("driver") or self._unsupported.get("template_driver"))

    @property
    def implemented(self) -> bool:
        """Whether stackctl can provide the data (``up`` refuses a driver-only one)."""
        return self.source_kind != "driver"

    @property
    def source_kind(self) -> str:
        for key in ("file", "environment", "content"):
            if getattr(self, key, None) is not None:
                return key
        return "external" if self.external else "driver"


class Secret(_FileObject):
    """A top-level secret. ``content`` is a :class:`~stackctl.spec.models.core.SecretStr`."""

    area: ClassVar[str] = "secret"
    kind: ClassVar[str] = "secret"

    content: SecretStr | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        if value is None or isinstance(value, SecretStr):
            return value
        if isinstance(value, (dict, list)) or isinstance(value, bool):
            raise fail(f"expected a string, got {describe(value)}")
        return str(value)

    @field_serializer("content")
    def _redact(self, value: SecretStr | None) -> str | None:
        return None if value is None else REDACTED


class Config(_FileObject):
    """A top-level config."""

    area: ClassVar[str] = "config"
    kind: ClassVar[str] = "config"

    content: Str | None = None
