"""The SSH transports against real sshds on the harness: agent requests over kept asyncssh
connections (each node, all in parallel), commands and SFTP, host keys refused when unknown or
changed (asyncssh and OpenSSH alike), the CLI's blocking OpenSSH path, and a lost node failing
its pending requests."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import trio
import trio.testing

from stackctl.agent.client import AgentClient
from stackctl.transport.errors import HostKeyChanged, HostKeyUnknown, NodeUnreachable
from stackctl.transport.ssh import (SSHConnection, connect_ssh, fetch_host_key, open_ssh_client,
                                    ssh_put, ssh_run)
from stackctl.transport.target import SSHOptions, SSHTarget

pytestmark = pytest.mark.root


def _target(name: str) -> SSHTarget:
    return SSHTarget.parse(f"ssh://{name}")


def _other_key_known_hosts(tmp_path, address: str) -> str:
    """A known_hosts that holds *another* key for ``address`` (as after a reinstall)."""
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    alg, b64 = (tmp_path / "other_key.pub").read_text().split()[:2]
    path = tmp_path / "known_hosts_changed"
    path.write_text(f"{address} {alg} {b64}\n")
    return str(path)


def _fingerprint(c, node) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f",
                          os.path.join(node.ssh_dir, "host_key.pub")],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1]


async def test_agent_requests_over_kept_connections_to_every_node_in_parallel(shared_cluster):
    c = shared_cluster
    seen = {}

    async def one(node):
        async with connect_ssh(_target(node.name), c.ssh_options(), name=node.name) as conn:
            async with open_ssh_client(conn, node=node.name) as agent:
                assert agent.peer.node["name"] == node.name  # the node's own hostname
                info = await agent.call("agent.info", timeout=30)
                # many requests at once over the one channel
                async with trio.open_nursery() as n:
                    for _ in range(20):
                        n.start_soon(agent.call, "agent.info")
                # and a second channel (agent connection) on the same SSH connection
                async with open_ssh_client(conn, node=node.name) as second:
                    again = await second.call("agent.info", timeout=30)
                assert again["pid"] == info["pid"]
                seen[node.name] = info

    with trio.fail_after(120):
        async with trio.open_nursery() as n:
            for node in c.nodes:
                n.start_soon(one, node)
    for node in c.nodes:
        assert seen[node.name]["paths"] == {"state": node.state, "run": node.run,
                                            "cgroup_parent": node.cgroup_parent}
    assert len({info["pid"] for info in seen.values()}) == len(c.nodes)


async def test_commands_and_sftp(shared_cluster, tmp_path):
    c = shared_cluster
    rc, out, err = await ssh_run(_target("n2"), ["sh", "-c", 'cat; echo "$STACKCTL_NODE_NAME"; '
                                                 'echo oops >&2; exit 3'],
                                 input=b"hello\n", options=c.ssh_options())
    assert (rc, out, err) == (3, b"hello\nn2\n", b"oops\n")
    src = tmp_path / "payload"
    src.write_bytes(os.urandom(300_000))
    dest = os.path.join(c.node("n3").state, "payload")
    await ssh_put(_target("n3"), str(src), dest, options=c.ssh_options())
    with open(dest, "rb") as f:
        assert f.read() == src.read_bytes()


async def test_unknown_host_key_is_refused_with_its_fingerprint(shared_cluster, tmp_path):
    c = shared_cluster
    n2 = c.node("n2")
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    with pytest.raises(HostKeyUnknown) as err:
        await SSHConnection.connect(_target("n2"), c.ssh_options(known_hosts=str(empty)))
    fp = _fingerprint(c, n2)
    assert err.value.lines() == [
        f"host key of {n2.address}:22 is unknown (fingerprint {fp}), not in {empty}; after "
        f"checking the fingerprint with the host's owner, accept it with "
        f"`ssh-keyscan -p 22 {n2.address} >> {empty}` (or `stackctl node add ... "
        f"--accept-host-key`)"]
    line, got = await fetch_host_key(_target("n2"), c.ssh_options())
    assert got == fp
    with open(c.known_hosts) as f:
        assert line + "\n" in f.read().splitlines(keepends=True)


async def test_changed_host_key_is_refused(shared_cluster, tmp_path):
    c = shared_cluster
    n1 = c.node("n1")
    known = _other_key_known_hosts(tmp_path, n1.address)
    with pytest.raises(HostKeyChanged) as err:
        await SSHConnection.connect(_target("n1"), c.ssh_options(known_hosts=known))
    assert err.value.message.startswith(f"host key of {n1.address}:22 has CHANGED "
                                        f"(now {_fingerprint(c, n1)}), refusing to connect")
    assert f"ssh-keygen -R '{n1.address}' -f {known}" in err.value.message


async def test_known_hosts_none_in_the_config_does_not_turn_checking_off(shared_cluster,
                                                                         tmp_path, monkeypatch):
    c = shared_cluster
    config = tmp_path / "ssh_config"
    config.write_text(open(c.ssh_config).read().replace(
        f"UserKnownHostsFile {c.known_hosts}", "UserKnownHostsFile none"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/known_hosts either
    with pytest.raises(HostKeyUnknown):
        await SSHConnection.connect(_target("n1"), SSHOptions(config=str(config)))


async def test_an_unreachable_node_and_a_lost_one(shared_cluster):
    c = shared_cluster
    with trio.fail_after(20):
        with pytest.raises(NodeUnreachable, match="no SSH answer from 10.213"):
            await SSHConnection.connect(SSHTarget.parse(f"ssh://root@10.213.{c.index}.250"),
                                        c.ssh_options(connect_timeout=1), name="ghost")
    async with connect_ssh(_target("n3"), c.ssh_options(), name="n3") as conn:
        async with open_ssh_client(conn, node="n3") as agent:
            pid = (await agent.call("agent.info", timeout=30))["pid"]
            # the node's agent dies while a request waits on it: that request, and the next,
            # fail with one NodeUnreachable naming the node
            async with trio.open_nursery() as n:
                errors = []

                async def waiting():
                    try:
                        async with agent.stream("stack.events", {}) as events:
                            async for _ in events:
                                pass
                    except NodeUnreachable as exc:
                        errors.append(exc)

                n.start_soon(waiting)
                await trio.testing.wait_all_tasks_blocked()
                assert agent.pending == 1  # sent; the agent's answer would never come
                os.kill(pid, signal.SIGKILL)
                with trio.fail_after(15):
                    lost = await agent.wait_lost()
            assert errors == [lost] and lost.message.startswith("node n3 is unreachable")
            with pytest.raises(NodeUnreachable):
                await agent.call("agent.info")
        # the next channel starts a new agent there
        async with open_ssh_client(conn, node="n3") as agent:
            assert (await agent.call("agent.info", timeout=30))["pid"] != pid


def test_the_blocking_openssh_path(shared_cluster, tmp_path):
    c = shared_cluster
    n1 = c.node("n1")
    opts = SSHOptions(config=c.ssh_config)
    with AgentClient.over_ssh(_target("n1"), opts, name="n1") as agent:
        assert agent.call("agent.info")["paths"]["state"] == n1.state
        assert agent.peer.node["name"] == "n1"
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    with pytest.raises(HostKeyUnknown) as err:
        with AgentClient.over_ssh(_target("n1"), SSHOptions(config=c.ssh_config,
                                                             known_hosts=str(empty))) as agent:
            agent.call("agent.info")
    assert err.value.message.startswith(
        f"host key of {n1.address}:22 is unknown (fingerprint {_fingerprint(c, n1)})")
    known = _other_key_known_hosts(tmp_path, n1.address)
    with pytest.raises(HostKeyChanged) as err:
        with AgentClient.over_ssh(_target("n1"), SSHOptions(config=c.ssh_config,
                                                            known_hosts=known)) as agent:
            agent.call("agent.info")
    assert err.value.message.startswith(
        f"host key of {n1.address}:22 has CHANGED (now {_fingerprint(c, n1)})")


async def test_proxyjump_from_the_users_config(shared_cluster, tmp_path):
    """A node reached only through another (ProxyJump in the config), by both clients."""
    c = shared_cluster
    n3 = c.node("n3")
    config = tmp_path / "ssh_config"
    config.write_text(f"Include {c.ssh_config}\n"
                      f"Host behind\n    HostName {n3.address}\n    ProxyJump n1\n")
    # the config's `Host n1 n2 n3 10.213.k.*` block gives `behind` no key: name it here
    opts = SSHOptions(config=str(config), identity=c.client_key, known_hosts=c.known_hosts)
    async with connect_ssh(SSHTarget.parse("ssh://root@behind"), opts, name="behind") as conn:
        rc, out, _ = await conn.run(["sh", "-c", 'echo "$(hostname) ${SSH_CLIENT%% *}"'])
        assert (rc, out.decode()) == (0, f"n3 {c.node('n1').address}\n")  # it came through n1
    with AgentClient.over_ssh(SSHTarget.parse("ssh://root@behind"), opts, name="behind") as agent:
        assert agent.call("agent.info")["paths"]["state"] == n3.state


def _kill_ssh_sessions(netns: str) -> int:
    """SIGKILL the per-connection sshd processes in ``netns`` (not the listener)."""
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                          text=True).stdout.split()
    killed = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if cmd.startswith(b"sshd: root"):
            os.kill(int(pid), signal.SIGKILL)
            killed += 1
    return killed


async def test_a_dropped_ssh_connection_fails_its_requests(shared_cluster):
    c = shared_cluster
    n2 = c.node("n2")
    conn = await SSHConnection.connect(_target("n2"), c.ssh_options(), name="n2")
    try:
        async with open_ssh_client(conn, node="n2") as agent:
            await agent.call("agent.info", timeout=30)
            assert _kill_ssh_sessions(n2.netns) >= 1
            with trio.fail_after(15):
                lost = await agent.wait_lost()
                await conn.wait_closed()
            assert lost.message.startswith("node n2 is unreachable: ")
    finally:
        await conn.aclose()
    # a new connection works again (the node's agent kept running)
    from stackctl.transport.ssh import open_ssh_agent

    async with open_ssh_agent(_target("n2"), c.ssh_options(), node="n2") as agent:
        assert (await agent.call("agent.info", timeout=30))["paths"]["state"] == n2.state


async def test_a_channel_stream_moves_large_data_both_ways_with_flow_control(shared_cluster):
    """More than the read high-water mark each way, with a slow reader: nothing lost, nothing
    reordered, the remote command sees our EOF."""
    import hashlib

    c = shared_cluster
    payload = os.urandom(1 << 20) * 12  # 12 MiB
    async with connect_ssh(_target("n1"), c.ssh_options(), name="n1") as conn:
        stream = await conn.open_stream("sha256sum")
        async with trio.open_nursery() as n:
            async def send():
                view = memoryview(payload)
                while view:
                    await stream.send_all(view[:65536])
                    view = view[65536:]
                await stream.send_eof()

            n.start_soon(send)
            out = b""
            while chunk := await stream.receive_some():
                out += chunk
        assert out.split()[0].decode() == hashlib.sha256(payload).hexdigest()
        await stream.aclose()

        stream = await conn.open_stream("seq 1 1500000")  # ~10.9 MB of known text
        with trio.fail_after(60):
            while stream.read_pauses == 0:  # not reading: the channel must pause (SSH window)
                await trio.sleep(0.01)
            got = bytearray()
            while chunk := await stream.receive_some():
                got += chunk
        assert got == "".join(f"{i}\n" for i in range(1, 1500001)).encode()
        await stream.wait_closed()
        assert stream.exit_status == 0


async def test_a_channel_straight_to_the_agent_socket(shared_cluster):
    c = shared_cluster
    n1 = c.node("n1")
    async with connect_ssh(_target("n1"), c.ssh_options(), name="n1") as conn:
        async with open_ssh_client(conn, node="n1") as agent:  # starts the agent if needed
            pid = (await agent.call("agent.info", timeout=30))["pid"]
        from stackctl.transport.aclient import open_client

        stream = await conn.open_unix_stream(os.path.join(n1.run, "agent.sock"))
        async with open_client(stream, node="n1") as agent:
            assert (await agent.call("agent.info", timeout=30))["pid"] == pid
        with pytest.raises(NodeUnreachable, match="cannot reach /nonexistent.sock there"):
            await conn.open_unix_stream("/nonexistent.sock")
