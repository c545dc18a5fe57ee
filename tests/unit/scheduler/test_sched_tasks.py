"""Desired tasks, config hashes and container labels."""

from __future__ import annotations

from sched_help import desired

from stackctl.scheduler.confighash import changed_parts, content_digest, object_digests
from stackctl.spec.validate import build_stack
from stackctl.spec.yamlpos import load_yaml

BASE = """
services:
  web:
    image: nginx:1.25
    environment: {A: "1"}
    deploy:
      replicas: 3
      {extra}
"""


def web_hash(extra: str = "", **kwargs):
    d = desired(BASE.replace("{extra}", extra), **kwargs)
    return d.services["web"].config_hash


def test_replicated_slots_and_names():
    d = desired(BASE.replace("{extra}", ""))
    web = d.services["web"]
    assert web.slots == ["1", "2", "3"]
    assert [t.name for t in web.tasks] == ["web.1", "web.2", "web.3"]
    assert web.tasks[1].container_name() == "shop-web-2"
    assert web.tasks[1].index == 2


def test_global_service_has_one_slot_per_node():
    d = desired("""
        services:
          agent:
            image: busybox
            deploy: {mode: global}
        """, nodes=("n1", "n2"))
    agent = d.services["agent"]
    assert agent.replicas is None and agent.is_global
    assert [(t.name, t.node) for t in agent.tasks] == [("agent.n1", "n1"), ("agent.n2", "n2")]


def test_job_slots():
    d = desired("""
        services:
          migrate:
            image: busybox
            deploy: {mode: replicated-job, replicas: 2}
        """)
    assert d.services["migrate"].is_job and d.services["migrate"].slots == ["1", "2"]


def test_zero_replicas_means_no_tasks():
    d = desired("services:\n  web:\n    image: x\n    scale: 0\n")
    assert d.services["web"].tasks == ()


def test_labels():
    d = desired(BASE.replace("{extra}", ""))
    labels = d.services["web"].tasks[0].labels("abc123")
    assert labels["com.stackctl.stack"] == "shop"
    assert labels["com.stackctl.service"] == "web"
    assert labels["com.stackctl.slot"] == "1"
    assert labels["com.stackctl.task-id"] == "abc123"
    assert labels["com.stackctl.config-hash"] == d.services["web"].config_hash.value
    assert "environment=" in labels["com.stackctl.config-parts"]
    assert not any(k.startswith("com.docker.compose") for k in labels)
    assert d.services["web"].tasks[0].labels("x", oneoff=True)["com.stackctl.oneoff"] == "true"


def test_hash_is_stable_and_sha256():
    a, b = web_hash(), web_hash()
    assert a == b and len(a.value) == 64


def test_hash_ignores_what_needs_no_recreate():
    base = web_hash().value
    for extra in ["update_config: {parallelism: 2, order: start-first}",
                  "rollback_config: {parallelism: 0}",
                  "restart_policy: {condition: on-failure}",
                  "labels: {team: a}",
                  "endpoint_mode: dnsrr",
                  "placement: {constraints: [node.role==manager]}"]:
        assert web_hash(extra).value == base, extra
    assert desired(BASE.replace("{extra}", "").replace("replicas: 3", "replicas: 5")) \
        .services["web"].config_hash.value == base


def test_hash_ignores_build_pull_policy_depends_on_profiles_and_extensions():
    def h(extra: str) -> str:
        return desired(f"""
            services:
              web:
                image: app
                {extra}
              db: {{image: pg}}
            """).services["web"].config_hash.value
    base = h("")
    assert h("pull_policy: always") == base
    assert h("depends_on: [db]") == base
    assert h("x-note: hello") == base
    assert h("build: ./app") == base


def test_hash_changes_with_what_the_container_is_made_of():
    base = web_hash()
    changed = desired(BASE.replace("{extra}", "").replace('A: "1"', 'A: "2"')) \
        .services["web"].config_hash
    assert changed.value != base.value
    assert changed_parts(base.parts, changed.parts) == ["environment"]
    limits = web_hash("resources: {limits: {memory: 64m}}")
    assert changed_parts(base.parts, limits.parts) == ["deploy.resources (added)"]


def test_image_id_enters_the_hash():
    a = web_hash(image_ids={"web": "sha256:aaa"})
    b = web_hash(image_ids={"web": "sha256:bbb"})
    assert a.value != b.value and changed_parts(a.parts, b.parts) == ["image-id"]


SECRET_STACK = """
services:
  web:
    image: app
    secrets: [db_password]
  other:
    image: app
secrets:
  db_password:
    file: ./secrets/db.txt
"""


def test_secret_content_changes_recreate_its_users_only():
    one = desired(SECRET_STACK, objects={"secret:db_password": content_digest(b"hunter2")})
    two = desired(SECRET_STACK, objects={"secret:db_password": content_digest(b"s3cret")})
    assert one.services["web"].config_hash != two.services["web"].config_hash
    assert changed_parts(one.services["web"].config_hash.parts,
                         two.services["web"].config_hash.parts) == ["secret:db_password"]
    assert one.services["other"].config_hash == two.services["other"].config_hash


def test_object_digests_reads_through_the_given_reader():
    raw = load_yaml(SECRET_STACK + """
configs:
  app_conf:
    content: "listen 80"
  env_conf:
    environment: CONF
""", "stack.yml")
    stack, _, _ = build_stack(raw, project_name="shop", project_dir="/srv/shop", environ={},
                              profiles=())
    files = {"/srv/shop/secrets/db.txt": b"hunter2"}
    digests = object_digests(stack, {"CONF": "x=1"}, read=lambda p: files[p])
    assert digests == {"secret:db_password": content_digest(b"hunter2"),
                       "config:app_conf": content_digest("listen 80"),
                       "config:env_conf": content_digest("x=1")}


def test_unreadable_file_is_left_out():
    raw = load_yaml(SECRET_STACK, "stack.yml")
    stack, _, _ = build_stack(raw, project_name="shop", project_dir="/srv/shop", environ={},
                              profiles=())

    def fail(path):
        raise FileNotFoundError(path)
    assert object_digests(stack, {}, read=fail) == {}


def test_changed_parts_added_and_removed():
    assert changed_parts({"a": "1", "b": "2"}, {"b": "3", "c": "4"}) == \
        ["a (removed)", "b", "c (added)"]
    # abbreviated (label) digests compare with full ones on their prefix
    assert changed_parts({"a": "abcdef"}, {"a": "abcdef0123"}) == []


def test_health_timing():
    d = desired("""
        services:
          web:
            image: x
            healthcheck: {test: "true", interval: 2s, retries: 4, start_period: 10s}
          plain: {image: x}
          off:
            image: x
            healthcheck: {disable: true}
        """)
    h = d.services["web"].health
    assert (h.interval, h.retries, h.start_period) == (2 * 10**9, 4, 10 * 10**9)
    assert d.services["plain"].health is None and d.services["off"].health is None
