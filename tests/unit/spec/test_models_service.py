"""Service keys: image/build, command, environment, healthcheck, depends_on and the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_models_help import build, errors, service, stack, svc_text

from stackctl.spec.units import SECOND


def test_image_or_build_required():
    errs = errors("services:\n  web:\n    command: x\n")
    assert errs == ["stack.yml:3:5: services.web: a service needs an image, a build section or a provider"]


def test_build_forms():
    svc = service("services:\n  web:\n    build: ./app\n")
    assert svc.build.dump() == {"context": "/srv/proj/app", "dockerfile": "Dockerfile"}
    svc = service("services:\n  web:\n    build:\n      context: .\n      dockerfile: D\n"
                  "      args: [A=1, B]\n      target: prod\n")
    assert (svc.build.context, svc.build.dockerfile, svc.build.target) == ("/srv/proj", "D",
                                                                          "prod")
    assert svc.build.args == {"A": "1", "B": None}


def test_command_and_entrypoint():
    svc = service(svc_text("command: echo 'a b' c\nentrypoint: [sh, -c]"))
    assert svc.command == ["echo", "a b", "c"]
    assert svc.entrypoint == ["sh", "-c"]
    svc = service(svc_text("entrypoint: []"))
    assert svc.entrypoint == [] and svc.dump()["entrypoint"] == []
    assert "cannot split" in errors(svc_text("command: echo 'oops"))[0]


def test_environment_list_and_map():
    svc = service(svc_text("environment: [A=1, B=x=y, C]"), environ={"C": "from-env"})
    assert svc.environment == {"A": "1", "B": "x=y", "C": "from-env"}
    svc = service(svc_text("environment: {A: 1, B: true, C: null, D: ''}"))
    assert svc.environment == {"A": "1", "B": "true", "C": None, "D": ""}


def test_env_file_folds_into_environment(tmp_path: Path):
    (tmp_path / "a.env").write_text("A=from-file\nB=file\n")
    text = svc_text("env_file: [a.env, {path: missing.env, required: false}]\n"
                    "environment: {B: env}")
    svc = service(text, project_dir=str(tmp_path))
    assert svc.environment == {"A": "from-file", "B": "env"}
    assert svc.env_file[0].path == str(tmp_path / "a.env")
    errs = errors(svc_text("env_file: nothere.env"), project_dir=str(tmp_path))
    assert "stack.yml:4:15: services.web.env_file: env file" in errs[0]
    assert "not found" in errs[0]


def test_healthcheck_forms():
    hc = service(svc_text("healthcheck: {test: curl -f x, interval: 10s}")).healthcheck
    assert hc.test == ["CMD-SHELL", "curl -f x"]
    assert (hc.interval, hc.timeout, hc.retries, hc.start_period, hc.start_interval) == (
        10 * SECOND, 30 * SECOND, 3, 0, 5 * SECOND)
    hc = service(svc_text("healthcheck: {test: [CMD, curl, x], start_interval: 1s}")).healthcheck
    assert hc.test == ["CMD", "curl", "x"] and hc.start_interval == SECOND
    assert service(svc_text("healthcheck: {test: [NONE]}")).healthcheck.disable
    assert service(svc_text("healthcheck: {disable: true}")).healthcheck.disable
    assert 'must start with "CMD"' in errors(svc_text("healthcheck: {test: [curl]}"))[0]
    assert "expected a non-negative integer" in errors(
        svc_text("healthcheck: {retries: many}"))[0]


def test_depends_on_forms():
    text = svc_text("depends_on: [db]") + "  db:\n    image: x\n"
    dep = service(text).depends_on["db"]
    assert (dep.condition, dep.required, dep.restart) == ("service_started", True, False)
    text = svc_text("depends_on:\n  db: {condition: service_healthy, restart: true}") + \
        "  db:\n    image: x\n"
    dep = service(text).depends_on["db"]
    assert (dep.condition, dep.restart) == ("service_healthy", True)
    errs = errors(svc_text("depends_on:\n  db: {condition: started}") + "  db:\n    image: x\n")
    assert "expected one of: service_started, service_healthy" in errs[0]


def test_many_keys():
    svc = service(svc_text("""
        labels: {a: b}
        hostname: h
        domainname: example.com
        working_dir: /app
        user: 1000
        stop_signal: SIGINT
        stop_grace_period: 1m30s
        init: true
        tmpfs: [/run, /tmp]
        cap_add: [NET_ADMIN]
        cap_drop: [ALL]
        read_only: true
        privileged: "true"
        sysctls: [net.core.somaxconn=1024]
        ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 65535}
        shm_size: 64m
        extra_hosts: ["db:10.0.0.2", "v6=::1", "x:[::2]"]
        dns: 8.8.8.8
        dns_search: [example.com]
        logging: {driver: json-file, options: {max-size: 10m}}
        pull_policy: if_not_present
        container_name: the-web
        stdin_open: true
        tty: true
        profiles: [web]
        """), profiles=["web"])
    assert svc.user == "1000" and svc.stop_grace_period == 90 * SECOND
    assert svc.privileged and svc.read_only and svc.init and svc.tty and svc.stdin_open
    assert svc.sysctls == {"net.core.somaxconn": "1024"}
    assert svc.ulimits["nproc"].soft == svc.ulimits["nproc"].hard == 65535
    assert svc.shm_size == 64 * 1024**2
    assert svc.extra_hosts == {"db": ["10.0.0.2"], "v6": ["::1"], "x": ["::2"]}
    assert svc.dump()["extra_hosts"] == ["db=10.0.0.2", "v6=::1", "x=::2"]
    assert svc.dns == ["8.8.8.8"] and svc.pull_policy == "missing"
    assert svc.logging.options == {"max-size": "10m"}


@pytest.mark.parametrize("body,message", [
    ("privileged: maybe", 'expected true or false, got "maybe"'),
    ("restart: sometimes", "expected one of: no, always, on-failure"),
    ("pull_policy: often", "expected one of: always, never, missing"),
    ("ulimits: {nofile: {soft: 10, hard: 5}}", "above the hard limit"),
    ("stop_grace_period: forever", 'invalid duration "forever"'),
    ("shm_size: huge", 'invalid size "huge"'),
    ("labels: 5", "expected a mapping or a list of KEY=VALUE"),
    ("profiles: ['-bad']", "invalid profile name"),
    ("container_name: c\ndeploy: {replicas: 2}", "cannot be used by several replicas"),
    ("cap_add: NET_ADMIN", "expected a list of strings"),
])
def test_invalid_service_keys(body, message):
    errs = errors(svc_text(body))
    assert len(errs) == 1 and message in errs[0], errs


def test_unsupported_keys_warn_with_position():
    _, _, warnings = build(svc_text("devices: [/dev/fuse]\nplatform: linux/amd64\n"
                                    "logging: {driver: syslog}\nipc: host"))
    lines = [str(w) for w in warnings]
    assert lines == [
        "stack.yml:4:5: services.web.devices: not supported by stackctl yet; ignored",
        "stack.yml:5:5: services.web.platform: not supported by stackctl yet; ignored",
        "stack.yml:6:23: services.web.logging.driver: logging driver syslog is not supported "
        "by stackctl yet; ignored; stackctl keeps logs as json-file",
        "stack.yml:7:10: services.web.ipc: ipc: host is not supported by stackctl yet; ignored",
    ]
    st = stack(svc_text("devices: [/dev/fuse]"))
    assert st.services["web"].unsupported == {"devices": ["/dev/fuse"]}
    assert st.services["web"].dump()["devices"] == ["/dev/fuse"]


def test_extensions_kept():
    st = stack("x-top: 1\nservices:\n  web:\n    image: x\n    x-svc: {a: 1}\n"
               "    deploy: {x-d: 2}\n")
    assert st.extensions == {"x-top": 1}
    assert st.services["web"].extensions == {"x-svc": {"a": 1}}
    assert st.services["web"].deploy.extensions == {"x-d": 2}
    # Compose's schema allows x-* in nested mappings too (a port, a depends_on entry...)
    st = stack("services:\n  web:\n    image: x\n    ports: [{target: 1, x-p: 1}]\n"
               "    depends_on: {db: {condition: service_started, x-why: cache}}\n"
               "  db: {image: x}\n")
    assert st.services["web"].ports[0].extensions == {"x-p": 1}
    assert st.services["web"].depends_on["db"].extensions == {"x-why": "cache"}
    # ... but not in an env_file entry, where the schema has none
    errs = errors("services:\n  web:\n    image: x\n    env_file: [{path: a, x-p: 1}]\n")
    assert "unknown key" in errs[0]


def test_invalid_service_name():
    assert "invalid service name" in errors("services:\n  '-web':\n    image: x\n")[0]
