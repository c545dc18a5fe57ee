import json
import os

import pytest

from stackctl.errors import ConflictError, NotFoundError, UsageError
from stackctl.paths import NodePaths
from stackctl.runtime.volumes import VolumeStore, matches


@pytest.fixture
def store(tmp_path):
    return VolumeStore(NodePaths(str(tmp_path / "state"), str(tmp_path / "run"), "t"))


def test_create_get_inspect(store):
    v = store.create("data", labels={"a": "1"})
    assert os.path.isdir(v.mountpoint) and v.mountpoint.endswith("/volumes/data/_data")
    doc = store.get("data").inspect()
    assert doc["Driver"] == "local" and doc["Labels"] == {"a": "1"} and doc["Scope"] == "local"
    assert doc["CreatedAt"].endswith("Z")
    meta = json.load(open(os.path.join(os.path.dirname(v.mountpoint), "volume.json")))
    assert meta["anonymous"] is False
    assert store.create("data").created_at == v.created_at  # idempotent, like docker


def test_anonymous_names_and_bad_names(store):
    v = store.create()
    assert len(v.name) == 64 and v.anonymous
    for bad in ("a", "-x", "a/b"):
        with pytest.raises(UsageError):
            store.create(bad)
    with pytest.raises(UsageError):
        store.create("x1", driver="nfs")


def test_remove_in_use_and_missing(store):
    store.create("data")
    with pytest.raises(ConflictError, match="in use by container web"):
        store.remove("data", ["web"])
    store.remove("data")
    with pytest.raises(NotFoundError, match="no such volume: data"):
        store.get("data")


def test_prune_anonymous_by_default(store):
    named = store.create("named")
    anon = store.create()
    used = store.create()
    with open(os.path.join(anon.mountpoint, "f"), "w") as f:
        f.write("12345")
    removed, size = store.prune({used.name})
    assert removed == [anon.name] and size == 5
    removed, _ = store.prune({used.name}, all_volumes=True)
    assert removed == [named.name]


def test_filters_and_populated_flag(store):
    v = store.create("data", labels={"env": "prod"})
    assert matches(v, {"label": ["env=prod"]}) and not matches(v, {"label": ["env=dev"]})
    assert matches(v, {"name": ["dat"]}) and matches(v, {"dangling": ["true"]}, {"data"})
    assert not matches(v, {"dangling": ["false"]}, {"data"})
    assert store.is_empty("data")
    store.mark_populated("data")
    assert store.get("data").populated
