"""The agent on a real node (root): containers with health checks through NodeOps, exit
events, and re-adoption — the agent stopped, SIGKILLed and started again while its containers
keep running. Every test stops its agents and removes its containers, also when it fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import trio

from stackctl.agent.client import AgentClient, ensure_agent
from stackctl.agent.daemon import run_agent, running_pid, stop_agent
from stackctl.runtime.imageconfig import RunOptions
from stackctl.runtime.manager import ContainerManager

pytestmark = pytest.mark.root

IMG = "bb:latest"
FAST_OK = {"test": ["CMD", "true"], "interval": 0.2, "timeout": 5, "retries": 2}
FAST_BAD = {"test": ["CMD-SHELL", "echo nope; exit 1"], "interval": 0.2, "timeout": 5, "retries": 2}


@pytest.fixture
def node(node_paths, busybox_rootfs):
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore

    import_rootfs(ImageStore(node_paths.images), busybox_rootfs, IMG, changes=['CMD ["sh"]'])
    yield node_paths
    # teardown, also on failure: the agent (by pid), then every container
    pid = running_pid(node_paths)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        while running_pid(node_paths) == pid:
            time.sleep(0.01)
    _wait_warm_server_gone(node_paths)  # it goes with its agent (PR_SET_PDEATHSIG)
    cm = ContainerManager(node_paths)
    for cid in cm.ids():
        cm.remove(cid, force=True, volumes=True)
    from stackctl.net import dnsd

    dnsd.stop(node_paths)


def _wait_warm_server_gone(paths, timeout: float = 15.0) -> None:
    from stackctl.warm.server import running_pid as warm_pid

    deadline = time.monotonic() + timeout
    while warm_pid(paths) is not None:
        assert time.monotonic() < deadline, "the warm server outlived its agent"
        time.sleep(0.02)


def _pool_cgroups(paths) -> list[str]:
    top = f"/sys/fs/cgroup/pids/{paths.cgroup_parent}"
    return [d for d in os.listdir(top) if d.startswith("pool-")] if os.path.isdir(top) else []


def test_the_warm_server_goes_with_a_killed_agent(node):
    """SIGKILL of the agent: its warm server gets SIGTERM from the kernel, shuts down and
    gives up its pool; no process or cgroup of it is left."""
    from stackctl.warm.server import running_pid as warm_pid

    info = ensure_agent(node, timeout=10)
    deadline = time.monotonic() + 15
    while warm_pid(node) is None or len(_pool_cgroups(node)) < 2:
        assert time.monotonic() < deadline, "no warm server with its pool"
        time.sleep(0.02)
    server = warm_pid(node)
    os.kill(info["pid"], signal.SIGKILL)
    _wait_warm_server_gone(node)  # its lock is free: its pool is gone (it waited for it)
    assert _pool_cgroups(node) == []

    def exited() -> bool:  # the process itself ends right after
        try:
            with open(f"/proc/{server}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 10
    while not exited():
        assert time.monotonic() < deadline, "the warm server did not exit"
        time.sleep(0.02)


def sleeper(**labels) -> RunOptions:
    return RunOptions(image=IMG, command=["sleep", "1000"], labels=labels)


async def wait_event(sub, pred, timeout=20.0):
    """The first event matching ``pred``."""
    with trio.fail_after(timeout):
        async for ev in sub:
            if pred(ev):
                return ev


def in_agent(paths, body):
    """Run ``body(api)`` inside an in-process agent, then stop that agent (not its containers)."""
    out = {}

    async def main():
        async with trio.open_nursery() as nursery:
            api = await nursery.start(run_agent, paths, None)
            out["result"] = await body(api)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return out["result"]


def is_running(paths, cid) -> bool:
    return ContainerManager(paths).load(cid).state.status == "running"


def test_health_starting_healthy_unhealthy_and_die(node):
    async def body(api):
        ops = api.node
        with api.bus.subscribe() as sub:
            good = await ops.create_container(sleeper(), name="good", health=FAST_OK)
            bad = await ops.create_container(sleeper(), name="bad", health=FAST_BAD)
            ev = await wait_event(sub, lambda e: e["event"] == "container.create" and e["id"] == bad)
            assert ev["name"] == "bad"
            await ops.start_container(good)
            await ops.start_container(bad)
            ev = await wait_event(sub, lambda e: e["event"] == "container.health" and e["id"] == good)
            assert ev["health"] == "starting"
            ev = await wait_event(sub, lambda e: e["event"] == "container.health" and e["id"] == good
                                  and e["health"] != "starting")
            assert ev["health"] == "healthy"
            ev = await wait_event(sub, lambda e: e["event"] == "container.health" and e["id"] == bad
                                  and e["health"] == "unhealthy")
            assert "nope" in ev["output"] and ev["exit_code"] == 1
            infos = {c.name: c for c in await ops.list_containers()}
            assert infos["good"].health == "healthy" and infos["bad"].health == "unhealthy"
            detail = api.supervisor.health_json(bad)
            assert detail["FailingStreak"] >= 2 and detail["Log"][-1]["Output"] == "nope\n"
            # an exit is reported at once (inotify), with its code
            await ops.kill_container(good)
            ev = await wait_event(sub, lambda e: e["event"] == "container.die" and e["id"] == good,
                                  timeout=5)
            assert ev["exit_code"] == 137 and ev["oom_killed"] is False
            assert (await ops.list_containers(stack=None))[0].health in (None, "unhealthy")
            await ops.remove_container(good)
            ev = await wait_event(sub, lambda e: e["event"] == "container.destroy")
            assert ev["id"] == good
            assert api.store.get_health(good) is None
        return bad

    bad = in_agent(node, body)
    # the agent is gone; its container is not
    assert is_running(node, bad)


def test_create_failure_leaves_nothing(node):
    async def body(api):
        with pytest.raises(Exception, match="nope:latest"):
            await api.node.create_container(RunOptions(image="nope:latest"), name="xx", health=FAST_OK)
        return await api.node.list_containers()

    assert in_agent(node, body) == []
    assert ContainerManager(node).ids() == []


def test_kill9_and_readoption(node):
    async def create(api):
        cid = await api.node.create_container(sleeper(**{"com.stackctl.stack": "s"}), name="web",
                                              health=FAST_OK)
        with api.bus.subscribe() as sub:
            await api.node.start_container(cid)
            await wait_event(sub, lambda e: e.get("health") == "healthy")
        return cid

    cid = in_agent(node, create)
    # a detached agent re-adopts it, resuming where the health check was
    info = ensure_agent(node, timeout=10)
    pid = info["pid"]
    with AgentClient(node) as c:
        [c1] = c.call("container.list", {})
        assert (c1["id"], c1["health"], c1["stack"]) == (cid, "healthy", "s")
        log_end = c.call("container.inspect", {"id": "web"})["State"]["Health"]["Log"][-1]["End"]
        wait_until(lambda: c.call("container.inspect", {"id": "web"})["State"]["Health"]["Log"][-1]["End"]
                   != log_end, what="a new probe by the adopting agent")
    # kill -9: the container keeps running
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: running_pid(node) is None, what="the agent to die")
    assert is_running(node, cid)
    # a new agent reports it and keeps checking it
    info = ensure_agent(node, timeout=10)
    assert info["pid"] != pid and info["running"] == 1
    with AgentClient(node) as c:
        assert [x["id"] for x in c.call("stack.ps", {"name": "s"})] == [cid]
        first = c.call("container.inspect", {"id": cid})["State"]["Health"]
        assert first["Status"] == "healthy"
        wait_until(lambda: c.call("container.inspect", {"id": cid})["State"]["Health"]["Log"][-1]["End"]
                   != first["Log"][-1]["End"], what="health checks to resume")


def test_agent_stop_cli_leaves_containers(node):
    async def create(api):
        cid = await api.node.create_container(sleeper(), name="keep")
        await api.node.start_container(cid)
        return cid

    cid = in_agent(node, create)
    info = ensure_agent(node, timeout=10)
    env = dict(os.environ, STACKCTL_STATE_DIR=node.state, STACKCTL_RUN_DIR=node.run,
               STACKCTL_CGROUP_PARENT=node.cgroup_parent)
    st = subprocess.run([sys.executable, "-m", "stackctl", "agent", "status"], env=env,
                        capture_output=True, text=True, timeout=30)
    assert st.returncode == 0 and f"pid {info['pid']}" in st.stdout and "1 running" in st.stdout
    p = subprocess.run([sys.executable, "-m", "stackctl", "agent", "stop"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "containers keep running" in p.stdout
    assert running_pid(node) is None and not os.path.exists(os.path.join(node.run, "agent.sock"))
    assert is_running(node, cid)
    st = subprocess.run([sys.executable, "-m", "stackctl", "agent", "status"], env=env,
                        capture_output=True, text=True, timeout=30)
    assert st.returncode == 1 and "not running" in st.stdout
    assert stop_agent(node) is None


def test_second_agent_refused(node):
    info = ensure_agent(node, timeout=10)
    env = dict(os.environ, STACKCTL_STATE_DIR=node.state, STACKCTL_RUN_DIR=node.run,
               STACKCTL_CGROUP_PARENT=node.cgroup_parent)
    p = subprocess.run([sys.executable, "-m", "stackctl", "agent", "serve", "--foreground"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and f"an agent already runs for {node.state} (pid {info['pid']})" in p.stderr
    assert ensure_agent(node)["pid"] == info["pid"]


def wait_until(cond, *, what: str, timeout: float = 15.0) -> None:
    """Poll ``cond`` (state in another process: nothing to block on) until true."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def net_node(node):
    """``node`` whose networking (networks, endpoints, firewall table) goes after the test."""
    import shutil

    if shutil.which("nft") is None:
        pytest.skip("nftables is not installed")
    yield node
    from stackctl.net import firewall, gc, networks, sandbox, store

    cm = ContainerManager(node)
    for cid in cm.ids():
        cm.remove(cid, force=True, volumes=True)
    for cid in list(store.load(node).sandboxes):
        sandbox.teardown_container(node, cid)
    nets = store.load(node).networks
    if nets:
        networks.remove(node, [n.id for n in nets.values()], force=True)
    gc.gc_stale(node, live_containers=[])
    subprocess.run(["nft", "delete", "table", "ip", firewall.table_name(node)], capture_output=True)


def test_networked_replicas_route_only_when_healthy(net_node):
    from stackctl.net import store as netstore
    from stackctl.net.sandbox import Attachment

    def endpoint_healthy(cid):
        state = netstore.load(net_node)
        return [ep.healthy for eps in state.endpoints.values() for c, ep in eps.items() if c == cid]

    dns_pid = None

    async def body(api):
        ops = api.node
        await ops.ensure_network("agt-front", labels={"com.stackctl.stack": "s"})
        await ops.ensure_network("agt-front")  # idempotent
        ok = await ops.create_container(sleeper(), name="s-web-1", networks=[Attachment("agt-front", aliases=["web"])],
                                        service="web", health=FAST_OK)
        bad = await ops.create_container(sleeper(), name="s-web-2", networks=[Attachment("agt-front")],
                                         service="web", health=FAST_BAD)
        plain = await ops.create_container(sleeper(), name="s-db-1", networks=[Attachment("agt-front")],
                                           service="db")
        assert endpoint_healthy(ok) == [False] and endpoint_healthy(bad) == [False]
        with api.bus.subscribe() as sub:
            for cid in (ok, bad, plain):
                await ops.start_container(cid)
            await wait_event(sub, lambda e: e["id"] == ok and e.get("health") == "healthy")
            await wait_event(sub, lambda e: e["id"] == bad and e.get("health") == "unhealthy")
        await api.supervisor.wait_scanned()
        assert endpoint_healthy(ok) == [True] and endpoint_healthy(bad) == [False]
        assert endpoint_healthy(plain) == [True]  # no health check: routable once started
        from stackctl.net import dnsd

        nonlocal dns_pid
        dns_pid = dnsd.running_pid(net_node)
        assert dns_pid is not None  # names resolve while containers have networking
        state = netstore.load(net_node)
        assert "web" in next(iter(state.vips.values()))
        # a stopped replica leaves the VIP
        with api.bus.subscribe() as sub:
            await ops.stop_container(ok, timeout=0)
            await wait_event(sub, lambda e: e["id"] == ok and e["event"] == "container.die")
        await api.supervisor.wait_scanned()
        assert endpoint_healthy(ok) == [False]
        with pytest.raises(Exception, match="active endpoints"):
            await ops.remove_network("agt-front")
        for cid in (ok, bad, plain):
            await ops.remove_container(cid)
        assert netstore.load(net_node).sandboxes == {}
        await ops.remove_network("agt-front")
        await ops.remove_network("agt-front")  # idempotent
        assert netstore.load(net_node).networks == {}

    in_agent(net_node, body)
    # the agent stopped with no container on a network: the DNS server went with it, at
    # once (not after its own idle grace)
    from stackctl.net import dnsd

    assert dnsd.running_pid(net_node) is None
    assert not os.path.exists(f"/proc/{dns_pid}/cmdline") or \
        not open(f"/proc/{dns_pid}/cmdline", "rb").read()


def test_logs_stream_and_follow(node):
    async def body(api):
        cid = await api.node.create_container(
            RunOptions(image=IMG, command=["sh", "-c", "echo one; echo two >&2; read x; echo three"],
                       stdin_open=True), name="talk")
        await api.node.start_container(cid)
        return cid

    cid = in_agent(node, body)
    ensure_agent(node, timeout=10)
    with AgentClient(node) as c:
        lines = []
        stream = c.stream("container.logs", {"ids": ["talk"], "follow": True})
        for ev in stream:
            lines.append((ev["stream"], ev["line"]))
            if len(lines) == 2:
                break
        stream.close()
        assert sorted(lines) == [("stderr", "two\n"), ("stdout", "one\n")]
        tail = list(c.stream("container.logs", {"ids": [cid], "tail": 1}))
        assert len(tail) == 1 and tail[0]["name"] == "talk"
        ContainerManager(node).kill(cid)
        # follow ends by itself once the container is gone and the file drained
        assert len(list(c.stream("container.logs", {"ids": [cid], "follow": True}))) == 2
