"""Where each task of a stack runs: the scheduler (:mod:`stackctl.scheduler.placement`) fed
from the stack, what the nodes report and the inventory.

Stability (as Swarm): a slot whose container lives on a node that can still keep it stays
there — also when its task is recreated for an update; only new slots and slots whose node
went away, was drained or no longer meets the constraints are placed (anew). Global services
get one slot per eligible node. A task that no node will take stays *pending* with the
scheduler's reason, shown by ``plan``, ``ps`` and ``up``.

With one node (no inventory) everything lands on it, exactly as before the cluster existed:
the scheduler still runs, so a constraint that the node does not meet is explained the same
way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stackctl.scheduler.nodes import ExistingTask, HostPort, NodeSnapshot, PlacementSpec, \
    TaskToPlace
from stackctl.scheduler.observed import StackObserved
from stackctl.scheduler.placement import Unplaced, choose_removals, displaced, \
    global_nodes, place, slot_key
from stackctl.scheduler.tasks import Desired, ServiceTasks
from stackctl.spec.models import Service, Stack

SlotKey = tuple[str, str]  # (service, slot)


def placement_spec(service: Service) -> PlacementSpec:
    """What the scheduler reads of a service: constraints, spread preferences, reservations,
    host-mode published ports, max replicas per node."""
    d = service.deploy
    res = d.resources.reservations
    ports = []
    for p in service.ports:
        if p.mode == "host" and p.published:
            start, _, end = p.published.partition("-")
            for port in range(int(start), int(end or start) + 1):
                ports.append(HostPort(port, p.protocol))
    return PlacementSpec.build(
        constraints=d.placement.constraints,
        preferences=[pref.spread for pref in d.placement.preferences],
        cpus=int(res.cpus or 0), memory=int(res.memory or 0), host_ports=ports,
        max_replicas_per_node=d.placement.max_replicas_per_node or 0)


@dataclass
class Placed:
    """A stack's desired state with every task on a node (or pending, with why)."""

    desired: Desired
    nodes: dict[SlotKey, str] = field(default_factory=dict)
    pending: dict[SlotKey, Unplaced] = field(default_factory=dict)
    moved: dict[SlotKey, str] = field(default_factory=dict)  # slot -> why it left its node

    def reasons(self) -> dict[str, str]:
        """``web.3`` -> why it is pending."""
        return {f"{svc}.{slot}": u.reason for (svc, slot), u in sorted(self.pending.items())}


def assign(stack: Stack, desired: Desired, observed: StackObserved,
           nodes: Sequence[NodeSnapshot], *,
           others: Sequence[ExistingTask] = (), rebalance: bool = False) -> Placed:
    """Place ``desired`` (made with one global slot per node of ``nodes``) on ``nodes``.

    ``others``: tasks of other stacks on the nodes (they hold resources and host ports).
    ``rebalance``: place every replicated task anew, as if none ran (``up --rebalance``:
    after nodes joined; a task whose new node differs moves, as an update)."""
    specs = {name: placement_spec(stack.services[name]) for name in desired.services}
    existing: list[ExistingTask] = list(others)
    keep: dict[SlotKey, str] = {}
    for st in desired.services.values():
        svc = observed.services.get(st.name)
        for so in (svc.slots.values() if svc else ()):
            c = so.primary
            live = c.running or c.state == "created"
            existing.append(ExistingTask(
                desired.stack, st.name, c.node, so.slot, specs[st.name].cpus,
                specs[st.name].memory, specs[st.name].host_ports, active=live,
                running=c.running, version=c.config_hash or "", spec=specs[st.name],
                mode=st.mode))
            keep[(st.name, so.slot)] = c.node
    moved: dict[SlotKey, str] = {}
    if rebalance:
        for t in existing:
            if not t.is_global and keep.get((t.service, t.slot)) == t.node:
                del keep[(t.service, t.slot)]
    for d in displaced(existing, nodes):
        key = (d.task.service, d.task.slot)
        if d.replace:
            keep.pop(key, None)
            moved[key] = d.reason
    # what stays where it is holds its resources; everything else is placed
    staying = [t for t in existing if keep.get((t.service, t.slot)) == t.node or
               not t.active]
    services: dict[str, ServiceTasks] = {}
    to_place: list[TaskToPlace] = []
    for st in desired.services.values():
        spec = specs[st.name]
        tasks = st.tasks
        live = [t for t in existing if t.service == st.name and t.stack == desired.stack
                and t.active and keep.get((t.service, t.slot)) == t.node]
        if not st.is_global and st.replicas is not None and tasks and \
                len(live) > st.replicas:
            # scaling down: the most loaded nodes lose tasks first (swarmkit's order); the
            # slots that stay keep their numbers, as in Swarm
            gone = {t.slot for t in choose_removals(live, len(live) - st.replicas)}
            stay = sorted((t.slot for t in live if t.slot not in gone), key=slot_key)
            tasks = tuple(dataclasses.replace(tasks[0], slot=slot) for slot in stay)
        if st.is_global:
            has = [t.node for t in staying if t.service == st.name]
            eligible = set(global_nodes(spec, nodes, has))
            tasks = tuple(t for t in tasks if t.slot in eligible)
        services[st.name] = dataclasses.replace(st, tasks=tasks)
        for t in tasks:
            node = keep.get((st.name, t.slot))
            if node is not None and (not st.is_global or node == t.slot):
                continue
            to_place.append(TaskToPlace(desired.stack, st.name, t.slot,
                                        st.config_hash.value, spec, st.mode,
                                        t.slot if st.is_global else None))
    result = place(to_place, nodes, staying)
    where: dict[SlotKey, str] = {}
    for st in services.values():
        for t in st.tasks:
            key = (st.name, t.slot)
            if key in keep and (not st.is_global or keep[key] == t.slot):
                where[key] = keep[key]
    for task, node in result.placements.items():
        where[(task.service, task.slot)] = node
    if rebalance:
        for t in existing:
            key = (t.service, t.slot)
            if t.active and not t.is_global and where.get(key) not in (None, t.node):
                moved.setdefault(key, f"rebalanced from node {t.node}")
    pending = {(u.task.service, u.task.slot): u for u in result.unplaced.values()}
    # the tasks carry their node; pending ones are left out of what is planned
    placed_services = {
        name: dataclasses.replace(st, tasks=tuple(
            dataclasses.replace(t, node=where[(name, t.slot)]) for t in st.tasks
            if (name, t.slot) in where))
        for name, st in services.items()}
    return Placed(dataclasses.replace(desired, services=placed_services), where, pending,
                  moved)


def single_node(name: str, *, cpus: int = 0, memory: int = 0,
                labels: Mapping[str, str] | None = None) -> NodeSnapshot:
    """This host as the only node (no inventory): a ready, active manager."""
    return NodeSnapshot(name=name, role="manager", cpus=cpus, memory=memory,
                        labels=dict(labels or {}))


def split_networks(stack: Stack, where: Mapping[SlotKey, str]) -> list[str]:
    """Bridge networks (one per node) whose services' tasks are on more than one node, with
    several services on them: those tasks cannot reach each other across nodes on it — an
    overlay network would span the nodes (docs/networking.md). One warning line per such
    network; the caller leaves out stacks whose networks are overlays."""
    nodes_of: dict[str, set[str]] = {}
    for (svc, _slot), node in where.items():
        nodes_of.setdefault(svc, set()).add(node)
    out = []
    for key in sorted(stack.networks):
        members = sorted(name for name, s in stack.services.items()
                         if key in s.networks and name in nodes_of)
        spread = sorted({n for m in members for n in nodes_of[m]})
        if len(members) < 2 or len(spread) < 2:
            continue
        detail = ", ".join(f"{m} on {'/'.join(sorted(nodes_of[m]))}" for m in members)
        out.append(f"network {stack.name}_{key} spans nodes {', '.join(spread)} ({detail}) "
                   "but is a bridge network, one per node: replicas on different nodes cannot "
                   "reach each other on it; use driver: overlay (the default on a cluster) or "
                   "constrain the services that talk to each other to one node")
    return out
