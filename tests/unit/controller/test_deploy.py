"""Manager.deploy against the fake node: order, gates, idempotency, waves, failures."""

from __future__ import annotations

import pytest
import trio
from fakes import Behavior
from helpers import World, run

from stackctl.controller.context import DeployError
from stackctl.errors import NotFoundError, StackctlError

TWO = """
services:
  db:
    image: bb
    healthcheck: {test: "true", interval: 1s, retries: 2}
    volumes: ["data:/data"]
  web:
    image: bb
    environment: {V: "1"}
    depends_on: {db: {condition: service_healthy}}
    deploy:
      replicas: 3
      update_config: {parallelism: 1, monitor: 1s, order: start-first}
    ports: ["8080:80"]
volumes:
  data:
"""


def test_first_deploy_order_resources_and_labels(paths):
    w = World(paths)

    async def main():
        await w.up(TWO, wait=True)

    run(main)
    assert w.node.networks.keys() == {"app_default"}
    assert w.node.volumes.keys() == {"app_data"}
    log = [e[0] for e in w.node.log]
    assert log.index("network") < log.index("create")
    assert log.index("volume") < log.index("create")
    # db is created and healthy before any web container is created
    names = [e[1] for e in w.node.log if e[0] == "create"]
    assert names[0] == "app-db-1" and sorted(names[1:]) == ["app-web-1", "app-web-2",
                                                             "app-web-3"]
    web = w.node.running("web")
    assert [c.labels["com.stackctl.slot"] for c in web] == ["1", "2", "3"]
    assert all(c.labels["com.stackctl.stack"] == "app" for c in web)
    assert w.net.published[("app", "web")] == (["8080:80/tcp"], ["app_default"])
    # ready replicas serve
    assert all(w.net.serving[c.id] for c in web)
    assert w.store.stacks["app"].status == "running"


def test_second_up_is_idempotent(paths):
    w = World(paths)

    async def main():
        await w.up(TWO, wait=True)
        before = list(w.node.log)
        w.events.clear()
        await w.up(TWO, wait=True)
        return before

    before = run(main)
    assert [e for e in w.node.log[len(before):] if e[0] != "network" and e[0] != "volume"] \
        == []
    assert w.store.stacks["app"].version == 1


def test_changed_service_recreated_in_waves_start_first(paths):
    w = World(paths)

    async def main():
        await w.up(TWO, wait=True)
        start = len(w.node.log)
        await w.up(TWO.replace('V: "1"', 'V: "2"'), wait=True)
        return w.node.log[start:]

    log = run(main)
    ops = [(e[0], e[1]) for e in log if e[0] in ("create", "stop")]
    # start-first, one slot at a time: new created before the old one is stopped
    # the new container of a slot takes a suffixed name while the old one holds the name
    short = [(op, name[:9]) for op, name in ops]
    assert [n for op, n in short if op == "create"] == ["app-web-1", "app-web-2", "app-web-3"]
    for slot in ("app-web-1", "app-web-2", "app-web-3"):
        assert short.index(("create", slot)) < short.index(("stop", slot))
    assert not any(e[1].startswith("app-db") for e in log)  # unchanged: untouched
    web = w.node.running("web")
    assert len(web) == 3 and all("V=2" in w.node.containers[c.id].opts.env for c in web)


def test_stop_first_parallelism_two(paths):
    w = World(paths)
    text = TWO.replace("parallelism: 1", "parallelism: 2").replace("start-first",
                                                                  "stop-first")

    async def main():
        await w.up(text, wait=True)
        start = len(w.node.log)
        await w.up(text.replace('V: "1"', 'V: "2"'), wait=True)
        return w.node.log[start:]

    log = run(main)
    ops = [e[0] for e in log if e[0] in ("create", "stop")]
    assert ops == ["stop", "stop", "create", "create", "stop", "create"]


def test_update_rollback_on_unhealthy(paths):
    w = World(paths, images=("bb", "bad"))
    w.node.behaviors["bad"] = Behavior(unhealthy=True)
    text = TWO.replace("order: start-first", "order: start-first, failure_action: rollback")
    text = text.replace("  web:\n    image: bb",
                        "  web:\n    image: bb\n    healthcheck: {test: ok, interval: 1s, "
                        "retries: 1}")

    async def main():
        await w.up(text, wait=True)
        old = {c.id for c in w.node.running("web")}
        with pytest.raises(DeployError) as info:
            await w.up(text.replace("image: bb\n    healthcheck: {test: ok",
                                    "image: bad\n    healthcheck: {test: ok"), wait=True)
        return old, info.value

    old, err = run(main)
    assert "rolled back" in err.message and "web" in err.message
    web = w.node.running("web")
    # start-first: the old replica of the failed slot kept running throughout
    assert len(web) == 3 and all(w.node.containers[c.id].opts.image == "bb" for c in web)
    assert w.actions("rollback", "started") and w.actions("rollback", "done")
    assert w.store.stacks["app"].status.startswith("failed")


def _update_web_to_bad(w, text: str) -> DeployError:
    """Deploy ``text``, then update web to image ``bad``: the update's DeployError."""
    async def main():
        await w.up(text, wait=True)
        with pytest.raises(DeployError) as info:
            await w.up(text.replace("  web:\n    image: bb", "  web:\n    image: bad"),
                       wait=True)
        return info.value

    return run(main)


def test_update_pause_keeps_rest_old(paths):
    w = World(paths, images=("bb", "bad"))
    w.node.behaviors["bad"] = Behavior(healthy_after=5.0, exit_after=0.5, exit_code=3)
    text = TWO.replace("order: start-first", "order: stop-first").replace(
        "  web:\n    image: bb",
        "  web:\n    image: bb\n    healthcheck: {test: ok, interval: 1s, retries: 1}")

    err = _update_web_to_bad(w, text)
    assert "update paused" in err.message and "exited (3)" in err.message
    images = sorted(w.node.containers[c.id].opts.image for c in w.node.running("web"))
    assert images == ["bb", "bb"]  # slot 1 failed; 2 and 3 were never touched
    assert w.actions("paused", "error")


def test_continue_and_max_failure_ratio(paths):
    w = World(paths, images=("bb", "bad"))
    w.node.behaviors["bad"] = Behavior(exit_after=0.5, exit_code=3)
    text = TWO.replace("order: start-first", "order: start-first, failure_action: pause, "
                       "max_failure_ratio: 0.5")

    err = _update_web_to_bad(w, text)
    # 1 of 3 failed (0.33 <= 0.5): tolerated; the second failure (0.67) pauses
    assert "2 of 3 tasks failed" in err.message
    text_continue = TWO.replace("order: start-first", "failure_action: continue")
    w2 = World(paths, images=("bb", "bad"))
    w2.node.behaviors["bad"] = Behavior(exit_after=0.5, exit_code=3)

    async def main2():
        await w2.up(text_continue, wait=False)
        await w2.up(text_continue.replace("  web:\n    image: bb", "  web:\n    image: bad"),
                    wait=False)

    run(main2)  # continue: the update completes (the restart policy heals later)
    assert [e for e in w2.events if e["action"] == "done" and "failed" in e["message"]]


def test_failed_dependency_stops_dependents(paths):
    w = World(paths, images=("bb", "sick"))
    w.node.behaviors["sick"] = Behavior(unhealthy=True)

    async def main():
        with pytest.raises(DeployError) as info:
            await w.up(TWO.replace("  db:\n    image: bb", "  db:\n    image: sick"),
                       wait=True)
        return info.value

    err = run(main)
    assert "web: not started: dependency db did not become healthy" in err.message
    assert not w.node.running("web")
    assert [e for e in w.events if e["service"] == "web" and e["action"] == "failed"]


def test_completed_successfully_gate(paths):
    w = World(paths, images=("bb", "job"))
    w.node.behaviors["job"] = Behavior(exit_after=2.0, exit_code=0)
    text = """
    services:
      migrate:
        image: job
        deploy: {mode: replicated-job}
      web:
        image: bb
        depends_on: {migrate: {condition: service_completed_successfully}}
    """

    async def main():
        await w.up(text, wait=True)
        return trio.current_time()

    run(main)
    creates = w.node.kinds("create")
    assert creates == ["app-migrate-1", "app-web-1"]


def test_missing_image_names_service_and_hints(paths):
    w = World(paths, images=())

    async def main():
        with pytest.raises(NotFoundError) as info:
            await w.up("services:\n  web:\n    image: nope:1\n")
        return info.value

    err = run(main)
    # not here and not in its registry (pull_policy missing pulls it first)
    assert err.message == "service web: pull nope:1: repository nope:1 not found"
    assert not w.node.containers and not w.node.networks


def test_pull_always_refused_and_build(paths):
    w = World(paths)

    async def main():
        with pytest.raises(StackctlError, match="service web: pull bb: repository bb "):
            await w.up("services:\n  web:\n    image: bb\n    pull_policy: always\n")
        await w.up("services:\n  web:\n    build: ./web\n")

    run(main)
    assert w.node.builds[0]["tag"] == "app-web"
    assert w.node.builds[0]["context"] == "/srv/app/web"
    assert w.node.running("web")[0].name == "app-web-1"


def test_remove_orphans_and_remove(paths):
    w = World(paths)

    async def main():
        await w.up(TWO, wait=True)
        await w.up("services:\n  db:\n    image: bb\n    volumes: [data:/data]\n"
                   "volumes:\n  data:\n", remove_orphans=True)
        assert not w.node.running("web")
        assert ("app", "web") not in w.net.published
        await w.manager.remove("app", volumes=False, progress=w.progress)
        assert not w.node.containers and not w.node.networks
        assert w.node.volumes.keys() == {"app_data"}
        await w.up(TWO, wait=True)
        await w.manager.remove("app", volumes=True, progress=w.progress)

    run(main)
    assert not w.node.containers and not w.node.networks and not w.node.volumes
    assert "app" not in w.store.stacks


def test_scale_and_manual_rollback(paths):
    w = World(paths)

    async def main():
        await w.up(TWO, wait=True)
        await w.manager.scale("app", {"web": 1}, w.progress)
        assert len(w.node.running("web")) == 1
        await w.up(TWO.replace('V: "1"', 'V: "2"'), wait=True)
        await w.manager.rollback("app", ["web"], w.progress)

    run(main)
    web = w.node.running("web")
    # the previous version is the scaled one: 1 replica with V=1
    assert len(web) == 1 and "V=1" in w.node.containers[web[0].id].opts.env
