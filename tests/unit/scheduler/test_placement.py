"""Placement: Swarm's filters and explanations, spread, global services, stability."""

from __future__ import annotations

from collections import Counter

import pytest

from stackctl.scheduler.filters import explain_counts, no_suitable_node
from stackctl.scheduler.nodes import (
    NANO,
    ExistingTask,
    HostPort,
    NodeSnapshot,
    PlacementSpec,
    Platform,
    TaskToPlace,
)
from stackctl.scheduler.placement import (
    choose_removals,
    displaced,
    explain_nodes,
    global_nodes,
    place,
)

GIB = 1 << 30
MIB = 1 << 20


def node(name, zone=None, **kw):
    labels = kw.pop("labels", {})
    if zone is not None:
        labels = {**labels, "zone": zone}
    kw.setdefault("cpus", 4 * NANO)
    kw.setdefault("memory", 8 * GIB)
    return NodeSnapshot(name, labels=labels, **kw)


def tasks(service, n, spec=None, *, start=1, stack="s", version="v1"):
    spec = spec or PlacementSpec()
    return [TaskToPlace(stack, service, str(i), version, spec) for i in range(start, start + n)]


def spread_by(result, nodes, label="zone"):
    zone_of = {n.name: n.labels.get(label, "") for n in nodes}
    return Counter(zone_of[name] for name in result.placements.values())


def per_node(result):
    return Counter(result.placements.values())


# --------------------------------------------------------------------------------------------
# Explanations


def test_explanation_joins_counts_highest_first():
    assert explain_counts({"ready": 1, "memory": 2}) == (
        "insufficient memory on 2 nodes; 1 node not available for new tasks")
    # ties keep the pipeline's order: ready before constraints
    assert explain_counts({"constraints": 1, "ready": 1}) == (
        "1 node not available for new tasks; scheduling constraints not satisfied on 1 node")
    assert no_suitable_node({}) == "no suitable node"
    assert no_suitable_node({"max-replicas": 3}) == (
        "no suitable node (max replicas per node limit exceed)")


def test_issue_example_one_drained_two_short_of_memory():
    nodes = [node("a", availability="drain"), node("b", memory=GIB), node("c", memory=GIB)]
    spec = PlacementSpec.build(memory=2 * GIB)
    result = place(tasks("db", 1, spec), nodes)
    (u,) = result.unplaced.values()
    assert u.reason == ("no suitable node (insufficient memory on 2 nodes; "
                        "1 node not available for new tasks)")
    assert u.counts == {"ready": 1, "memory": 2}
    assert u.nodes["a"] == "node is drained"
    assert u.filters == {"a": "ready", "b": "memory", "c": "memory"}
    assert u.nodes["b"] == "insufficient memory: 2GiB reserved, 1GiB of 1GiB left"
    assert result.reasons() == {"db.1": u.reason}
    assert not result.complete


# --------------------------------------------------------------------------------------------
# Filters


@pytest.mark.parametrize("kw, why", [
    ({"availability": "drain"}, "node is drained"),
    ({"availability": "pause"}, "node is paused"),
    ({"status": "down"}, "node is down"),
    ({"status": "unknown"}, "node status is unknown"),
])
def test_ready_filter(kw, why):
    nodes = [node("x", **kw), node("ok")]
    result = place(tasks("web", 3), nodes)
    assert per_node(result) == {"ok": 3}
    only = place(tasks("web", 1), [node("x", **kw)])
    (u,) = only.unplaced.values()
    assert u.reason == "no suitable node (1 node not available for new tasks)"
    assert u.nodes == {"x": why}


def test_resources_are_rechecked_after_each_assignment():
    nodes = [node("a", memory=3 * GIB), node("b", memory=2 * GIB)]
    spec = PlacementSpec.build(memory=GIB)
    result = place(tasks("web", 6, spec), nodes)
    assert per_node(result) == {"a": 3, "b": 2}
    assert sorted(t.name for t in result.unplaced) == ["web.6"]
    assert result.unplaced[next(iter(result.unplaced))].counts == {"memory": 2}


def test_cpu_reservations_and_existing_tasks_reserve():
    nodes = [node("a", cpus=2 * NANO), node("b", cpus=2 * NANO)]
    existing = [ExistingTask("s", "other", "a", "1", cpus=int(1.5 * NANO)),
                # being shut down: it no longer counts, but holds its CPUs until it stops
                ExistingTask("s", "other", "b", "2", cpus=NANO, active=False)]
    spec = PlacementSpec.build(cpus=NANO)
    result = place(tasks("web", 3, spec), nodes, existing)
    assert per_node(result) == {"b": 1}
    (u, _) = result.unplaced.values()
    assert u.reason == "no suitable node (insufficient CPU on 2 nodes)"
    assert u.nodes["a"] == "insufficient CPU: 1 reserved, 0.5 of 2 left"


def test_without_reservations_the_resource_filter_is_off():
    # a node reporting no capacity, or one already over-committed, still takes such tasks
    nodes = [node("a", cpus=0, memory=0)]
    existing = [ExistingTask("s", "x", "a", "1", memory=GIB)]
    assert per_node(place(tasks("web", 2), nodes, existing)) == {"a": 2}


def test_constraints_filter():
    nodes = [node("a", "east", role="manager"), node("b", "west"), node("c", "east")]
    spec = PlacementSpec.build(constraints=["node.labels.zone==east", "node.role!=manager"])
    result = place(tasks("web", 2, spec), nodes)
    assert per_node(result) == {"c": 2}
    spec = PlacementSpec.build(constraints=["node.labels.zone==north"])
    (u,) = place(tasks("web", 1, spec), nodes).unplaced.values()
    assert u.reason == "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    assert u.nodes["b"] == "constraint not satisfied: node.labels.zone==north"


def test_filter_order_counts_the_first_failure_only():
    # drained AND wrong zone: counted as not available (Ready runs first)
    nodes = [node("a", "west", availability="drain"), node("b", "west", memory=GIB)]
    spec = PlacementSpec.build(constraints=["node.labels.zone==east"], memory=2 * GIB)
    (u,) = place(tasks("web", 1, spec), nodes).unplaced.values()
    # b: resources run before constraints, so b counts as short of memory
    assert u.counts == {"ready": 1, "memory": 1}


def test_platform_filter_normalises_architectures():
    nodes = [node("x86", arch="x86_64"), node("arm", arch="aarch64"), node("win", os="windows")]
    amd64 = PlacementSpec.build(platforms=[Platform("linux", "amd64")])
    assert per_node(place(tasks("web", 2, amd64), nodes)) == {"x86": 2}
    arm = PlacementSpec.build(platforms=[Platform("linux", "arm64")])
    assert per_node(place(tasks("web", 2, arm), nodes)) == {"arm": 2}
    any_linux = PlacementSpec.build(platforms=[Platform("linux", "")])
    assert set(place(tasks("web", 4, any_linux), nodes).placements.values()) == {"x86", "arm"}
    riscv = PlacementSpec.build(platforms=[Platform("linux", "riscv64")])
    (u,) = place(tasks("web", 1, riscv), nodes).unplaced.values()
    assert u.reason == "no suitable node (unsupported platform on 3 nodes)"


def test_host_ports_conflict():
    nodes = [node("a"), node("b"), node("c")]
    existing = [ExistingTask("s", "other", "a", "1", host_ports=(HostPort(80),))]
    spec = PlacementSpec.build(host_ports=[80])
    result = place(tasks("web", 3, spec), nodes, existing)
    assert per_node(result) == {"b": 1, "c": 1}  # one per node: the group's own tasks too
    (u,) = result.unplaced.values()
    assert u.reason == "no suitable node (host-mode port already in use on 3 nodes)"
    assert u.nodes["a"] == "host-mode port already in use: 80/tcp"
    # the same number over another protocol does not conflict
    udp = PlacementSpec.build(host_ports=[(80, "udp")])
    assert per_node(place(tasks("dns", 1, udp), [node("a")], existing)) == {"a": 1}


def test_max_replicas_per_node():
    nodes = [node("a"), node("b")]
    existing = [ExistingTask("s", "web", "a", "1"), ExistingTask("s", "web", "a", "2"),
                ExistingTask("s", "web", "b", "9", active=False)]  # not active: not counted
    spec = PlacementSpec.build(max_replicas_per_node=2)
    result = place(tasks("web", 3, spec, start=3), nodes, existing)
    assert per_node(result) == {"b": 2}
    (u,) = result.unplaced.values()
    assert u.reason == "no suitable node (max replicas per node limit exceed)"
    assert u.nodes["a"] == ("max replicas per node reached: 2 of web here, "
                            "max_replicas_per_node is 2")


# --------------------------------------------------------------------------------------------
# Scoring: spread, then fewest of the service, then fewest in total


def test_fewest_replicas_of_the_service_then_fewest_tasks():
    nodes = [node("a"), node("b"), node("c")]
    existing = [ExistingTask("s", "web", "a", "1"),
                ExistingTask("s", "db", "b", "1"), ExistingTask("s", "db", "b", "2")]
    result = place(tasks("web", 1, start=2), nodes, existing)
    assert result.placements == {TaskToPlace("s", "web", "2", "v1"): "c"}
    # c (no task at all), then b (2 tasks, none of web) before a (1 of web)
    result = place(tasks("web", 2, start=2), nodes, existing)
    assert per_node(result) == {"b": 1, "c": 1}
    result = place(tasks("web", 3, start=2), nodes, existing)
    assert per_node(result) == {"a": 1, "b": 1, "c": 1}


def test_spread_over_zones_evens_branches_not_nodes():
    nodes = [node("a1", "a")] + [node(f"b{i}", "b") for i in range(5)]
    spec = PlacementSpec.build(preferences=["node.labels.zone"])
    result = place(tasks("web", 6, spec), nodes)
    assert spread_by(result, nodes) == {"a": 3, "b": 3}
    assert per_node(result)["a1"] == 3


def test_spread_counts_existing_tasks_and_fills_the_emptiest_zone():
    nodes = [node("a1", "a"), node("b1", "b"), node("c1", "c")]
    existing = [ExistingTask("s", "web", "a1", str(i)) for i in (1, 2, 3)]
    spec = PlacementSpec.build(preferences=["node.labels.zone"])
    result = place(tasks("web", 3, spec, start=4), nodes, existing)
    assert spread_by(result, nodes) == {"b": 2, "c": 1}  # target 2 each: a is over it


def test_nodes_without_the_label_form_their_own_branch():
    nodes = [node("a1", "a"), node("b1", "b"), node("n1"), node("n2")]
    spec = PlacementSpec.build(preferences=["node.labels.zone"])
    result = place(tasks("web", 6, spec), nodes)
    assert spread_by(result, nodes) == {"a": 2, "b": 2, "": 2}


def test_nested_preferences_spread_zones_then_racks():
    nodes = [node(f"{z}{r}{i}", z, labels={"rack": f"{z}-{r}"})
             for z in "ab" for r in "xy" for i in range(2)] + [node("a-z0", "a",
                                                                labels={"rack": "a-z"})]
    spec = PlacementSpec.build(preferences=["node.labels.zone", "node.labels.rack"])
    result = place(tasks("web", 12, spec), nodes)
    assert spread_by(result, nodes) == {"a": 6, "b": 6}
    racks = spread_by(result, nodes, "rack")
    assert racks == {"a-x": 2, "a-y": 2, "a-z": 2, "b-x": 3, "b-y": 3}


def test_a_zone_without_room_gives_its_share_to_the_others():
    nodes = [node("a1", "a", memory=GIB), node("b1", "b"), node("c1", "c")]
    spec = PlacementSpec.build(preferences=["node.labels.zone"], memory=GIB)
    result = place(tasks("web", 9, spec), nodes)
    assert spread_by(result, nodes) == {"a": 1, "b": 4, "c": 4}
    assert result.complete


def test_zone_whose_nodes_fail_the_constraints_still_gets_nothing():
    nodes = [node("a1", "a", role="manager"), node("b1", "b"), node("c1", "c")]
    spec = PlacementSpec.build(preferences=["node.labels.zone"],
                               constraints=["node.role==worker"])
    result = place(tasks("web", 4, spec), nodes)
    assert spread_by(result, nodes) == {"b": 2, "c": 2}


def test_engine_label_spread():
    nodes = [node("a", engine_labels={"dc": "x"}), node("b", engine_labels={"dc": "x"}),
             node("c", engine_labels={"dc": "y"})]
    spec = PlacementSpec.build(preferences=["engine.labels.dc"])
    result = place(tasks("web", 4, spec), nodes)
    assert per_node(result)["c"] == 2


def test_recent_failures_push_a_node_back():
    nodes = [node("a"), node("b")]
    failures = {("s", "web", "v1"): {"a": 5}}
    result = place(tasks("web", 1), nodes, failures=failures)
    assert list(result.placements.values()) == ["b"]
    few = {("s", "web", "v1"): {"a": 4}}  # below swarmkit's maxFailures: not a factor
    assert list(place(tasks("web", 1), nodes, failures=few).placements.values()) == ["a"]


def test_one_version_is_one_group_and_placement_is_deterministic():
    nodes = [node(f"n{i}", "abc"[i % 3]) for i in range(7)]
    spec = PlacementSpec.build(preferences=["node.labels.zone"], memory=GIB)
    one = place(tasks("web", 20, spec) + tasks("db", 5), nodes)
    two = place(tasks("web", 20, spec) + tasks("db", 5), nodes)
    assert dict(one.placements) == dict(two.placements)
    assert sum(1 for t in one.placements if t.service == "web") == 20


def test_no_nodes_at_all():
    (u,) = place(tasks("web", 1), []).unplaced.values()
    assert u.reason == "no suitable node"


def test_duplicate_node_names_are_refused():
    with pytest.raises(ValueError, match="listed twice"):
        place(tasks("web", 1), [node("a"), node("a")])


# --------------------------------------------------------------------------------------------
# Global services


def test_global_nodes():
    nodes = [node("a", "east"), node("b", "east", availability="drain"),
             node("c", "east", status="down"), node("d", "east", availability="pause"),
             node("e", "west"), node("f", "east", status="unknown")]
    spec = PlacementSpec.build(constraints=["node.labels.zone==east"])
    assert global_nodes(spec, nodes) == ["a", "f"]
    assert global_nodes(spec, nodes, has_task={"d"}) == ["a", "d", "f"]
    assert global_nodes(PlacementSpec(), nodes) == ["a", "e", "f"]


def test_global_tasks_are_checked_on_their_node():
    nodes = [node("a"), node("b", memory=GIB), node("f", status="unknown")]
    spec = PlacementSpec.build(memory=2 * GIB)
    names = global_nodes(spec, nodes)
    todo = [TaskToPlace("s", "agent", n, "v1", spec, mode="global", node=n) for n in names]
    todo.append(TaskToPlace("s", "agent", "gone", "v1", spec, mode="global", node="gone"))
    result = place(todo, nodes)
    assert {t.slot: n for t, n in result.placements.items()} == {"a": "a"}
    reasons = result.reasons()
    assert reasons == {
        "agent.b": "no suitable node (insufficient memory on 1 node)",
        "agent.f": "no suitable node (1 node not available for new tasks)",
        "agent.gone": "no suitable node (node gone is not in the inventory)",
    }
    # what a global task reserves counts for the replicated tasks placed after it
    both = place(todo[:1] + tasks("web", 3, PlacementSpec.build(memory=3 * GIB)), nodes)
    assert per_node(both) == {"a": 3}  # 8 GiB: the agent's 2 + two webs of 3; b has 1 GiB
    assert len(both.unplaced) == 1


# --------------------------------------------------------------------------------------------
# Stability, scale-down, lost nodes


def test_unchanged_stack_places_nothing_and_scale_up_fills_around_existing():
    nodes = [node("a", "x"), node("b", "y"), node("c", "z")]
    spec = PlacementSpec.build(preferences=["node.labels.zone"])
    first = place(tasks("web", 3, spec), nodes)
    existing = [ExistingTask(t.stack, t.service, n, t.slot) for t, n in first.placements.items()]
    assert place([], nodes, existing).placements == {}
    more = place(tasks("web", 3, spec, start=4), nodes, existing)
    assert per_node(more) == {"a": 1, "b": 1, "c": 1}


def test_choose_removals_takes_from_the_most_loaded_node_first():
    live = [ExistingTask("s", "web", "a", "1"), ExistingTask("s", "web", "a", "2"),
            ExistingTask("s", "web", "a", "3"), ExistingTask("s", "web", "b", "4"),
            ExistingTask("s", "web", "c", "5")]
    assert [t.slot for t in choose_removals(live, 2)] == ["3", "2"]
    assert [t.slot for t in choose_removals(live, 3)] == ["3", "2", "5"]
    assert choose_removals(live, 0) == []
    assert len(choose_removals(live, 9)) == 5


def test_choose_removals_prefers_tasks_not_running_then_high_slots():
    live = [ExistingTask("s", "web", "a", "1"), ExistingTask("s", "web", "b", "2"),
            ExistingTask("s", "web", "c", "3", running=False), ExistingTask("s", "web", "d", "4")]
    assert [t.slot for t in choose_removals(live, 1)] == ["3"]
    assert [t.slot for t in choose_removals(live, 2)] == ["3", "4"]
    # the nth copy on a node weighs more than running: a's second copy goes first
    live.append(ExistingTask("s", "web", "a", "5"))
    assert [t.slot for t in choose_removals(live, 1)] == ["5"]


def test_displaced_tasks():
    nodes = [node("up", "east"), node("down", status="down"), node("drained",
             availability="drain"), node("paused", availability="pause"), node("west", "west")]
    east = PlacementSpec.build(constraints=["node.labels.zone==east"])
    live = [ExistingTask("s", "web", "up", "1", spec=east),
            ExistingTask("s", "web", "down", "2"),
            ExistingTask("s", "web", "drained", "3"),
            ExistingTask("s", "web", "paused", "4"),
            ExistingTask("s", "web", "west", "5", spec=east),
            ExistingTask("s", "web", "lost", "6"),
            ExistingTask("s", "web", "down", "7", active=False),
            ExistingTask("s", "agent", "down", "down", mode="global"),
            ExistingTask("s", "agent", "drained", "drained", mode="global")]
    got = [(d.task.name, d.reason, d.replace) for d in displaced(live, nodes)]
    assert got == [
        ("web.2", "node down is down", True),
        ("web.3", "node drained is drained", True),
        ("web.5", "node west no longer meets the constraints (node.labels.zone==east)", True),
        ("web.6", "node lost is gone", True),
        ("agent.drained", "node drained is drained", False),
    ]


def test_explain_nodes_for_plan():
    nodes = [node("a", "east"), node("b", "west"), node("c", "east", availability="pause")]
    spec = PlacementSpec.build(constraints=["node.labels.zone==east"])
    assert explain_nodes(TaskToPlace("s", "web", "1", "v1", spec), nodes) == {
        "a": None,
        "b": "constraint not satisfied: node.labels.zone==east",
        "c": "node is paused",
    }


def test_nested_spread_never_places_more_than_a_subtree_owes():
    """Regression: Swarm asks a branch for its share without capping it at what the subtree
    still owes; a nested subtree could then overshoot, find a negative share for every branch
    and never finish. Here zone b has tasks only on a down node."""
    nodes = [node("n0", "b", labels={"rack": "x"}, status="down"),
             node("n1", "a", labels={"rack": "x"}), node("n2", "a", labels={"rack": "x"}),
             node("n3", "a", labels={"rack": "y"})]
    existing = [ExistingTask("s", "web", n, str(100 + i))
                for i, n in enumerate(["n1", "n0", "n2", "n1", "n0", "n2"])]
    spec = PlacementSpec.build(preferences=["node.labels.zone", "node.labels.rack"])
    result = place(tasks("web", 4, spec), nodes, existing)
    assert result.complete
    assert per_node(result) == {"n3": 4}  # rack y catches up with rack x's 4


def test_placement_spec_build_parses_and_refuses():
    from stackctl.scheduler.constraints import ConstraintError

    spec = PlacementSpec.build(constraints=["node.role == worker"], preferences=["Node.Labels.z"],
                               host_ports=[80, (53, "udp"), HostPort(443)],
                               max_replicas_per_node=None)
    assert [str(c) for c in spec.constraints] == ["node.role == worker"]
    assert spec.preferences == ("node.labels.z",)
    assert spec.host_ports == (HostPort(80), HostPort(53, "udp"), HostPort(443))
    assert spec.max_replicas_per_node == 0
    with pytest.raises(ConstraintError, match="did you mean node.role==worker"):
        PlacementSpec.build(constraints=["node.role=worker"])
    with pytest.raises(ConstraintError, match="spread over node.labels"):
        PlacementSpec.build(preferences=["node.hostname"])
