"""What a pull or push shows while it runs, in Docker's shapes.

On a terminal (rich): one line per layer, redrawn in place::

    1.0: Pulling from team/app
    3f4e5a6b7c8d: Downloading [=================>                                 ]  12.1MB/34.6MB
    9a8b7c6d5e4f: Pull complete

Elsewhere (CI logs): one plain line per status change, without the byte counts
(``3f4e5a6b7c8d: Pulling fs layer`` ... ``3f4e5a6b7c8d: Pull complete``). ``--quiet``: nothing.

A reporter is any object with ``line(text)``, ``layer(key, status, current=0, total=0)`` and
``close()``; the controller may pass its own to :func:`.policy.ensure_image`.
"""

from __future__ import annotations

import sys
import threading
from typing import Protocol, TextIO

from stackctl.humanize import human_size

# statuses that only move a bar: a plain log shows the status once, not every byte count
BAR_STATUSES = frozenset({"Downloading", "Extracting", "Pushing"})
BAR_WIDTH = 50


class Progress(Protocol):
    def line(self, text: str) -> None: ...

    def layer(self, key: str, status: str, current: int = 0, total: int = 0) -> None: ...

    def close(self) -> None: ...


def bar(current: int, total: int, width: int = BAR_WIDTH) -> str:
    """Docker's progress bar: ``[=====>     ]  1.2MB/3.4MB`` (pure)."""
    if total <= 0:
        return f"{human_size(current, 3)}"
    n = min(width, int(width * current / total))
    fill = "=" * max(0, n - 1) + (">" if n else "")
    return f"[{fill:<{width}}]  {human_size(current, 3)}/{human_size(total, 3)}"


def layer_line(key: str, status: str, current: int, total: int, columns: int = 0) -> str:
    """One layer's line; ``columns`` (the terminal's width) narrows the bar to fit."""
    if status in BAR_STATUSES and (current or total):
        width = BAR_WIDTH
        if columns:
            width = max(10, min(BAR_WIDTH, columns - len(key) - len(status) - 25))
        return f"{key}: {status} {bar(current, total, width)}"
    return f"{key}: {status}"


class NullProgress:
    def line(self, text: str) -> None:
        pass

    def layer(self, key: str, status: str, current: int = 0, total: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


class PlainProgress:
    """One line per status change, thread-safe."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def layer(self, key: str, status: str, current: int = 0, total: int = 0) -> None:
        with self._lock:
            if self._last.get(key) == status:
                return
            self._last[key] = status
            self.out.write(f"{key}: {status}\n")
            self.out.flush()

    def close(self) -> None:
        pass


class TtyProgress:
    """Bars per layer, redrawn by rich.live (about ten times a second)."""

    def __init__(self, out: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out or sys.stdout, highlight=False, soft_wrap=True)
        self._layers: dict[str, tuple[str, int, int]] = {}
        self._lock = threading.Lock()
        self._live = Live(self, console=self.console, refresh_per_second=10, transient=False)
        self._live.start()

    def __rich__(self):  # rendered by Live
        from rich.text import Text

        with self._lock:
            rows = [layer_line(k, *v, columns=self.console.width) for k, v in self._layers.items()]
        return Text("\n".join(rows))

    def line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def layer(self, key: str, status: str, current: int = 0, total: int = 0) -> None:
        with self._lock:
            self._layers[key] = (status, current, total)

    def close(self) -> None:
        if self._live.is_started:
            self._live.refresh()
            self._live.stop()


class CallbackProgress:
    """Progress as events for a caller that shows it its own way (the controller's ``pulling``
    events): ``fn({"line": text})`` and ``fn({"layer": key, "status": s, "current": c,
    "total": t})`` — every status change, byte counts at most every ``interval`` seconds per
    layer. ``fn`` is called from the transfer threads; it must be quick and thread-safe."""

    def __init__(self, fn, interval: float = 0.5, clock=None) -> None:
        import time

        self.fn = fn
        self.interval = interval
        self.clock = clock or time.monotonic
        self._last: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        self.fn({"line": text})

    def layer(self, key: str, status: str, current: int = 0, total: int = 0) -> None:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last and last[0] == status and now - last[1] < self.interval:
                return
            self._last[key] = (status, now)
        self.fn({"layer": key, "status": status, "current": current, "total": total})

    def close(self) -> None:
        pass


def for_terminal(quiet: bool = False, out: TextIO | None = None) -> Progress:
    """The reporter the CLI uses: quiet, bars on a terminal, plain lines otherwise."""
    if quiet:
        return NullProgress()
    stream = out or sys.stdout
    return TtyProgress(stream) if stream.isatty() else PlainProgress(stream)
