"""``services.*.deploy``: Swarm's meaning, with the defaults Swarm really applies.

- ``mode``: replicated (default), global, replicated-job, global-job.
- ``replicas``: 1 for replicated services and jobs; not allowed with the global modes.
- ``update_config`` / ``rollback_config``: parallelism 1, delay 0s, failure_action pause,
  monitor 5s, max_failure_ratio 0, order stop-first (``docker service create`` defaults).
- ``restart_policy``: condition any (on-failure for jobs), delay 5s, max_attempts 0
  (unlimited), window 0s.
"""

from typing import Any, ClassVar

from stackctl.spec.models.core import Field, field_validator

from stackctl.spec import units
from stackctl.spec.models.base import (
    ByteSize,
    Choice,
    Duration,
    Model,
    NanoCpus,
    NonNegInt,
    Ratio,
    StrMap,
    describe,
    fail,
)

MODES = ("replicated", "global", "replicated-job", "global-job")
ENDPOINT_MODES = ("vip", "dnsrr")
RESTART_CONDITIONS = ("none", "on-failure", "any")


class UpdateConfig(Model):
    """``update_config`` (and, with fewer failure actions, ``rollback_config``)."""

    area: ClassVar[str] = "update_config"

    parallelism: NonNegInt = 1
    delay: Duration = 0
    failure_action: Choice("continue", "rollback", "pause") = "pause"  # type: ignore[valid-type]
    monitor: Duration = 5 * units.SECOND
    max_failure_ratio: Ratio = 0.0
    order: Choice("stop-first", "start-first") = "stop-first"  # type: ignore[valid-type]


class RollbackConfig(UpdateConfig):
    area: ClassVar[str] = "rollback_config"

    failure_action: Choice("continue", "pause") = "pause"  # type: ignore[valid-type]


class RestartPolicy(Model):
    area: ClassVar[str] = "restart_policy"

    condition: Choice(*RESTART_CONDITIONS) = "any"  # type: ignore[valid-type]
    delay: Duration = 5 * units.SECOND
    max_attempts: NonNegInt = 0
    window: Duration = 0


class ResourceSpec(Model):
    """Limits or reservations."""

    area: ClassVar[str] = "resources"

    cpus: NanoCpus | None = None
    memory: ByteSize | None = None
    pids: NonNegInt | None = None


class Resources(Model):
    area: ClassVar[str] = "resource_set"

    limits: ResourceSpec = Field(default_factory=ResourceSpec)
    reservations: ResourceSpec = Field(default_factory=ResourceSpec)

    def finish(self, data: dict[str, Any]) -> None:
        for key in ("cpus", "memory"):
            limit = getattr(self.limits, key)
            reserved = getattr(self.reservations, key)
            if limit is not None and reserved is not None and reserved > limit:
                raise fail(f"the reservation is larger than limits.{key}",
                           at=f"reservations.{key}")


def parse_constraint(text: str):  # -> stackctl.scheduler.constraints.Constraint
    """Parse one placement constraint as Swarm does (:mod:`stackctl.scheduler.constraints`,
    the one parser: validation here and matching in the scheduler agree); raises a
    ValueError (``ConstraintError``) with a readable message."""
    from stackctl.scheduler.constraints import parse_constraint as parse
    return parse(text)


def __getattr__(name: str):  # Constraint, imported from the scheduler when asked for
    if name == "Constraint":
        from stackctl.scheduler.constraints import Constraint
        return Constraint
    raise AttributeError(name)


class Preference(Model):
    area: ClassVar[str] = "preference"

    spread: str

    @field_validator("spread", mode="plain")
    @classmethod
    def _spread(cls, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise fail(f"expected a label such as node.labels.zone, got {describe(value)}")
        return value


class Placement(Model):
    area: ClassVar[str] = "placement"

    constraints: list[str] = Field(default_factory=list)
    preferences: list[Preference] = Field(default_factory=list)
    max_replicas_per_node: NonNegInt | None = None

    @field_validator("constraints", mode="plain")
    @classmethod
    def _constraints(cls, value: Any) -> list[str]:
        # Compose takes any strings here (compose-go's own full example has `node=foo`);
        # what Swarm cannot parse is a warning of `config` and refused by `up`
        # (stackctl.spec.validate.not_runnable), where the scheduler would need it.
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise fail(f"expected a list of constraints, got {describe(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise fail(f"item {i + 1}: expected a constraint such as "
                           f"node.labels.zone==east, got {describe(item)}")
        return list(value)

    def parsed_constraints(self) -> list:
        return [parse_constraint(c) for c in self.constraints]


class Deploy(Model):
    area: ClassVar[str] = "deploy"
    extensible: ClassVar[bool] = True

    mode: Choice(*MODES) = "replicated"  # type: ignore[valid-type]
    replicas: NonNegInt | None = None
    endpoint_mode: Choice(*ENDPOINT_MODES) = "vip"  # type: ignore[valid-type]
    labels: StrMap = Field(default_factory=dict)
    placement: Placement = Field(default_factory=Placement)
    resources: Resources = Field(default_factory=Resources)
    restart_policy: RestartPolicy | None = None
    update_config: UpdateConfig = Field(default_factory=UpdateConfig)
    rollback_config: RollbackConfig = Field(default_factory=RollbackConfig)

    def finish(self, data: dict[str, Any]) -> None:
        global_mode = self.mode in ("global", "global-job")
        if global_mode and data.get("replicas") is not None:
            raise fail(f"replicas cannot be set with mode {self.mode} (one task per node)",
                       at="replicas")
        if global_mode and self.placement.max_replicas_per_node is not None:
            raise fail(f"max_replicas_per_node cannot be set with mode {self.mode}",
                       at="placement.max_replicas_per_node")
        if not global_mode and self.replicas is None:
            self.replicas = 1
        if self.restart_policy is None:
            self.restart_policy = RestartPolicy(
                condition="on-failure" if self.is_job else "any")

    @property
    def is_job(self) -> bool:
        return self.mode.endswith("-job")

    @property
    def is_global(self) -> bool:
        return self.mode in ("global", "global-job")
