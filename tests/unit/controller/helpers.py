"""Stack files as text -> what the CLI sends; a Manager wired to the fakes; a fake clock."""

from __future__ import annotations

import textwrap

import trio
import trio.testing

from fakes import FakeNet, FakeNode, FakeStore, wall
from stackctl.controller.manager import Manager
from stackctl.spec.dump import stack_data
from stackctl.spec.validate import build_stack
from stackctl.spec.yamlpos import load_yaml


def stack_json(text: str, name: str = "app", environ=None) -> dict:
    raw = load_yaml(textwrap.dedent(text), "stack.yml")
    stack, _, _ = build_stack(raw, project_name=name, project_dir="/srv/app",
                              environ=environ or {}, profiles=())
    return stack_data(stack)


class World:
    def __init__(self, paths, images=("bb",)) -> None:
        self.node = FakeNode({ref: f"sha256:{ref}" for ref in images})
        self.net = FakeNet()
        self.store = FakeStore()
        self.events: list[dict] = []
        self.manager = Manager(paths, self.node, self.store, net=self.net, wall=wall,
                               poll_interval=0.1, drain_grace=0.0)

    async def progress(self, event: dict) -> None:
        self.events.append(event)

    async def up(self, text: str, **options):
        objects = options.pop("objects", None)
        await self.manager.deploy(stack_json(text), "/srv/app", options, self.progress,
                                  objects_=objects)

    def actions(self, action: str, status: str | None = None) -> list[dict]:
        return [e for e in self.events if e["action"] == action and
                (status is None or e["status"] == status)]


def run(fn, *args):
    """Run an async test function under a fake clock that jumps when all tasks sleep."""
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))
