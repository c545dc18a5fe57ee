"""Where a node keeps its state. Every function that touches disk takes these as parameters;
this module only supplies the defaults (overridable by environment, for tests and for running
several nodes on one machine)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodePaths:
    state: str  # persistent: images, volumes, containers' writable layers, the agent's DB
    run: str  # volatile (tmpfs): sockets, pid files, mount points of container roots
    cgroup_parent: str  # the cgroup subtree stackctl owns, e.g. "stackctl"

    @property
    def images(self) -> str:
        return os.path.join(self.state, "images")

    @property
    def containers(self) -> str:
        return os.path.join(self.state, "containers")

    @property
    def volumes(self) -> str:
        return os.path.join(self.state, "volumes")


def default_paths(environ: dict[str, str] | None = None) -> NodePaths:
    env = os.environ if environ is None else environ
    return NodePaths(
        state=env.get("STACKCTL_STATE_DIR", "/var/lib/stackctl"),
        run=env.get("STACKCTL_RUN_DIR", "/run/stackctl"),
        cgroup_parent=env.get("STACKCTL_CGROUP_PARENT", "stackctl"),
    )
