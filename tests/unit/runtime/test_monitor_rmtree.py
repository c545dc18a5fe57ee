"""The monitor's own rmtree (it avoids importing shutil on the exit path)."""

from __future__ import annotations

import os

from stackctl.runtime.containers.monitor import _rmtree


def test_removes_a_tree_without_following_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    d = tmp_path / "c"
    (d / "upper" / "etc").mkdir(parents=True)
    (d / "upper" / "etc" / "f").write_text("y")
    (d / "work" / "work").mkdir(parents=True)
    os.chmod(d / "work" / "work", 0)
    (d / "config.json").write_text("{}")
    os.symlink(outside, d / "link")
    os.symlink("/nonexistent", d / "dangling")
    _rmtree(str(d))
    assert not d.exists()
    assert (outside / "keep").read_text() == "x"


def test_a_missing_directory_is_not_an_error(tmp_path):
    _rmtree(str(tmp_path / "gone"))
