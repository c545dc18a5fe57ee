"""The agent's SQLite store: versioned stacks, restart history, health, migrations."""

from __future__ import annotations

import sqlite3

import pytest

from stackctl.agent.store import KEEP_VERSIONS, MIGRATIONS, Store, StoreError
from stackctl.errors import NotFoundError


@pytest.fixture
def store(tmp_path):
    clock = iter(float(i) for i in range(1, 10_000))
    s = Store(str(tmp_path / "agent.db"), clock=lambda: next(clock))
    yield s
    s.close()


def test_wal_and_schema_version(store, tmp_path):
    assert store.schema_version == len(MIGRATIONS)
    mode = sqlite3.connect(tmp_path / "agent.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_put_stack_versions_and_previous(store):
    assert store.get_stack("shop") is None
    assert store.put_stack("shop", {"services": {"web": {"image": "a"}}}, "/p") == 1
    rec = store.get_stack("shop")
    assert (rec.version, rec.spec, rec.project_dir, rec.previous) == (1, {"services": {"web": {"image": "a"}}}, "/p", None)
    # the same spec (any key order, or as JSON text) is not a new version
    assert store.put_stack("shop", '{"services": {"web": {"image": "a"}}}', "/p") == 1
    assert store.put_stack("shop", {"services": {"web": {"image": "b"}}}, "/p") == 2
    rec = store.get_stack("shop")
    assert rec.version == 2 and rec.spec["services"]["web"]["image"] == "b"
    assert rec.previous.version == 1 and rec.previous.spec["services"]["web"]["image"] == "a"
    assert rec.to_json()["previous_version"] == 1


def test_old_versions_are_dropped(store):
    for i in range(KEEP_VERSIONS + 5):
        store.put_stack("s", {"i": i})
    versions = store.stack_versions("s")
    assert len(versions) == KEEP_VERSIONS and versions[-1] == KEEP_VERSIONS + 5


def test_list_status_delete(store):
    store.put_stack("b", {"x": 1})
    store.put_stack("a", {"x": 1})
    store.set_stack_status("a", "stopped")
    assert [(s.name, s.status) for s in store.list_stacks()] == [("a", "stopped"), ("b", "")]
    with pytest.raises(NotFoundError):
        store.set_stack_status("zzz", "x")
    with pytest.raises(NotFoundError):
        store.require_stack("zzz")
    store.record_restart("a", "web", "1", "h1", 5)
    assert store.delete_stack("a") is True
    assert store.delete_stack("a") is False
    assert [s.name for s in store.list_stacks()] == ["b"]
    assert store.restart_history("a", "web", "1", "h1") == []
    # a stack deployed again after removal starts a fresh history but keeps counting versions
    assert store.put_stack("a", {"x": 2}) == 1


def test_restart_history_per_hash(store):
    store.record_restart("s", "web", "1", "h1", 30)
    store.record_restart("s", "web", "1", "h1", 10)
    store.record_restart("s", "web", "1", "h2", 20)
    store.record_restart("s", "web", "2", "h1", 40)
    assert store.restart_history("s", "web", "1", "h1") == [10, 30]
    store.clear_restarts("s", "web", "1", except_hash="h2")
    assert store.restart_history("s", "web", "1", "h1") == []
    assert store.restart_history("s", "web", "1", "h2") == [20]
    store.clear_restarts("s")
    assert store.restart_history("s", "web", "2", "h1") == []


def test_health_config_state_and_prune(store):
    cfg = {"test": ["CMD", "true"], "interval": 1.0}
    store.put_health_config("c1", cfg)
    store.put_health_config("c2", cfg)
    h = store.get_health("c1")
    assert (h.config, h.status, h.failing_streak, h.log) == (cfg, "", 0, [])
    store.save_health_state("c1", "healthy", 0, [{"ExitCode": 0}], "T1")
    h = store.get_health("c1")
    assert (h.status, h.log, h.started_at) == ("healthy", [{"ExitCode": 0}], "T1")
    assert set(store.all_health()) == {"c1", "c2"}
    assert store.prune_health(["c1"]) == ["c2"]
    store.delete_health("c1")
    assert store.all_health() == {}


def test_reopen_keeps_data_and_refuses_newer_schema(tmp_path):
    path = str(tmp_path / "agent.db")
    with Store(path) as s:
        s.put_stack("a", {"x": 1})
    with Store(path) as s:
        assert s.get_stack("a").version == 1
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version"):
        Store(path)


def test_failed_write_rolls_back(store):
    store.put_stack("a", {"x": 1})
    with pytest.raises(ZeroDivisionError):
        with store._tx() as db:
            db.execute("UPDATE stacks SET status = 'broken' WHERE name = 'a'")
            1 / 0
    assert store.get_stack("a").status == ""
