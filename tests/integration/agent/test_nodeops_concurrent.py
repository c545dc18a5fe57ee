"""NodeOps under concurrency, as a stack's ``up`` drives it: several replicas of one service
created and started at once (the converge wave), on a network, with health checks running in
the agent meanwhile. Regression: replicas failed with "the container's setup process died"."""

from __future__ import annotations

import pytest
import trio

from test_agent_node import FAST_OK, in_agent, net_node, node, sleeper  # noqa: F401 - fixtures

pytestmark = pytest.mark.root

ROUNDS = 3
REPLICAS = 3


def test_replicas_created_and_started_concurrently(net_node):  # noqa: F811
    from stackctl.net.sandbox import Attachment

    async def body(api):
        ops = api.node
        await ops.ensure_network("cc-front", labels={"com.stackctl.stack": "cc"})
        made: list[str] = []

        async def one(rnd: int, slot: int) -> None:
            cid = await ops.create_container(
                sleeper(**{"com.stackctl.stack": "cc"}), name=f"cc-web-{rnd}-{slot}",
                networks=[Attachment("cc-front", aliases=["web"])], service="web",
                health=FAST_OK)
            made.append(cid)
            await ops.start_container(cid)

        try:
            for rnd in range(ROUNDS):
                async with trio.open_nursery() as nursery:
                    for slot in range(REPLICAS):
                        nursery.start_soon(one, rnd, slot)
            infos = await ops.list_containers(stack="cc")
            assert sorted(c.state for c in infos) == ["running"] * (ROUNDS * REPLICAS), \
                [(c.name, c.state) for c in infos]
        finally:
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as nursery:
                    for cid in made:
                        nursery.start_soon(ops.remove_container, cid)
                await ops.remove_network("cc-front")

    in_agent(net_node, body)
