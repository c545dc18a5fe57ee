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


def table(actions: Sequence[Action], indent: str) -> list[str]:
    rows = [("ACTION", "SLOT", "REASON")] + [(a.kind, a.name, a.reason) for a in actions]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return [f"{indent}{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}".rstrip() for r in rows]


def _service_lines(sp: ServicePlan) -> list[str]:
    out: list[str] = []
    for wave in sp.waves:
        if wave.kind == CONVERGE:
            out.append(f"  {sp.name}:")
            out += table(wave.actions, "    ")
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
        out += table(wave.actions, "    ")
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
        lines += ["", "remove"] + table(removal_actions, "  ")
    for level in plan.levels:
        busy = [sp for sp in level.services if sp.waves]
        if not busy:
            continue
        names = ", ".join(sp.name for sp in level.services)
        gates = ", ".join(sorted({g.describe() for g in level.gates}))
        lines += ["", f"level {level.index}: {names}" + (f"  (waits for {gates})"
                                                          if gates else "")]
        for sp in busy:
            lines += _service_lines(sp)
    if plan.notes:
        lines.append("")
        lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines) + "\n"
