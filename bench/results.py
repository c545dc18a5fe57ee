"""The benchmarks' machine-readable results and what the suite makes of them (pure: no I/O
beyond the caller's; tested in tests/unit/bench).

A benchmark run with ``--json FILE`` writes one result::

    {"name": "start_latency",
     "groups": [{"title": "container start, /bin/true", "unit": "ms", "higher_is_better": false,
                 "rows": [{"label": "stackctl run --rm (cold)", "samples": [12.1, ...]},
                          {"label": "crun run", "samples": [...]}]}],
     "values": {"failed_requests": 0},          # single figures a target may need
     "notes": ["podman: not installed (apt-get install podman)"]}

Samples are in the group's display unit. A row whose label starts with ``stackctl`` is ours;
every other row is a peer. The suite renders each group as a Markdown table (median, p95,
min–max, runs, and the ratio of each row's median to each peer's) and an SVG bar chart, and
checks the targets earlier issues set (``TARGETS``).
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field


# --- the result a benchmark writes ----------------------------------------------------------

@dataclass
class Row:
    label: str
    samples: list[float]

    @property
    def ours(self) -> bool:
        return self.label.startswith("stackctl")


@dataclass
class Group:
    title: str
    unit: str
    rows: list[Row]
    higher_is_better: bool = False

    def row(self, prefix: str) -> Row | None:
        """The first row whose label starts with ``prefix``."""
        return next((r for r in self.rows if r.label.startswith(prefix) and r.samples), None)


@dataclass
class Result:
    name: str
    groups: list[Group] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def group(self, prefix: str) -> Group | None:
        return next((g for g in self.groups if g.title.startswith(prefix)), None)

    def to_json(self) -> dict:
        return {"name": self.name, "values": self.values, "notes": self.notes,
                "groups": [{"title": g.title, "unit": g.unit,
                            "higher_is_better": g.higher_is_better,
                            "rows": [{"label": r.label, "samples": r.samples} for r in g.rows]}
                           for g in self.groups]}

    @classmethod
    def from_json(cls, data: dict) -> Result:
        return cls(name=data["name"], values=dict(data.get("values", {})),
                   notes=list(data.get("notes", [])),
                   groups=[Group(g["title"], g["unit"],
                                 [Row(r["label"], [float(x) for x in r["samples"]])
                                  for r in g["rows"]],
                                 bool(g.get("higher_is_better", False)))
                           for g in data.get("groups", [])])


def group_of(title: str, unit: str, rows: Iterable[tuple[str, Sequence[float]]], *,
             scale: float = 1.0, higher_is_better: bool = False) -> Group:
    """A group from a benchmark's ``(label, samples)`` rows (``scale`` converts the samples to
    ``unit``, e.g. 1000 for seconds shown in ms); rows without samples are left out."""
    return Group(title, unit, [Row(label, [x * scale for x in samples])
                               for label, samples in rows if samples], higher_is_better)


def write(path: str | None, result: Result) -> None:
    """Write ``result`` to ``path`` (a benchmark's ``--json``); nothing without a path."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result.to_json(), f, indent=1)


# --- statistics -----------------------------------------------------------------------------

def p95(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def ratio(row: Row, peer: Row) -> float | None:
    """Median of ``row`` over median of ``peer`` (None when the peer's median is 0)."""
    base = median(peer.samples)
    return median(row.samples) / base if base else None


def fmt(value: float) -> str:
    """A figure with three significant digits at most (1234 -> 1,234; 0.01234 -> 0.0123)."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{digits}f}"


# --- Markdown -------------------------------------------------------------------------------

def markdown_table(group: Group) -> str:
    """The group as a Markdown table: one line per row, one ratio column per peer."""
    peers = [r for r in group.rows if not r.ours and r.samples]
    u = group.unit
    head = ["tool", f"median ({u})", f"p95 ({u})", f"min–max ({u})", "runs"]
    head += [f"vs {p.label}" for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(
        ["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in group.rows:
        if not r.samples:
            continue
        label = f"**{r.label}**" if r.ours else r.label
        cells = [label, fmt(median(r.samples)), fmt(p95(r.samples)),
                 f"{fmt(min(r.samples))}–{fmt(max(r.samples))}", str(len(r.samples))]
        for p in peers:
            q = ratio(r, p)
            cells.append("—" if p is r or q is None else f"{q:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- targets --------------------------------------------------------------------------------

@dataclass
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def mark(self) -> str:
        return {True: "met", False: "**not met**", None: "not measured"}[self.met]


@dataclass
class Target:
    benchmark: str
    text: str
    check: Callable[[Result], tuple[str, bool] | None]

    def verdict(self, result: Result | None) -> Verdict:
        got = None
        if result is not None:
            try:
                got = self.check(result)
            except (KeyError, ValueError, TypeError, ZeroDivisionError):
                got = None
        if got is None:
            return Verdict(self.text, "—", None)
        return Verdict(self.text, got[0], got[1])


def _med(result: Result, group: str, row: str) -> float | None:
    g = result.group(group)
    r = g.row(row) if g else None
    return median(r.samples) if r else None


def _ratio_check(group: str, ours: str, peer: str, limit: float,
                 *, at_most: bool = True) -> Callable[[Result], tuple[str, bool] | None]:
    def check(result: Result) -> tuple[str, bool] | None:
        a, b = _med(result, group, ours), _med(result, group, peer)
        if a is None or b is None or b == 0:
            return None
        q = a / b
        return f"{q:.2f}x", q <= limit if at_most else q >= limit
    return check


def _value_check(group: str, row: str, limit: float, unit: str,
                 *, at_most: bool = True) -> Callable[[Result], tuple[str, bool] | None]:
    def check(result: Result) -> tuple[str, bool] | None:
        v = _med(result, group, row)
        if v is None:
            return None
        return f"{fmt(v)} {unit}", v <= limit if at_most else v >= limit
    return check


def _both(*checks: tuple[str, Callable[[Result], tuple[str, bool] | None]]
          ) -> Callable[[Result], tuple[str, bool] | None]:
    """All of the named ``checks`` (each measured); the figures joined with their names."""
    def check(result: Result) -> tuple[str, bool] | None:
        got = [(name, c(result)) for name, c in checks]
        if any(g is None for _n, g in got):
            return None
        return ", ".join(f"{n} {g[0]}" for n, g in got), all(g[1] for _n, g in got)
    return check


def _rolling(result: Result) -> tuple[str, bool] | None:
    faster = _ratio_check("rolling update", "stackctl", "docker service update", 1.0)(result)
    failed = result.values.get("stackctl_failed_requests")
    if faster is None or failed is None:
        return None
    return (f"{faster[0]} of swarm's time, {int(failed)} failed requests",
            faster[1] and failed == 0)


def _pull_push(kind: str) -> Callable[[Result], tuple[str, bool] | None]:
    group = f"{kind}, plain" if kind == "pull" else "push"
    return _both(("vs skopeo", _ratio_check(group, f"stackctl {kind}", "skopeo", 1.0)),
                 ("vs docker", _ratio_check(group, f"stackctl {kind}", f"docker {kind}",
                                            1.0 - 1e-9)))


def _node_loss(result: Result) -> tuple[str, bool] | None:
    """Every case (1, 10, 100 replicas on the dead node) within 10 s: the slowest counts."""
    g = result.group("node loss")
    rows = [r for r in g.rows if r.ours and r.samples] if g else []
    if not rows:
        return None
    worst = max(rows, key=lambda r: median(r.samples))
    v = median(worst.samples)
    return f"{fmt(v)} s (slowest: {worst.label.removeprefix('stackctl, ')})", v <= 10


def adapt(name: str, data: dict) -> Result:
    """A benchmark's JSON as a Result: ours as is; bench/node_loss.py's own form
    (``{"results": [{"replicas": N, "seconds": S}, ...]}``) turned into one group."""
    if "groups" in data:
        return Result.from_json(data)
    if name == "node_loss" and "results" in data:
        return Result("node_loss", [Group(
            "node loss: link cut until every replica runs on a live node", "s",
            [Row(f"stackctl, {r['replicas']} replicas", [float(r["seconds"])])
             for r in data["results"]])],
            notes=["quoted, not measured: Swarm ~15 s to mark a node down (5 s heartbeat x 3); "
                   "Nomad >= 20 s (TTL >= 10 s + heartbeat_grace 10 s)"])
    raise ValueError(f"{name}: a JSON result of unknown form")


def _config(services: int, limit: float) -> Callable[[Result], tuple[str, bool] | None]:
    """Judged on the wall clock; the CPU time beside it (what a loaded machine disturbs less)."""
    wall = _value_check(f"config, {services} services", "stackctl", limit, "ms")

    def check(result: Result) -> tuple[str, bool] | None:
        got = wall(result)
        cpu = result.values.get(f"stackctl_cpu_ms_{services}_services")
        if got is None or cpu is None:
            return got
        return f"{got[0]} wall (CPU {fmt(cpu)} ms)", got[1]
    return check


def _updown(services: int) -> Callable[[Result], tuple[str, bool] | None]:
    g = f"{services} services"
    return _both(("up", _ratio_check(f"up, {g}", "stackctl", "docker-compose", 0.5)),
                 ("down", _ratio_check(f"down, {g}", "stackctl", "docker-compose", 0.5)))


TARGETS: list[Target] = [
    Target("start_latency", "warm start within 3x of crun",
           _ratio_check("container start", "stackctl run --rm (agent up: warm)", "crun run", 3.0)),
    Target("config_speed", "`config` of 3 services <= 100 ms", _config(3, 100)),
    Target("config_speed", "`config` of 400 services <= 1 s", _config(400, 1000)),
    Target("up_down", "up/down of 3 services at most half docker-compose's time", _updown(3)),
    Target("up_down", "up/down of 10 services at most half docker-compose's time", _updown(10)),
    Target("rolling_update", "rolling update faster than swarm, no lost request", _rolling),
    Target("registry", "pull no slower than skopeo, faster than docker", _pull_push("pull")),
    Target("registry", "push no slower than skopeo, faster than docker", _pull_push("push")),
    Target("scheduler", "scheduler >= 50,000 placements/s",
           _value_check("placements", "stackctl place (100,000 fresh)", 50_000, "/s",
                        at_most=False)),
    Target("scheduler", "reconcile of 100,000 tasks <= 2 s",
           _value_check("reconcile", "stackctl reconcile", 2.0, "s")),
    Target("multinode_up", "3 nodes <= 1.3x one node",
           _ratio_check("up -d --wait", "stackctl, 3 nodes", "stackctl, 1 node", 1.3)),
    Target("ssh_request", "one SSH agent request <= 10 ms",
           _value_check("agent request", "stackctl agent.info, kept asyncssh", 10, "ms")),
    Target("overlay", "overlay >= 0.8x direct",
           _ratio_check("throughput", "stackctl overlay", "direct", 0.8, at_most=False)),
    Target("node_loss", "node-loss detection + rescheduling <= 10 s", _node_loss),
]


def verdicts(results: dict[str, Result]) -> list[Verdict]:
    return [t.verdict(results.get(t.benchmark)) for t in TARGETS]


def targets_table(vs: Sequence[Verdict]) -> str:
    lines = ["| target | measured | |", "|---|---|---|"]
    lines += [f"| {v.target} | {v.measured} | {v.mark} |" for v in vs]
    return "\n".join(lines)


# --- SVG ------------------------------------------------------------------------------------

OURS_COLOUR, PEER_COLOUR = "#2b6cb0", "#a0aec0"


def svg_chart(title: str, groups: Sequence[Group]) -> str:
    """A horizontal bar chart: one panel per group, one bar per row (its median; a whisker to
    its p95), stackctl's bars blue, the peers' grey. Plain SVG, no fonts to embed."""
    longest = max((len(r.label) for g in groups for r in g.rows), default=10)
    label_w = int(min(460, max(160, 16 + 6.8 * longest)))  # ~6.8 px a character at 12 px
    bar_w, bar_h, gap = 340, 16, 6
    width = label_w + bar_w + 90
    body: list[str] = []
    y = 34
    for g in groups:
        rows = [r for r in g.rows if r.samples]
        if not rows:
            continue
        body.append(f'<text x="8" y="{y + 12}" font-weight="bold">{_esc(g.title)} '
                    f'({_esc(g.unit)}, {"higher" if g.higher_is_better else "lower"} is '
                    f'better)</text>')
        y += 20
        top = max(max(p95(r.samples), median(r.samples)) for r in rows) or 1.0
        for r in rows:
            med, hi = median(r.samples), p95(r.samples)
            w = max(1.0, bar_w * med / top)
            wx = label_w + bar_w * hi / top
            colour = OURS_COLOUR if r.ours else PEER_COLOUR
            body.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">'
                        f'{_esc(r.label)}</text>')
            body.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                        f'fill="{colour}"><title>{_esc(r.label)}: median {fmt(med)} '
                        f'{_esc(g.unit)}, p95 {fmt(hi)}</title></rect>')
            if hi > med:
                body.append(f'<line x1="{label_w + w:.1f}" x2="{wx:.1f}" y1="{y + bar_h / 2}" '
                            f'y2="{y + bar_h / 2}" stroke="#333"/>'
                            f'<line x1="{wx:.1f}" x2="{wx:.1f}" y1="{y + 3}" '
                            f'y2="{y + bar_h - 3}" stroke="#333"/>')
            body.append(f'<text x="{max(label_w + w, wx) + 6:.1f}" y="{y + 12}">'
                        f'{fmt(med)}</text>')
            y += bar_h + gap
        y += 12
    height = y + 4
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">\n'
            f'<rect width="100%" height="100%" fill="#fff"/>\n'
            f'<text x="8" y="20" font-size="15" font-weight="bold">{_esc(title)}</text>\n'
            + "\n".join(body) + "\n</svg>\n")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


# --- bench/RESULTS.md -----------------------------------------------------------------------

def results_markdown(state: dict, benches: Sequence[tuple[str, str, str]]) -> str:
    """The page scripts/bench writes: the run (machine, date, commit, command), the targets
    met or not, then per benchmark its chart, tables and notes. ``state`` is bench/results.json
    (``run`` and ``entries`` by name); ``benches`` the (name, title, what) to show, in order."""
    run, entries = state.get("run", {}), state.get("entries", {})
    m = run.get("machine", {})
    out = ["# Benchmark results", "",
           "Written by `scripts/bench` (bench/suite.py); do not edit by hand. Every row is "
           "stackctl or a peer measured on this machine in the same run; a ratio column is "
           "the row's median over that peer's (below 1.00x: faster or smaller than the peer; "
           "for throughput, higher is better).", "",
           f"- command: `{run.get('command', 'scripts/bench')}`"
           + (f" ({_duration(run['seconds'])})" if run.get("seconds") else ""),
           f"- date: {run.get('date', '?')}; commit: {run.get('commit', '?')}",
           f"- machine: {m.get('cores', '?')} cores ({m.get('cpu', '?')}), {m.get('memory', '?')}"
           f" memory, kernel {m.get('kernel', '?')}, cgroups {m.get('cgroups', '?')}, "
           f"{m.get('os', '?')}, Python {m.get('python', '?')}"]
    for later in run.get("later", []):
        out.append(f"- re-measured since by {later}: those benchmarks show their own date")
    if run.get("peers"):
        out.append(f"- peers: {', '.join(run['peers'])}")
    for reason in run.get("missing", []):
        out.append(f"- peer {reason}")
    if run.get("load"):
        load = run["load"]
        out.append(f"- load average (1/5/15 min) at start {load[0]}/{load[1]}/{load[2]}, at end "
                   f"{load[3]}/{load[4]}/{load[5]}: the machine is shared with other work, so "
                   "wall times carry its noise; medians and ratios within one run are the "
                   "figures to read")
    if "--quick" in run.get("command", ""):
        out.append("- a **quick** run: few iterations per row (p95 of 1–5 samples is close to "
                   "the maximum). `scripts/bench` without `--quick` runs the full counts.")
    results = {name: adapt(name, e["result"]) for name, e in entries.items()
               if e.get("result")}
    out += ["", "## Targets", "",
            "The targets earlier issues set, as measured in this run:", "",
            targets_table(verdicts(results)), ""]
    for name, title, what in benches:
        e = entries.get(name)
        if e is None:
            continue
        out += [f"## {title}", "", f"{what[:1].upper()}{what[1:]}.", ""]
        meta = [f"`{e['command']}`"] if e.get("command") else []
        meta += [f"{e.get('mode', '?')} run, {e.get('date', '?')}"]
        if e.get("seconds"):
            meta.append(f"took {_duration(e['seconds'])}")
        out += ["; ".join(meta) + ".", ""]
        r = results.get(name)
        if r is None:
            out += [f"Not measured: {e.get('skipped', 'no result')}.", ""]
            if e.get("output"):
                out += ["<details><summary>its output</summary>", "", "```",
                        e["output"], "```", "", "</details>", ""]
            continue
        out += [f"![{title}](charts/{name}.svg)", ""]
        for g in r.groups:
            if g.rows:
                out += [f"**{g.title}**", "", markdown_table(g), ""]
        if r.values:
            out += ["Also measured: " + ", ".join(f"{k.replace('_', ' ')} {fmt(v)}"
                                                  for k, v in r.values.items()) + ".", ""]
        for note in r.notes:
            out.append(f"- {note}")
        if e.get("cleaned"):
            out.append(f"- left on the host and removed by the suite: {', '.join(e['cleaned'])}")
        if r.notes or e.get("cleaned"):
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


README_BEGIN = "<!-- bench:begin (written by scripts/bench) -->"
README_END = "<!-- bench:end -->"


def readme_summary(state: dict, benches: Sequence[tuple[str, str, str]]) -> str:
    """What the README shows of the latest run: when and where, the targets, the charts."""
    run, entries = state.get("run", {}), state.get("entries", {})
    m = run.get("machine", {})
    results = {name: adapt(name, e["result"]) for name, e in entries.items()
               if e.get("result")}
    out = [f"Latest run: `{run.get('command', 'scripts/bench')}`, {run.get('date', '?')}, "
           f"commit {run.get('commit', '?').split()[0]}, {m.get('cores', '?')} cores, "
           f"kernel {m.get('kernel', '?')}, cgroups {m.get('cgroups', '?').split()[0]} "
           "(a shared, loaded machine). All tables, ratios and notes: "
           "[bench/RESULTS.md](bench/RESULTS.md).", "", targets_table(verdicts(results)), ""]
    for name, title, _what in benches:
        if name in results:
            out.append(f"![{title}](bench/charts/{name}.svg)")
    return "\n".join(out)


def replace_between(text: str, begin: str, end: str, body: str) -> str | None:
    """``text`` with what lies between the ``begin`` and ``end`` marker lines replaced by
    ``body``; None when the markers are not both there, in that order."""
    i = text.find(begin)
    j = text.find(end, i + len(begin)) if i >= 0 else -1
    if i < 0 or j < 0:
        return None
    return text[:i + len(begin)] + "\n" + body.rstrip("\n") + "\n" + text[j:]
