"""Ctrl-C during `up` (docs/controller.md, "Cancellation"): the deploy stops where it is,
undoes its step in flight and what it made that nothing uses; the reconcile loop then holds
the stack as it was left — it heals what exists and creates nothing — until the next `up`,
which carries on."""

from __future__ import annotations

import trio
from fakes import Behavior
from helpers import World, run

GATED = """
services:
  db:
    image: slowdb
    healthcheck: {test: "true", interval: 1s, retries: 3, start_period: 10s}
    volumes: ["data:/data"]
  web:
    image: bb
    depends_on: {db: {condition: service_healthy}}
    deploy: {replicas: 2}
    volumes: ["webdata:/srv"]
    networks: [default, back]
networks:
  back:
volumes:
  data:
  webdata:
"""

ROLLING = """
services:
  web:
    image: bb
    healthcheck: {test: ok, interval: 1s, retries: 1}
    environment: {V: "1"}
    deploy:
      replicas: 3
      update_config: {parallelism: 1, monitor: 1s, order: start-first}
"""


async def cancel_when(w: World, condition, text: str, **options) -> None:
    """`up` that is cancelled (as Ctrl-C cancels the request) once ``condition()`` holds."""
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def up() -> None:
            with scope:
                await w.up(text, **options)
            nursery.cancel_scope.cancel()

        nursery.start_soon(up)
        while not condition():
            await trio.sleep(0.05)
        scope.cancel()


def env_of(w: World, cid: str) -> str:
    return next(e for e in w.node.containers[cid].opts.env if e.startswith("V="))


async def reconcile_for(w: World, seconds: float) -> None:
    """The manager's reconcile loop, as the agent runs it, for ``seconds`` of fake time."""
    async with trio.open_nursery() as nursery:
        await nursery.start(w.manager.run)
        for _ in range(int(seconds)):
            w.manager.trigger({"type": "container.health"})
            await trio.sleep(1)
        nursery.cancel_scope.cancel()


def test_cancel_on_a_healthy_gate_creates_nothing_afterwards(paths):
    w = World(paths, images=("bb", "slowdb"))
    w.node.behaviors["slowdb"] = Behavior(healthy_after=6.0)

    async def main():
        await cancel_when(w, lambda: bool(w.actions("waiting", "started")), GATED, wait=True)
        assert w.store.stacks["app"].status == "interrupted"
        db = [c.id for c in w.node.running("db")]
        # reconcile passes long after db became healthy: web is never created
        await reconcile_for(w, 30)
        await w.manager.reconcile_once()
        return db

    db = run(main)
    assert not [n for n in w.node.kinds("create") if n.startswith("app-web")]
    assert [c.id for c in w.node.running("db")] == db and len(db) == 1
    assert w.store.stacks["app"].status == "interrupted"
    # what only web would have used was made by this deploy and is gone; db's stays
    assert set(w.node.networks) == {"app_default"}
    assert set(w.node.volumes) == {"app_data"}
    assert ("remove-network", "app_back") in w.node.log
    assert ("remove-volume", "app_webdata") in w.node.log

    async def again():
        await w.up(GATED, wait=True)  # the next `up` carries on
        await w.manager.reconcile_once()

    run(again)
    assert [c.name for c in w.node.running("web")] == ["app-web-1", "app-web-2"]
    assert [c.id for c in w.node.running("db")] == db  # untouched
    assert set(w.node.networks) == {"app_default", "app_back"}
    assert w.store.stacks["app"].status == "running"


def test_cancel_mid_rolling_update_holds_both_versions(paths):
    w = World(paths)

    def slot1_done_slot2_in_flight() -> bool:
        # slot 1's old task was stopped, slot 2's new task started and not yet healthy (it
        # takes 1 s of fake time; this is polled every 0.05 s)
        stops = [n for n in w.node.kinds("stop") if n.startswith("app-web-")]
        creates = [n for n in w.node.kinds("create") if n.startswith("app-web-2-")]
        return bool(stops) and bool(creates)

    async def main():
        await w.up(ROLLING, wait=True)
        old = {c.labels["com.stackctl.slot"]: c.id for c in w.node.running("web")}
        await cancel_when(w, slot1_done_slot2_in_flight, ROLLING.replace('"1"', '"2"'),
                          wait=True)
        return old

    old = run(main)
    web = {c.labels["com.stackctl.slot"]: c for c in w.node.running("web")}
    assert sorted(web) == ["1", "2", "3"]
    assert len(w.node.containers) == 3  # no slot with two tasks, nothing half-made
    assert env_of(w, web["1"].id) == "V=2"  # updated: keeps the new version
    assert web["2"].id == old["2"] and web["3"].id == old["3"]  # the previous version runs
    assert w.store.stacks["app"].status == "interrupted"
    # the in-flight new task of slot 2 was undone
    assert [e for e in w.events if e["action"] == "remove" and e.get("slot") == "2"]

    async def hold():
        before = len(w.node.kinds("create"))
        await reconcile_for(w, 20)  # the update is not carried on
        assert len(w.node.kinds("create")) == before
        # a dead task of the old version is replaced by one of the old version
        await w.node.stop_container(old["3"])
        await reconcile_for(w, 15)

    run(hold)
    web = {c.labels["com.stackctl.slot"]: c for c in w.node.running("web")}
    assert web["3"].id != old["3"] and env_of(w, web["3"].id) == "V=1"
    assert web["2"].id == old["2"] and env_of(w, web["1"].id) == "V=2"

    async def resume():
        start = len(w.node.log)
        await w.up(ROLLING.replace('"1"', '"2"'), wait=True)
        return w.node.log[start:]

    log = run(resume)
    recreated = sorted(e[1][:9] for e in log if e[0] == "create")
    assert recreated == ["app-web-2", "app-web-3"]  # slot 1 was already updated
    assert all(env_of(w, c.id) == "V=2" for c in w.node.running("web"))
    assert len(w.node.containers) == 3
    assert w.store.stacks["app"].status == "running"


def test_resumed_update_rolls_back_to_the_version_before(paths):
    """`up` of the same file after an interruption: a failure rolls back to the version
    the slots ran before, not to the (unchanged) current one — every slot, also those the
    interrupted `up` had already updated."""
    w = World(paths, images=("bb", "bad"))
    w.node.behaviors["bad"] = Behavior(unhealthy=True)
    text = ROLLING.replace("order: start-first", "order: stop-first, failure_action: rollback")
    bad = text.replace("image: bb", "image: bad")

    async def main():
        await w.up(text, wait=True)
        # cancelled once slot 1 runs the new (bad) task: stop-first, so it keeps it
        await cancel_when(w, lambda: bool(w.node.kinds("start")[3:]), bad, wait=True)
        assert w.store.stacks["app"].status == "interrupted"
        try:
            await w.up(bad, wait=True)
        except Exception as exc:  # noqa: BLE001 - DeployError: rolled back
            return exc
        return None

    err = run(main)
    assert err is not None and "rolled back" in str(err)
    by_slot = {c.labels["com.stackctl.slot"]: w.node.containers[c.id].opts.image
               for c in w.node.running("web")}
    # the slots this `up` updated went back to bb (not to "bad", the unchanged current
    # version), and so did slot 1, which the interrupted `up` had moved to "bad": the whole
    # service is back on the version before, as after Swarm's rollback
    assert by_slot == {"1": "bb", "2": "bb", "3": "bb"}, by_slot


def test_cancel_between_stop_and_start_gives_the_slot_its_old_task_back(paths):
    """stop-first, cancelled after slot 1's old task stopped and before its new one exists:
    the slot is not left empty, it runs the previous version again."""
    w = World(paths)
    text = ROLLING.replace("order: start-first", "order: stop-first")

    def slot1_emptied() -> bool:
        return any(e[0] == "remove" and e[1] == "app-web-1" for e in w.node.log[mark:])

    async def main():
        nonlocal mark
        await w.up(text, wait=True)
        mark = len(w.node.log)
        w.node.create_delay = 3.0  # fake seconds: the new task is slow to appear
        await cancel_when(w, slot1_emptied, text.replace('"1"', '"2"'), wait=True)
        w.node.create_delay = 0.0

    mark = 0
    run(main)
    web = {c.labels["com.stackctl.slot"]: c for c in w.node.running("web")}
    assert sorted(web) == ["1", "2", "3"], w.node.log[mark:]
    assert all(env_of(w, c.id) == "V=1" for c in web.values())
    assert len(w.node.containers) == 3
    assert w.store.stacks["app"].status == "interrupted"
