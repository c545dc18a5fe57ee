"""The whole load pipeline up to the merged raw tree, and load_project with a small fake."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackctl.errors import Pos, SpecError
from stackctl.spec.load import LoadOptions, load_project, load_raw
from stackctl.spec.yamlpos import strip_positions

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "load"


def load(scenario: str, **kw):
    kw.setdefault("environ", {"HOME": "/home/u"})
    return load_raw(LoadOptions(cwd=str(FIXTURES / scenario), **kw))


def test_basic_env_file_and_interpolation() -> None:
    project = load("basic")
    assert project.name == "demo"
    assert project.directory == str(FIXTURES / "basic")
    assert project.files == [str(FIXTURES / "basic" / "stack.yml")]
    assert project.environ["TAG"] == "1.25"
    assert project.environ["STACKCTL_PROJECT_NAME"] == "demo"
    out = strip_positions(project.raw)
    assert list(out) == ["name", "services", "x-note"]
    web = out["services"]["web"]
    assert web["image"] == "nginx:1.25"
    assert web["ports"] == ["8080:80"]
    assert web["environment"] == {"GREETING": "hello\tworld", "LITERAL": "$HOME"}
    assert web["labels"] == ["owner=ops"]
    assert out["x-note"] == "1.25"
    assert [str(w) for w in project.warnings] == [
        'stack.yml:12:23: services.web.command[1]: the "UNSET_ONE" variable is not set, '
        "defaulting to a blank string",
        'stack.yml:12:39: services.web.command[2]: the "UNSET_TWO" variable is not set, '
        "defaulting to a blank string",
    ]


def test_process_environment_wins_over_dotenv() -> None:
    project = load("basic", environ={"TAG": "2", "APP_NAME": "other", "WEB_PORT": "9"})
    assert project.raw["services"]["web"]["image"] == "nginx:2"
    assert project.raw["services"]["web"]["ports"] == ["9:80"]
    assert project.name == "other"


def test_env_files_replace_dotenv(tmp_path: Path) -> None:
    env = tmp_path / "ci.env"
    env.write_text("TAG=ci\n")
    project = load("basic", env_files=[str(env)])
    assert project.raw["services"]["web"]["image"] == "nginx:ci"
    assert "GREETING" not in project.environ


def test_name_option_and_project_directory(tmp_path: Path) -> None:
    project = load("basic", project_name="given", project_directory=str(tmp_path))
    assert project.name == "given"
    assert project.raw["name"] == "given"
    assert project.directory == str(tmp_path)
    assert project.raw["services"]["web"]["image"] == "nginx:"  # no .env in tmp_path


def test_override_file_is_found_and_merged() -> None:
    project = load("override")
    assert project.files == [str(FIXTURES / "override" / "compose.yaml"),
                             str(FIXTURES / "override" / "compose.override.yaml")]
    web = strip_positions(project.raw)["services"]["web"]
    assert web["command"] == "nginx-debug"
    assert web["ports"] == ["80:80", "443:443", "8080:8080"]
    assert web["environment"] == {"MODE": "dev", "KEEP": "1"}
    assert web["volumes"] == [f"{FIXTURES / 'override' / 'dev-html'}:/usr/share/nginx/html",
                              "logs:/var/log"]
    assert web["dns"] == ["1.1.1.1", "8.8.8.8"]
    assert list(project.raw["services"]) == ["web", "db", "cache"]
    assert project.raw["services"]["web"].val_pos["command"] == Pos(
        "compose.override.yaml", 3, 14)


def test_override_paths_are_relative_to_the_project_directory() -> None:
    project = load("tags", files=["base.yml", "prod/prod.yml"])
    app = strip_positions(project.raw)["services"]["app"]
    assert app == {"image": "app:1", "environment": {"C": "3"}, "deploy": {"replicas": 5},
                   "build": str(FIXTURES / "tags" / "src")}


def test_discovery_of_docker_compose_names_and_directory_name() -> None:
    assert strip_positions(load("discover").raw)["services"]["one"] == {
        "image": "busybox", "command": ["true"]}
    assert load("My-App.v2").name == "my-appv2"


def test_stackctl_file_variable_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STACKCTL_FILE=a.yml:b.yml\nSTACKCTL_PROFILES=dev\n")
    (tmp_path / "a.yml").write_text("services: {s: {image: a}}\n")
    (tmp_path / "b.yml").write_text("services: {s: {image: b}}\n")
    project = load_raw(LoadOptions(cwd=str(tmp_path), environ={}))
    assert project.raw["services"]["s"]["image"] == "b"
    assert project.profiles == ["dev"]


def test_every_interpolation_error_of_every_file_at_once() -> None:
    with pytest.raises(SpecError) as info:
        load("missing_vars", files=["stack.yml", "other.yml"])
    assert info.value.lines() == [
        "stack.yml:5:12: services.api.image: required variable API_TAG is missing: set API_TAG "
        "to the release",
        "stack.yml:7:14: services.api.environment.TOKEN: required variable TOKEN is missing",
        'stack.yml:8:12: services.api.environment.BAD: invalid interpolation "${ bad}": a '
        'variable name must start with a letter or "_" and hold only letters, digits and "_" '
        "(write $$ for a literal $)",
        "other.yml:3:12: services.web.image: required variable WEB_TAG is missing: need WEB_TAG",
        "hint: set the variables in the environment or in the .env file",
    ]


def test_missing_files_are_all_named(tmp_path: Path) -> None:
    (tmp_path / "dir.yml").mkdir()
    with pytest.raises(SpecError) as info:
        load_raw(LoadOptions(cwd=str(tmp_path), files=["nope.yml", "dir.yml"], environ={}))
    assert info.value.lines() == [
        "stack file nope.yml not found",
        "stack file dir.yml is a directory, not a file",
        "hint: check the -f option, or the names in STACKCTL_FILE",
    ]


def test_no_file_found_names_the_names_looked_for() -> None:
    with pytest.raises(SpecError) as info:
        load("empty")
    assert "looked for stack.yml, stack.yaml, compose.yaml" in str(info.value)


def test_yaml_errors_of_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("services:\n  web: [\n")
    (tmp_path / "b.yml").write_text("- just\n- a list\n")
    with pytest.raises(SpecError) as info:
        load_raw(LoadOptions(cwd=str(tmp_path), files=["a.yml", "b.yml"], environ={}))
    lines = [str(i) for i in info.value.issues]
    assert lines[0].startswith("a.yml:3:1: invalid YAML")
    assert lines[1] == ("b.yml:1:1: a stack file must be a mapping at the top level "
                        "(services:, networks:, ...)")


def test_stdin(tmp_path: Path) -> None:
    project = load_raw(LoadOptions(cwd=str(tmp_path), files=["-"], environ={"T": "7"},
                                   stdin="services:\n  s:\n    image: x:${T}\n"))
    assert project.directory == str(tmp_path)
    assert project.raw["services"]["s"]["image"] == "x:7"
    assert project.raw["services"]["s"].val_pos["image"] == Pos("<stdin>", 3, 12)


def test_compose_project_name_is_available_to_files(tmp_path: Path) -> None:
    (tmp_path / "stack.yml").write_text(
        "name: shop\nservices:\n  s: {image: x, hostname: '${COMPOSE_PROJECT_NAME}-"
        "${STACKCTL_PROJECT_NAME}'}\n")
    project = load_raw(LoadOptions(cwd=str(tmp_path), environ={}))
    assert project.raw["services"]["s"]["hostname"] == "shop-shop"


def test_load_project_hands_the_raw_tree_to_build_stack() -> None:
    seen = {}

    def fake_build(raw, *, project_name, project_dir, environ, profiles):
        seen.update(raw=raw, name=project_name, dir=project_dir, profiles=profiles)
        from stackctl.errors import Issue
        return "STACK", "GRAPH", [Issue("built")]

    project = load_project(LoadOptions(cwd=str(FIXTURES / "basic"), environ={},
                                       profiles=["debug"]), build=fake_build)
    assert (project.stack, project.graph) == ("STACK", "GRAPH")
    assert seen["name"] == "demo" and seen["profiles"] == ["debug"]
    assert seen["dir"] == str(FIXTURES / "basic")
    assert seen["raw"] is project.raw
    assert [w.message for w in project.warnings][-1] == "built"


# -- paths -----------------------------------------------------------------------------------

from stackctl.spec.paths import resolve_paths  # noqa: E402
from stackctl.spec.yamlpos import load_yaml  # noqa: E402

PATHS = """\
services:
  s:
    build: ./app
    env_file: [a.env, {path: ../b.env, required: false}, /abs.env]
    volumes:
      - ./data:/data:ro
      - ~/cache:/cache
      - named:/named
      - /anonymous
      - {type: bind, source: rel, target: /r}
      - {type: volume, source: vol, target: /v}
    extends: {file: common.yml, service: base}
  t:
    build: {context: ../ctx, dockerfile: Dockerfile.dev}
    env_file: t.env
  u:
    build: https://github.com/x/y.git#main
secrets:
  s1: {file: ./secret.txt}
configs:
  c1: {file: conf/c.conf}
volumes:
  bound: {driver: local, driver_opts: {type: none, o: bind, device: ./host}}
include:
  - inc/a.yml
  - {path: [inc/b.yml], project_directory: inc, env_file: inc/.env}
"""


def test_relative_paths_are_made_absolute() -> None:
    tree = load_yaml(PATHS, "stack.yml")
    out = strip_positions(resolve_paths(tree, "/p", {"HOME": "/home/u"}))
    s, t = out["services"]["s"], out["services"]["t"]
    assert s["build"] == "/p/app"
    assert s["env_file"] == ["/p/a.env", {"path": "/b.env", "required": False}, "/abs.env"]
    assert s["volumes"] == ["/p/data:/data:ro", "/home/u/cache:/cache", "named:/named",
                            "/anonymous", {"type": "bind", "source": "/p/rel", "target": "/r"},
                            {"type": "volume", "source": "vol", "target": "/v"}]
    assert s["extends"]["file"] == "/p/common.yml"
    assert t["build"] == {"context": "/ctx", "dockerfile": "Dockerfile.dev"}
    assert t["env_file"] == "/p/t.env"
    assert out["services"]["u"]["build"] == "https://github.com/x/y.git#main"
    assert out["secrets"]["s1"]["file"] == "/p/secret.txt"
    assert out["configs"]["c1"]["file"] == "/p/conf/c.conf"
    assert out["volumes"]["bound"]["driver_opts"]["device"] == "/p/host"
    assert out["include"] == ["/p/inc/a.yml", {"path": ["/p/inc/b.yml"],
                                               "project_directory": "/p/inc",
                                               "env_file": "/p/inc/.env"}]
    assert strip_positions(tree)["services"]["s"]["build"] == "./app"  # input unchanged


# -- odd input only ever gives SpecError -----------------------------------------------------

@pytest.mark.parametrize("text", [
    "services: [1, 2]\n",
    "services: {web: [1]}\n",
    "services: {web: {extends: 5}}\n",
    "services: {web: {extends: {service: [x]}}}\n",
    "services: {web: {build: 5, env_file: 3, volumes: [{type: bind, source: 1}]}}\n",
    "include: 5\n",
    "include: [{path: 5}]\n",
    "name: 5\nservices: {}\n",
    "secrets: [x]\nconfigs: {c: 5}\nvolumes: {v: {driver_opts: 5}}\n",
    "services:\n  a: !reset\n  b: !override {image: x}\n",
    "x-a: &a {k: ${X:-1}}\nservices: {s: {<<: *a, image: y}}\n",
    "",
    "services:\n",
])
def test_odd_input_loads_or_raises_spec_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "stack.yml").write_text(text)
    (tmp_path / "o.yml").write_text("services: {web: {ports: 5, environment: 3}}\n")
    for files in (["stack.yml"], ["stack.yml", "o.yml"]):
        try:
            load_raw(LoadOptions(cwd=str(tmp_path), files=files, environ={}))
        except SpecError:
            pass
