"""`stop` then `start` of an interrupted stack keeps it held (docs/controller.md,
"Cancellation"): the reconcile loop still creates nothing the cancelled deploy never made;
only the next `up` lifts the hold."""

from __future__ import annotations

from fakes import Behavior
from helpers import World, run
from test_interrupt import GATED, cancel_when, reconcile_for


def _web(w: World) -> list[str]:
    return [n for n in w.node.kinds("create") if n.startswith("app-web")]


def test_stop_start_of_an_interrupted_stack_keeps_the_hold(paths):
    w = World(paths, images=("bb", "slowdb"))
    w.node.behaviors["slowdb"] = Behavior(healthy_after=6.0)

    async def main():
        await cancel_when(w, lambda: bool(w.actions("waiting", "started")), GATED, wait=True)
        assert w.store.stacks["app"].status == "interrupted"
        await w.manager.stop("app")
        assert not w.node.running("db")
        await reconcile_for(w, 3)
        await w.manager.start("app")
        assert w.store.stacks["app"].status == "interrupted"
        assert len(w.node.running("db")) == 1
        await reconcile_for(w, 30)  # db becomes healthy meanwhile; web stays uncreated
        await w.manager.reconcile_once()

    run(main)
    assert _web(w) == []
    assert w.store.stacks["app"].status == "interrupted"


def test_partial_stop_start_keeps_the_hold_and_up_lifts_it(paths):
    w = World(paths, images=("bb", "slowdb"))
    w.node.behaviors["slowdb"] = Behavior(healthy_after=6.0)

    async def main():
        await cancel_when(w, lambda: bool(w.actions("waiting", "started")), GATED, wait=True)
        await w.manager.stop("app", ["db"])
        await reconcile_for(w, 3)
        assert not w.node.running("db")
        await w.manager.stop("app", ["web"])
        await w.manager.start("app", ["db"])
        await reconcile_for(w, 20)
        assert _web(w) == []
        await w.manager.start("app", ["web"])  # nothing of web to start: still held
        assert w.store.stacks["app"].status == "interrupted"
        await reconcile_for(w, 20)
        assert _web(w) == []
        await w.up(GATED, wait=True)  # the next `up` carries on
        await w.manager.reconcile_once()

    run(main)
    assert [c.name for c in w.node.running("web")] == ["app-web-1", "app-web-2"]
    assert w.store.stacks["app"].status == "running"
