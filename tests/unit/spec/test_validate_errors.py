"""Located errors: exact ``file:line:col: path: message`` lines, all of a file at once."""

from __future__ import annotations

import pytest
from spec_models_help import FIXTURES, errors

from stackctl.errors import SpecError
from stackctl.spec.validate import build_stack
from stackctl.spec.yamlpos import load_yaml


@pytest.mark.parametrize("scenario", ["many-errors", "cycle"])
def test_fixture_errors(scenario):
    text = (FIXTURES / scenario / "stack.yml").read_text()
    expected = (FIXTURES / scenario / "expected.txt").read_text().splitlines()
    assert errors(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("services:\n  web:\n    image: x\n    deploy:\n      replicas: three\n",
     'stack.yml:5:17: services.web.deploy.replicas: expected a non-negative integer, '
     'got "three"'),
    ("services:\n  web:\n    image: x\n    deploy:\n      mode: global\n      replicas: 2\n",
     "stack.yml:6:17: services.web.deploy.replicas: replicas cannot be set with mode global "
     "(one task per node)"),
    ("services:\n  web:\n    image: [x]\n",
     "stack.yml:3:12: services.web.image: expected a string, got a list"),
    ("services:\n  web: nginx\n",
     'stack.yml:2:8: services.web: expected a mapping, got "nginx"'),
    ("services: [web]\n", "stack.yml:1:11: services: expected a mapping, got a list"),
    ("servics: {}\n", 'stack.yml:1:1: servics: unknown key; did you mean "services"?'),
    ("services:\n  web:\n    image: x\n    ports:\n      - {published: 80}\n",
     "stack.yml:5:9: services.web.ports[0].target: required key is missing"),
    ("services:\n  web:\n    image: x\n    network_mode: service:nope\n",
     "stack.yml:4:19: services.web.network_mode: depends on undefined service nope"),
    ("services:\n  web:\n    image: x\n    depends_on: [nope]\n",
     "stack.yml:4:18: services.web.depends_on[0]: depends on undefined service nope"),
    ("services:\n  web:\n    image: x\n    depends_on: [web]\n",
     "stack.yml:4:18: services.web.depends_on[0]: service web depends on itself"),
    ("services:\n  web:\n    image: x\n    healthcheck:\n      test: [CMD-SHELL, a, b]\n",
     'stack.yml:5:13: services.web.healthcheck.test: a "CMD-SHELL" test takes exactly one '
     "command string"),
    ("hello\n", 'stack.yml:1:1: expected a mapping, got "hello"'),
])
def test_located_error(text, expected):
    assert errors(text) == [expected]


def test_all_errors_of_a_file_sorted_by_position():
    text = ("services:\n"
            "  b:\n    image: x\n    privileged: maybe\n"
            "  a:\n    image: x\n    read_only: perhaps\n    tty: 3\n")
    lines = errors(text)
    assert [line.split(": ")[0] for line in lines] == ["stack.yml:4:17", "stack.yml:7:16",
                                                       "stack.yml:8:10"]


def test_the_input_tree_is_not_changed():
    raw = load_yaml("services:\n  web:\n    image: x\n    ports: ['80']\n"
                    "    environment: [A]\n", "stack.yml")
    before = repr(raw)
    build_stack(raw, project_name="p", project_dir="/", environ={"A": "1"}, profiles=())
    assert repr(raw) == before


def test_spec_error_is_the_only_error():
    with pytest.raises(SpecError):
        build_stack(load_yaml("services:\n  w:\n    image: x\n    ports: [{target: {a: 1}}]\n",
                              "s.yml"), project_name="p", project_dir="/", environ={},
                    profiles=())
