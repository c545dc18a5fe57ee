"""`up` pulling images (controller/deploy.py ensure_images / pull_service_image) on a
3-node cluster of fake nodes sharing one fake registry: the manager resolves the tag once,
the nodes that run the service pull that digest with the forwarded credentials, errors are
one line naming the node."""

from __future__ import annotations

import pytest
import trio

from fakes import FakeNet, FakeNode
from helpers import stack_json
from stackctl.controller.cluster import Cluster
from stackctl.controller.context import Ctx, Progress
from stackctl.controller.deploy import DeployOptions, ensure_images, load_stack
from stackctl.errors import NotFoundError, StackctlError
from stackctl.node.local import LocalNode
from stackctl.paths import NodePaths

REF = "reg.example:5000/team/app:1"
OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64


class World:
    def __init__(self, tmp_path, placed: dict[str, str]) -> None:
        self.registry = {REF: (OLD, "sha256:img-old")}
        self.fakes: dict[str, FakeNode] = {}
        members = {}
        for n in ("n1", "n2", "n3"):
            fake = FakeNode()
            fake.registry = self.registry  # one registry every node reaches
            self.fakes[n] = fake
            paths = NodePaths(state=str(tmp_path / n / "s"), run=str(tmp_path / n / "r"),
                              cgroup_parent=f"x-{n}")
            members[n] = LocalNode(fake, FakeNet(), paths=paths, name=n)
        self.ctx = Ctx(node=Cluster(members, local="n1"), store=None)
        self.ctx.placements["app"] = {("web", str(i)): n for i, n in enumerate(
            placed.values(), 1)} if placed else {}
        self.events: list[dict] = []

    async def send(self, event: dict) -> None:
        self.events.append(event)

    async def ensure(self, text: str, auth=None, **options) -> dict[str, str]:
        stack, _ = load_stack(stack_json(text), "/srv/app")
        return await ensure_images(self.ctx, Progress("app", self.send), stack, "/srv/app",
                                   sorted(stack.services), DeployOptions.from_json(options),
                                   auth)

    def pulls(self) -> dict[str, list]:
        return {n: f.pulls for n, f in self.fakes.items() if f.pulls}


STACK = f"""
services:
  web:
    image: {REF}
    pull_policy: always
    deploy: {{replicas: 2}}
"""


def test_resolved_once_and_every_node_of_the_service_pulls_that_digest(tmp_path):
    w = World(tmp_path, {"1": "n2", "2": "n3"})
    auth = {"reg.example:5000": {"username": "alice", "password": "pw"}}
    manager_pull = w.fakes["n1"].pull_image

    async def then_move_the_tag(ref, **kw):
        out = await manager_pull(ref, **kw)
        w.registry[f"{REF}@{OLD}"] = w.registry[REF]  # the registry keeps it by digest
        w.registry[REF] = (NEW, "sha256:img-new")  # pushed again during the rollout
        return out

    w.fakes["n1"].pull_image = then_move_the_tag
    ids = trio.run(w.ensure, STACK, auth)
    assert ids == {"web": "sha256:img-old"}
    cred = {"username": "alice", "password": "pw"}
    assert w.pulls() == {"n1": [(REF, "always", cred)],
                         "n2": [(f"{REF}@{OLD}", "missing", cred)],
                         "n3": [(f"{REF}@{OLD}", "missing", cred)]}
    assert w.fakes["n2"].images[REF] == w.fakes["n3"].images[REF] == "sha256:img-old"
    done = [e["message"] for e in w.events if e["action"] == "pull" and e["status"] == "done"]
    assert done == [f"{REF} is {OLD[:19]} on n1, n2, n3"]
    # the manager's own transfer is heard as progress (the nodes' stays on the nodes)
    heard = [e["message"] for e in w.events if e["status"] == "progress"]
    assert heard == [f"{OLD[7:19]}: Pull complete"]


def test_only_the_nodes_that_run_the_service_pull_and_no_credentials_without_the_flag(tmp_path):
    w = World(tmp_path, {"1": "n2", "2": "n2"})
    trio.run(w.ensure, STACK)
    assert sorted(w.pulls()) == ["n1", "n2"]  # n3 runs nothing of it
    assert w.pulls()["n2"] == [(f"{REF}@{OLD}", "missing", None)]


def test_missing_pulls_nothing_when_every_node_has_the_image(tmp_path):
    w = World(tmp_path, {"1": "n2", "2": "n3"})
    for f in w.fakes.values():
        f.images[REF] = "sha256:img-old"
    ids = trio.run(w.ensure, STACK.replace("always", "missing"))
    # only the manager's node is asked, with `missing` (it has the image: nothing goes to the
    # registry), for the digest the image was pulled as: a task moved later pulls that
    assert ids == {"web": "sha256:img-old"} and w.pulls() == {"n1": [(REF, "missing", None)]}
    assert w.ctx.images.pin_of("app", "web", "sha256:img-old").node_ref == f"{REF}@{OLD}"
    # --pull always overrides the file's policy
    trio.run(lambda: w.ensure(STACK.replace("always", "missing"), pull="always"))
    assert [p[1] for p in w.pulls()["n1"]] == ["missing", "always"]


def test_a_node_that_cannot_pull_is_one_line_naming_the_node_and_the_reference(tmp_path):
    w = World(tmp_path, {"1": "n2", "2": "n3"})
    real = w.fakes["n3"].pull_image

    async def refused(ref, **kw):
        await real(ref, **kw)  # records the call
        raise StackctlError(f"pull {ref}: reg.example:5000 refused the credentials of 'bob' "
                            "(wrong username or password?)")

    w.fakes["n3"].pull_image = refused
    with pytest.raises(StackctlError) as info:
        trio.run(w.ensure, STACK)
    assert info.value.message.startswith(f"service web: node n3: pull {REF}@{OLD}: ")
    assert "\n" not in info.value.message


def test_never_and_build_do_not_pull(tmp_path):
    w = World(tmp_path, {})
    with pytest.raises(NotFoundError):
        trio.run(w.ensure, STACK.replace("always", "never"))
    assert w.pulls() == {}
    ids = trio.run(w.ensure, f"""
services:
  web:
    image: {REF}
    build: {{context: .}}
""")
    assert ids == {"web": "sha256:built-1"} and w.pulls() == {}


def test_an_unknown_image_is_one_line(tmp_path):
    w = World(tmp_path, {})
    with pytest.raises(StackctlError) as info:
        trio.run(w.ensure, STACK.replace(REF, "reg.example:5000/nope:1"))
    assert info.value.message == ("service web: node n1: pull reg.example:5000/nope:1: "
                                  "repository reg.example:5000/nope:1 not found")


# --- a task placed later on a node that never pulled the image (controller/imagepull.py) ---

def test_a_moved_task_pulls_the_deployed_digest_with_the_stacks_credentials(tmp_path):
    from stackctl.controller.imagepull import ensure_task_image

    w = World(tmp_path, {"1": "n2", "2": "n2"})  # n3 runs nothing of it at deploy time
    auth = {"reg.example:5000": {"username": "alice", "password": "pw"}}
    trio.run(w.ensure, STACK, auth)
    assert "n3" not in w.pulls()
    w.registry[f"{REF}@{OLD}"] = w.registry[REF]
    w.registry[REF] = (NEW, "sha256:img-new")  # the tag moved since the deploy
    # n2 went down: its slot 2 is placed on n3, which pulls the deployed digest, not the tag
    trio.run(ensure_task_image, w.ctx, "app", "web", "2", "sha256:img-old", "n3")
    assert w.pulls()["n3"] == [(f"{REF}@{OLD}", "missing", {"username": "alice", "password": "pw"})]
    assert w.fakes["n3"].images[REF] == "sha256:img-old"
    # known to be there now: the next task on n3 asks nothing; nor does a node that has it
    trio.run(ensure_task_image, w.ctx, "app", "web", "3", "sha256:img-old", "n3")
    trio.run(ensure_task_image, w.ctx, "app", "web", "1", "sha256:img-old", "n2")
    assert len(w.pulls()["n3"]) == 1 and len(w.pulls()["n2"]) == 1
    # an image this manager never pulled (built, loaded, another version) is left alone
    trio.run(ensure_task_image, w.ctx, "app", "web", "1", "sha256:built-1", "n3")
    assert len(w.pulls()["n3"]) == 1


def test_a_moved_task_whose_node_cannot_pull_stays_pending_with_the_reason(tmp_path):
    from stackctl.controller.imagepull import ImageUnavailableError, ensure_task_image

    w = World(tmp_path, {"1": "n2"})
    trio.run(w.ensure, STACK)
    real = w.fakes["n3"].pull_image

    async def refused(ref, **kw):
        await real(ref, **kw)
        raise StackctlError(f"pull {ref}: authentication required by reg.example:5000; log in "
                            "first (stackctl login reg.example:5000)")

    w.fakes["n3"].pull_image = refused
    with pytest.raises(ImageUnavailableError) as info:
        trio.run(ensure_task_image, w.ctx, "app", "web", "1", "sha256:img-old", "n3")
    msg = info.value.message
    assert msg.startswith(f"service web: No such image: {REF} on node n3; pulling {REF}@{OLD} "
                          "there failed: pull ") and "authentication required" in msg
    assert "\n" not in msg
    assert list(w.ctx.images.pending("app")) == ["web.1"]
    w.fakes["n3"].pull_image = real  # the node logged in: the next pass pulls, and it clears
    trio.run(ensure_task_image, w.ctx, "app", "web", "1", "sha256:img-old", "n3")
    assert w.ctx.images.pending("app") == {}
