"""A :class:`~.planner.Plan` as text — what ``stackctl plan`` prints.

Like ``terraform plan`` / ``nomad job plan`` meeting ``docker compose``: a summary line, then
the removals, then each level with what it waits for, one table per wave::

    stack shop: 1 to create, 2 to recreate, 1 to remove, 1 unchanged

    remove
      ACTION  SLOT   REASON
      remove  api.1  orphan: service api no longer in the stack

    level 2: web  (waits for db healthy)
      web: update, 2 waves of 1 (start-first, 5s between waves)
      wave 1/2
        ACTION    SLOT   REASON
        recreate  web.1  config changed: environment
"""

from __future__ import annotations

from collections.abc import Sequence

from stackctl.scheduler.planner import CONVERGE, REMOVAL, Action, Plan, ServicePlan
from stackctl.spec import units


def table(actions: Sequence[Action], indent: str, nodes: bool = False) -> list[str]:
    """ACTION SLOT [NODE] REASON, aligned."""
    head = ("ACTION", "SLOT", "NODE", "REASON") if nodes else ("ACTION", "SLOT", "REASON")
    rows = [head] + [(a.kind, a.name, a.node or "-", a.reason) if nodes else
                     (a.kind, a.name, a.reason) for a in actions]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return [(indent + "  ".join(f"{c:<{w}}" for c, w in zip(r, widths)) + "  " + r[-1])
            .rstrip() for r in rows]


def _service_lines(sp: ServicePlan, nodes: bool = False) -> list[str]:
    out: list[str] = []
    for wave in sp.waves:
        if wave.kind == CONVERGE:
            out.append(f"  {sp.name}:")
            out += table(wave.actions, "    ", nodes)
            continue
        if wave.index == 1:
            sizes = {len(w.actions) for w in sp.update_waves}
            size = max(sizes)
            delay = sp.update_waves[0].delay
            between = f", {units.format_duration(delay)} between waves" if delay else ""
            count = wave.count
            out.append(f"  {sp.name}: update, {count} wave{'s' if count != 1 else ''} of "
                       f"{size} ({wave.order}{between})")
        out.append(f"  wave {wave.index}/{wave.count}")
        out += table(wave.actions, "    ", nodes)
    if sp.keeps and sp.waves:
        out.append(f"  {sp.name}: unchanged " + ", ".join(a.name for a in sp.keeps))
    return out


def render_text(plan: Plan) -> str:
    if plan.empty:
        lines = [f"stack {plan.stack}: {plan.summary()}"]
        lines += [f"note: {n}" for n in plan.notes]
        return "\n".join(lines) + "\n"
    lines = [f"stack {plan.stack}: {plan.summary()}"]
    removal_actions = [a for w in plan.removals if w.kind == REMOVAL for a in w.actions]
    if removal_actions:
        lines += ["", "remove"] + table(removal_actions, "  ", plan.multi_node)
    for level in plan.levels:
        busy = [sp for sp in level.services if sp.waves]
        if not busy:
            continue
        names = ", ".join(sp.name for sp in level.services)
        gates = ", ".join(sorted({g.describe() for g in level.gates}))
        lines += ["", f"level {level.index}: {names}" + (f"  (waits for {gates})"
                                                          if gates else "")]
        for sp in busy:
            lines += _service_lines(sp, plan.multi_node)
    if plan.pending:
        lines += ["", "pending: no node will take these tasks"]
        for p in plan.pending:
            lines.append(f"  {p.slot}  {p.reason}")
            lines += [f"    {node}: {why}" for node, why in p.nodes]
    if plan.notes:
        lines.append("")
        lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines) + "\n"
