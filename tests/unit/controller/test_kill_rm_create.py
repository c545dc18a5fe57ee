"""`kill`, `rm` and `create` (`up --no-start`) as the controller sees them: what they leave is
not healed back by the reconcile loop (a killed, removed or only-created service counts as
stopped by the user), until `start` or `up`."""

from __future__ import annotations

from helpers import World, run
from test_interrupt import reconcile_for

STACK = """
services:
  web:
    image: bb
    restart: always
    deploy: {replicas: 2}
  worker:
    image: bb
    restart: always
"""


def _names(w: World, service: str) -> list[str]:
    return [c.name for c in w.node.running(service)]


def test_kill_is_not_healed_until_start(paths):
    w = World(paths)

    async def main():
        await w.up(STACK)
        killed = await w.manager.kill("app", ["web"], "SIGKILL", w.progress)
        assert len(killed) == 2 and _names(w, "web") == []
        assert w.store.stacks["app"].status == "stopped: web"
        await reconcile_for(w, 5)
        assert _names(w, "web") == [] and _names(w, "worker") == ["app-worker-1"]
        await w.manager.start("app", ["web"])
        await reconcile_for(w, 2)

    run(main)
    assert _names(w, "web") == ["app-web-1", "app-web-2"]
    assert w.store.stacks["app"].status == "running"
    assert len(w.node.kinds("create")) == 3  # the killed containers started again, not new


def test_a_signal_that_does_not_end_a_process_is_no_stop(paths):
    w = World(paths)

    async def main():
        await w.up(STACK)
        await w.manager.kill("app", ["worker"], "SIGWINCH", w.progress)
        assert w.store.stacks["app"].status == "running"

    run(main)


def test_rm_removes_stopped_containers_and_nothing_recreates_them(paths):
    w = World(paths)

    async def main():
        await w.up(STACK)
        assert await w.manager.remove_stopped("app", ["worker"]) == []  # running: kept
        await w.manager.stop("app", ["worker"])
        removed = await w.manager.remove_stopped("app", ["worker"], progress=w.progress)
        assert len(removed) == 1
        await reconcile_for(w, 5)
        assert _names(w, "worker") == []
        assert "app-worker-1" in w.node.kinds("remove")
        await w.up(STACK)  # `up` creates it again

    run(main)
    assert _names(w, "worker") == ["app-worker-1"]


def test_create_only_creates_and_start_starts(paths):
    w = World(paths)

    async def main():
        await w.up(STACK, no_start=True)
        assert w.store.stacks["app"].status == "stopped"
        await reconcile_for(w, 5)
        assert w.node.running() == []
        assert len(w.node.kinds("create")) == 3
        await w.manager.start("app")

    run(main)
    assert _names(w, "web") == ["app-web-1", "app-web-2"]
    assert len(w.node.kinds("create")) == 3
