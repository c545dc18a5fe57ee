"""Restart policy decisions (Swarm's semantics), with plain numbers as time."""

from __future__ import annotations

from stackctl.scheduler.restart import should_restart
from stackctl.spec.models import RestartPolicy

S = 10**9


def policy(**kw) -> RestartPolicy:
    # a plain number is seconds to the model (as in a stack file): pass nanoseconds as text
    return RestartPolicy(**{k: f"{v}ns" if k in ("delay", "window") else v
                            for k, v in kw.items()})


def test_condition_none_never_restarts():
    ok, when = should_restart([], 1, 100 * S, policy(condition="none"))
    assert (ok, when) == (False, None)


def test_on_failure_skips_a_clean_exit():
    d = should_restart([], 0, 100 * S, policy(condition="on-failure"))
    assert not d and d.reason == "exited (0); restart_policy condition on-failure"
    assert should_restart([], 3, 100 * S, policy(condition="on-failure")).restart
    # no exit code: it failed to start, a failure
    d = should_restart([], None, 100 * S, policy(condition="on-failure"))
    assert d.restart and d.reason.startswith("failed to start")


def test_any_restarts_a_clean_exit_after_the_delay():
    ok, when = should_restart([], 0, 100 * S, policy(condition="any", delay=5 * S))
    assert ok and when == 105 * S


def test_max_attempts_without_window_counts_every_restart():
    p = policy(condition="any", max_attempts=3, delay=0)
    assert should_restart([1 * S, 2 * S], 1, 10 * S, p).restart
    d = should_restart([1 * S, 2 * S, 3 * S], 1, 10**6 * S, p)
    assert not d.restart
    assert d.reason == "exited (1); gave up after 3 restarts (max_attempts 3)"


def test_window_only_counts_recent_restarts():
    p = policy(condition="on-failure", max_attempts=2, window=30 * S, delay=2 * S)
    history = [10 * S, 50 * S]
    # at 60s only the restart at 50s is within 30s: one more is allowed
    d = should_restart(history, 1, 60 * S, p)
    assert d.restart and d.when == 62 * S
    assert d.reason == "exited (1); restart 2 of 2 within 30s, in 2s"
    # at 55s both are in the window (25s..55s)? 10s is not: still allowed
    assert should_restart(history, 1, 55 * S, p).restart
    # two restarts within the window: give up
    d = should_restart([40 * S, 50 * S], 1, 60 * S, p)
    assert not d.restart and "gave up after 2 restarts within 30s" in d.reason
    # the window boundary is exclusive at its old end (Swarm: after now - window)
    assert should_restart([30 * S, 50 * S], 1, 60 * S, p).restart


def test_unlimited_attempts():
    ok, _ = should_restart([i * S for i in range(1000)], 1, 2000 * S, policy(max_attempts=0))
    assert ok
