"""Liveness and fencing tokens, from data: when a node is down (a fake clock), what the
cluster then observes, and the node's refusal of a change from an older manager."""

from __future__ import annotations

import pytest

from stackctl.controller.cluster import Cluster
from stackctl.controller.members import Members
from stackctl.errors import StackctlError
from stackctl.node.service import Fence


class Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.listed = 0

    async def list_containers(self, *, stack=None):
        self.listed += 1
        return []


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _members(tmp_path):
    local = Node("n1")
    cluster = Cluster({"n1": local}, local="n1")
    clock = Clock()
    events = []
    m = Members(cluster, local, str(tmp_path), on_event=lambda: events.append(1), clock=clock)
    m.down_after = 5.0
    m.update([{"name": "n1", "url": "local", "role": "manager"},
              {"name": "n2", "url": "ssh://root@10.0.0.2"},
              {"name": "n3", "url": "ssh://root@10.0.0.3"}], "n1")
    return m, cluster, clock, events


def test_a_node_silent_for_down_after_is_down_and_leaves_the_observed_state(tmp_path):
    m, cluster, clock, events = _members(tmp_path)
    m._watch_since = clock.now
    m._seen["n2"] = clock.now
    m.status["n2"] = "ready"
    clock.now += 4.9
    assert m.check() == []  # n3 never seen, n2 seen 4.9 s ago: not yet
    m._seen["n2"] = clock.now  # n2 answers
    clock.now += 0.2
    assert m.check() == ["n3"]
    assert cluster.down == {"n3"} and "n3" not in cluster.live()
    assert m.generation["n3"] == 1 and events
    assert [r["status"] for r in m.describe()] == ["ready", "ready", "down"]
    clock.now += 5.0
    assert m.check() == ["n2"]  # n2 stopped answering too
    assert m.generation["n2"] == 1


def test_the_term_and_generations_survive_a_manager_restart(tmp_path):
    m, cluster, clock, _ = _members(tmp_path)
    m.start_term()
    m.start_term()
    clock.now += 10
    m.check()
    again = Members(Cluster({"n1": Node("n1")}, local="n1"), Node("n1"), str(tmp_path))
    again.load()
    assert again.term == 2 and again.generation == {"n2": 1, "n3": 1}
    assert [n["name"] for n in again.entries] == ["n1", "n2", "n3"]
    mode = (tmp_path / "cluster.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_a_node_refuses_a_change_from_an_older_manager(tmp_path):
    fence = Fence(str(tmp_path))
    fence.check([1, 0])  # nothing seen yet: anything goes
    fence.raise_to([2, 1])
    fence.check([2, 1])
    fence.check([3, 0])  # a newer manager
    with pytest.raises(StackctlError, match="stale request"):
        fence.check([2, 0])  # the generation before the node went down
    with pytest.raises(StackctlError, match="stale request"):
        fence.check([1, 5])  # an older manager
    fence.raise_to([1, 9])  # never lowered
    assert Fence(str(tmp_path)).token == (2, 1)  # kept on disk
    fence.check(None)  # the manager's own node: no token
