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


def test_an_rm_containers_directory_is_set_aside_beside_the_containers(tmp_path):
    """The record goes at once (renamed out of <state>/containers); its files later."""
    from stackctl.runtime.containers.monitor import TRASH, set_aside

    cdir = tmp_path / "containers" / ("a" * 64)
    (cdir / "upper").mkdir(parents=True)
    (cdir / "config.json").write_text("{}")
    moved = set_aside(str(cdir))
    assert moved == str(tmp_path / TRASH / ("a" * 64))
    assert not cdir.exists() and os.listdir(tmp_path / "containers") == []
    assert (tmp_path / TRASH / ("a" * 64) / "config.json").read_text() == "{}"
    _rmtree(moved)
    assert os.listdir(tmp_path / TRASH) == []
    assert set_aside(str(cdir)) == ""  # already gone: nothing to move
