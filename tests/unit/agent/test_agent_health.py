"""The health-check state machine (Docker's semantics), with a fake clock: no probes run."""

from __future__ import annotations

import pytest

from stackctl.agent.health import (
    DEFAULT_INTERVAL,
    HEALTHY,
    MAX_LOG,
    STARTING,
    UNHEALTHY,
    HealthConfig,
    HealthState,
    ProbeResult,
    cut_output,
    timeout_result,
)
from stackctl.errors import UsageError


def ok(t=0.0):
    return ProbeResult(t, t, 0, "ok")


def bad(t=0.0, code=1):
    return ProbeResult(t, t, code, "bad")


def test_config_forms_and_defaults():
    c = HealthConfig.from_dict({"test": "curl -f localhost"})
    assert c.test == ("CMD-SHELL", "curl -f localhost")
    assert c.argv() == ["/bin/sh", "-c", "curl -f localhost"]
    assert (c.interval, c.timeout, c.retries, c.start_period, c.start_interval) == (30, 30, 3, 0, 5)
    c = HealthConfig.from_dict({"test": ["CMD", "wget", "-q", "x"], "interval": "1m30s", "retries": 5,
                                "timeout": 2, "start_period": 0.5, "start_interval": 0.1})
    assert c.argv() == ["wget", "-q", "x"] and c.interval == 90 and c.retries == 5
    assert c.start_period == 0.5 and c.start_interval == 0.1
    assert HealthConfig.from_dict(c.to_dict()) == c
    assert not HealthConfig.from_dict({"test": ["NONE"]}).enabled
    assert not HealthConfig.from_dict({"test": "x", "disable": True}).enabled
    assert HealthConfig.from_dict({"test": ["CMD-SHELL", "a", "b"]}).argv() == ["/bin/sh", "-c", "a b"]
    # 0 means "the default", as in Docker
    assert HealthConfig.from_dict({"test": "x", "interval": 0}).interval == DEFAULT_INTERVAL


@pytest.mark.parametrize("bad_cfg", [{"test": []}, {"test": ["RUN", "x"]}, {"test": ["CMD"]}, {"test": 3},
                                     {"test": "x", "retries": -1}, {"test": "x", "interval": "soon"},
                                     {"test": "x", "timeout": -1}])
def test_config_errors(bad_cfg):
    with pytest.raises(UsageError):
        HealthConfig.from_dict(bad_cfg)


def test_starting_then_healthy_then_unhealthy_after_retries():
    s = HealthState(HealthConfig(("CMD", "x"), interval=10, retries=3), started=0.0)
    assert s.status == STARTING and s.interval(0.0) == 10
    assert s.record(ok(), 10) == HEALTHY
    assert s.record(ok(), 20) is None
    assert s.record(bad(), 30) is None and s.failing_streak == 1
    assert s.record(bad(), 40) is None and s.failing_streak == 2
    assert s.record(bad(), 50) == UNHEALTHY and s.failing_streak == 3
    assert s.record(bad(), 60) is None and s.failing_streak == 4
    assert s.record(ok(), 70) == HEALTHY and s.failing_streak == 0


def test_failures_during_start_period_do_not_count():
    s = HealthState(HealthConfig(("CMD", "x"), interval=10, retries=1, start_period=25), started=100.0)
    assert s.record(bad(), 110) is None and s.failing_streak == 0 and s.status == STARTING
    assert s.record(bad(), 120) is None and s.failing_streak == 0
    # the start period is measured at the probe's start: 125 is past it
    assert s.record(bad(), 125) == UNHEALTHY and s.failing_streak == 1


def test_success_during_start_period_ends_it():
    s = HealthState(HealthConfig(("CMD", "x"), interval=10, retries=1, start_period=100), started=0.0)
    assert s.record(ok(), 5) == HEALTHY
    # healthy once: later failures count even within the start period
    assert s.record(bad(), 6) == UNHEALTHY


def test_start_interval_applies_only_while_starting_in_start_period():
    cfg = HealthConfig(("CMD", "x"), interval=30, start_period=10, start_interval=1)
    s = HealthState(cfg, started=0.0)
    assert s.interval(0.0) == 1 and s.interval(9.9) == 1
    assert s.interval(10.0) == 30  # start period over
    s.record(ok(), 2)
    assert s.interval(3.0) == 30  # healthy: the normal interval
    # without a start period, start_interval never applies
    assert HealthState(HealthConfig(("CMD", "x"), interval=30), started=0.0).interval(0.0) == 30


def test_timeout_counts_as_failure_and_log_is_bounded():
    s = HealthState(HealthConfig(("CMD", "x"), interval=1, retries=2, timeout=3), started=0.0)
    r = timeout_result(10.0, 13.0, 3)
    assert r.exit_code == -1 and r.output == "Health check exceeded timeout (3s)"
    s.record(r, 10)
    s.record(r, 14)
    assert s.status == UNHEALTHY
    for i in range(10):
        s.record(ProbeResult(float(i), float(i), 0, f"run {i}"), 20 + i)
    assert len(s.log) == MAX_LOG and s.log[-1].output == "run 9"
    j = s.to_json()
    assert j["Status"] == HEALTHY and j["FailingStreak"] == 0 and len(j["Log"]) == MAX_LOG
    assert j["Log"][0]["Start"].endswith("Z") and j["Log"][-1]["Output"] == "run 9"


def test_restore_from_persisted_state():
    s = HealthState(HealthConfig(("CMD", "x")), started=0.0)
    s.record(ProbeResult(1.5, 2.0, 1, "nope"), 31)
    saved = (s.status, s.failing_streak, s.to_json()["Log"])
    t = HealthState(HealthConfig(("CMD", "x")), started=0.0)
    t.restore(*saved)
    assert (t.status, t.failing_streak) == (STARTING, 1)
    assert t.log[0].exit_code == 1 and t.log[0].output == "nope" and abs(t.log[0].start - 1.5) < 1e-6
    t.restore("bogus", -3, [{"junk": 1}])
    assert t.status == STARTING and t.failing_streak == 0 and not t.log


def test_output_is_cut():
    assert len(cut_output(b"x" * 10000)) == 4096
    assert cut_output(b"\xff ok") == "\ufffd ok"


def test_supervisor_says_starting_before_it_picked_up_a_check(tmp_path):
    """Right after a start, before the supervisor's next scan, a container with a health
    check is `starting` (None would read as "no check: ready" to a service_healthy gate)."""
    from stackctl.agent.events import EventBus
    from stackctl.agent.store import Store
    from stackctl.agent.supervisor import Supervisor
    from stackctl.paths import NodePaths

    paths = NodePaths(state=str(tmp_path), run=str(tmp_path), cgroup_parent="unused")
    with Store(str(tmp_path / "agent.db")) as store:
        sup = Supervisor(paths, EventBus(), store, containers=object(), prober=object())
        store.put_health_config("c1", {"test": ["CMD", "true"], "interval": 1})
        store.put_health_config("c2", {"test": ["NONE"]})
        assert sup.health_of("c1") == "starting"
        assert sup.health_of("c2") is None
        assert sup.health_of("c3") is None  # no check at all
