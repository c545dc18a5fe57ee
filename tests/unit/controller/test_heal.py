"""The reconcile loop (restart policy: replacement, not restart in place) and cancellation."""

from __future__ import annotations

import os
import stat

import trio
from fakes import Behavior
from helpers import World, run

CRASHY = """
services:
  web:
    image: crash
    deploy:
      replicas: 2
      restart_policy: {condition: on-failure, delay: 2s, max_attempts: 2}
"""


def test_dead_task_replaced_in_its_slot_after_delay(paths):
    w = World(paths, images=("crash",))
    w.node.behaviors["crash"] = Behavior(exit_after=1.0, exit_code=2)

    async def main():
        await w.up(CRASHY)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.manager.run)
            await trio.sleep(1.5)  # died at 1s; delay 2s: not replaced yet
            w.manager.trigger({"type": "container.die"})  # what the bus says
            await trio.sleep(0.1)
            assert len(w.node.kinds("create")) == 2
            await trio.sleep(1.9)
            first_round = len(w.node.kinds("create"))
            await trio.sleep(60)
            nursery.cancel_scope.cancel()
        return first_round

    first_round = run(main)
    assert first_round == 4  # both slots replaced once
    creates = w.node.kinds("create")
    assert len(creates) == 6  # max_attempts 2: two replacements per slot, then it gives up
    assert all(n.startswith(("app-web-1", "app-web-2")) for n in creates)
    # the dead containers were removed once replaced; the last ones stay for inspection
    assert len(w.node.containers) == 2
    assert sum(len(v) for v in w.store.restarts.values()) == 4


def test_stopped_service_not_restarted(paths):
    w = World(paths)

    async def main():
        await w.up("services:\n  web:\n    image: bb\n")
        await w.manager.stop("app", [], None, w.progress)
        await w.manager.reconcile_once()
        assert not w.node.running()
        await w.manager.start("app", [], None, w.progress)
        assert len(w.node.running()) == 1

    run(main)
    assert len(w.node.kinds("create")) == 1  # started again, never replaced


def test_missing_container_recreated(paths):
    w = World(paths)

    async def main():
        await w.up("services:\n  web:\n    image: bb\n")
        cid = w.node.running()[0].id
        await w.node.remove_container(cid)
        await w.manager.reconcile_once()
        await w.manager.reconcile_once()  # a second pass changes nothing

    run(main)
    assert len(w.node.running()) == 1 and len(w.node.kinds("create")) == 2


def test_cancel_during_update_leaves_nothing_half_made(paths):
    w = World(paths)
    w.node.start_delay = 0.5
    text = """
    services:
      web:
        image: bb
        environment: {V: "1"}
        deploy:
          replicas: 2
          update_config: {order: start-first}
    """

    async def main():
        await w.up(text)
        old = {c.id for c in w.node.running()}
        with trio.move_on_after(0.25):  # Ctrl-C: while the new container is being started
            await w.up(text.replace('V: "1"', 'V: "2"'))
        return old

    old = run(main)
    # the new container was created, then removed again; the old ones keep running
    assert {c.id for c in w.node.running()} == old
    assert set(w.node.containers) == old
    assert w.node.kinds("remove")  # the half-made one
    assert w.store.stacks["app"].status == "interrupted"


def test_cancel_before_stop_keeps_old_serving(paths):
    w = World(paths)
    w.manager.ctx.drain_grace = 1.0
    text = "services:\n  web:\n    image: bb\n    environment: {V: '1'}\n"

    async def main():
        await w.up(text)
        old = w.node.running()[0].id
        with trio.move_on_after(0.5):  # during the drain of the old replica (stop-first)
            await w.up(text.replace("'1'", "'2'"))
        return old

    old = run(main)
    assert [c.id for c in w.node.running()] == [old]
    assert w.net.serving[old] is True  # put back into its VIP / published ports


def test_secrets_written_with_modes_and_never_in_labels(paths):
    w = World(paths)
    text = """
    services:
      web:
        image: bb
        secrets:
          - pw
          - {source: key, target: app.key, uid: "0", mode: 0440}
        configs:
          - {source: conf, target: /etc/app.conf}
    secrets:
      pw: {environment: PW}
      key: {content: inline}
    configs:
      conf: {content: "a=1"}
    """

    async def main():
        await w.up(text, objects={"secret:pw": "hunter2", "secret:key": "k3y",
                                  "config:conf": "a=1"})

    run(main)
    c = w.node.running()[0]
    opts = w.node.containers[c.id].opts
    mounts = {m.split("target=")[1].split(",")[0]: m.split("source=")[1].split(",")[0]
              for m in opts.mounts}
    assert set(mounts) == {"/run/secrets/pw", "/run/secrets/app.key", "/etc/app.conf"}
    assert all("readonly" in m for m in opts.mounts)
    assert open(mounts["/run/secrets/pw"]).read() == "hunter2"
    assert stat.S_IMODE(os.stat(mounts["/run/secrets/pw"]).st_mode) == 0o400
    assert stat.S_IMODE(os.stat(mounts["/run/secrets/app.key"]).st_mode) == 0o440
    assert stat.S_IMODE(os.stat(mounts["/etc/app.conf"]).st_mode) == 0o444
    dump = repr(opts.labels) + repr(w.events) + repr(w.store.stacks)
    assert "hunter2" not in dump and "k3y" not in dump
