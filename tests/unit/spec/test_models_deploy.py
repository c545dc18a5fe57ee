"""deploy: modes, replicas, Swarm's defaults, resources, placement, restart and update."""

from __future__ import annotations

import pytest
from spec_models_help import errors, service, svc_text

from stackctl.spec.models.deploy import Constraint, parse_constraint
from stackctl.spec.units import SECOND


def deploy(body: str = "", **kwargs):
    return service(svc_text(body), **kwargs).deploy


def test_swarm_defaults():
    d = deploy()
    assert (d.mode, d.replicas, d.endpoint_mode) == ("replicated", 1, "vip")
    for cfg in (d.update_config, d.rollback_config):
        assert (cfg.parallelism, cfg.delay, cfg.failure_action, cfg.monitor,
                cfg.max_failure_ratio, cfg.order) == (1, 0, "pause", 5 * SECOND, 0.0,
                                                      "stop-first")
    rp = d.restart_policy
    assert (rp.condition, rp.delay, rp.max_attempts, rp.window) == ("any", 5 * SECOND, 0, 0)


def test_full_deploy():
    d = deploy("""
        deploy:
          mode: replicated
          replicas: "3"
          endpoint_mode: dnsrr
          labels: [a=b]
          placement:
            constraints: [node.labels.zone==east, "node.role != manager"]
            preferences: [{spread: node.labels.zone}]
            max_replicas_per_node: 2
          resources:
            limits: {cpus: "0.5", memory: 512m, pids: 100}
            reservations: {cpus: 0.25, memory: 128m}
          restart_policy: {condition: on-failure, delay: 1m30s, max_attempts: 3, window: 2m}
          update_config: {parallelism: 2, delay: 10s, failure_action: rollback, monitor: 1m,
                          max_failure_ratio: 0.3, order: start-first}
          rollback_config: {parallelism: 0, failure_action: continue}
        """)
    assert d.replicas == 3 and d.endpoint_mode == "dnsrr" and d.labels == {"a": "b"}
    assert [(c.key, c.op, c.value) for c in d.placement.parsed_constraints()] == [
        ("node.labels.zone", "==", "east"), ("node.role", "!=", "manager")]
    assert d.placement.preferences[0].spread == "node.labels.zone"
    assert d.resources.limits.cpus == 500_000_000
    assert d.resources.limits.memory == 512 * 1024**2
    assert d.resources.reservations.cpus == 250_000_000
    assert d.restart_policy.delay == 90 * SECOND
    assert d.update_config.order == "start-first"
    assert d.rollback_config.parallelism == 0
    assert d.dump()["restart_policy"] == {"condition": "on-failure", "delay": "1m30s",
                                          "max_attempts": 3, "window": "2m0s"}


def test_global_and_jobs():
    d = deploy("deploy: {mode: global}")
    assert d.replicas is None and d.is_global
    d = deploy("deploy: {mode: replicated-job, replicas: 5}")
    assert d.is_job and d.replicas == 5 and d.restart_policy.condition == "on-failure"


@pytest.mark.parametrize("body,message", [
    ("deploy: {mode: global, replicas: 2}", "replicas cannot be set with mode global"),
    ("deploy: {mode: global, placement: {max_replicas_per_node: 1}}",
     "max_replicas_per_node cannot be set with mode global"),
    ("deploy: {mode: daemon}", "expected one of: replicated, global, replicated-job, global-job"),
    ("deploy: {replicas: -1}", "expected a non-negative integer, got -1"),
    ("deploy: {resources: {limits: {memory: lots}}}", 'invalid size "lots"'),
    ("deploy: {resources: {limits: {cpus: 1}, reservations: {cpus: 2}}}",
     "the reservation is larger than limits.cpus"),
    ("deploy: {update_config: {failure_action: explode}}",
     "expected one of: continue, rollback, pause"),
    ("deploy: {rollback_config: {failure_action: rollback}}",
     "expected one of: continue, pause"),
    ("deploy: {update_config: {max_failure_ratio: 2}}", "between 0 and 1"),
    ("deploy: {update_config: {delay: soon}}", 'invalid duration "soon"'),
    ("deploy: {restart_policy: {condition: always}}", "expected one of: none, on-failure, any"),
    ("deploy: {endpoint_mode: dns}", "expected one of: vip, dnsrr"),
])
def test_invalid_deploy(body, message):
    errs = errors(svc_text(body))
    assert len(errs) == 1 and message in errs[0], errs


def test_scale_and_restart_fold_into_deploy():
    d = deploy("scale: 3\nrestart: on-failure:4")
    assert d.replicas == 3
    assert (d.restart_policy.condition, d.restart_policy.max_attempts) == ("on-failure", 4)
    assert deploy("restart: 'no'").restart_policy.condition == "none"
    assert deploy("restart: unless-stopped").restart_policy.condition == "any"
    # an explicit restart_policy wins over restart
    d = deploy("restart: 'no'\ndeploy: {restart_policy: {condition: any}}")
    assert d.restart_policy.condition == "any"
    assert "differ" in errors(svc_text("scale: 2\ndeploy: {replicas: 3}"))[0]


def test_service_resource_shorthands():
    d = deploy("cpus: 1.5\nmem_limit: 1g\nmem_reservation: 256m\npids_limit: 50")
    assert d.resources.limits.cpus == 1_500_000_000
    assert d.resources.limits.memory == 1024**3
    assert d.resources.reservations.memory == 256 * 1024**2
    assert d.resources.limits.pids == 50
    errs = errors(svc_text("mem_limit: 1g\ndeploy: {resources: {limits: {memory: 2g}}}"))
    assert "mem_limit and deploy.resources.limits.memory differ" in errs[0]


def test_parse_constraint():
    assert parse_constraint("engine.labels.os == linux") == Constraint(
        "engine.labels.os", "==", "linux", "engine.labels.os == linux")
    with pytest.raises(ValueError):
        parse_constraint("node.bogus==1")
