"""include: sub-projects with their own directory and .env, conflicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackctl.errors import Issue, Pos, SpecError
from stackctl.spec.include import IncludeEntry, apply_include, parse_include
from stackctl.spec.load import LoadOptions, load_raw
from stackctl.spec.yamlpos import load_yaml, strip_positions

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "load"


def test_included_projects_add_their_resources() -> None:
    project = load_raw(LoadOptions(cwd=str(FIXTURES / "include"), environ={}))
    out = strip_positions(project.raw)
    base = FIXTURES / "include"
    assert "include" not in out
    assert list(out["services"]) == ["web", "db", "cache"]
    assert out["services"]["web"]["image"] == "web:3"
    # the sub-project's paths are relative to its own directory
    assert out["services"]["db"]["env_file"] == str(base / "db" / "db.env")
    assert out["services"]["db"]["volumes"] == [f"{base / 'db' / 'init'}:/docker-entrypoint-initdb.d"]
    # the including project's environment wins over the sub-project's own .env
    assert out["services"]["db"]["image"] == "postgres:from-parent"
    # env_file replaces the sub-project's .env
    assert out["services"]["cache"]["image"] == "redis:7"
    assert out["volumes"] == {"dbdata": {}}
    assert project.raw["services"].key_pos["db"] == Pos("db/stack.yml", 2, 3)


def test_process_environment_wins_everywhere() -> None:
    project = load_raw(LoadOptions(cwd=str(FIXTURES / "include"),
                                   environ={"DB_TAG": "env", "CACHE_TAG": "env"}))
    assert project.raw["services"]["db"]["image"] == "postgres:env"
    assert project.raw["services"]["cache"]["image"] == "redis:env"


def test_conflict_names_both_files() -> None:
    with pytest.raises(SpecError) as info:
        load_raw(LoadOptions(cwd=str(FIXTURES / "include_conflict"), environ={}))
    assert str(info.value) == (
        "stack.yml:2:5: include[0]: service 'db' is defined both here (stack.yml:4:3) and in "
        "the included sub/stack.yml:2:3; rename one of them, tag this one !override to "
        "replace the included one, or change it from a later -f file")


def test_identical_definitions_are_not_a_conflict() -> None:
    tree = load_yaml("include: [/x/a.yml]\nnetworks: {n: {driver: bridge}}\n", "s.yml")
    sub = load_yaml("networks: {n: {driver: bridge}}\n", "a.yml")
    out = apply_include(tree, lambda entry: sub)
    assert strip_positions(out) == {"networks": {"n": {"driver": "bridge"}}}


def test_include_cycle(tmp_path: Path) -> None:
    (tmp_path / "stack.yml").write_text("include: [sub/a.yml]\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yml").write_text("include: [../stack.yml]\n")
    with pytest.raises(SpecError) as info:
        load_raw(LoadOptions(cwd=str(tmp_path), environ={}))
    assert str(info.value) == ("sub/a.yml:1:11: include[0]: include cycle: stack.yml -> "
                               "sub/a.yml -> stack.yml")


def test_missing_included_file(tmp_path: Path) -> None:
    (tmp_path / "stack.yml").write_text("include:\n  - nope.yml\n")
    with pytest.raises(SpecError) as info:
        load_raw(LoadOptions(cwd=str(tmp_path), environ={}))
    assert str(info.value) == "stack.yml:2:5: include[0]: stack file nope.yml not found"


def test_parse_forms_and_errors() -> None:
    tree = load_yaml(
        "include:\n"
        "  - a.yml\n"
        "  - path: [b.yml, c.yml]\n"
        "    project_directory: /p\n"
        "    env_file: e.env\n"
        "  - {paht: x.yml}\n"
        "  - 3\n", "s.yml")
    entries, issues = parse_include(tree["include"], tree.val_pos["include"])
    assert [(e.paths, e.project_directory, e.env_files) for e in entries] == [
        (["a.yml"], None, []), (["b.yml", "c.yml"], "/p", ["e.env"])]
    assert [str(i) for i in issues] == [
        "s.yml:6:6: include[2].paht: unknown key 'paht' (expected path, project_directory, "
        "env_file)",
        "s.yml:6:5: include[2]: include needs `path:` (a file, or a list of files)",
        "s.yml:7:5: include[3]: an include entry must be a path or a mapping with path",
    ]


def test_errors_of_a_sub_project_keep_their_own_place() -> None:
    tree = load_yaml("include: [a.yml]\n", "s.yml")

    def broken(entry: IncludeEntry):
        raise SpecError(Issue("broken", pos=Pos("a.yml", 1, 1)))

    with pytest.raises(SpecError) as info:
        apply_include(tree, broken)
    assert str(info.value) == "a.yml:1:1: broken"
