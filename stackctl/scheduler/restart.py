"""Restart policy decisions, with Swarm's semantics (swarmkit's restart supervisor).

``should_restart(history, exit_code, now, policy)`` decides whether the task that just ended in
a slot is replaced by a new one, and when. Pure: the caller keeps the history.

- ``condition``: ``none`` never restarts; ``on-failure`` restarts when the task failed — a
  non-zero exit code, or no exit code at all (it failed to start, or was lost); ``any``
  restarts whatever the exit code, 0 included.
- ``max_attempts`` (0: unlimited) bounds the restarts of the slot. With ``window`` 0 every
  restart since the slot's spec last changed counts; with a window, only the restarts within
  ``window`` before ``now`` count (Swarm's "lookback"). ``history`` is therefore the times of
  the slot's earlier restarts *for the current config hash*: the caller clears it when the
  service is updated, as Swarm clears it on a new spec version.
- ``delay``: the new task starts ``delay`` after ``now``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from stackctl.spec import units
from stackctl.spec.models import RestartPolicy


@dataclass(frozen=True, slots=True)
class RestartDecision:
    """Unpacks as ``(restart, when)``; ``reason`` explains it for ``ps`` and events."""

    restart: bool
    when: int | None  # ns; None when not restarting
    reason: str

    def __iter__(self) -> Iterator:
        return iter((self.restart, self.when))

    def __bool__(self) -> bool:
        return self.restart


def _ended(exit_code: int | None) -> str:
    return "failed to start" if exit_code is None else f"exited ({exit_code})"


def should_restart(history: Sequence[int], exit_code: int | None, now: int,
                   policy: RestartPolicy) -> RestartDecision:
    """Whether (and when, in ns) to replace a task that ended at ``now``."""
    ended = _ended(exit_code)
    if policy.condition == "none":
        return RestartDecision(False, None, f"{ended}; restart_policy condition none")
    if policy.condition == "on-failure" and exit_code == 0:
        return RestartDecision(False, None, "exited (0); restart_policy condition on-failure")
    when = now + policy.delay
    delay = units.format_duration(policy.delay)
    if policy.max_attempts == 0:
        return RestartDecision(True, when, f"{ended}; restarting in {delay}")
    if policy.window:
        counted = sum(1 for t in history if now - policy.window < t <= now)
        within = f" within {units.format_duration(policy.window)}"
    else:
        counted = len(history)
        within = ""
    if counted >= policy.max_attempts:
        return RestartDecision(False, None, f"{ended}; gave up after {counted} restart"
                               f"{'s' if counted != 1 else ''}{within} "
                               f"(max_attempts {policy.max_attempts})")
    return RestartDecision(True, when, f"{ended}; restart {counted + 1} of "
                           f"{policy.max_attempts}{within}, in {delay}")
