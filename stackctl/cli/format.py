"""Output shapes of the Docker-like CLI: tables, sizes, durations and status strings.

Pure functions over plain data, so the exact strings are tested without containers. The
rules follow Docker's CLI (docker/go-units and its tabwriter settings):

- tables: columns padded to ``max(width + 3, 10)``, the last column unpadded;
- sizes: decimal units with four significant digits (``4.26MB``) for images and volumes,
  binary units (``1.5MiB``) for memory in ``stats``;
- durations: ``Less than a second``, ``3 seconds``, ``About a minute``, ``5 minutes``, ...
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from stackctl.humanize import bytes_size, human_duration, human_size, ports_column  # noqa: F401 (re-exported)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Lay out rows like Docker's tabwriter (minwidth 10, padding 3, spaces)."""
    cols = len(headers)
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[:cols]):
            widths[i] = max(widths[i], len(cell))
    widths = [max(w + 3, 10) for w in widths]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(widths[i]) if i < cols - 1 else c for i, c in enumerate(cells)]
        return "".join(parts)

    return "\n".join([line(headers)] + [line(r) for r in rows])


def ago(seconds: float) -> str:
    """``2 minutes ago`` (the CREATED column)."""
    return f"{human_duration(seconds)} ago"


def status_string(status: str, exit_code: int | None, since_start: float | None,
                  since_finish: float | None, oom_killed: bool = False) -> str:
    """The STATUS column of ``docker ps``."""
    if status == "running":
        return f"Up {human_duration(since_start or 0)}"
    if status == "exited":
        return f"Exited ({exit_code if exit_code is not None else 0}) {ago(since_finish or 0)}"
    if status == "dead":
        return "Dead"
    if status == "removing":
        return "Removal In Progress"
    return "Created"


def ellipsis(s: str, width: int) -> str:
    """Docker's Ellipsis: cut to ``width`` characters, the last one ``…``."""
    if len(s) <= width:
        return s
    if width <= 1:
        return s[:width]
    return s[: width - 1] + "…"


def command_string(argv: Sequence[str]) -> str:
    """The COMMAND of ``docker ps``: path and args, args with a space in single quotes."""
    if not argv:
        return ""
    args = [f"'{a}'" if " " in a else a for a in argv[1:]]
    return " ".join([argv[0], *args])


def quote_go(s: str) -> str:
    """Go's strconv.Quote for the characters we meet: a JSON string is close enough."""
    return json.dumps(s, ensure_ascii=False)


def to_json_lines(rows: Sequence[dict[str, Any]]) -> str:
    """``--format json``: one JSON object per line, as Docker prints it."""
    return "\n".join(json.dumps(r, separators=(",", ":")) for r in rows)


def to_json_array(objs: Sequence[Any]) -> str:
    """``inspect``: an indented JSON array."""
    return json.dumps(list(objs), indent=4)


def _go_value(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def render_template(template: str, obj: dict[str, Any]) -> str:
    """A small subset of Go templates: ``{{.Field}}``, ``{{.A.B}}``, ``{{json .A}}`` and
    ``{{json .}}`` (the ``table`` prefix is handled by the caller)."""
    import re

    def lookup(path: str) -> Any:
        value: Any = obj
        for part in [p for p in path.split(".") if p]:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value

    def sub(m: re.Match[str]) -> str:
        value = lookup(m.group(2))
        if m.group(1):
            return json.dumps(value)
        return _go_value(value)

    return re.sub(r"\{\{\s*(json\s+)?(\.[\w.]*)\s*\}\}", sub, template)


def unescape_template(template: str) -> str:
    """Docker templates use ``\\t`` and ``\\n`` literally on the command line."""
    return template.replace("\\t", "\t").replace("\\n", "\n")


# --- containers -----------------------------------------------------------------------------

PS_HEADERS = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")


def _since(rfc3339: str, now_ns: int) -> float | None:
    from stackctl.runtime.logs import parse_rfc3339_ns

    if not rfc3339 or rfc3339.startswith("0001-"):
        return None
    try:
        return max(0.0, (now_ns - parse_rfc3339_ns(rfc3339)) / 1e9)
    except ValueError:
        return None


def created_at(rfc3339: str) -> str:
    """``docker ps``' CreatedAt: ``2024-05-01 12:00:00 +0000 UTC``."""
    from stackctl.runtime.logs import parse_rfc3339_ns

    try:
        secs = parse_rfc3339_ns(rfc3339) // 1_000_000_000
    except ValueError:
        return rfc3339
    import time as _t

    return _t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", _t.gmtime(secs))


def container_row(spec: Any, state: Any, now_ns: int, *, trunc: bool = True) -> dict[str, str]:
    """One container as ``docker ps --format json`` shows it (all values strings)."""
    from stackctl.runtime.names import short_id

    cmd = command_string(spec.argv)
    image = spec.image
    if image.startswith("sha256:") and trunc:
        image = short_id(image)
    mounts = []
    for m in spec.mounts:
        if m.type == "tmpfs":
            continue
        label = m.volume_name or m.source
        mounts.append(ellipsis(label, 15) if trunc else label)
    return {
        "Command": quote_go(ellipsis(cmd, 20) if trunc else cmd),
        "CreatedAt": created_at(spec.created),
        "ID": short_id(spec.id) if trunc else spec.id,
        "Image": image,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(spec.labels.items())),
        "LocalVolumes": str(sum(1 for m in spec.mounts if m.type == "volume")),
        "Mounts": ",".join(mounts),
        "Names": spec.name,
        "Networks": spec.network if spec.network in ("none", "host") else "",
        "Ports": "",
        "RunningFor": ago(_since(spec.created, now_ns) or 0),
        "Size": "",
        "State": "paused" if getattr(state, "paused", False) and state.status == "running" else state.status,
        "Status": status_string(state.status, state.exit_code, _since(state.started_at, now_ns),
                                _since(state.finished_at, now_ns), state.oom_killed)
        + (" (Paused)" if getattr(state, "paused", False) and state.status == "running" else ""),
    }


def ps_table(rows: Sequence[dict[str, str]]) -> str:
    return table(PS_HEADERS, [[r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"],
                               r["Ports"], r["Names"]] for r in rows])


STATS_HEADERS = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS")


def _field(obj: Any, *names: str) -> Any:
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return None


def stats_row(spec: Any, st: Any, prev: dict[str, tuple[int, float]], now_s: float,
              *, trunc: bool = True) -> dict[str, Any]:
    """One ``docker stats`` row from the core's sample (memory bytes and limit, CPU time in
    ns, pids). CPU % is the CPU time used since the previous sample (kept in ``prev``) over
    the wall time, as Docker computes it; the first sample marks ``_sampled``."""
    from stackctl.runtime.names import short_id

    mem = _field(st, "memory_usage", "memory", "mem_usage") or 0
    limit = _field(st, "memory_limit", "mem_limit") or 0
    cpu_ns = _field(st, "cpu_usage_ns", "cpu_ns", "cpu_usage") or 0
    pids = _field(st, "pids", "pids_current") or 0
    row: dict[str, Any] = {
        "Container": short_id(spec.id) if trunc else spec.id,
        "ID": short_id(spec.id) if trunc else spec.id,
        "Name": spec.name,
        "CPUPerc": "0.00%",
        "MemUsage": f"{bytes_size(mem)} / {bytes_size(limit)}" if st is not None else "0B / 0B",
        "MemPerc": f"{(100.0 * mem / limit) if limit else 0.0:.2f}%",
        "PIDs": str(pids),
    }
    if st is None:
        return row
    if spec.id in prev:
        cpu0, t0 = prev[spec.id]
        if now_s > t0:
            row["CPUPerc"] = f"{100.0 * (cpu_ns - cpu0) / ((now_s - t0) * 1e9):.2f}%"
    else:
        row["_sampled"] = True
    prev[spec.id] = (cpu_ns, now_s)
    return row


def stats_table(rows: Sequence[dict[str, Any]]) -> str:
    return table(STATS_HEADERS, [[r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["MemPerc"], r["PIDs"]]
                                 for r in rows])
