"""observe(): waiters woken by one change share one read of the node; a read under way is
never shared with a caller that comes after it began."""

from __future__ import annotations

import trio
import trio.testing

from stackctl.controller.context import Ctx
from stackctl.controller.watch import observe
from stackctl.controller.cluster import Cluster


class CountingNode:
    def __init__(self) -> None:
        self.calls = 0
        self.gate: trio.Event | None = None  # set: a read waits for it (a slow node)
        self.started = trio.Event()

    async def list_containers(self, *, stack: str | None = None):
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return []


def _ctx(node) -> Ctx:
    node.name = "local"
    return Ctx(node=Cluster({"local": node}), store=None)


def test_waiters_of_one_change_share_one_read():
    node = CountingNode()
    ctx = _ctx(node)
    got = []

    async def main():
        async with trio.open_nursery() as n:
            for _ in range(5):
                n.start_soon(lambda: _collect(ctx, got))

    trio.run(main)
    assert node.calls == 1 and len(got) == 5 and all(o is got[0] for o in got)


async def _collect(ctx, got):
    got.append(await observe(ctx, "app"))


def test_a_read_under_way_is_not_shared_with_a_later_caller():
    node = CountingNode()
    node.gate = trio.Event()
    ctx = _ctx(node)
    got = []

    async def main():
        async with trio.open_nursery() as n:
            n.start_soon(lambda: _collect(ctx, got))
            await node.started.wait()  # the first read has begun
            n.start_soon(lambda: _collect(ctx, got))
            await trio.testing.wait_all_tasks_blocked()
            node.gate.set()

    trio.run(main)
    assert node.calls == 2 and len(got) == 2 and got[0] is not got[1]


def test_joiners_read_for_themselves_if_the_first_caller_is_cancelled():
    node = CountingNode()
    node.gate = trio.Event()
    ctx = _ctx(node)
    scopes: dict = {}
    got = []

    async def caller():
        with trio.CancelScope() as scope:
            scopes[trio.lowlevel.current_task()] = scope
            got.append(await observe(ctx, "app"))

    readers = []
    real_list = node.list_containers

    async def list_containers(*, stack=None):
        readers.append(trio.lowlevel.current_task())
        return await real_list(stack=stack)

    node.list_containers = list_containers

    async def main():
        async with trio.open_nursery() as n:
            n.start_soon(caller)  # whichever runs first reads, the other joins its read
            n.start_soon(caller)
            await node.started.wait()
            assert len(readers) == 1
            scopes[readers[0]].cancel()  # the read is never finished: the joiner reads itself
            await trio.testing.wait_all_tasks_blocked()
            node.gate.set()

    trio.run(main)
    assert len(got) == 1 and node.calls == 2 and readers[1] is not readers[0] and not ctx.reads
