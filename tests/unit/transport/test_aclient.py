"""The async agent client against the real trio AgentServer over a socketpair and a unix socket
(no root): concurrent calls on one connection, streams and their cancel, timeouts, agent
errors, and a lost connection failing every pending call with one NodeUnreachable."""

from __future__ import annotations

import os

import pytest
import trio

from stackctl.agent.client import AgentConflict, AgentError, AgentNotFound, AgentUnavailable
from stackctl.agent.server import AgentServer, Method
from stackctl.errors import ConflictError, NotFoundError
from stackctl.transport import protocol as P
from stackctl.transport.aclient import open_client
from stackctl.transport.errors import NodeUnreachable, RequestTimeout
from stackctl.transport.unix import connect_unix


class Agent:
    """A methods table with probes the tests wait on."""

    def __init__(self) -> None:
        self.cancelled: dict[str, trio.Event] = {}
        self.started: dict[str, trio.Event] = {}
        self.release = trio.Event()

    def _mark(self, table, key):
        table.setdefault(key, trio.Event()).set()

    async def echo(self, req):
        return {"echo": req.params, "peer": req.peer.node if req.peer else None}

    async def wait_for(self, req):
        """Answers after ``release`` (or at once with ``now``), tagging the answer."""
        self._mark(self.started, req.params["tag"])
        try:
            if not req.params.get("now"):
                await self.release.wait()
        except trio.Cancelled:
            self._mark(self.cancelled, req.params["tag"])
            raise
        return req.params["tag"]

    async def count(self, req):
        for i in range(req.params["n"]):
            await req.emit({"i": i})
        if req.params.get("fail"):
            raise ConflictError("counting went wrong", hint="count less")

    async def forever(self, req):
        self._mark(self.started, "forever")
        try:
            i = 0
            while True:
                await req.emit(i)
                i += 1
                await trio.sleep(0.001)
        except trio.Cancelled:
            self._mark(self.cancelled, "forever")
            raise

    async def missing(self, req):
        raise NotFoundError("no container named 'x'", hint="see `stackctl ps -a`")

    def server(self) -> AgentServer:
        return AgentServer({
            "echo": Method(self.echo), "wait_for": Method(self.wait_for),
            "count": Method(self.count, stream=True), "forever": Method(self.forever, stream=True),
            "missing": Method(self.missing),
        }, node={"name": "n2", "role": "worker"})


async def _serve_pair(nursery, agent: Agent):
    """A connected (client stream, cancel scope of the server's side)."""
    a, b = trio.socket.socketpair()
    server_scope = trio.CancelScope()

    async def serve():
        with server_scope:
            await agent.server().handle(trio.SocketStream(b))

    nursery.start_soon(serve)
    return trio.SocketStream(a), server_scope


async def test_call_and_hello():
    agent = Agent()
    async with trio.open_nursery() as n:
        stream, _ = await _serve_pair(n, agent)
        async with open_client(stream, node="n2", hello={"who": "test"}) as c:
            assert c.peer.node["name"] == "n2"
            assert await c.call("echo", {"a": 1}) == {"echo": {"a": 1}, "peer": {"who": "test"}}
            assert c.pending == 0
        n.cancel_scope.cancel()


async def test_concurrent_calls_on_one_connection_answer_out_of_order():
    agent = Agent()
    results = {}
    async with trio.open_nursery() as n:
        stream, _ = await _serve_pair(n, agent)
        async with open_client(stream, node="n2") as c:
            async def one(tag, now):
                results[tag] = await c.call("wait_for", {"tag": tag, "now": now})

            async with trio.open_nursery() as calls:
                for i in range(20):
                    calls.start_soon(one, f"slow{i}", False)
                # the fast ones answer while twenty slow ones are still open
                for i in range(5):
                    assert await c.call("wait_for", {"tag": f"fast{i}", "now": True}) == f"fast{i}"
                for i in range(20):
                    await agent.started.setdefault(f"slow{i}", trio.Event()).wait()
                assert c.pending == 20
                agent.release.set()
            assert results == {f"slow{i}": f"slow{i}" for i in range(20)}
        n.cancel_scope.cancel()


async def test_stream_yields_events_and_raises_an_error_end():
    agent = Agent()
    async with trio.open_nursery() as n:
        stream, _ = await _serve_pair(n, agent)
        async with open_client(stream, node="n2") as c:
            async with c.stream("count", {"n": 5}) as events:
                assert [ev async for ev in events] == [{"i": i} for i in range(5)]
            got = []
            with pytest.raises(AgentConflict) as err:
                async with c.stream("count", {"n": 2, "fail": True}) as events:
                    async for ev in events:
                        got.append(ev)
            assert got == [{"i": 0}, {"i": 1}]
            assert err.value.message == "counting went wrong" and err.value.hint == "count less"
            # the connection is still good
            assert (await c.call("echo", {}))["echo"] == {}
        n.cancel_scope.cancel()


async def test_leaving_a_stream_early_cancels_it_on_the_agent():
    agent = Agent()
    async with trio.open_nursery() as n:
        stream, _ = await _serve_pair(n, agent)
        async with open_client(stream, node="n2") as c:
            async with c.stream("forever") as events:
                async for ev in events:
                    if ev == 3:
                        break
            with trio.fail_after(5):
                await agent.cancelled.setdefault("forever", trio.Event()).wait()
            assert await c.call("echo", {"x": 1}) == {"echo": {"x": 1}, "peer": {"pid": os.getpid()}}
        n.cancel_scope.cancel()


async def test_timeout_raises_request_timeout_and_cancels_the_request():
    agent = Agent()
    async with trio.open_nursery() as n:
        stream, _ = await _serve_pair(n, agent)
        async with open_client(stream, node="n2") as c:
            with pytest.raises(RequestTimeout) as err:
                await c.call("wait_for", {"tag": "t"}, timeout=0.2)
            assert "node n2 did not answer wait_for within 0.2 s" in err.value.message
            with trio.fail_after(5):
                await agent.cancelled.setdefault("t", trio.Event()).wait()
            # the caller's own scope works the same way
            with trio.move_on_after(0.1):
                await c.call("wait_for", {"tag": "u"})
            with trio.fail_after(5):
                await agent.cancelled.setdefault("u", trio.Event()).wait()
            assert c.pending == 0 and c.alive
        n.cancel_scope.cancel()


async def test_agent_errors_keep_their_class():
    agent = Agent()
    async with trio.open_nursery() as n:
        stream, _ = await _serve_pair(n, agent)
        async with open_client(stream, node="n2") as c:
            with pytest.raises(AgentNotFound) as err:
                await c.call("missing")
            assert isinstance(err.value, NotFoundError)
            with pytest.raises(AgentError) as err:
                await c.call("no.such.method")
            assert err.value.code == P.BAD_REQUEST
        n.cancel_scope.cancel()


async def test_a_lost_connection_fails_every_pending_call_with_one_error():
    agent = Agent()
    errors = []
    async with trio.open_nursery() as n:
        stream, server_scope = await _serve_pair(n, agent)
        async with open_client(stream, node="n2", hint="check `ssh n2`") as c:
            async def one(tag):
                try:
                    await c.call("wait_for", {"tag": tag})
                except NodeUnreachable as exc:
                    errors.append(exc)

            async def streaming():
                try:
                    async with c.stream("forever") as events:
                        async for _ in events:
                            pass
                except NodeUnreachable as exc:
                    errors.append(exc)

            with trio.fail_after(10):
                async with trio.open_nursery() as calls:
                    for i in range(5):
                        calls.start_soon(one, f"c{i}")
                    calls.start_soon(streaming)
                    for i in range(5):
                        await agent.started.setdefault(f"c{i}", trio.Event()).wait()
                    await agent.started.setdefault("forever", trio.Event()).wait()
                    server_scope.cancel()  # the agent's side goes away
                    lost = await c.wait_lost()
            assert len(errors) == 6 and all(e is lost for e in errors)
            assert lost.message.startswith("node n2 is unreachable: ")
            assert lost.hint == "check `ssh n2`"
            assert not c.alive
            with pytest.raises(NodeUnreachable):
                await c.call("echo")
        n.cancel_scope.cancel()


async def test_a_peer_that_speaks_garbage_is_unreachable():
    a, b = trio.socket.socketpair()
    async with trio.open_nursery() as n:
        async def bad_server():
            s = trio.SocketStream(b)
            await s.receive_some(65536)
            await s.send_all(b"\x00\x00\x00\x05nope!")

        n.start_soon(bad_server)
        with pytest.raises(NodeUnreachable) as err:
            async with open_client(trio.SocketStream(a), node="n3"):
                pass
        assert "node n3 is unreachable: the agent sent something invalid" in err.value.message


async def test_another_major_version_is_refused_with_the_agents_reason():
    a, b = trio.socket.socketpair()
    async with trio.open_nursery() as n:
        n.start_soon(Agent().server().handle, trio.SocketStream(b))
        client_stream = trio.SocketStream(a)
        from stackctl.transport import aclient

        c = aclient.AsyncAgentClient(client_stream, "n2")
        c._conn = P.Connection(P.CLIENT, version="9.0")
        with pytest.raises(AgentError) as err:
            await c.handshake()
        assert err.value.code == P.VERSION_MISMATCH
        await c.aclose()


async def test_unix_socket_with_a_long_path(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = str(deep / "agent.sock")
    assert len(path) > 108
    async with trio.open_nursery() as n:
        await n.start(Agent().server().serve, path)
        async with open_client(await connect_unix(path), node="local") as c:
            assert c.peer.node["name"] == "n2"
            assert (await c.call("echo", {"k": "v"}))["echo"] == {"k": "v"}
        n.cancel_scope.cancel()
    with pytest.raises(AgentUnavailable) as err:
        await connect_unix(path)
    assert path in err.value.message and "stackctl agent serve" in err.value.hint
