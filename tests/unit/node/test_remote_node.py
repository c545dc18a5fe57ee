"""The node interface over the wire: a RemoteNode talking to a real AgentServer serving
``node.*`` for a LocalNode (over the shared fake runtime), through an in-memory stream — the
same path a manager takes over SSH, minus SSH."""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from stackctl.agent.server import AgentServer
from stackctl.controller.cluster import Cluster
from stackctl.controller.taskspec import ObjectFile
from stackctl.errors import ConflictError, NotFoundError
from stackctl.net.sandbox import Attachment
from stackctl.node.interface import ContainerRequest, WireError, info_from_json, \
    info_to_json, taskfiles_ref
from stackctl.node.local import LocalNode, resolve_taskfiles
from stackctl.node.remote import RemoteNode
from stackctl.node.service import node_methods
from stackctl.paths import NodePaths
from stackctl.runtime.imageconfig import RunOptions
from stackctl.transport.aclient import open_client

sys.path.insert(0, str(Path(__file__).parents[1] / "controller"))
from fakes import FakeNet, FakeNode  # noqa: E402


@pytest.fixture
def paths(tmp_path) -> NodePaths:
    (tmp_path / "state").mkdir()
    (tmp_path / "run").mkdir()
    return NodePaths(str(tmp_path / "state"), str(tmp_path / "run"), "stackctl-test")


@asynccontextmanager
async def remote(paths: NodePaths, name: str = "n2"):
    fake, net = FakeNode(images={"bb": "sha256:bb"}), FakeNet()
    local = LocalNode(fake, net, paths=paths, name=name)
    server = AgentServer(node_methods(local), node={"name": name, "role": "worker"})
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle, right)
        async with open_client(left, node=name) as client:
            yield RemoteNode(name, client), fake, net
        nursery.cancel_scope.cancel()


def _opts(task_id: str = "t1") -> RunOptions:
    return RunOptions(image="bb", command=["sh"], labels={
        "com.stackctl.stack": "s", "com.stackctl.service": "web", "com.stackctl.slot": "1",
        "com.stackctl.task-id": task_id})


async def test_containers_round_trip(paths):
    async with remote(paths) as (node, fake, net):
        cid = await node.create_container(
            _opts(), name="s-web-1", networks=[Attachment("s_default", ["web"], None)],
            ports=["8080:80"], service="web", health={"test": ["CMD", "true"]})
        assert fake.containers[cid].kwargs["networks"] == [Attachment("s_default", ["web"],
                                                                      None)]
        await node.start_container(cid)
        (info,) = await node.list_containers(stack="s")
        assert (info.id, info.state, info.node, info.slot) == (cid, "running", "n2", "1")
        await node.set_serving(cid, True)
        assert net.serving[cid] is True
        await node.stop_container(cid, timeout=1)
        await node.remove_container(cid)
        assert await node.list_containers(stack="s") == []
        with pytest.raises(NotFoundError):
            await node.start_container(cid)


async def test_a_retried_create_makes_no_second_container(paths):
    async with remote(paths) as (node, fake, _):
        first = await node.create_container(_opts("same"), name="a")
        again = await node.create_container(_opts("same"), name="a")
        assert first == again and len(fake.containers) == 1
        with pytest.raises(ConflictError):  # another task, the same name
            await node.create_container(_opts("other"), name="a")


async def test_networks_volumes_images_and_service_ports(paths):
    async with remote(paths) as (node, fake, net):
        assert await node.ensure_network("s_default", labels={"k": "v"}) is True
        assert await node.ensure_network("s_default") is False
        assert await node.ensure_volume("s_data") is True
        assert await node.image_id("bb") == "sha256:bb"
        assert await node.image_id("nope") is None
        await node.publish_service("s", "web", ["8080:80/tcp"], ["s_default"])
        assert net.published[("s", "web")] == (["8080:80/tcp"], ["s_default"])
        await node.unpublish_service("s", "web")
        await node.remove_volume("s_data")
        await node.remove_network("s_default")
        assert "s_default" not in fake.networks


async def test_task_files_are_written_on_the_node_and_resolved_at_create(paths):
    f = ObjectFile("secret", "pw", "pw", "/run/secrets/pw", mode=0o400)
    async with remote(paths) as (node, fake, _):
        assert not await node.has_task_files("s", "web", "abc123456789def")
        await node.write_task_files("s", "web", "abc123456789def", [f],
                                    {"secret:pw": b"hunter2", "secret:other": b"x"})
        assert await node.has_task_files("s", "web", "abc123456789def")
        opts = _opts()
        ref = taskfiles_ref("s", "web", "abc123456789def")
        opts.mounts.append(f"type=bind,source={ref}/pw,target=/run/secrets/pw,readonly")
        cid = await node.create_container(opts, name="s-web-1")
        mount = fake.containers[cid].opts.mounts[0]
        path = Path(paths.run) / "secrets" / "s" / "web-abc123456789" / "pw"
        assert f"source={path}," in mount
        assert path.read_bytes() == b"hunter2"
        assert not (path.parent / "other").exists()  # only what the files need travelled
        await node.remove_task_files("s")
        assert not path.exists()


def test_a_task_file_name_cannot_leave_its_directory(tmp_path):
    from stackctl.errors import StackctlError

    opts = _opts()
    opts.mounts.append("type=bind,source=taskfiles:s/../../etc/passwd,target=/x")
    with pytest.raises(StackctlError, match="not valid"):
        resolve_taskfiles(str(tmp_path), opts)


def test_codecs_round_trip_and_refuse_garbage():
    req = ContainerRequest(_opts(), "n", [Attachment("a", ["x"], "10.0.0.2")], ["80"], "web",
                           "dnsrr", {"test": ["NONE"]})
    assert ContainerRequest.from_json(req.to_json()) == req
    bad = req.to_json()
    bad["opts"]["no_such_option"] = 1  # a newer peer: refused, never dropped silently
    with pytest.raises(WireError):
        ContainerRequest.from_json(bad)
    with pytest.raises(WireError):
        ContainerRequest.from_json({"opts": "x"})
    with pytest.raises(WireError):
        info_from_json({"name": "no id"})
    from stackctl.scheduler.observed import ContainerInfo
    c = ContainerInfo(id="1", name="a", labels={"k": "v"}, state="running",
                      listening=frozenset({80}), node="n1")
    assert info_from_json(info_to_json(c)) == c
    assert info_from_json(info_to_json(c), node="n9").node == "n9"


async def test_the_cluster_routes_each_call_to_the_container_s_node(paths, tmp_path):
    p2 = NodePaths(str(tmp_path / "s2"), str(tmp_path / "r2"), "x")
    async with remote(paths, "n2") as (n2, fake2, _), remote(p2, "n3") as (n3, fake3, _):
        cluster = Cluster({"n2": n2, "n3": n3}, local="n2")
        a = await cluster.create_container(_opts("a"), node="n2", name="a")
        b = await cluster.create_container(_opts("b"), node="n3", name="b")
        assert a in fake2.containers and b in fake3.containers
        fresh = Cluster({"n2": n2, "n3": n3}, local="n2")  # knows nothing yet: asks around
        await fresh.start_container(b)
        assert fake3.containers[b].state == "running"
        assert {c.node for c in await fresh.list_containers(stack="s")} == {"n2", "n3"}
        await fresh.remove_container(b)
        await fresh.remove_container(b)  # idempotent
        assert b not in fake3.containers
        assert await fresh.ensure_network("net", nodes=["n3"]) is True
        assert "net" in fake3.networks and "net" not in fake2.networks
        await fresh.remove_network("net")
        with pytest.raises(NotFoundError):
            await fresh.remove_network("net")
