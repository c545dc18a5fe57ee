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


def test_healthcheck_image_fallback_and_disable():
    from stackctl.spec.models import Healthcheck
    image = {"Healthcheck": {"Test": ["CMD", "probe"], "Interval": 5}}
    assert health_config(None, image)["Test"] == ["CMD", "probe"]
    hc = Healthcheck(interval="2s")
    out = health_config(hc, image)
    assert out["Test"] == ["CMD", "probe"] and out["Interval"] == 2_000_000_000
    assert health_config(Healthcheck(disable=True), image) == {"Test": ["NONE"]}
