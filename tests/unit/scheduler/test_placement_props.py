"""Properties of place(): whatever the cluster and the tasks, it never over-reserves a node,
never breaks a constraint, a port or max_replicas_per_node, never uses a node that is not
ready and active, never leaves a task pending while a node could take it, and always ends."""

from __future__ import annotations

from collections import Counter, defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackctl.scheduler.constraints import matches_all
from stackctl.scheduler.nodes import (
    NANO,
    ExistingTask,
    HostPort,
    NodeSnapshot,
    PlacementSpec,
    TaskToPlace,
)
from stackctl.scheduler.placement import place

GIB = 1 << 30
CONSTRAINTS = ["node.labels.zone==a", "node.labels.zone!=b", "node.role==worker",
               "node.labels.rack!=x", "node.hostname!=n0"]
PREFS = [(), ("node.labels.zone",), ("node.labels.zone", "node.labels.rack"),
         ("node.labels.rack",)]


@st.composite
def clusters(draw):
    n = draw(st.integers(0, 8))
    nodes = []
    for i in range(n):
        labels = {}
        zone = draw(st.sampled_from(["a", "b", "c", None]))
        if zone:
            labels["zone"] = zone
        rack = draw(st.sampled_from(["x", "y", None]))
        if rack:
            labels["rack"] = rack
        nodes.append(NodeSnapshot(
            f"n{i}", role=draw(st.sampled_from(["manager", "worker"])),
            availability=draw(st.sampled_from(["active", "active", "active", "pause", "drain"])),
            status=draw(st.sampled_from(["ready", "ready", "ready", "down", "unknown"])),
            labels=labels, cpus=draw(st.integers(0, 4)) * NANO // 2,
            memory=draw(st.integers(0, 4)) * GIB // 2))
    return nodes


@st.composite
def specs(draw):
    return PlacementSpec.build(
        constraints=draw(st.lists(st.sampled_from(CONSTRAINTS), max_size=2, unique=True)),
        preferences=draw(st.sampled_from(PREFS)),
        cpus=draw(st.sampled_from([0, 0, NANO // 4, NANO // 2, NANO])),
        memory=draw(st.sampled_from([0, 0, GIB // 4, GIB // 2, GIB])),
        host_ports=draw(st.sampled_from([[], [], [80], [80, (53, "udp")]])),
        max_replicas_per_node=draw(st.sampled_from([0, 0, 1, 2])))


@st.composite
def scenarios(draw):
    nodes = draw(clusters())
    names = [n.name for n in nodes] + ["gone"]
    existing = []
    for i in range(draw(st.integers(0, 10))):
        existing.append(ExistingTask(
            "s", draw(st.sampled_from(["web", "db", "other"])), draw(st.sampled_from(names)),
            str(100 + i), cpus=draw(st.sampled_from([0, NANO // 4])),
            memory=draw(st.sampled_from([0, GIB // 4])),
            host_ports=tuple(draw(st.sampled_from([[], [HostPort(80)]]))),
            active=draw(st.booleans())))
    tasks = []
    for service in draw(st.lists(st.sampled_from(["web", "db", "api"]), max_size=3,
                                 unique=True)):
        spec = draw(specs())
        tasks += [TaskToPlace("s", service, str(i), "v1", spec)
                  for i in range(1, draw(st.integers(0, 12)) + 1)]
    return nodes, existing, tasks


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_placement_invariants(scenario):
    nodes, existing, tasks = scenario
    result = place(tasks, nodes, existing)
    by_name = {n.name: n for n in nodes}
    assert set(result.placements) | set(result.unplaced) == set(tasks)
    assert not set(result.placements) & set(result.unplaced)

    placed_on: dict[str, list[TaskToPlace]] = defaultdict(list)
    for task, name in result.placements.items():
        node = by_name[name]
        assert node.status == "ready" and node.availability == "active"
        assert matches_all(task.spec.constraints, node)
        placed_on[name].append(task)

    for name, placed in placed_on.items():
        node = by_name[name]
        living = [e for e in existing if e.node == name]
        for res in ("cpus", "memory"):
            new = sum(getattr(t.spec, res) for t in placed)
            if new:  # never more than the node has left
                assert sum(getattr(e, res) for e in living) + new <= getattr(node, res)
        used = {p for e in living for p in e.host_ports}
        ports = [p for t in placed for p in t.spec.host_ports]
        assert len(ports) == len(set(ports))
        assert not used & set(ports)
        per_service = Counter(t.service for t in placed)
        for t in placed:
            most = t.spec.max_replicas_per_node
            if most:
                before = sum(1 for e in living if e.active and e.service == t.service)
                assert before + per_service[t.service] <= most

    for task, why in result.unplaced.items():
        # pending only when no node would take it (in the state after the placements)
        assert all(reason is not None for reason in why.nodes.values()), why
        assert why.reason.startswith("no suitable node")
        assert sum(why.counts.values()) == len(nodes)

    # the same input, the same answer
    assert dict(place(tasks, nodes, existing).placements) == dict(result.placements)


@settings(max_examples=100, deadline=5000)
@given(clusters(), st.integers(1, 40))
def test_spread_with_room_everywhere_is_even(nodes, n):
    """With no reservations, ports, constraints or caps, a one-level spread leaves branches at
    most one task apart (among the branches that have a usable node)."""
    spec = PlacementSpec(preferences=("node.labels.zone",))
    result = place([TaskToPlace("s", "web", str(i), "v1", spec) for i in range(1, n + 1)],
                   nodes)
    usable = {n.labels.get("zone", "") for n in nodes if n.schedulable}
    if not usable:
        assert len(result.unplaced) == n
        return
    zone_of = {node.name: node.labels.get("zone", "") for node in nodes}
    counts = Counter(zone_of[name] for name in result.placements.values())
    got = [counts.get(z, 0) for z in usable]
    assert max(got) - min(got) <= 1
    assert result.complete


@st.composite
def spread_scenarios(draw):
    nodes = [NodeSnapshot(f"n{i}", labels={"zone": draw(st.sampled_from("ab")),
                                           "rack": draw(st.sampled_from("xy"))},
                          status=draw(st.sampled_from(["ready", "ready", "down"])))
             for i in range(draw(st.integers(1, 7)))]
    existing = [ExistingTask("s", "web", draw(st.sampled_from(nodes)).name, str(100 + j))
                for j in range(draw(st.integers(0, 10)))]
    prefs = draw(st.sampled_from(PREFS[1:]))
    return nodes, existing, prefs, draw(st.integers(1, 10))


@settings(max_examples=300, deadline=5000)
@given(spread_scenarios())
def test_spread_around_existing_tasks_always_finishes(scenario):
    """Spread alone never leaves a task pending while a ready node exists — also with the
    service's tasks already on nodes in any branch, down ones included — and always ends."""
    import signal

    nodes, existing, prefs, n = scenario
    spec = PlacementSpec(preferences=prefs)

    def hang(*_):
        raise AssertionError("place() did not finish within 2 s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        result = place([TaskToPlace("s", "web", str(i), "v1", spec) for i in range(1, n + 1)],
                       nodes, existing)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert result.complete == any(node.schedulable for node in nodes)
