"""The agent server and the blocking client over a real unix socket (no root): calls,
streams, cancel, errors, version mismatch. The controller and the node are fakes."""

from __future__ import annotations

import socket
import threading

import pytest
import trio

from stackctl.transport import protocol as P
from stackctl.agent.api import AgentAPI, stack_status
from stackctl.agent.client import AgentClient, AgentError, AgentNotFound, AgentUnavailable, socket_path
from stackctl.agent.events import EventBus
from stackctl.agent.server import AgentServer
from stackctl.agent.store import Store
from stackctl.errors import NotFoundError, StackctlError
from stackctl.paths import NodePaths


def FakePlan(stack):
    """What Manager.plan returns: a Plan (not JSON) that the API turns into its two forms."""
    from stackctl.scheduler.planner import Plan

    return Plan(stack)


class FakeManager:
    def __init__(self):
        self.calls = []
        self.cancelled = threading.Event()
        self.started = threading.Event()
        self.cleaned_up = threading.Event()

    async def deploy(self, stack, project_dir, options, progress):
        self.calls.append(("deploy", stack, project_dir, options))
        if stack.get("fail"):
            await progress({"action": "create", "status": "error", "message": "boom"})
            raise StackctlError("update failed: web.1 never became healthy", hint="see stackctl ps")
        if stack.get("bug"):
            raise ValueError("oops")
        if stack.get("hang"):
            await progress({"action": "waiting", "status": "started", "message": "waiting"})
            self.started.set()
            try:
                if stack.get("chatty"):  # a stream that never stops talking (`up | head`)
                    while True:
                        await progress({"action": "waiting", "status": "started",
                                        "message": "x" * 1000})
                        await trio.sleep(0)
                await trio.sleep_forever()
            except trio.Cancelled:
                self.cancelled.set()
                # as the controller does: undo the step in flight, shielded, reporting it
                with trio.CancelScope(shield=True):
                    for _ in range(3):
                        await progress({"action": "remove", "status": "done"})
                        await trio.sleep(0.01)
                    self.cleaned_up.set()
                raise
        for i in range(3):
            await progress({"action": "create", "status": "done", "slot": str(i + 1)})

    async def plan(self, stack, project_dir, options):
        return FakePlan(stack.get("name"))

    async def remove(self, name, volumes, remove_orphans, progress):
        raise NotFoundError(f"no stack named {name!r}", hint="see `stackctl ls`")

    async def scale(self, name, scales, progress):
        await progress({"scales": scales})

    async def rollback(self, name, services, progress):
        await progress({"services": services})

    async def stop(self, name, services, timeout, progress):
        await progress({"verb": "stop", "timeout": timeout})

    start = restart = stop


class FakeNode:
    node = "local"

    async def records(self):
        return []

    async def list_containers(self, stack=None):
        return []

    async def service_ports(self):
        return {}


class FakeSupervisor:
    def health_of(self, cid):
        return None


class Harness:
    """The server in a trio thread; the test drives the blocking client."""

    def __init__(self, paths, manager):
        self.paths = paths
        self.manager = manager
        self.ready = threading.Event()
        self.error = None
        self.bus = None
        self.store = Store.open(paths)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            trio.run(self._main)
        except BaseException as e:  # noqa: BLE001
            self.error = e
            self.ready.set()

    async def _main(self):
        self.token = trio.lowlevel.current_trio_token()
        self.bus = EventBus(buffer=4)
        self.stop_event = trio.Event()
        api = AgentAPI(store=self.store, bus=self.bus, node=FakeNode(), supervisor=FakeSupervisor(),
                       manager=self.manager, info={"node": "test", "role": "manager"})
        server = AgentServer(api.methods(), node={"name": "test", "role": "manager"})
        self.server = server
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, socket_path(self.paths))
            self.ready.set()
            await self.stop_event.wait()
            nursery.cancel_scope.cancel()

    def call_in_trio(self, fn, *args):
        return trio.from_thread.run_sync(fn, *args, trio_token=self.token)

    def start(self):
        self.thread.start()
        assert self.ready.wait(10)
        if self.error:
            raise self.error

    def stop(self):
        if self.thread.is_alive():
            self.call_in_trio(self.stop_event.set)
            self.thread.join(10)
        self.store.close()


@pytest.fixture
def paths(tmp_path):
    p = NodePaths(state=str(tmp_path / "state"), run=str(tmp_path / "run"), cgroup_parent="unused")
    import os

    os.makedirs(p.run)
    os.makedirs(p.state)
    return p


@pytest.fixture
def agent(paths):
    h = Harness(paths, FakeManager())
    h.start()
    yield h
    h.stop()


def test_socket_is_private_and_removed_on_stop(paths):
    import os
    import stat

    h = Harness(paths, FakeManager())
    h.start()
    mode = os.stat(socket_path(paths)).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    h.stop()
    assert not os.path.exists(socket_path(paths))
    with pytest.raises(AgentUnavailable, match="does not answer"):
        AgentClient(paths).connect()


def test_info_and_unary_calls(agent, paths):
    with AgentClient(paths) as c:
        assert c.peer.role == "server" and c.peer.node["name"] == "test"
        info = c.call("agent.info")
        assert info["role"] == "manager" and info["controller"] is True and info["containers"] == 0
        result = c.call("stack.plan", {"stack": {"name": "s"}})
        assert result["plan"]["stack"] == "s"
        assert result["text"] == "stack s: nothing to do: 0 services up to date\n"
        assert c.call("stack.list") == []
        agent.store.put_stack("shop", {"name": "shop"}, "/srv")
        assert c.call("stack.list")[0] | {"updated_at": None} == {
            "name": "shop", "status": "empty", "desired": "", "version": 1, "project_dir": "/srv",
            "files": [], "updated_at": None}
        assert c.call("stack.ps", {"name": "shop"}) == []


def test_deploy_keeps_the_files_for_ls(agent, paths):
    with AgentClient(paths) as c:
        list(c.stream("stack.deploy", {"stack": {"name": "shop"}, "project_dir": "/srv",
                                       "files": ["/srv/stack.yml", "/srv/prod.yml"]}))
        agent.store.put_stack("shop", {"name": "shop"}, "/srv")  # what the controller does
        assert c.call("stack.list")[0]["files"] == ["/srv/stack.yml", "/srv/prod.yml"]
        agent.store.delete_stack("shop")  # down forgets them
        assert c.call("stack.list") == []
        assert agent.store.stack_files() == {}


def test_stream_progress_then_end(agent, paths):
    with AgentClient(paths) as c:
        events = list(c.stream("stack.deploy", {"stack": {"name": "s"}, "project_dir": "/p", "options": {"wait": True}}))
        assert [e["slot"] for e in events] == ["1", "2", "3"]
        assert agent.manager.calls[-1] == ("deploy", {"name": "s"}, "/p", {"wait": True})
        assert list(c.stream("stack.scale", {"name": "s", "scales": {"web": 3}})) == [{"scales": {"web": 3}}]
        assert list(c.stream("stack.stop", {"name": "s", "timeout": 2})) == [{"verb": "stop", "timeout": 2}]


def test_errors_map_to_codes(agent, paths):
    with AgentClient(paths) as c:
        got = []
        with pytest.raises(AgentError) as e:
            for ev in c.stream("stack.deploy", {"stack": {"fail": True}}):
                got.append(ev)
        assert got == [{"action": "create", "status": "error", "message": "boom"}]
        assert e.value.code == "failed" and "never became healthy" in e.value.message
        assert e.value.hint == "see stackctl ps"
        with pytest.raises(AgentNotFound) as e:
            list(c.stream("stack.remove", {"name": "gone"}))
        assert isinstance(e.value, NotFoundError) and e.value.code == "not_found"
        with pytest.raises(AgentError) as e:
            list(c.stream("stack.deploy", {"stack": {"bug": True}}))
        assert e.value.code == "internal" and "ValueError: oops" in e.value.message
        with pytest.raises(AgentError) as e:
            c.call("stack.frobnicate")
        assert e.value.code == "bad_request" and "unknown method" in e.value.message
        with pytest.raises(AgentError) as e:
            c.call("stack.ps", {"name": ["x"]})
        assert e.value.code == "bad_request" and "'name'" in e.value.message
        # the connection is still fine after errors
        assert c.call("agent.info")["role"] == "manager"


def test_cancel_reaches_the_handler(agent, paths):
    with AgentClient(paths) as c:
        stream = c.stream("stack.deploy", {"stack": {"hang": True}})
        assert next(stream)["action"] == "waiting"
        assert agent.manager.started.wait(5)
        stream.close()  # what Ctrl-C does: cancel, then wait for the end
        assert agent.manager.cancelled.is_set()
        assert not c.conn.open_requests
        assert c.call("agent.info")["role"] == "manager"


def test_keyboard_interrupt_cancels(agent, paths):
    with AgentClient(paths) as c:
        stream = c.stream("stack.deploy", {"stack": {"hang": True}})
        next(stream)
        with pytest.raises(KeyboardInterrupt):
            stream.throw(KeyboardInterrupt)
        assert agent.manager.cancelled.is_set()


def test_hangup_cancels_requests(agent, paths):
    c = AgentClient(paths).connect()
    stream = c.stream("stack.deploy", {"stack": {"hang": True}})
    next(stream)
    c.sock.close()  # vanish without cancel or goodbye
    c.sock = None
    assert agent.manager.cancelled.wait(5)


@pytest.mark.parametrize("chatty", [False, True])
def test_hangup_mid_stream_ends_only_that_connection(agent, paths, chatty):
    """A client that vanishes mid-stream (Ctrl-C on `up`, `stackctl ... | head`) cancels its
    requests as `cancel` would — the clean-up still runs to its end, its progress dropped —
    and the agent keeps serving everyone else."""
    other = AgentClient(paths).connect()
    c = AgentClient(paths).connect()
    stream = c.stream("stack.deploy", {"stack": {"hang": True, "chatty": chatty}})
    next(stream)
    assert agent.manager.started.wait(5)
    c.sock.shutdown(socket.SHUT_RDWR)
    c.sock.close()  # vanish: no cancel, no goodbye, unread data left behind
    c.sock = None
    assert agent.manager.cancelled.wait(5)
    assert agent.manager.cleaned_up.wait(5)
    assert other.call("agent.info")["role"] == "manager"
    with AgentClient(paths) as again:
        assert again.call("agent.info")["role"] == "manager"
    other.close()
    assert agent.thread.is_alive() and agent.error is None


def test_events_stream(agent, paths):
    import time

    def publish_once_subscribed():
        deadline = time.monotonic() + 5
        while agent.bus.subscribers == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # another thread's progress: polled, bounded

        def publish():
            agent.bus.publish({"event": "container.die", "stack": "other"})
            agent.bus.publish({"event": "container.die", "stack": "shop", "exit_code": 3})

        agent.call_in_trio(publish)

    with AgentClient(paths) as c:
        stream = c.stream("stack.events", {"name": "shop"})  # sent on the first next()
        t = threading.Thread(target=publish_once_subscribed)
        t.start()
        got = next(stream)
        t.join()
        stream.close()
        assert got["event"] == "container.die" and got["exit_code"] == 3 and got["time"].endswith("Z")
        assert c.call("agent.info")["role"] == "manager"


def test_no_controller(paths):
    h = Harness(paths, None)
    h.start()
    try:
        with AgentClient(paths) as c:
            with pytest.raises(AgentError) as e:
                list(c.stream("stack.deploy", {"stack": {}}))
            assert e.value.code == "internal" and e.value.message == "controller not available"
            assert c.call("agent.info")["controller"] is False
    finally:
        h.stop()


def test_version_mismatch_is_refused(agent, paths):
    conn = P.Connection(P.CLIENT, version="2.0")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(socket_path(paths))
        s.sendall(conn.send_hello())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    server_side = P.Connection(P.CLIENT, version="2.0")
    server_side.hello_sent = True
    server_side.receive_data(data)
    ev = server_side.next_event()
    assert isinstance(ev, P.Goodbye) and ev.error.code == P.VERSION_MISMATCH


def test_garbage_is_refused_without_hurting_others(agent, paths):
    with AgentClient(paths) as good:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(socket_path(paths))
            s.sendall(b"\x00\x00\x00\x05hello")
            s.recv(4096)  # the goodbye (or EOF)
        assert good.call("agent.info")["role"] == "manager"


def test_stack_status():
    assert stack_status(["running", "exited", "running"]) == "exited(1), running(2)"
    assert stack_status([]) == "empty"


def test_client_imports_no_event_loop():
    import subprocess
    import sys

    code = ("import sys, stackctl.agent.client; "
            "print([m for m in sys.modules if m.split('.')[0] in ('trio', 'asyncio')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
