"""Helpers: stack text in, desired state out; observed containers made from desired tasks."""

from __future__ import annotations

import textwrap

from stackctl.scheduler.observed import ContainerInfo, group_stack
from stackctl.scheduler.tasks import Desired, Task, desired_state
from stackctl.spec.validate import build_stack
from stackctl.spec.yamlpos import load_yaml


def desired(text: str, *, name: str = "shop", objects=None, nodes=("local",),
            image_ids=None) -> Desired:
    raw = load_yaml(textwrap.dedent(text), "stack.yml")
    stack, graph, _ = build_stack(raw, project_name=name, project_dir="/srv/shop",
                                  environ={}, profiles=())
    return desired_state(stack, graph, objects=objects, nodes=nodes, image_ids=image_ids)


def container(task: Task, *, state: str = "running", health: str | None = None,
              exit_code: int | None = None, started_at: str = "2024-01-01T00:00:00Z",
              id: str | None = None) -> ContainerInfo:
    """A container as an agent would report it for ``task``."""
    cid = id or f"{task.service}{task.slot}".ljust(64, "0")
    return ContainerInfo(id=cid, name=task.container_name(), labels=task.labels(f"t-{cid[:6]}"),
                         state=state, health=health, exit_code=exit_code,
                         started_at=started_at)


def running(d: Desired, **overrides) -> list[ContainerInfo]:
    """One running container for every desired task (an up-to-date stack)."""
    return [container(t, **overrides) for t in d.tasks()]


def observe(d: Desired, containers) -> object:
    return group_stack(containers, d.stack)
