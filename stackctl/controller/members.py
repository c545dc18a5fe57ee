"""The cluster's members as the manager keeps them: which nodes there are (the inventory the
CLI sends), how to reach each (the local node in-process, the others over SSH), and what
each is like (CPUs, memory, platform, labels, availability, status) — the scheduler's node
snapshots.

With no inventory the cluster is this node alone: a ready, active manager with this host's
CPUs and memory.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any

from stackctl.controller.cluster import Cluster
from stackctl.scheduler.nodes import NANO, NodeSnapshot


def host_facts() -> dict[str, Any]:
    """This host's capacity and platform, as ``agent.info`` reports them."""
    memory = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return {"ncpu": os.cpu_count() or 1, "mem_total": memory, "os": "linux",
            "arch": platform.machine() or "x86_64"}


def snapshot(name: str, facts: Mapping[str, Any], *, role: str = "worker",
             availability: str = "active", status: str = "ready",
             labels: Mapping[str, str] | None = None, ip: str = "",
             node_id: str = "") -> NodeSnapshot:
    return NodeSnapshot(
        name=name, id=node_id or name, hostname=name, role=role, availability=availability,
        status=status, labels=dict(labels or {}),
        os=str(facts.get("os") or "linux"), arch=str(facts.get("arch") or "x86_64"),
        ip=ip, cpus=int(facts.get("ncpu") or 0) * NANO,
        memory=int(facts.get("mem_total") or 0))


class Members:
    """The nodes of the cluster (see the module docstring)."""

    def __init__(self, cluster: Cluster, local: Any) -> None:
        self.cluster = cluster
        self.local = local
        self._facts: dict[str, dict[str, Any]] = {local.name: host_facts()}

    async def snapshots(self) -> list[NodeSnapshot]:
        return [snapshot(self.local.name, self._facts[self.local.name], role="manager")]
