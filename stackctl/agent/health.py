"""Health checks with Docker's (and so Compose's) semantics — the pure part: the config and
the state machine. Time is passed in (seconds, monotonic for scheduling, wall for the log),
so the tests drive it with a fake clock; :mod:`stackctl.agent.supervisor` runs the probes.

Semantics (moby ``daemon/health.go``):

- ``test``: ``["NONE"]`` disables; ``["CMD", arg...]`` runs ``arg...``; ``["CMD-SHELL", cmd]``
  (or a plain string) runs ``/bin/sh -c cmd``. Exit 0 is healthy, anything else a failure.
- Status starts as ``starting``. The first probe runs one interval after the start; while the
  container is ``starting`` and within ``start_period``, the interval is ``start_interval``.
- A success makes the container ``healthy`` and resets the failing streak.
- A failure increments the streak — except while ``starting`` and within ``start_period`` of
  the start (measured at the probe's start), where failures do not count. ``retries``
  consecutive counted failures make it ``unhealthy``. A later success makes it healthy again.
- A probe that outlives ``timeout`` is killed and counts as a failure (exit code -1, output
  ``Health check exceeded timeout (30s)``).
- The last :data:`MAX_LOG` probes are kept (start, end, exit code, output cut to
  :data:`MAX_OUTPUT` bytes) for ``inspect``.

Defaults (Docker's): interval 30 s, timeout 30 s, retries 3, start_period 0, start_interval
5 s. A value of 0 means the default, as in Docker.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from stackctl.errors import UsageError

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
DEFAULT_START_INTERVAL = 5.0
MAX_LOG = 5
MAX_OUTPUT = 4096

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"


def _seconds(value: Any, what: str) -> float:
    """Seconds from a number of seconds (the agent API's unit) or a duration string such as
    ``"1m30s"``."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise UsageError(f"healthcheck {what} must not be negative, got {value}")
        return float(value)
    if isinstance(value, str):
        from stackctl.runtime.logs import NS, parse_duration_ns

        try:
            return parse_duration_ns(value) / NS
        except Exception:  # noqa: BLE001 - reworded below
            raise UsageError(f"healthcheck {what}: invalid duration {value!r}") from None
    raise UsageError(f"healthcheck {what}: expected seconds, got {value!r}")


@dataclass(frozen=True)
class HealthConfig:
    """A normalized health check (durations in seconds)."""

    test: tuple[str, ...]
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    start_period: float = 0.0
    start_interval: float = DEFAULT_START_INTERVAL

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HealthConfig:
        """From the compose form ``{test, interval, timeout, retries, start_period,
        start_interval}``; ``disable: true`` and ``test: ["NONE"]`` give a disabled check."""
        test = d.get("test")
        if d.get("disable"):
            test = ["NONE"]
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        if not isinstance(test, (list, tuple)) or not test or \
                not all(isinstance(t, str) for t in test):
            raise UsageError(f"healthcheck test must be a string or a list of strings, got {test!r}")
        test = tuple(test)
        if test[0] not in ("NONE", "CMD", "CMD-SHELL"):
            raise UsageError(f"healthcheck test must start with NONE, CMD or CMD-SHELL, got {test[0]!r}")
        if test[0] == "CMD-SHELL" and len(test) != 2:
            test = ("CMD-SHELL", " ".join(test[1:]))
        if test[0] != "NONE" and len(test) < 2:
            raise UsageError(f"healthcheck test {list(test)!r} has no command")
        retries = d.get("retries")
        if retries is not None and (not isinstance(retries, int) or retries < 0):
            raise UsageError(f"healthcheck retries must be a non-negative integer, got {retries!r}")
        return cls(
            test=test,
            interval=_seconds(d.get("interval"), "interval") or DEFAULT_INTERVAL,
            timeout=_seconds(d.get("timeout"), "timeout") or DEFAULT_TIMEOUT,
            retries=retries or DEFAULT_RETRIES,
            start_period=_seconds(d.get("start_period"), "start_period"),
            start_interval=_seconds(d.get("start_interval"), "start_interval") or DEFAULT_START_INTERVAL,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"test": list(self.test), "interval": self.interval, "timeout": self.timeout,
                "retries": self.retries, "start_period": self.start_period,
                "start_interval": self.start_interval}

    @property
    def enabled(self) -> bool:
        return self.test[0] != "NONE"

    def argv(self) -> list[str]:
        """The command the probe runs in the container."""
        if self.test[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", self.test[1]]
        return list(self.test[1:])


@dataclass(frozen=True)
class ProbeResult:
    start: float  # wall clock, seconds
    end: float
    exit_code: int  # -1: timed out or could not run
    output: str

    def to_json(self) -> dict[str, Any]:
        from stackctl.runtime.logs import format_rfc3339_ns

        return {"Start": format_rfc3339_ns(int(self.start * 1e9)),
                "End": format_rfc3339_ns(int(self.end * 1e9)),
                "ExitCode": self.exit_code, "Output": self.output}


def timeout_result(start: float, end: float, timeout: float) -> ProbeResult:
    return ProbeResult(start, end, -1, f"Health check exceeded timeout ({timeout:g}s)")


def cut_output(data: bytes) -> str:
    return data[:MAX_OUTPUT].decode("utf-8", errors="replace")


@dataclass
class HealthState:
    """The health of one container since its start at ``started`` (monotonic seconds)."""

    config: HealthConfig
    started: float
    status: str = STARTING
    failing_streak: int = 0
    log: deque = field(default_factory=lambda: deque(maxlen=MAX_LOG))

    def in_start_period(self, now: float) -> bool:
        return now - self.started < self.config.start_period

    def interval(self, now: float) -> float:
        """How long to wait, from ``now``, before the next probe."""
        if self.status == STARTING and self.config.start_period > 0 and self.in_start_period(now):
            return self.config.start_interval
        return self.config.interval

    def record(self, result: ProbeResult, probe_started: float) -> str | None:
        """Take one probe's result (``probe_started``: monotonic time it began); returns the
        new status when it changed, else None."""
        self.log.append(result)
        before = self.status
        if result.exit_code == 0:
            self.failing_streak = 0
            self.status = HEALTHY
        else:
            counts = not (self.status == STARTING and self.in_start_period(probe_started))
            if counts:
                self.failing_streak += 1
                if self.failing_streak >= self.config.retries:
                    self.status = UNHEALTHY
        return self.status if self.status != before else None

    def to_json(self) -> dict[str, Any]:
        """Docker's ``State.Health``."""
        return {"Status": self.status, "FailingStreak": self.failing_streak,
                "Log": [r.to_json() for r in self.log]}

    def restore(self, status: str, failing_streak: int, log: list[dict[str, Any]]) -> None:
        """Carry on from a persisted state (an agent restart, same container start)."""
        if status in (STARTING, HEALTHY, UNHEALTHY):
            self.status = status
        self.failing_streak = max(0, int(failing_streak))
        self.log.clear()
        from stackctl.runtime.logs import NS, parse_rfc3339_ns

        for item in log[-MAX_LOG:]:
            try:
                self.log.append(ProbeResult(parse_rfc3339_ns(item["Start"]) / NS,
                                            parse_rfc3339_ns(item["End"]) / NS,
                                            int(item["ExitCode"]), str(item["Output"])))
            except (KeyError, ValueError, TypeError):
                continue
