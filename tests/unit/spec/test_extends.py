"""extends: same file, other file, chains, cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackctl.errors import Pos, SpecError
from stackctl.spec.extends import apply_extends
from stackctl.spec.load import LoadOptions, load_raw
from stackctl.spec.yamlpos import load_yaml, strip_positions

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "load"


def raw(scenario: str, **kw) -> dict:
    kw.setdefault("environ", {"HOME": "/home/u"})
    return load_raw(LoadOptions(cwd=str(FIXTURES / scenario), **kw)).raw


def no_other(path: str):
    raise AssertionError(f"unexpected read of {path}")


def test_chain_in_the_same_file() -> None:
    services = strip_positions(raw("extends_same"))["services"]
    assert services["middle"] == {
        "image": "busybox", "environment": {"LEVEL": "middle", "KEEP": "yes"},
        "command": ["sleep", "1"], "ports": ["1000:1000", "2000:2000"]}
    assert services["top"]["command"] == ["sleep", "3"]  # replaced, not appended
    assert services["top"]["environment"] == {"LEVEL": "middle", "KEEP": "yes"}
    assert "extends" not in services["top"]
    assert services["base"]["ports"] == ["1000:1000"]  # the base itself is untouched


def test_other_file_paths_are_relative_to_that_file() -> None:
    out = raw("extends_file")
    web = strip_positions(out)["services"]["web"]
    common = FIXTURES / "extends_file" / "common"
    assert web == {
        "image": "base:1",
        "environment": {"DEBUG": "1", "ROOT": "yes"},
        "build": str(common / "app"),
        "env_file": str(common / "web.env"),
        "volumes": [f"{common / 'static'}:/static"],
    }
    # positions point into the file that wrote the value
    assert out["services"]["web"].val_pos["image"] == Pos("common/more/root.yml", 3, 12)


def test_other_file_is_interpolated_with_the_project_environment() -> None:
    out = raw("extends_file", environ={"ROOT_TAG": "9"})
    assert out["services"]["web"]["image"] == "base:9"


def test_cycle_names_the_chain_and_other_errors_come_too() -> None:
    with pytest.raises(SpecError) as info:
        raw("extends_cycle")
    assert [str(i) for i in info.value.issues] == [
        "stack.yml:9:14: services.c.extends: extends cycle: a -> b -> c -> a; a service "
        "cannot extend itself, directly or not",
        "stack.yml:11:14: services.lonely.extends: service 'nowhere' not found "
        "(services: a, b, c, lonely)",
    ]


def test_extending_itself() -> None:
    tree = load_yaml("services:\n  a:\n    extends: a\n", "s.yml")
    with pytest.raises(SpecError) as info:
        apply_extends(tree, "s.yml", no_other)
    assert str(info.value) == ("s.yml:3:14: services.a.extends: extends cycle: a -> a; a "
                               "service cannot extend itself, directly or not")


def test_cycle_across_files_names_the_files() -> None:
    files = {
        "/p/a.yml": "services:\n  x:\n    extends: {file: /p/b.yml, service: y}\n",
        "/p/b.yml": "services:\n  y:\n    extends: {file: /p/a.yml, service: x}\n",
    }
    tree = load_yaml(files["/p/a.yml"], "a.yml")
    with pytest.raises(SpecError) as info:
        apply_extends(tree, "/p/a.yml", lambda p: load_yaml(files[p], p.rsplit("/", 1)[1]))
    assert "extends cycle: x (/p/a.yml) -> y (/p/b.yml) -> x (/p/a.yml)" in str(info.value)


@pytest.mark.parametrize("extends,message", [
    ("{file: other.yml}", "s.yml:3:14: services.a.extends: extends needs `service:` (the name "
                          "of the service to extend)"),
    ("{service: b, files: x}", "s.yml:3:27: services.a.extends.files: unknown key 'files' in "
                               "extends (expected service, file)"),
    ("[b]", "s.yml:3:14: services.a.extends: extends must be a service name or a mapping with "
            "service (and file)"),
])
def test_malformed_extends(extends: str, message: str) -> None:
    tree = load_yaml(f"services:\n  a:\n    extends: {extends}\n  b: {{image: x}}\n", "s.yml")
    with pytest.raises(SpecError) as info:
        apply_extends(tree, "s.yml", no_other)
    assert str(info.value) == message


def test_missing_other_file_is_located_at_the_extends(tmp_path: Path) -> None:
    (tmp_path / "stack.yml").write_text(
        "services:\n  a:\n    extends:\n      file: nope.yml\n      service: b\n")
    with pytest.raises(SpecError) as info:
        load_raw(LoadOptions(cwd=str(tmp_path), environ={}))
    assert str(info.value) == ("stack.yml:4:13: services.a.extends.file: stack file nope.yml "
                               "not found")


def test_service_missing_in_other_file(tmp_path: Path) -> None:
    (tmp_path / "stack.yml").write_text(
        "services:\n  a:\n    extends: {file: common.yml, service: nope}\n")
    (tmp_path / "common.yml").write_text("services:\n  base: {image: x}\n")
    with pytest.raises(SpecError) as info:
        load_raw(LoadOptions(cwd=str(tmp_path), environ={}))
    assert str(info.value) == ("stack.yml:3:42: services.a.extends.service: service 'nope' not "
                               "found in common.yml (services: base)")


def test_everything_is_inherited_including_depends_on() -> None:
    tree = load_yaml("services:\n  base: {image: x, depends_on: [db], volumes_from: [db]}\n"
                     "  a: {extends: base, depends_on: [cache]}\n", "s.yml")
    out = strip_positions(apply_extends(tree, "s.yml", no_other))
    assert out["services"]["a"] == {"image": "x", "depends_on": ["db", "cache"],
                                    "volumes_from": ["db"]}


def test_input_is_not_changed() -> None:
    tree = load_yaml("services:\n  b: {image: x, ports: ['1:1']}\n"
                     "  a: {extends: b, ports: ['2:2']}\n", "s.yml")
    before = strip_positions(tree)
    apply_extends(tree, "s.yml", no_other)
    assert strip_positions(tree) == before
