"""Desired state: the tasks a stack asks for, one per replica *slot*, and their labels.

- A replicated service (``deploy.mode: replicated`` / ``replicated-job``) has slots ``1..N``
  (``web.1``, ``web.2``, ...); a job's replicas are its completions.
- A global service (``global`` / ``global-job``) has one slot per node, named after the node
  (``worker.node1``); which nodes qualify is the scheduler's business, so the caller passes
  them (on one host: the local node).
- Every task carries its service's :class:`~.confighash.ConfigHash`.

Labels every container carries (so the whole picture is rebuilt from the nodes alone):
``com.stackctl.stack``, ``.service``, ``.slot``, ``.config-hash``, ``.config-parts`` (the
per-key digests, for reasons), ``.task-id`` and, for one-off ``run`` containers,
``.oneoff=true``. We do **not** add Compose's ``com.docker.compose.*`` labels: no tool reads
them from stackctl's runtime, and our config hash is not Compose's, so a
``com.docker.compose.config-hash`` would only mislead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stackctl.scheduler.confighash import ConfigHash, service_hash
from stackctl.spec.graph import ServiceGraph
from stackctl.spec.models import Healthcheck, RestartPolicy, RollbackConfig, Stack, \
    UpdateConfig

LABEL_PREFIX = "com.stackctl."
LABEL_STACK = LABEL_PREFIX + "stack"
LABEL_SERVICE = LABEL_PREFIX + "service"
LABEL_SLOT = LABEL_PREFIX + "slot"
LABEL_CONFIG_HASH = LABEL_PREFIX + "config-hash"
LABEL_CONFIG_PARTS = LABEL_PREFIX + "config-parts"
LABEL_TASK_ID = LABEL_PREFIX + "task-id"
LABEL_ONEOFF = LABEL_PREFIX + "oneoff"
#: the TCP ports (``80,443``) a replica without a health check must listen on before it
#: counts as ready (docs/controller.md, "Readiness without a health check")
LABEL_LISTEN_PORTS = LABEL_PREFIX + "listen-ports"

LOCAL_NODE = "local"


@dataclass(frozen=True, slots=True)
class Task:
    """One desired task: a slot of a service, made from a config hash."""

    stack: str
    service: str
    slot: str  # "1", "2", ... (replicated) or the node name (global)
    config_hash: ConfigHash
    node: str | None = None  # fixed for global tasks; None: the scheduler places it

    @property
    def name(self) -> str:
        """``web.2`` — how users name a slot (``exec web.2``, ``logs``, plans)."""
        return f"{self.service}.{self.slot}"

    @property
    def index(self) -> int | None:
        return int(self.slot) if self.slot.isdigit() else None

    def container_name(self, override: str | None = None) -> str:
        """``<stack>-<service>-<slot>``, Compose's scheme; ``container_name`` wins."""
        return override or f"{self.stack}-{self.service}-{self.slot}"

    def labels(self, task_id: str, *, oneoff: bool = False) -> dict[str, str]:
        """The labels of the container made for this task."""
        out = {
            LABEL_STACK: self.stack,
            LABEL_SERVICE: self.service,
            LABEL_SLOT: self.slot,
            LABEL_CONFIG_HASH: self.config_hash.value,
            LABEL_CONFIG_PARTS: self.config_hash.parts_label(),
            LABEL_TASK_ID: task_id,
        }
        if oneoff:
            out[LABEL_ONEOFF] = "true"
        return out


@dataclass(frozen=True, slots=True)
class HealthTiming:
    """What the rolling updater needs to know of a health check (durations in ns)."""

    interval: int
    retries: int
    start_period: int

    @classmethod
    def of(cls, healthcheck: Healthcheck | None) -> HealthTiming | None:
        if healthcheck is None or not healthcheck.enabled:
            return None
        return cls(healthcheck.interval, healthcheck.retries, healthcheck.start_period)


@dataclass(frozen=True, slots=True)
class ServiceTasks:
    """The desired tasks of one service and how to roll them out."""

    name: str
    mode: str
    replicas: int | None  # None for global modes
    config_hash: ConfigHash
    tasks: tuple[Task, ...]
    update_config: UpdateConfig
    rollback_config: RollbackConfig
    restart_policy: RestartPolicy
    health: HealthTiming | None
    container_name: str | None = None
    network_mode_service: str | None = None  # `network_mode: service:x` -> "x"

    @property
    def is_job(self) -> bool:
        return self.mode.endswith("-job")

    @property
    def is_global(self) -> bool:
        return self.mode in ("global", "global-job")

    @property
    def slots(self) -> list[str]:
        return [t.slot for t in self.tasks]


@dataclass(frozen=True, slots=True)
class Desired:
    """The desired state of a stack: its tasks per service, and its dependency graph."""

    stack: str
    services: Mapping[str, ServiceTasks]
    graph: ServiceGraph
    nodes: tuple[str, ...] = field(default=(LOCAL_NODE,))

    def tasks(self) -> list[Task]:
        return [t for s in self.services.values() for t in s.tasks]


def service_tasks(stack_name: str, name: str, stack: Stack, *,
                  nodes: Sequence[str] = (LOCAL_NODE,),
                  objects: Mapping[str, str] | None = None,
                  image_id: str | None = None) -> ServiceTasks:
    service = stack.services[name]
    deploy = service.deploy
    chash = service_hash(service, objects=objects, image_id=image_id)
    if deploy.is_global:
        tasks = tuple(Task(stack_name, name, node, chash, node=node) for node in nodes)
        replicas = None
    else:
        replicas = deploy.replicas or 0
        tasks = tuple(Task(stack_name, name, str(i), chash) for i in range(1, replicas + 1))
    mode = service.network_mode or ""
    assert deploy.restart_policy is not None  # filled by Deploy.finish
    return ServiceTasks(
        name=name, mode=deploy.mode, replicas=replicas, config_hash=chash, tasks=tasks,
        update_config=deploy.update_config, rollback_config=deploy.rollback_config,
        restart_policy=deploy.restart_policy, health=HealthTiming.of(service.healthcheck),
        container_name=service.container_name,
        network_mode_service=mode[len("service:"):] if mode.startswith("service:") else None)


def desired_state(stack: Stack, graph: ServiceGraph, *, nodes: Sequence[str] = (LOCAL_NODE,),
                  objects: Mapping[str, str] | None = None,
                  image_ids: Mapping[str, str] | None = None) -> Desired:
    """The desired tasks of every service of ``stack`` (pure: contents come as digests).

    ``objects``: secret/config content digests (:func:`.confighash.object_digests`);
    ``image_ids``: service name -> the image id its reference resolved to, when known.
    """
    if not stack.name:
        raise ValueError("the stack has no name (load it with load_project)")
    image_ids = image_ids or {}
    services = {name: service_tasks(stack.name, name, stack, nodes=nodes, objects=objects,
                                    image_id=image_ids.get(name))
                for name in sorted(stack.services)}
    return Desired(stack.name, services, graph, tuple(nodes))
