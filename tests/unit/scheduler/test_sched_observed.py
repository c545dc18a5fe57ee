"""Grouping what agents report: slots, duplicates, orphans, strays."""

from __future__ import annotations

from sched_help import container, desired

from stackctl.scheduler.observed import ContainerInfo, duplicates, group_all, group_stack, \
    orphans

STACK = """
services:
  web:
    image: app
    deploy: {replicas: 12}
  db: {image: pg}
"""


def test_groups_per_service_and_slot_in_numeric_order():
    d = desired(STACK)
    obs = group_stack([container(t) for t in reversed(d.tasks())], "shop")
    assert list(obs.services) == ["db", "web"]
    assert list(obs.services["web"].slots)[:3] == ["1", "2", "3"]
    assert list(obs.services["web"].slots)[-1] == "12"
    assert obs.slot("db", "1").primary.name == "shop-db-1"


def test_other_stacks_are_ignored_and_group_all_finds_them():
    shop, blog = desired(STACK), desired(STACK, name="blog")
    items = [container(t) for t in shop.tasks()] + \
        [container(t, id=f"b{t.slot}".ljust(64, "0")) for t in blog.tasks()]
    assert len(group_stack(items, "shop").containers()) == 13
    assert sorted(group_all(items)) == ["blog", "shop"]


def test_duplicates_best_first():
    d = desired(STACK)
    web1 = d.services["web"].tasks[0]
    old = container(web1, id="a" * 64, started_at="2024-01-01T00:00:00Z")
    new = container(web1, id="b" * 64, started_at="2024-02-01T00:00:00Z")
    dead = container(web1, id="c" * 64, state="exited", exit_code=1,
                     started_at="2024-03-01T00:00:00Z")
    sick = container(web1, id="d" * 64, health="unhealthy", started_at="2024-04-01T00:00:00Z")
    obs = group_stack([dead, old, sick, new], "shop")
    slot = obs.slot("web", "1")
    assert slot.primary.id == "b" * 64  # running, newest among the not-unhealthy
    assert [c.id[0] for c in slot.duplicates] == ["a", "d", "c"]
    assert list(duplicates(obs)) == ["web.1"]


def test_orphans_and_strays():
    d = desired(STACK)
    old = desired(STACK + "  api: {image: api}\n")
    items = [container(t) for t in old.tasks()]
    items.append(ContainerInfo("f" * 64, "hand-made", {"com.stackctl.stack": "shop"}))
    obs = group_stack(items, "shop")
    assert [o.name for o in orphans(obs, d.services)] == ["api"]
    assert [s.name for s in obs.strays] == ["hand-made"]


def test_container_info_states():
    c = ContainerInfo("x", "n", state="exited", exit_code=0)
    assert c.completed and not c.running and c.describe_state() == "exited (0)"
    r = ContainerInfo("x", "n", state="running", health="starting")
    assert r.running and r.describe_state() == "running (starting)"
