"""Stack files and .env files: arbitrary input only ever raises SpecError (one line per
located issue), never a traceback of another kind, in bounded time. Data trees go through
validation; YAML text, with anchors, aliases, merge keys, tags and interpolation, goes through
the whole loader (files, interpolation, merge, extends, include, validation)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fuzz_settings import FUZZ, bounded
from stackctl.errors import SpecError
from stackctl.spec.envfile import parse_env_file
from stackctl.spec.interpolate import substitute, TemplateError
from stackctl.spec.load import LoadOptions, load_project
from stackctl.spec.validate import build_stack
from stackctl.spec.yamlpos import load_yaml

KEYS = ["services", "networks", "volumes", "secrets", "configs", "web", "db", "image", "ports",
        "volumes", "deploy", "replicas", "mode", "healthcheck", "test", "depends_on",
        "condition", "environment", "command", "target", "published", "type", "source",
        "resources", "limits", "cpus", "memory", "restart_policy", "update_config", "delay",
        "network_mode", "volumes_from", "profiles", "external", "driver", "ipam", "config",
        "subnet", "x-a", "build", "context", "ulimits", "extra_hosts", "secrets", "file",
        "content", "aliases", "labels", "scale", "restart", "tmpfs", "devices", "1"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.sampled_from(["8080:80", "80-81", "data:/data", "./x:/y:ro", "1m30s", "512m", "0.5",
                     "service:web", "global", "CMD", "web", "", "a=b", "::1", "10.0.0.0/8"]),
    st.text(max_size=12),
)
data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)

SETTINGS = FUZZ


def _run(raw) -> None:
    with bounded():
        build_stack(raw, project_name="p", project_dir="/nonexistent", environ={},
                    profiles=["*"])


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS), data, max_size=5))
def test_arbitrary_data(raw):
    _run(raw)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["web", "db", "a"]),
                       st.dictionaries(st.sampled_from(KEYS), data, max_size=6), max_size=3))
def test_arbitrary_services(services):
    _run({"services": services})


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}&*!|>'\"#\n 0123.,$")), max_size=80))
def test_arbitrary_yaml_text(text):
    try:
        raw = load_yaml(text, "f.yml")
    except SpecError:
        return
    _run(raw)


# YAML written line by line from pieces a stack file has: keys, anchors, aliases, merge keys,
# tags, flow collections, interpolation, extends/include
PIECES = ["services:", "  web:", "  db:", "    image: busybox", "    <<: *a", "    x: &a {a: 1}",
          "x-a: &a", "x-b: &b [*a, *a]", "  <<: [*a, *b]", "    ports: ['8080:80']", "    ports:",
          "      - ${P:-80}:80", "      - !reset", "    environment: !override {A: 1}",
          "    extends: {service: db}", "    extends: {file: other.yml, service: x}",
          "include: [other.yml]", "    command: \"sh -c 'x'\"", "    command: ${C:?no}",
          "    deploy: {replicas: ${R-2}, resources: {limits: {cpus: '${CPU}'}}}",
          "    depends_on: [db]", "    depends_on: {db: {condition: service_healthy}}",
          "    volumes: [data:/data, ./x:/y:ro]", "volumes: {data: {}}", "networks: {n: {}}",
          "    networks: [n]", "    healthcheck: {test: [CMD, true], interval: 1s}",
          "name: ${NAME:-p}", "---", "[", "]", "{", "}", "- a", "? a", ": b", "'", '"', "|", ">",
          "  - *a", "    x-c: !!binary aGk=", "    x-d: !!python/object:os.system x", "%YAML 1.2",
          "    labels: {<<: *b}", "    env_file: [.env]", "    tmpfs: /t", "  $$: x"]


@SETTINGS
@given(lines=st.lists(st.sampled_from(PIECES), min_size=1, max_size=14),
       env=st.dictionaries(st.sampled_from(["P", "C", "R", "CPU", "NAME"]),
                           st.sampled_from(["", "1", "x", "${P}", "8080", "0.5", "-1"]), max_size=4))
def test_whole_loader_on_yaml_text(tmp_path_factory, lines, env):
    d = tmp_path_factory.mktemp("p")
    (d / "other.yml").write_text("services:\n  x: {image: busybox}\n")
    (d / ".env").write_text("A=1\n")
    (d / "stack.yml").write_text("\n".join(lines) + "\n")
    with bounded():
        load_project(LoadOptions(files=[str(d / "stack.yml")], environ=env, cwd=str(d)))


ENV_PIECES = ["A=1", "B='x'", 'C="y\\n$A"', "D=${A:-z}", "export E=1", "# c", "F", "G=",
              "H='unclosed", 'I="unclosed', "J=${", "K=$$", " L = 2 ", "M=a#b", "N=a #b",
              "=v", "1X=2", "O=${A:?err}", "P=\\", "Q=\"a\\\"b\"", "\t", "R=${A:-${B:-c}}"]


@SETTINGS
@given(lines=st.lists(st.one_of(st.sampled_from(ENV_PIECES), st.text(max_size=20)), max_size=12),
       environ=st.dictionaries(st.sampled_from(["A", "B"]), st.text(max_size=4), max_size=2))
def test_env_files(lines, environ):
    with bounded():
        parse_env_file("\n".join(lines), ".env", environ)


@SETTINGS
@given(text=st.text(alphabet=st.sampled_from(list("${}:-?+AB_1 $")), max_size=60),
       environ=st.dictionaries(st.sampled_from(["A", "B", "A1"]), st.text(max_size=3), max_size=3))
def test_interpolation(text, environ):
    try:
        with bounded():
            substitute(text, environ)
    except TemplateError as exc:
        assert "\n" not in exc.message
