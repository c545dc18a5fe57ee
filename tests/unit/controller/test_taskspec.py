"""taskspec: a service and its task -> the container request (pure)."""

from __future__ import annotations

import textwrap

import pytest

from stackctl.controller.taskspec import health_config, task_request
from stackctl.errors import StackctlError
from stackctl.scheduler.tasks import desired_state
from stackctl.spec.validate import build_stack
from stackctl.spec.yamlpos import load_yaml


def request(body: str, *, service="web", slot="1", **kw):
    raw = load_yaml(textwrap.dedent(body), "stack.yml")
    stack, graph, _ = build_stack(raw, project_name="app", project_dir="/srv/app",
                                  environ={}, profiles=())
    task = next(t for t in desired_state(stack, graph).services[service].tasks
                if t.slot == slot)
    return task_request(stack, service, task, task_id="t1", objects_dir="/run/x", **kw)


CASES = [
    ("image: bb\ncommand: echo hi", lambda r: r.opts.command == ["echo", "hi"]),
    ("image: bb\nentrypoint: []", lambda r: r.opts.entrypoint == []),
    ("image: bb\nenvironment: {A: '1', B: null}", lambda r: r.opts.env == ["A=1"]),
    ("image: bb\nlabels: {com.stackctl.slot: x, a: b}",
     lambda r: r.opts.labels["com.stackctl.slot"] == "1" and r.opts.labels["a"] == "b"),
    ("image: bb\nvolumes: [data:/data, /host:/h:ro, {type: tmpfs, target: /t}]",
     lambda r: r.opts.mounts[0] == "type=volume,source=app_data,target=/data"
     and r.opts.volumes == ["/host:/h:ro"] and r.opts.mounts[1] == "type=tmpfs,target=/t"),
    ("image: bb\nmem_limit: 64m\ncpus: 0.5\npids_limit: 100",
     lambda r: r.opts.memory == 64 * 2**20 and r.opts.cpus == 0.5 and r.opts.pids_limit == 100),
    ("image: bb\nstop_grace_period: 3s\nstop_signal: SIGINT\ninit: true\nread_only: true",
     lambda r: r.opts.stop_timeout == 3.0 and r.opts.stop_signal == "SIGINT" and r.opts.init
     and r.opts.read_only),
    ("image: bb\nnetworks: {front: {aliases: [www]}}",
     lambda r: r.networks[0].network == "app_front" and r.networks[0].aliases == ["web", "www"]),
    ("image: bb\nports: ['8080:80', {target: 53, published: '5353', protocol: udp, mode: host}]",
     lambda r: [p.text for p in r.service_ports] == ["8080:80/tcp"]
     and r.ports == ["5353:53/udp"]),
    ("image: bb\nnetwork_mode: host\nports: ['80:80']",
     lambda r: r.opts.network == "host" and not r.ports and not r.networks),
    ("image: bb\nextra_hosts: ['db=10.0.0.1']\nulimits: {nofile: 1024}\nsysctls: {a.b: 1}",
     lambda r: r.opts.add_hosts == ["db:10.0.0.1"] and r.opts.ulimits == ["nofile=1024:1024"]
     and r.opts.sysctls == ["a.b=1"]),
    ("build: .", lambda r: r.opts.image == "app-web"),
    ("image: bb\ncontainer_name: fixed", lambda r: r.name == "fixed"),
    ("image: bb", lambda r: r.name == "app-web-1" and r.health is None),
]


@pytest.mark.parametrize("body,check", CASES, ids=[c[0].split("\n")[-1][:30] for c in CASES])
def test_service_to_request(body, check):
    text = "services:\n  web:\n" + textwrap.indent(body, "    ") + \
        "\nnetworks:\n  front: {}\nvolumes:\n  data: {}\n"
    if "networks: {front" not in body:
        text = text.replace("networks:\n  front: {}\n", "networks:\n  front: {}\n")
    assert check(request(text))


def test_network_mode_service_joins_container():
    text = "services:\n  vpn:\n    image: bb\n  web:\n    image: bb\n" \
           "    network_mode: service:vpn\n"
    assert request(text, network_container="c1").opts.network == "container:c1"
    with pytest.raises(StackctlError, match="vpn has no running container"):
        request(text)


def test_network_mode_container_joins_that_container():
    text = "services:\n  web:\n    image: bb\n    network_mode: container:vpn-1\n" \
           "    ports: ['80:80']\n"
    r = request(text)
    assert r.opts.network == "container:vpn-1" and not r.ports and not r.service_ports
    assert not r.networks


def test_healthcheck_image_fallback_and_disable():
    from stackctl.spec.models import Healthcheck
    image = {"Healthcheck": {"Test": ["CMD", "probe"], "Interval": 5 * 10**9}}
    out = health_config(None, image)
    assert out["test"] == ["CMD", "probe"] and out["interval"] == 5.0
    hc = Healthcheck(interval="2s")
    out = health_config(hc, image)
    assert out["test"] == ["CMD", "probe"] and out["interval"] == 2.0
    assert health_config(Healthcheck(disable=True), image) == {"test": ["NONE"]}


@pytest.mark.parametrize("hc_yaml, image", [
    ("    healthcheck:\n      test: [CMD, wget, -q, http://127.0.0.1/]\n      interval: 1s\n"
     "      timeout: 1500ms\n      retries: 2\n      start_period: 1s\n"
     "      start_interval: 200ms\n", None),
    ("    healthcheck:\n      test: test ! -f /broken\n      interval: 500ms\n", None),
    ("    healthcheck:\n      disable: true\n", None),
    ("", {"Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 3 * 10**9,
                          "Retries": 4}}),
])
def test_health_config_round_trips_through_the_agent(hc_yaml, image):
    """What the controller sends is what the agent reads (docs/agent-api.md)."""
    from stackctl.agent.health import HealthConfig
    from stackctl.controller.taskspec import health_timing

    req = request("services:\n  web:\n    image: bb\n" + hc_yaml, image_config=image) \
        if image is not None else request("services:\n  web:\n    image: bb\n" + hc_yaml)
    assert req.health is not None
    hc = HealthConfig.from_dict(req.health)
    s = parse_service(hc_yaml)
    if s is not None and s.disable:
        assert not hc.enabled and health_timing(req.health) is None
        return
    assert hc.enabled
    if s is not None:
        assert hc.interval == s.interval / 1e9 and hc.timeout == s.timeout / 1e9
        assert hc.retries == s.retries and hc.start_period == s.start_period / 1e9
        assert hc.start_interval == s.start_interval / 1e9
        if "1500ms" in hc_yaml:
            assert (hc.timeout, hc.start_interval) == (1.5, 0.2)
    else:
        assert hc.test == ("CMD-SHELL", "true") and hc.interval == 3.0 and hc.retries == 4
    timing = health_timing(req.health)
    assert timing is not None and timing.interval == round(hc.interval * 1e9)
    assert HealthConfig.from_dict(hc.to_dict()) == hc


def parse_service(hc_yaml: str):
    if not hc_yaml:
        return None
    from stackctl.spec.models import Healthcheck
    import yaml
    return Healthcheck(**yaml.safe_load(hc_yaml)["healthcheck"])
