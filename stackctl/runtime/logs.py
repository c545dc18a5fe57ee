"""Reading a container's log, kept by its monitor in Docker's json-file format: one JSON object
per line, ``{"log": "text\\n", "stream": "stdout"|"stderr", "time": "<RFC 3339, ns>"}``.

The parsing and selection (``--tail``, ``--since``, ``--until``) are pure and tested from
recorded files; only :func:`read_log` and :func:`follow_log` touch the file.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from stackctl.errors import UsageError

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class LogEntry:
    time_ns: int
    stream: str  # "stdout" | "stderr"
    text: str


# --- time ---------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_rfc3339_ns(s: str, *, local_offset_s: int = 0) -> int:
    """``2024-05-01T12:00:00.123456789Z`` -> ns since the epoch. A missing zone means
    ``local_offset_s`` east of UTC (Docker treats such --since values as local time)."""
    m = _RFC3339.match(s.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {s!r}")
    y, mo, d, hh, mm, ss, frac, tz = m.groups()
    import calendar  # not at import: calendar loads locale and datetime (~2 ms on `run`)

    secs = calendar.timegm((int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0)))
    ns = int((frac or "").ljust(9, "0")) if frac else 0
    if tz in (None, ""):
        secs -= local_offset_s
    elif tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        secs -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return secs * NS + ns


def format_rfc3339_ns(ns: int) -> str:
    """Fixed nine fraction digits, UTC, as ``docker logs -t`` prints."""
    secs, frac = divmod(ns, NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def format_rfc3339(ns: int) -> str:
    """RFC 3339 with nanoseconds, trailing zeros trimmed (Docker's ``Created`` fields)."""
    secs, frac = divmod(ns, NS)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return base + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


_DURATION_PART = re.compile(r"([0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": NS, "m": 60 * NS, "h": 3600 * NS}


def parse_duration_ns(s: str) -> int:
    """Go's ParseDuration: ``10m``, ``1h30m``, ``1.5s``."""
    pos, total = 0, 0
    s = s.strip()
    if not s:
        raise ValueError("empty duration")
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"not a duration: {s!r}")
        total += int(float(m.group(1)) * _UNIT_NS[m.group(2)])
        pos = m.end()
    if total > 2**63 - 1:  # Go's int64 nanoseconds
        raise ValueError(f"duration out of range: {s!r}")
    return total


def parse_time_arg(value: str, now_ns: int, flag: str = "--since", local_offset_s: int = 0) -> int:
    """A ``--since``/``--until`` value: RFC 3339, a unix time (``1700000000[.123]``), or a
    duration meaning that long before now (``10m``)."""
    v = value.strip()
    if re.fullmatch(r"[0-9]{1,19}(\.[0-9]{1,9})?", v):
        whole, _, frac = v.partition(".")
        return int(whole) * NS + (int(frac.ljust(9, "0")) if frac else 0)
    try:
        return now_ns - parse_duration_ns(v)
    except ValueError:
        pass
    try:
        return parse_rfc3339_ns(v, local_offset_s=local_offset_s)
    except ValueError:
        raise UsageError(
            f"invalid value for {flag}: {value!r}",
            hint="use an RFC 3339 time (2024-05-01T12:00:00Z), a unix time, or a duration (10m)",
        ) from None


def parse_tail(value: str | int | None) -> int | None:
    """``--tail``: a count, or ``all`` (None)."""
    if value is None or value == "all":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"invalid value for --tail: {value!r} (a number or 'all')") from None
    return None if n < 0 else n


# --- lines --------------------------------------------------------------------------------

def parse_line(line: bytes | str) -> LogEntry | None:
    """One json-file line; a torn or foreign line gives None."""
    try:
        obj = json.loads(line)
        return LogEntry(parse_rfc3339_ns(obj["time"]), obj.get("stream", "stdout"), obj["log"])
    except (ValueError, KeyError, TypeError):
        return None


def select(entries: list[LogEntry], *, tail: int | None = None, since_ns: int | None = None,
           until_ns: int | None = None) -> list[LogEntry]:
    """Entries in [since, until], then the last ``tail`` of them (Docker's order of filters)."""
    out = [e for e in entries
           if (since_ns is None or e.time_ns >= since_ns) and (until_ns is None or e.time_ns <= until_ns)]
    if tail is not None:
        out = out[len(out) - tail:] if tail else []
    return out


def render(entry: LogEntry, timestamps: bool = False) -> str:
    return f"{format_rfc3339_ns(entry.time_ns)} {entry.text}" if timestamps else entry.text


# --- the file -----------------------------------------------------------------------------

def _last_lines(f, n: int, block: int = 65536) -> list[bytes]:
    """The last ``n`` complete lines of an open binary file, reading backwards."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    data = b""
    pos = end
    while pos > 0 and data.count(b"\n") <= n:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines[-n:] if n else []


def read_log(path: str, *, tail: int | None = None, since_ns: int | None = None,
             until_ns: int | None = None) -> tuple[list[LogEntry], int]:
    """The selected entries and the file offset they end at (where a follower carries on)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return [], 0
    with f:
        if tail is not None and since_ns is None and until_ns is None:
            raw = _last_lines(f, tail)
            f.seek(0, os.SEEK_END)
            offset = f.tell()
            return [e for e in map(parse_line, raw) if e is not None][-tail:] if tail else [], offset
        data = f.read()
    # Stop at the last complete line; a line still being written is the follower's.
    cut = data.rfind(b"\n") + 1
    entries = [e for e in map(parse_line, data[:cut].splitlines()) if e is not None]
    return select(entries, tail=tail, since_ns=since_ns, until_ns=until_ns), cut


def follow_log(path: str, offset: int, wait_stopped: Callable[[float], bool], *,
               until_ns: int | None = None, poll: float = 0.05) -> Iterator[LogEntry]:
    """Entries appended after ``offset`` until the container stops and the file is drained
    (or an entry passes ``until_ns``). ``wait_stopped(t)`` waits up to ``t`` seconds for the
    container to stop and says whether it has (a ``threading.Event.wait`` fits), so the end
    of the container ends the loop at once rather than at the next poll."""
    buf = b""
    f = None
    try:
        while True:
            if f is None:
                try:
                    f = open(path, "rb")
                    f.seek(offset)
                except FileNotFoundError:
                    f = None
            chunk = f.read() if f is not None else b""
            final = False
            if not chunk:
                if not wait_stopped(poll):
                    continue
                # One last read: the monitor writes the final lines before it records the exit.
                chunk = f.read() if f is not None else b""
                final = True
            buf += chunk
            *lines, buf = buf.split(b"\n")
            if final and buf:
                lines.append(buf)
            for line in lines:
                e = parse_line(line)
                if e is None:
                    continue
                if until_ns is not None and e.time_ns > until_ns:
                    return
                yield e
            if final:
                return
    finally:
        if f is not None:
            f.close()
