"""Project name, file discovery, environment and profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackctl.errors import Pos, SpecError, UsageError
from stackctl.spec.project import (
    choose_profiles, choose_project_name, discover_files, normalize_project_name,
    project_environ, read_project_env)


@pytest.mark.parametrize("raw,normalized", [
    ("myapp", "myapp"),
    ("My App", "myapp"),
    ("My-App.v2", "my-appv2"),
    ("__hidden", "hidden"),
    ("-x_y-", "x_y-"),
    ("Ünïcode", "ncode"),
    ("!!!", ""),
])
def test_normalize(raw: str, normalized: str) -> None:
    assert normalize_project_name(raw) == normalized


def test_name_priority() -> None:
    from_file = ("fromfile", Pos("stack.yml", 1, 7))
    env = {"STACKCTL_PROJECT_NAME": "fromenv"}
    assert choose_project_name("opt", env, from_file, "/x/dir") == "opt"
    assert choose_project_name(None, env, from_file, "/x/dir") == "fromenv"
    assert choose_project_name(None, {}, from_file, "/x/dir") == "fromfile"
    assert choose_project_name(None, {}, None, "/x/My Dir") == "mydir"
    assert choose_project_name(None, {}, ("Mixed Case", None), "/x/d") == "mixedcase"


def test_explicit_name_must_be_valid() -> None:
    with pytest.raises(UsageError) as info:
        choose_project_name("My App", {}, None, "/x")
    assert info.value.lines() == [
        "invalid project name 'My App' (from -p): it must hold only lowercase letters, "
        'digits, "_" and "-", and start with a letter or a digit',
        "hint: use 'myapp'"]
    with pytest.raises(UsageError):
        choose_project_name(None, {"STACKCTL_PROJECT_NAME": "_x"}, None, "/x")


def test_name_in_file_with_nothing_left_is_located() -> None:
    with pytest.raises(SpecError) as info:
        choose_project_name(None, {}, ("***", Pos("stack.yml", 1, 7)), "/x")
    assert str(info.value) == ("stack.yml:1:7: name: project name '***' has no letter or digit "
                               'left after normalization (lowercase letters, digits, "_" and '
                               '"-" only)')


def test_directory_name_with_nothing_left() -> None:
    with pytest.raises(UsageError) as info:
        choose_project_name(None, {}, None, "/x/___")
    assert "-p NAME" in info.value.hint


def test_discovery_order_and_override(tmp_path: Path) -> None:
    for name in ("compose.yml", "docker-compose.yml"):
        (tmp_path / name).write_text("services: {}\n")
    assert discover_files(str(tmp_path), {}) == [str(tmp_path / "compose.yml")]
    (tmp_path / "compose.override.yaml").write_text("services: {}\n")
    assert discover_files(str(tmp_path), {}) == [str(tmp_path / "compose.yml"),
                                                 str(tmp_path / "compose.override.yaml")]
    (tmp_path / "stack.yaml").write_text("services: {}\n")
    assert discover_files(str(tmp_path), {}) == [str(tmp_path / "stack.yaml")]


def test_discovery_from_variable(tmp_path: Path) -> None:
    env = {"STACKCTL_FILE": "a.yml:sub/b.yml:/abs/c.yml"}
    assert discover_files(str(tmp_path), env) == [
        str(tmp_path / "a.yml"), str(tmp_path / "sub" / "b.yml"), "/abs/c.yml"]


def test_discovery_failure_names_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "stack.yml").mkdir()  # a directory does not count
    with pytest.raises(SpecError) as info:
        discover_files(str(tmp_path), {})
    assert info.value.lines() == [
        f"no stack file found in {tmp_path} (looked for stack.yml, stack.yaml, compose.yaml, "
        "compose.yml, docker-compose.yml, docker-compose.yaml)",
        "hint: name one with -f FILE, or set STACKCTL_FILE"]


def test_environment_process_wins_over_files() -> None:
    assert project_environ({"A": "proc"}, [{"A": "f1", "B": "f1"}, {"B": "f2", "C": "f2"}]) == {
        "A": "proc", "B": "f2", "C": "f2"}


def test_read_project_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("A=dotenv\nB=dotenv\n")
    (tmp_path / "one.env").write_text("A=one\nX=${A}\n")
    (tmp_path / "two.env").write_text("A=two\nY=$X\n")
    assert read_project_env({"B": "proc"}, str(tmp_path), [], str(tmp_path)) == {
        "A": "dotenv", "B": "proc"}
    # --env-file replaces .env; later files win; each sees what came before
    assert read_project_env({}, str(tmp_path), ["one.env", "two.env"], str(tmp_path)) == {
        "A": "two", "X": "one", "Y": "one"}
    assert read_project_env({}, str(tmp_path / "nowhere"), [], str(tmp_path)) == {}
    with pytest.raises(SpecError) as info:
        read_project_env({}, str(tmp_path), ["missing.env"], str(tmp_path))
    assert str(info.value) == f"--env-file: env file {tmp_path}/missing.env not found"


def test_profiles() -> None:
    env = {"STACKCTL_PROFILES": "debug, tools,,debug"}
    assert choose_profiles([], env) == ["debug", "tools"]
    assert choose_profiles(["prod", "a,b"], env) == ["prod", "a", "b"]
    assert choose_profiles([], {}) == []
