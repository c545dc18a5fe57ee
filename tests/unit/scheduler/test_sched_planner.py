"""The planner, from data: desired state and observed containers in, a Plan out."""

from __future__ import annotations

import json

import pytest
from sched_help import container, desired, observe, running

from stackctl.errors import UsageError
from stackctl.scheduler.render import render_text
from stackctl.scheduler.planner import PlanOptions, plan, wave_slots

STACK = """
services:
  db:
    image: postgres:16
    healthcheck: {{test: "pg_isready", interval: 2s}}
  cache: {{image: redis}}
  web:
    image: shop:1
    environment: {{COLOR: {color}}}
    depends_on:
      db: {{condition: service_healthy}}
      cache: {{condition: service_started}}
    deploy:
      replicas: {replicas}
      update_config: {{parallelism: {parallelism}, delay: 5s, order: start-first}}
"""


def stack(color="blue", replicas=3, parallelism=1):
    return desired(STACK.format(color=color, replicas=replicas, parallelism=parallelism))


def kinds(p):
    return [(a.kind, a.name) for a in p.actions() if a.kind != "keep"]


def test_fresh_stack_creates_everything_in_dependency_order():
    d = stack()
    p = plan(d, observe(d, []))
    assert [[s.name for s in lv.services] for lv in p.levels] == [["cache", "db"], ["web"]]
    web = p.levels[1].services[0]
    assert [a.name for a in web.waves[0].actions] == ["web.1", "web.2", "web.3"]
    assert {a.reason for a in web.waves[0].actions} == {"new slot"}
    assert web.waves[0].kind == "converge"
    gates = {(g.service, g.on, g.condition) for g in p.levels[1].gates}
    assert gates == {("web", "db", "service_healthy"), ("web", "cache", "service_started")}
    assert p.counts()["create"] == 5


def test_unchanged_stack_gives_an_empty_plan():
    d = stack()
    p = plan(d, observe(d, running(d)))
    assert p.empty
    assert p.summary() == "nothing to do: 3 services up to date"
    assert render_text(p) == "stack shop: nothing to do: 3 services up to date\n"
    assert p.counts()["keep"] == 5


def test_changed_environment_recreates_only_that_service_in_waves():
    before = stack()
    after = stack(color="green", parallelism=2)
    p = plan(after, observe(after, running(before)))
    assert kinds(p) == [("recreate", "web.1"), ("recreate", "web.2"), ("recreate", "web.3")]
    web = p.levels[1].services[0]
    assert wave_slots(web.waves) == [["1", "2"], ["3"]]
    assert web.waves[0].order == "start-first"
    assert web.waves[0].delay == 5 * 10**9 and web.waves[1].delay == 0
    assert {a.reason for a in p.actions("recreate")} == {"config changed: environment"}
    assert p.actions("recreate")[0].container.name == "shop-web-1"


def test_parallelism_zero_is_one_wave():
    before, after = stack(), stack(color="green", parallelism=0)
    p = plan(after, observe(after, running(before)))
    assert wave_slots(p.levels[1].services[0].waves) == [["1", "2", "3"]]


def test_update_config_change_alone_recreates_nothing():
    before, after = stack(), stack(parallelism=3)
    assert plan(after, observe(after, running(before))).empty


def test_scale_up_and_down():
    d3 = stack()
    up = stack(replicas=5)
    p = plan(up, observe(up, running(d3)))
    assert kinds(p) == [("create", "web.4"), ("create", "web.5")]
    assert p.actions("create")[0].reason == "new slot: scaled 3 -> 5"
    down = stack(replicas=1)
    p = plan(down, observe(down, running(d3)))
    assert kinds(p) == [("remove", "web.3"), ("remove", "web.2")]  # highest first
    assert {a.reason for a in p.actions("remove")} == {"scaled 3 -> 1"}


def test_missing_slot_is_recreated_with_a_reason():
    d = stack()
    containers = [c for c in running(d) if c.name != "shop-web-2"]
    p = plan(d, observe(d, containers))
    assert kinds(p) == [("create", "web.2")]
    assert p.actions("create")[0].reason == "missing: no container for this slot"


def test_stopped_container_is_started_unless_no_start():
    d = stack()
    containers = [container(t, state="exited", exit_code=137) if t.name == "db.1"
                  else container(t) for t in d.tasks()]
    p = plan(d, observe(d, containers))
    assert kinds(p) == [("start", "db.1")]
    assert p.actions("start")[0].reason == "up to date but exited (137)"
    p = plan(d, observe(d, containers), options=PlanOptions(no_start=True))
    assert p.empty


def test_completed_job_is_kept():
    d = desired("services:\n  migrate:\n    image: m\n    deploy: {mode: replicated-job}\n")
    done = [container(t, state="exited", exit_code=0) for t in d.tasks()]
    p = plan(d, observe(d, done))
    assert p.empty and p.actions("keep")[0].reason == "job completed"
    failed = [container(t, state="exited", exit_code=2) for t in d.tasks()]
    assert kinds(plan(d, observe(d, failed))) == [("start", "migrate.1")]


def test_force_recreate_and_no_recreate():
    before, after = stack(), stack(color="green")
    p = plan(before, observe(before, running(before)),
             options=PlanOptions(force_recreate=True))
    assert len(p.actions("recreate")) == 5
    assert {a.reason for a in p.actions("recreate")} == {"--force-recreate"}
    p = plan(after, observe(after, running(before)), options=PlanOptions(no_recreate=True))
    assert p.empty
    assert p.actions("keep")[-1].reason == "config changed: environment; --no-recreate given"


def test_orphans_need_remove_orphans():
    old = desired(STACK.format(color="blue", replicas=1, parallelism=1)
                  + "  api: {image: api}\n")
    d = stack(replicas=1)
    p = plan(d, observe(d, running(old)))
    assert p.empty
    assert p.notes[0].startswith("orphan: service api no longer in the stack")
    assert "--remove-orphans" in p.notes[0]
    p = plan(d, observe(d, running(old)), options=PlanOptions(remove_orphans=True))
    assert kinds(p) == [("remove", "api.1")]
    assert p.actions("remove")[0].reason == "orphan: service api no longer in the stack"


def test_duplicates_are_removed_keeping_the_best():
    d = stack(replicas=1)
    web1 = d.services["web"].tasks[0]
    extra = container(web1, id="e" * 64, state="exited", exit_code=1)
    p = plan(d, observe(d, running(d) + [extra]))
    assert kinds(p) == [("remove", "web.1")]
    removal = p.actions("remove")[0]
    assert removal.container.id == "e" * 64
    assert removal.reason.startswith("duplicate of web.1: keeping container web1")


def test_removals_in_reverse_dependency_order():
    more = desired(STACK.format(color="blue", replicas=3, parallelism=1)
                   .replace("cache: {image: redis}",
                            "cache: {image: redis, deploy: {replicas: 2}}"))
    after = stack(replicas=1)
    p = plan(after, observe(after, running(more)))
    assert [w.service for w in p.removals] == ["web", "cache"]


def test_selected_services_include_dependencies_unless_no_deps():
    d = stack()
    p = plan(d, observe(d, []), options=PlanOptions(services=("web",)))
    assert p.counts()["create"] == 5
    p = plan(d, observe(d, []), options=PlanOptions(services=("web",), no_deps=True))
    assert kinds(p) == [("create", "web.1"), ("create", "web.2"), ("create", "web.3")]
    assert p.levels[0].gates == ()  # dependencies outside the selection are not gates
    p = plan(d, observe(d, []), options=PlanOptions(services=("cache",)))
    assert kinds(p) == [("create", "cache.1")]
    with pytest.raises(UsageError, match="no such service: nope"):
        plan(d, observe(d, []), options=PlanOptions(services=("nope",)))


def test_network_mode_dependent_is_recreated_with_its_dependency():
    text = """
        services:
          vpn: {{image: vpn, environment: {{V: "{v}"}}}}
          app: {{image: app, network_mode: "service:vpn"}}
        """
    before, after = desired(text.format(v=1)), desired(text.format(v=2))
    p = plan(after, observe(after, running(before)))
    assert kinds(p) == [("recreate", "vpn.1"), ("recreate", "app.1")]
    assert p.actions("recreate")[1].reason == "network_mode service:vpn: vpn is recreated"


def test_container_without_parts_label_still_recreates():
    before, after = stack(), stack(color="green")
    bare = []
    for c in running(before):
        labels = {k: v for k, v in c.labels.items() if k != "com.stackctl.config-parts"}
        bare.append(type(c)(c.id, c.name, labels, c.state))
    p = plan(after, observe(after, bare))
    assert p.actions("recreate")[0].reason.startswith("config changed (no config-parts")


def test_global_service_on_a_lost_node():
    two = desired("services:\n  agent:\n    image: a\n    deploy: {mode: global}\n",
                  nodes=("n1", "n2"))
    one = desired("services:\n  agent:\n    image: a\n    deploy: {mode: global}\n",
                  nodes=("n1",))
    p = plan(one, observe(one, running(two)))
    assert kinds(p) == [("remove", "agent.n2")]
    assert p.actions("remove")[0].reason == "node n2 no longer runs agent"


def test_text_rendering():
    before, after = stack(), stack(color="green", replicas=4, parallelism=2)
    text = render_text(plan(after, observe(after, running(before))))
    assert text.splitlines()[0] == "stack shop: 1 to create, 3 to recreate, 2 unchanged"
    assert "level 2: web  (waits for cache started, db healthy)" in text
    assert "web: update, 2 waves of 2 (start-first, 5s between waves)" in text
    assert "  wave 1/2\n    ACTION    SLOT   REASON\n" \
           "    recreate  web.1  config changed: environment\n" in text
    assert "    create  web.4  new slot: scaled 3 -> 4" in text


def test_json_rendering():
    before, after = stack(), stack(color="green")
    data = plan(after, observe(after, running(before))).to_json()
    json.dumps(data)  # plain data only
    assert data["summary"]["recreate"] == 3
    web = data["levels"][1]["services"][0]
    assert web["waves"][0]["delay"] == "5s"
    assert web["waves"][0]["actions"][0]["reason"] == "config changed: environment"
    assert {"service": "web", "on": "db", "condition": "service_healthy"} in \
        data["levels"][1]["gates"]
