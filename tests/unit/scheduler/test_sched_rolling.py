"""The rolling update state machine, with a fake clock (integers, in ns)."""

from __future__ import annotations

from stackctl.scheduler.rolling import (
    COMPLETED,
    PAUSED,
    ROLLBACK_PAUSED,
    ROLLED_BACK,
    RollbackPaused,
    RollbackStarted,
    RollingUpdate,
    StartTask,
    StopTask,
    TaskReport,
    UpdateCompleted,
    UpdatePaused,
    WaitUntil,
    ready_deadline,
)
from stackctl.scheduler.tasks import HealthTiming
from stackctl.spec.models import RollbackConfig, UpdateConfig

S = 10**9


def _durations(kw: dict) -> dict:
    # a plain number is seconds to the models (as in a stack file): pass nanoseconds as text
    kw.setdefault("monitor", 5 * S)
    return {k: f"{v}ns" if k in ("monitor", "delay") else v for k, v in kw.items()}


def cfg(**kw) -> UpdateConfig:
    return UpdateConfig(**_durations(kw))


def rcfg(**kw) -> RollbackConfig:
    return RollbackConfig(**_durations(kw))


def starts(cmds, version="new"):
    return [c.slot for c in cmds if isinstance(c, StartTask) and c.version == version]


def stops(cmds, version="old"):
    return [c.slot for c in cmds if isinstance(c, StopTask) and c.version == version]


def wait(cmds):
    waits = [c.at for c in cmds if isinstance(c, WaitUntil)]
    return waits[-1] if waits else None


def rep(u, slot, state, at, version="new", reason=""):
    return u.report(TaskReport(slot, version, state, at, reason))


def test_stop_first_waves_with_delay_and_monitor():
    u = RollingUpdate("web", [["1"], ["2"]], cfg(delay=2 * S), rcfg())
    cmds = u.poll(0)
    assert cmds == [StopTask("1", "old")]  # stop-first: old goes first, nothing started yet
    cmds = rep(u, "1", "stopped", 1 * S, version="old")
    assert starts(cmds) == ["1"] and wait(cmds) == 6 * S  # not running by monitor: failed
    cmds = rep(u, "1", "running", 2 * S)
    assert u.slot_state("1") == "monitoring"
    assert wait(cmds) == 4 * S  # settled at 2s + delay 2s
    assert stops(u.poll(3 * S)) == []  # delay not over
    cmds = u.poll(4 * S)
    assert stops(cmds) == ["2"]
    rep(u, "2", "stopped", 4 * S, version="old")
    cmds = rep(u, "2", "running", 5 * S)
    assert wait(cmds) == 7 * S  # slot 1's monitor ends at 2s + 5s
    assert u.poll(7 * S) == [WaitUntil(10 * S)]
    assert u.poll(10 * S) == [UpdateCompleted()]
    assert u.state == COMPLETED and u.succeeded and u.done


def test_start_first_stops_old_only_once_new_is_healthy():
    health = HealthTiming(interval=2 * S, retries=3, start_period=1 * S)
    u = RollingUpdate("web", [["1", "2"]], cfg(order="start-first"), rcfg(), health=health)
    cmds = u.poll(0)
    assert starts(cmds) == ["1", "2"] and stops(cmds) == []
    assert stops(rep(u, "1", "running", 1 * S)) == []  # running is not enough: health check
    assert stops(rep(u, "1", "healthy", 3 * S)) == ["1"]
    assert stops(rep(u, "2", "healthy", 4 * S)) == ["2"]
    u.poll(9 * S)
    assert u.state == COMPLETED


def test_parallelism_zero_in_one_wave_comes_from_the_plan():
    u = RollingUpdate("web", [["1", "2", "3"]], cfg(order="start-first"), rcfg())
    assert starts(u.poll(0)) == ["1", "2", "3"]


def test_never_healthy_fails_after_the_deadline():
    health = HealthTiming(interval=2 * S, retries=3, start_period=1 * S)
    assert ready_deadline(health, 10 * S) == 17 * S
    u = RollingUpdate("web", [["1"], ["2"]], cfg(order="start-first", monitor=10 * S),
                      rcfg(), health=health)
    cmds = u.poll(0)
    assert wait(cmds) == 17 * S
    rep(u, "1", "running", 1 * S)
    assert not any(isinstance(c, UpdatePaused) for c in u.poll(16 * S))
    cmds = u.poll(17 * S)
    assert cmds == [UpdatePaused(
        "update paused: 1: not healthy 17s after start (start_period 1s + 3 retries x 2s + "
        "monitor 10s); 1 of 2 tasks failed, max_failure_ratio 0")]
    assert u.state == PAUSED and not u.succeeded and u.done
    assert u.failed_slots == ["1"]


def test_not_running_by_monitor_fails_without_health_check():
    u = RollingUpdate("web", [["1"]], cfg(order="start-first", failure_action="continue"),
                      rcfg())
    u.poll(0)
    cmds = u.poll(5 * S)
    assert cmds == [UpdateCompleted(("1",))]  # continue: counted, not acted on
    assert u.state == COMPLETED


def test_pause_leaves_the_rest_untouched():
    u = RollingUpdate("web", [["1"], ["2"], ["3"], ["4"]], cfg(order="start-first"), rcfg())
    all_cmds = u.poll(0)
    all_cmds += rep(u, "1", "failed", 1 * S, reason="exited (1)")
    assert UpdatePaused("update paused: 1: exited (1) 1s after start; 1 of 4 tasks failed, "
                        "max_failure_ratio 0") in all_cmds
    for t in range(2, 60):
        all_cmds += u.poll(t * S)
    assert starts(all_cmds) == ["1"]
    assert stops(all_cmds) == []  # start-first: the old task of slot 1 keeps running
    assert u.state == PAUSED and u.done


def test_continue_goes_on_after_failures():
    u = RollingUpdate("web", [["1"], ["2"], ["3"]], cfg(failure_action="continue"), rcfg())
    cmds = u.poll(0)
    cmds += rep(u, "1", "stopped", 0, version="old")
    cmds += rep(u, "1", "failed", 1 * S, reason="exited (2)")
    cmds += u.poll(1 * S)
    cmds += rep(u, "2", "stopped", 1 * S, version="old")
    cmds += rep(u, "2", "running", 2 * S)
    cmds += u.poll(2 * S)
    cmds += rep(u, "3", "stopped", 2 * S, version="old")
    cmds += rep(u, "3", "running", 3 * S)
    cmds += u.poll(8 * S)
    assert starts(cmds) == ["1", "2", "3"]
    assert UpdateCompleted(("1",)) in cmds
    assert u.state == COMPLETED


def test_failure_ratio_is_failures_over_all_slots():
    # 4 slots, max_failure_ratio 0.25: the first failure (1/4) is tolerated, the second pauses
    u = RollingUpdate("web", [["1", "2"], ["3", "4"]],
                      cfg(order="start-first", max_failure_ratio=0.25), rcfg())
    u.poll(0)
    cmds = rep(u, "1", "failed", 1 * S)
    assert not any(isinstance(c, UpdatePaused) for c in cmds) and u.state == "updating"
    cmds = rep(u, "2", "running", 1 * S)
    assert starts(cmds) == ["3", "4"]  # wave 1 settled (one failed, one ready): go on
    cmds = rep(u, "3", "unhealthy", 2 * S)
    assert any(isinstance(c, UpdatePaused) for c in cmds)
    assert "2 of 4 tasks failed, max_failure_ratio 0.25" in u.reason


def test_failure_within_monitor_counts_after_it_does_not():
    u = RollingUpdate("web", [["1"], ["2"]], cfg(order="start-first", delay=10 * S), rcfg())
    u.poll(0)
    rep(u, "1", "running", 1 * S)
    rep(u, "1", "stopped", 7 * S)  # monitor ended at 6s: the restart policy's business now
    assert u.state == "updating"
    u2 = RollingUpdate("web", [["1"], ["2"]], cfg(order="start-first", delay=10 * S), rcfg())
    u2.poll(0)
    rep(u2, "1", "running", 1 * S)
    cmds = rep(u2, "1", "stopped", 5 * S, reason="exited (137)")
    assert UpdatePaused("update paused: 1: exited (137) 5s after start; 1 of 2 tasks failed, "
                        "max_failure_ratio 0") in cmds


def test_rollback_reverts_updated_slots_in_reverse_with_rollback_config():
    u = RollingUpdate("web", [["1"], ["2"], ["3"], ["4"]],
                      cfg(order="start-first", failure_action="rollback"),
                      rcfg(parallelism=2, order="stop-first", delay=1 * S))
    u.poll(0)
    cmds = rep(u, "1", "running", 1 * S)  # slot 1 updated, old stopped, no delay: next wave
    assert stops(cmds) == ["1"] and starts(cmds) == ["2"]
    cmds = rep(u, "2", "failed", 2 * S, reason="exited (1)")
    assert cmds[0] == RollbackStarted("update rolled back: 2: exited (1) 1s after start; "
                                      "1 of 4 tasks failed, max_failure_ratio 0")
    assert u.state == "rolling_back"
    # slot 2 (start-first, never ready): its old task still runs, so only the failed new task
    # goes; slot 1: stop-first rollback stops the new task, then starts the old version
    assert stops(cmds, "new") == ["2", "1"]
    assert starts(cmds, "old") == []
    cmds = rep(u, "1", "stopped", 3 * S, version="new")
    assert starts(cmds, "old") == ["1"]
    cmds = rep(u, "1", "running", 4 * S, version="old")
    u.poll(9 * S)
    assert u.state == ROLLED_BACK and not u.succeeded and u.done
    assert u.update_failures == ["2"]
    # slots 3 and 4 were never touched
    assert u.slot_state("3") == "pending"


def test_rollback_in_waves_of_rollback_parallelism():
    u = RollingUpdate("web", [["1", "2", "3"], ["4"]],
                      cfg(order="start-first", failure_action="rollback",
                          max_failure_ratio=0.5),
                      rcfg(parallelism=1, order="start-first", delay=2 * S))
    u.poll(0)
    rep(u, "1", "running", 1 * S)
    rep(u, "2", "running", 1 * S)
    cmds = rep(u, "3", "running", 1 * S)
    assert starts(cmds) == ["4"]
    cmds = rep(u, "4", "failed", 2 * S)  # 1/4 = 0.25 <= 0.5: tolerated
    assert u.state == "updating"
    # ...until a second and third failure within monitor: 3/4 > 0.5
    rep(u, "3", "failed", 3 * S)
    cmds = rep(u, "2", "failed", 4 * S)
    assert isinstance(cmds[0], RollbackStarted)
    # reverse order: 4, 3, 2, 1 — one at a time (parallelism 1). Slot 4 never became ready,
    # so its old task never stopped: only the failed new task is removed.
    assert stops(cmds, "new") == ["4"] and starts(cmds, "old") == []
    assert u.poll(5 * S) == [WaitUntil(6 * S)]  # rollback delay 2s after slot 4 settled
    order = []
    t = 6
    while u.state == "rolling_back" and t < 100:
        cmds = u.poll(t * S)
        for slot in starts(cmds, "old"):
            order.append((slot, t))
            launch_stops = stops(cmds, "new")
            ready_stops = stops(rep(u, slot, "running", t * S, version="old"), "new")
            if slot in ("3", "2"):  # failed new tasks are cleaned up at once
                assert (launch_stops, ready_stops) == ([slot], [])
            else:  # slot 1's new task is alive: start-first stops it once old is up
                assert (launch_stops, ready_stops) == ([], [slot])
        t += 1
    assert order == [("3", 6), ("2", 8), ("1", 10)]
    assert u.state == ROLLED_BACK and u.update_failures == ["4", "3", "2"]


def test_a_failing_rollback_pauses():
    u = RollingUpdate("web", [["1"]], cfg(order="start-first", failure_action="rollback"),
                      rcfg(order="stop-first"))
    u.poll(0)
    rep(u, "1", "running", 1 * S)  # ready: the old task is stopped
    cmds = rep(u, "1", "failed", 2 * S)
    # the new task is dead already: removed and replaced at once, stop-first or not
    assert isinstance(cmds[0], RollbackStarted) and stops(cmds, "new") == ["1"]
    assert starts(cmds, "old") == ["1"]
    cmds = rep(u, "1", "failed", 3 * S, version="old", reason="image not found")
    assert cmds[0] == RollbackPaused("rollback paused: 1: image not found 1s after start; "
                                     "1 of 1 tasks failed, max_failure_ratio 0")
    assert u.state == ROLLBACK_PAUSED and u.done


def test_rollback_continue_goes_on():
    u = RollingUpdate("web", [["1"], ["2"]], cfg(order="start-first", failure_action="rollback"),
                      rcfg(order="start-first", failure_action="continue", parallelism=0))
    u.poll(0)
    rep(u, "1", "running", 1 * S)
    u.poll(1 * S)
    cmds = rep(u, "2", "failed", 2 * S)
    assert starts(cmds, "old") == ["1"]  # slot 2's old task never stopped: nothing to start
    cmds = rep(u, "1", "failed", 3 * S, version="old")
    assert not any(isinstance(c, RollbackPaused) for c in cmds)
    cmds = u.poll(30 * S)
    assert u.state == ROLLED_BACK and u.done


def test_empty_update_completes_at_once():
    u = RollingUpdate("web", [], cfg(), rcfg())
    assert u.poll(0) == [UpdateCompleted()]


def test_reports_for_unknown_slots_are_ignored():
    u = RollingUpdate("web", [["1"]], cfg(order="start-first"), rcfg())
    u.poll(0)
    assert rep(u, "9", "failed", 1 * S) == [WaitUntil(5 * S)]


def test_rollback_takes_back_slots_an_earlier_stopped_run_updated():
    # slot 1 was moved to the new version by a run that was stopped (Ctrl-C); this run
    # updates 2 and 3, and 2 fails: the rollback reverts 2, then 1 (3 was never touched)
    u = RollingUpdate("web", [["2"], ["3"]], cfg(failure_action="rollback"),
                      rcfg(order="stop-first", parallelism=0), updated_before=["1"])
    cmds = u.poll(0)
    assert stops(cmds) == ["2"] and starts(cmds) == []  # slot 1 is not updated again
    cmds = rep(u, "2", "stopped", 1 * S, version="old")
    assert starts(cmds) == ["2"]
    cmds = rep(u, "2", "failed", 2 * S, reason="exited (1)")
    assert isinstance(cmds[0], RollbackStarted) and "1 of 2 tasks failed" in cmds[0].reason
    # stop-first rollback, all at once (parallelism 0): slot 2's new task is already gone
    # (failed), slot 1's runs and is stopped before its old version is started
    assert starts(cmds, "old") == ["2"] and stops(cmds, "new") == ["2", "1"]
    cmds = rep(u, "1", "stopped", 3 * S, version="new")
    assert starts(cmds, "old") == ["1"]
    rep(u, "2", "running", 4 * S, version="old")
    rep(u, "1", "running", 4 * S, version="old")
    u.poll(10 * S)
    assert u.state == ROLLED_BACK and u.update_failures == ["2"]
    assert u.slot_state("3") == "pending"


def test_without_a_rollback_earlier_slots_are_left_alone():
    u = RollingUpdate("web", [["2"]], cfg(), rcfg(), updated_before=["1"])
    cmds = u.poll(0)
    rep(u, "2", "stopped", 1 * S, version="old")
    cmds = rep(u, "2", "running", 2 * S)
    cmds = u.poll(8 * S)
    assert u.state == COMPLETED and not starts(cmds, "old") and not stops(cmds, "new")
