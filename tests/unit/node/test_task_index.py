"""The task-id index a node keeps for idempotent creates (stackctl/node/local.py)."""

from __future__ import annotations

import json

from stackctl.node.local import task_ids_of
from stackctl.scheduler.tasks import LABEL_TASK_ID


def _record(root, cid: str, labels) -> None:
    d = root / cid
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"id": cid, "labels": labels}))


def test_the_index_maps_task_ids_to_containers_and_skips_what_it_cannot_read(tmp_path):
    _record(tmp_path, "a" * 64, {LABEL_TASK_ID: "t1", "x": "y"})
    _record(tmp_path, "b" * 64, {LABEL_TASK_ID: "t2"})
    _record(tmp_path, "c" * 64, {})  # not a task (`stackctl run`)
    _record(tmp_path, "d" * 64, ["not", "a", "mapping"])
    (tmp_path / ("e" * 64)).mkdir()  # being written: no record yet
    broken = tmp_path / ("f" * 64)
    broken.mkdir()
    (broken / "config.json").write_text("{half")
    assert task_ids_of(str(tmp_path)) == {"t1": "a" * 64, "t2": "b" * 64}
    assert task_ids_of(str(tmp_path / "missing")) == {}
