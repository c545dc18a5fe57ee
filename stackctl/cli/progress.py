"""Progress output of the stack verbs (``up``, ``down``, ``scale``, ``rollback``, ...).

The agent streams progress events (docs/agent-api.md)::

    {time, stack, service, slot?, container?, action, status: started|done|error, message}

and one of three renderers shows them:

- :class:`PlainRenderer` (not a terminal: CI logs, pipes) — one line per event,
  ``[+] web.2 recreate: started (config changed: environment)``; ``[!]`` for errors.
- :class:`JsonRenderer` (``--format json``) — each event as one JSON object per line.
- :class:`LiveRenderer` (a terminal) — one line per service slot, redrawn in place with plain
  ANSI escapes (no rich: it costs ~40 ms to import), showing the slot's current state
  (building / pulling / creating / starting / healthy / failed ...) and the elapsed time.

The formatting functions are pure (event in, text out) and tested without a terminal.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

# (action, status) -> the state word a person reads. Status "error" always reads "failed".
_STARTED = {
    "build": "building", "pull": "pulling", "create": "creating", "recreate": "recreating",
    "start": "starting", "stop": "stopping", "remove": "removing", "rollback": "rolling back",
    "network": "creating", "volume": "creating", "secret": "creating", "waiting": "waiting",
    "healthy": "healthy", "unhealthy": "unhealthy", "failed": "failed", "paused": "paused",
    "done": "done",
}
_DONE = {
    "build": "built", "pull": "pulled", "create": "created", "recreate": "recreated",
    "start": "started", "stop": "stopped", "remove": "removed", "rollback": "rolled back",
    "network": "created", "volume": "created", "secret": "created", "waiting": "waited",
    "healthy": "healthy", "unhealthy": "unhealthy", "failed": "failed", "paused": "paused",
    "done": "done",
}
# states shown in red / green / yellow on a terminal
_BAD = {"failed", "unhealthy", "paused", "rolling back", "rolled back"}
_GOOD = {"healthy", "started", "created", "recreated", "removed", "stopped", "built", "pulled",
         "done", "deployed"}

_OBJECT_ACTIONS = ("network", "volume", "secret")
_STATE_ACTIONS = {"healthy", "unhealthy", "failed", "paused", "done", "waiting"}

RESET = "\x1b[0m"
RED, GREEN, YELLOW, BLUE, DIM = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[34m", "\x1b[2m"


def subject(event: dict[str, Any]) -> str:
    """What an event is about: ``web.2``, ``web``, ``network webapp_default``, or the stack."""
    action = event.get("action", "")
    service = event.get("service") or ""
    slot = event.get("slot")
    if action in _OBJECT_ACTIONS:
        return _object_parts(event)[0]
    if service and slot not in (None, ""):
        return f"{service}.{slot}"
    if service:
        return service
    return f"stack {event.get('stack', '')}".strip()


def _object_parts(event: dict[str, Any]) -> tuple[str, str | None]:
    """A network/volume/secret event as (``network shop_back``, the verb the agent used, if
    any): the agent says ``network shop_back`` or ``removed network shop_back``."""
    action = event.get("action", "")
    message = (event.get("message") or "").split(" (")[0]
    at = message.find(f"{action} ")
    if at == 0:
        return message, None
    if at > 0:
        return message[at:], message[:at].strip()
    name = event.get("name") or event.get("service") or ""
    return f"{action} {name}".strip(), None


def state_word(event: dict[str, Any]) -> str:
    """The state a slot is in after this event (``creating``, ``healthy``, ``failed`` ...)."""
    action = event.get("action", "")
    status = event.get("status", "")
    if status == "error":
        return "failed"
    if action in _OBJECT_ACTIONS:
        verb = _object_parts(event)[1]
        if verb:
            return verb
    table = _DONE if status == "done" else _STARTED
    return table.get(action, f"{action} {status}".strip())


def plain_line(event: dict[str, Any]) -> str:
    """``[+] web.2 recreate: started (config changed: environment)``."""
    mark = "[!]" if event.get("status") == "error" or event.get("action") in (
        "failed", "unhealthy", "rollback", "paused") else "[+]"
    action = event.get("action", "")
    status = event.get("status", "")
    message = event.get("message") or ""
    if action == "done" and not event.get("service"):
        return f"{mark} {message or 'done'}"  # the end of the whole request
    if action == "warning":
        return f"[!] warning: {message}"
    if action == "image" and not event.get("service"):  # images sent to a node
        return f"{mark} image: {message}"
    what = subject(event)
    if action in _OBJECT_ACTIONS:
        text = f"{mark} {what}: {state_word(event)}"  # "[+] network shop_back: created"
        if message and what not in message:
            text += f" ({message})"
        return text
    text = f"{mark} {what} {action}"
    if status and not (action in _STATE_ACTIONS and status != "started"):
        text += f": {status}"  # "healthy: done" says nothing more than "healthy"
    if message:
        text += f" ({message})"
    return text


def json_line(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), sort_keys=False)


def colour(state: str) -> str:
    if state in _BAD:
        return RED
    if state in _GOOD:
        return GREEN
    return YELLOW


@dataclass
class _Row:
    key: str
    state: str
    message: str = ""
    since: float = 0.0
    ended: float | None = None


@dataclass
class Summary:
    """What the renderers saw: failed slots and their messages, for the final error line."""

    failures: list[tuple[str, str]] = field(default_factory=list)
    events: int = 0
    rolled_back: list[str] = field(default_factory=list)

    def add(self, event: dict[str, Any]) -> None:
        self.events += 1
        action = event.get("action")
        if event.get("status") == "error" or action in ("failed", "unhealthy"):
            self.failures.append((subject(event), event.get("message") or action or "failed"))
        if action == "rollback" and event.get("service"):
            if event["service"] not in self.rolled_back:
                self.rolled_back.append(event["service"])


class PlainRenderer:
    """One line per event (logs, pipes, CI)."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.summary = Summary()

    def event(self, event: dict[str, Any]) -> None:
        self.summary.add(event)
        self.out.write(plain_line(event) + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        pass


class JsonRenderer(PlainRenderer):
    """``--format json``: one JSON object per event."""

    def event(self, event: dict[str, Any]) -> None:
        self.summary.add(event)
        self.out.write(json_line(event) + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        # notes go to stderr so that stdout stays JSON
        sys.stderr.write(text + "\n")


class LiveRenderer:
    """Per-slot lines redrawn in place (a terminal)."""

    def __init__(self, out: IO[str] | None = None, *, title: str = "",
                 clock: Any = time.monotonic) -> None:
        self.out = out or sys.stdout
        self.rows: dict[str, _Row] = {}
        self.title = title
        self.clock = clock
        self.drawn = 0
        self.summary = Summary()
        self.started = clock()

    def event(self, event: dict[str, Any]) -> None:
        self.summary.add(event)
        key = subject(event)
        state = state_word(event)
        now = self.clock()
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = _Row(key, state, since=now)
        row.state = state
        row.message = event.get("message") or ""
        row.ended = now if state in _GOOD | _BAD else None
        self.draw()

    def lines(self) -> list[str]:
        now = self.clock()
        width = max((len(k) for k in self.rows), default=0)
        done = sum(1 for r in self.rows.values() if r.ended is not None)
        out = []
        if self.title:
            out.append(f"[+] {self.title} {done}/{len(self.rows)}")
        for row in self.rows.values():
            elapsed = (row.ended if row.ended is not None else now) - row.since
            mark = "✔" if row.state in _GOOD else ("✘" if row.state in _BAD else "⠿")
            msg = f" {DIM}{row.message}{RESET}" if row.message else ""
            out.append(f" {colour(row.state)}{mark}{RESET} {row.key:<{width}}  "
                       f"{colour(row.state)}{row.state:<12}{RESET}{msg}  {DIM}{elapsed:.1f}s{RESET}")
        return out

    def draw(self) -> None:
        lines = self.lines()
        buf = []
        if self.drawn:
            buf.append(f"\x1b[{self.drawn}A")
        for line in lines:
            buf.append("\x1b[2K" + line + "\n")
        self.out.write("".join(buf))
        self.out.flush()
        self.drawn = len(lines)

    def note(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
        self.drawn = 0  # the note scrolled the block: draw a fresh one next time

    def close(self) -> None:
        if self.rows:
            self.draw()


def renderer_for(fmt: str, *, title: str = "", out: IO[str] | None = None,
                 tty: bool | None = None) -> PlainRenderer | LiveRenderer:
    """JSON for ``--format json``, live lines on a terminal, plain lines otherwise."""
    out = out or sys.stdout
    if fmt == "json":
        return JsonRenderer(out)
    if tty is None:
        tty = out.isatty()
    if tty:
        return LiveRenderer(out, title=title)
    return PlainRenderer(out)
