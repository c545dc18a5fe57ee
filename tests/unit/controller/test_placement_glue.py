"""The controller's placement step (stackctl/controller/placement.py), from data: which
node each slot of a stack goes to, what stays, what is pending and why."""

from __future__ import annotations

from stackctl.controller.placement import assign, split_networks
from stackctl.scheduler.nodes import NANO, NodeSnapshot
from stackctl.scheduler.observed import ContainerInfo, group_stack
from stackctl.scheduler.tasks import desired_state
from stackctl.spec.validate import build_stack

NODES = [NodeSnapshot("n1", labels={"zone": "a"}, cpus=2 * NANO, memory=2 << 30),
         NodeSnapshot("n2", labels={"zone": "b"}, cpus=2 * NANO, memory=2 << 30),
         NodeSnapshot("n3", labels={"zone": "b"}, cpus=2 * NANO, memory=2 << 30)]


def _stack(services: dict):
    stack, graph, _ = build_stack({"name": "s", "services": services}, project_name="s",
                                  project_dir="/", environ={}, profiles=("*",))
    return stack, graph


def _desired(stack, graph, nodes=NODES):
    return desired_state(stack, graph, nodes=[n.name for n in nodes])


def _running(slots: dict[str, str], service: str = "web", config_hash: str = "x"):
    return [ContainerInfo(id=f"{service}{slot}", name=f"s-{service}-{slot}", state="running",
                          node=node, labels={"com.stackctl.stack": "s",
                                             "com.stackctl.service": service,
                                             "com.stackctl.slot": slot,
                                             "com.stackctl.config-hash": config_hash})
            for slot, node in slots.items()]


def test_spread_and_constraint_and_stability():
    stack, graph = _stack({
        "web": {"image": "bb", "deploy": {"replicas": 4, "placement": {
            "preferences": [{"spread": "node.labels.zone"}]}}},
        "db": {"image": "bb", "deploy": {"replicas": 2, "placement": {
            "constraints": ["node.labels.zone == b"]}}}})
    placed = assign(stack, _desired(stack, graph), group_stack([], "s"), NODES)
    zone = {"n1": "a", "n2": "b", "n3": "b"}
    web = sorted(zone[placed.nodes[("web", str(i))]] for i in range(1, 5))
    assert web == ["a", "a", "b", "b"]
    assert {placed.nodes[("db", "1")], placed.nodes[("db", "2")]} == {"n2", "n3"}
    assert all(t.node for st in placed.desired.services.values() for t in st.tasks)
    # a slot whose container is on a node that can keep it stays there (even if the scheduler
    # would now choose otherwise)
    observed = group_stack(_running({"1": "n3", "2": "n3", "3": "n3", "4": "n3"}), "s")
    again = assign(stack, _desired(stack, graph), observed, NODES)
    assert all(again.nodes[("web", str(i))] == "n3" for i in range(1, 5))


def test_pending_with_reasons_and_moving_off_a_drained_node():
    stack, graph = _stack({"db": {"image": "bb", "deploy": {"replicas": 1, "placement": {
        "constraints": ["node.labels.zone == mars"]}}}})
    placed = assign(stack, _desired(stack, graph), group_stack([], "s"), NODES)
    assert placed.reasons() == {"db.1": "no suitable node (scheduling constraints not "
                                         "satisfied on 3 nodes)"}
    assert placed.desired.services["db"].tasks == ()

    stack, graph = _stack({"web": {"image": "bb", "deploy": {"replicas": 1}}})
    drained = [NODES[0], NodeSnapshot("n2", availability="drain", cpus=NANO, memory=1 << 30)]
    placed = assign(stack, _desired(stack, graph, drained),
                    group_stack(_running({"1": "n2"}), "s"), drained)
    assert placed.nodes[("web", "1")] == "n1"
    assert placed.moved == {("web", "1"): "node n2 is drained"}


def test_scaling_down_takes_from_the_most_loaded_node_first():
    stack, graph = _stack({"web": {"image": "bb", "deploy": {"replicas": 2}}})
    observed = group_stack(_running({"1": "n1", "2": "n2", "3": "n2"}), "s")
    placed = assign(stack, _desired(stack, graph), observed, NODES)
    slots = {t.slot: t.node for t in placed.desired.services["web"].tasks}
    assert sorted(slots.values()) == ["n1", "n2"]  # n2 had two: it loses one
    assert "1" in slots


def test_global_services_get_one_slot_per_eligible_node():
    stack, graph = _stack({"agent": {"image": "bb", "deploy": {"mode": "global", "placement": {
        "constraints": ["node.labels.zone == b"]}}}})
    placed = assign(stack, _desired(stack, graph), group_stack([], "s"), NODES)
    assert sorted(t.slot for t in placed.desired.services["agent"].tasks) == ["n2", "n3"]
    assert placed.nodes == {("agent", "n2"): "n2", ("agent", "n3"): "n3"}


def test_a_network_split_over_nodes_is_named():
    stack, _ = _stack({"a": {"image": "bb"}, "b": {"image": "bb"}})
    assert split_networks(stack, {("a", "1"): "n1", ("b", "1"): "n1"}) == []
    (line,) = split_networks(stack, {("a", "1"): "n1", ("b", "1"): "n2"})
    assert "s_default spans nodes n1, n2" in line and "a on n1" in line


def test_rebalance_spreads_replicas_again_and_says_which_move():
    stack, graph = _stack({"web": {"image": "bb", "deploy": {"replicas": 3}}})
    observed = group_stack(_running({"1": "n1", "2": "n1", "3": "n1"}), "s")
    kept = assign(stack, _desired(stack, graph), observed, NODES)
    assert set(kept.nodes.values()) == {"n1"} and not kept.moved
    spread = assign(stack, _desired(stack, graph), observed, NODES, rebalance=True)
    assert sorted(spread.nodes.values()) == ["n1", "n2", "n3"]
    assert len(spread.moved) == 2
    assert all(why == "rebalanced from node n1" for why in spread.moved.values())
