"""A replica without a health check is ready (serves, counts for the rolling update and
``up --wait``) only once it listens on the TCP ports it publishes — the fake node's
``Behavior.listen_after`` / ``listens_on`` stand for what the real node reads from /proc."""

import pytest
import trio

from fakes import Behavior
from helpers import World, run
from stackctl.controller.context import DeployError
from stackctl.controller.reconcile import RestartHistory
from stackctl.scheduler.rolling import LISTEN_TIMEOUT
from stackctl.spec import units

WEB = """
services:
  web:
    image: bb
    environment: {V: "1"}
    deploy:
      replicas: 3
      update_config: {parallelism: 1, monitor: 1s, order: start-first, failure_action: rollback}
    ports: ["8080:80", "8443:443", "5353:53/udp"]
"""


def slow_update(text: str, image: str) -> str:
    return text.replace("image: bb", f"image: {image}").replace('V: "1"', 'V: "2"')


class TimedNet:
    """Records when each replica was put into / out of service."""

    def __init__(self, net) -> None:
        self.net = net
        self.times: list[tuple[float, str, bool]] = []

    async def set_serving(self, cid, serving):
        self.times.append((trio.current_time(), cid, serving))
        await self.net.set_serving(cid, serving)

    def __getattr__(self, name):
        return getattr(self.net, name)


def test_label_names_the_tcp_targets_only(paths):
    w = World(paths)
    run(lambda: w.up(WEB, wait=True))
    web = w.node.running("web")
    assert len(web) == 3
    assert {c.labels["com.stackctl.listen-ports"] for c in web} == {"80,443"}  # not 53/udp
    assert all(c.listen_ports == (80, 443) and c.ready for c in web)


def test_no_label_with_a_health_check_or_without_ports(paths):
    w = World(paths)
    text = WEB.replace("    ports:", "    healthcheck: {test: ok, interval: 1s}\n    ports:")
    run(lambda: w.up(text, wait=True))
    assert all("com.stackctl.listen-ports" not in c.labels for c in w.node.running("web"))

    w2 = World(paths)
    run(lambda: w2.up(WEB.replace('    ports: ["8080:80", "8443:443", "5353:53/udp"]\n', ""),
                      wait=True))
    assert all("com.stackctl.listen-ports" not in c.labels for c in w2.node.running("web"))


def test_start_first_update_waits_for_the_new_replica_to_listen(paths):
    w = World(paths, images=("bb", "slow"))
    w.node.behaviors["slow"] = Behavior(listen_after=1.5)
    timed = TimedNet(w.net)
    w.manager.cluster.member(None).net = timed  # the local node's serving state

    async def main():
        await w.up(WEB, wait=True)
        old = {c.id for c in w.node.running("web")}
        timed.times.clear()
        await w.up(slow_update(WEB, "slow"), wait=True)
        return old

    old = run(main)
    new = {c.id: c for c in w.node.running("web")}
    assert len(new) == 3 and not set(new) & old
    started = {cid: w.node.containers[cid].started for cid in new}
    joined = {cid: t for t, cid, serving in timed.times if serving and cid in new}
    assert joined.keys() == new.keys()
    for cid, t in joined.items():  # never in service before its ports listen
        assert t >= started[cid] + 1.5
    # an old replica leaves service only after its slot's new one joined
    slot_of = {c.id: c.slot for c in new.values()}
    for t, cid, serving in timed.times:
        if cid in old and not serving:
            slot = w.node.containers.get(cid)
            assert any(joined[n] <= t for n in new if slot is None or slot_of[n] == slot.labels[
                "com.stackctl.slot"])
    assert w.store.stacks["app"].status == "running"


def test_replica_that_never_listens_fails_the_update_after_the_bounded_wait(paths):
    w = World(paths, images=("bb", "deaf"))
    # listens, but not on the published target (a misconfigured port): never ready
    w.node.behaviors["deaf"] = Behavior(listens_on=(8081,))
    box = {}

    async def main():
        await w.up(WEB, wait=True)
        box["old"] = {c.id for c in w.node.running("web")}
        box["t0"] = trio.current_time()
        with pytest.raises(DeployError) as err:
            await w.up(slow_update(WEB, "deaf"), wait=True)
        box["took"] = trio.current_time() - box["t0"]
        box["err"] = err.value

    run(main)
    message = str(box["err"])
    assert "not listening on 80/tcp, 443/tcp" in message and "rolled back" in message
    # the bounded wait: LISTEN_TIMEOUT + monitor, not forever
    # (the virtual clock sums float steps: 31 s may read 30.999999999998)
    assert LISTEN_TIMEOUT / units.SECOND + 1 - 1e-6 <= box["took"] < LISTEN_TIMEOUT / units.SECOND + 10
    # rolled back: the old replicas kept serving all along, the new one never did
    assert {c.id for c in w.node.running("web")} == box["old"]
    assert not any(serving for cid, serving in w.net.calls if cid not in box["old"])


def test_wait_pending_until_listening(paths):
    w = World(paths, images=("slow",))
    w.node.behaviors["slow"] = Behavior(listen_after=2.0)

    async def main():
        await w.up(WEB.replace("image: bb", "image: slow"), wait=True)
        return trio.current_time()

    took = run(main)
    assert took >= 2.0  # up --wait returned only once the replicas listened
    assert all(w.net.serving[c.id] for c in w.node.running("web"))


def test_reconcile_puts_a_replica_into_service_once_it_listens(paths):
    w = World(paths, images=("slow",))
    w.node.behaviors["slow"] = Behavior(listen_after=1.0)
    box = {}

    async def main():
        await w.up(WEB.replace("image: bb", "image: slow"))  # no --wait: returns at once
        cid = next(iter(w.node.containers))
        box["at_up"] = w.net.serving.get(cid)
        w.net.serving.clear()  # as after an agent restart: forget; re-read the node
        w.manager.ctx.serving.clear()
        await w.manager.reconcile_once()
        box["before"] = w.net.serving.get(cid)
        wake = await w.manager.reconcile_once()
        box["wake_in"] = (wake - w.manager.ctx.wall()) / 1e9 if wake else None
        await trio.sleep(1.0)
        await w.manager.reconcile_once()
        box["after"] = w.net.serving.get(cid)

    run(main)
    assert box["at_up"] is not True and box["before"] is False
    assert box["wake_in"] is not None and box["wake_in"] <= 0.25  # a short tick, not 5 s
    assert box["after"] is True


def test_reconcile_pass_asks_for_a_short_tick_while_ports_are_not_listening(paths):
    from stackctl.controller.reconcile import waiting_for_ports
    from stackctl.scheduler.observed import ContainerInfo
    from fakes import BASE_WALL, iso

    labels = {"com.stackctl.listen-ports": "80"}
    started = iso(BASE_WALL)
    c = ContainerInfo("a", "app-web-1", labels, "running", started_at=started,
                      listening=frozenset())
    assert waiting_for_ports(c, BASE_WALL + 1)
    assert not waiting_for_ports(c, BASE_WALL + LISTEN_TIMEOUT)  # bounded
    listening = ContainerInfo("a", "app-web-1", labels, "running", started_at=started,
                              listening=frozenset({80}))
    assert not waiting_for_ports(listening, BASE_WALL + 1)
    assert not waiting_for_ports(ContainerInfo("a", "x", {}, "running", started_at=started),
                                 BASE_WALL + 1)
