"""``config`` output: Compose's long form, and it loads again into the same model."""

from __future__ import annotations

import json

import pytest
import yaml
from spec_models_help import FIXTURES, build

from stackctl.spec.dump import render, stack_data
from stackctl.spec.validate import build_stack
from stackctl.spec.yamlpos import load_yaml

FULL = (FIXTURES / "full" / "stack.yml").read_text()


def reload(text: str, **kwargs):
    raw = load_yaml(text, "out.yml")
    return build_stack(raw, project_name="proj", project_dir="/srv/proj",
                       environ=kwargs.get("environ", {}), profiles=())[0]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip(fmt):
    stack = build(FULL, environ={"B": "b"})[0]
    text = render(stack, fmt)
    again = reload(text, environ={"B": "b"})
    # the secret's content is redacted in the output, so it comes back redacted
    assert again.secrets["pw"].content.get_secret_value() == "<redacted>"
    again.secrets["pw"].content = stack.secrets["pw"].content
    assert again == stack
    assert render(again, fmt) == text


def test_output_shape():
    data = stack_data(build(FULL, environ={"B": "b"})[0])
    assert list(data) == ["name", "services", "networks", "volumes", "secrets", "configs",
                          "x-common", "x-top"]
    assert data["name"] == "proj"
    assert list(data["services"]) == ["db", "job", "web"]
    web = data["services"]["web"]
    assert web["command"] == ["httpd", "-f", "-p", "80"]
    assert web["entrypoint"] == []
    assert web["environment"] == {"A": "1", "B": "b"}
    assert web["ports"][0] == {"target": 80, "published": "8080", "protocol": "tcp",
                               "mode": "ingress"}
    assert len(web["ports"]) == 4
    assert web["healthcheck"]["interval"] == "1m30s"
    assert web["healthcheck"]["start_interval"] == "100ms"
    assert web["deploy"]["resources"] == {"limits": {"cpus": 0.5, "memory": 536870912,
                                                     "pids": 10},
                                          "reservations": {"memory": 1572864}}
    assert web["deploy"]["restart_policy"]["max_attempts"] == 3
    assert web["stop_grace_period"] == "20s"
    assert web["shm_size"] == 67108864
    assert web["devices"] == ["/dev/null"] and web["x-note"] == "kept"
    assert web["networks"] == {"front": {"aliases": ["www"]}, "back": {}}
    assert data["services"]["db"]["networks"] == {"default": {}}
    assert data["networks"]["default"] == {"name": "proj_default"}
    assert data["volumes"]["data"] == {"name": "proj_data", "labels": {"k": "v"}}
    assert data["secrets"]["pw"]["content"] == "<redacted>"
    assert "replicas" not in data["services"]["db"]["deploy"]
    json.dumps(data)  # plain data only


def test_yaml_output_is_plain_yaml():
    text = render(build(FULL, environ={"B": "b"})[0])
    assert "s3cret" not in text
    assert yaml.safe_load(text)["services"]["web"]["restart"] == "on-failure:3"
