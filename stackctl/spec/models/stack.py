"""The whole stack: ``name``, ``services``, ``networks``, ``volumes``, ``secrets``, ``configs``."""

from typing import Annotated, Any, ClassVar

from stackctl.spec.models.core import BeforeValidator, Field, field_validator

from stackctl.spec.models.base import Model, Str, describe, fail
from stackctl.spec.models.network import Network, null_as_empty
from stackctl.spec.models.resources import Config, Secret, Volume
from stackctl.spec.models.service import Service


def _mapping(value: Any) -> Any:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"expected a mapping, got {describe(value)}")
    return {str(k): v for k, v in value.items()}


def _null_mapping(value: Any) -> Any:
    return null_as_empty(_mapping(value))


class Stack(Model):
    area: ClassVar[str] = "stack"
    extensible: ClassVar[bool] = True
    keep_empty: ClassVar[frozenset[str]] = frozenset({"services"})

    name: Str | None = None
    services: Annotated[dict[str, Service], BeforeValidator(_mapping)] = \
        Field(default_factory=dict)
    networks: Annotated[dict[str, Network], BeforeValidator(_null_mapping)] = \
        Field(default_factory=dict)
    volumes: Annotated[dict[str, Volume], BeforeValidator(_null_mapping)] = \
        Field(default_factory=dict)
    secrets: Annotated[dict[str, Secret], BeforeValidator(_mapping)] = \
        Field(default_factory=dict)
    configs: Annotated[dict[str, Config], BeforeValidator(_mapping)] = \
        Field(default_factory=dict)
    # handled by the loader (stackctl.spec.include); `version` is obsolete. Neither is printed.
    include: Any = Field(default=None, exclude=True)
    version: Any = Field(default=None, exclude=True)

    @field_validator("services", mode="after")
    @classmethod
    def _names(cls, value: dict[str, Service]) -> dict[str, Service]:
        for name in value:
            if not Service.valid_name(name):
                raise fail(f"invalid service name {describe(name)}: use letters, digits, "
                           "'_', '.' and '-', starting with a letter or digit")
        return value
