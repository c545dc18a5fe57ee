"""Files a container start writes (stackctl/runtime/containers/api.py): the record create wrote
is rewritten only when the start changed it."""

import json
import os

from stackctl.runtime.containers import api
from stackctl.runtime.jsonfile import write_json


def test_an_unchanged_record_is_not_rewritten(tmp_path):
    path = str(tmp_path / "config.json")
    obj = {"id": "x" * 64, "argv": ["sh", "-c", "echo é"], "resources": {"memory": None}}
    write_json(path, obj)
    ino = os.stat(path).st_ino
    api._write_json_if_changed(path, obj)
    assert os.stat(path).st_ino == ino  # the same file: nothing written, nothing renamed
    changed = dict(obj, ulimits={"nofile": [1024, 1024]})
    api._write_json_if_changed(path, changed)
    assert os.stat(path).st_ino != ino
    with open(path) as f:
        assert json.load(f) == changed
    assert sorted(os.listdir(tmp_path)) == ["config.json"]


def test_a_missing_or_unreadable_record_is_written(tmp_path):
    path = str(tmp_path / "config.json")
    api._write_json_if_changed(path, {"a": 1})
    with open(path) as f:
        assert json.load(f) == {"a": 1}
    with open(path, "wb") as f:
        f.write(b"\xff\xfe")
    api._write_json_if_changed(path, {"a": 2})
    with open(path) as f:
        assert json.load(f) == {"a": 2}
