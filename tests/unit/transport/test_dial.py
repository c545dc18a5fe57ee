"""`stackctl agent dial-stdio`: the bridge over pipes (splice) and over sockets (read/write),
and the command itself against a real AgentServer on a unix socket (no root)."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading

import pytest
import trio

from stackctl.agent.server import AgentServer, Method
from stackctl.transport import protocol as P
from stackctl.transport.dial import bridge


def _echo_agent(sock: socket.socket) -> None:
    """Upper-cases what it reads until EOF, then says goodbye and closes."""
    with sock:
        while data := sock.recv(65536):
            sock.sendall(data.upper())
        sock.sendall(b"BYE")


@pytest.mark.parametrize("kind", ["pipes", "sockets"])
def test_bridge_copies_both_ways_and_half_closes(kind):
    ours, agent_side = socket.socketpair()
    threading.Thread(target=_echo_agent, args=(agent_side,), daemon=True).start()
    if kind == "pipes":  # as sshd gives them: splice moves the bytes
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
    else:  # no pipe on either side: plain reads and writes
        in_r, in_w = [s.detach() for s in socket.socketpair()]
        out_r, out_w = [s.detach() for s in socket.socketpair()]
    payload = os.urandom(300_000).hex().encode()[:500_000]

    def feed():
        view = memoryview(payload)
        while view:
            view = view[os.write(in_w, view[:65536]):]
        os.close(in_w)  # the client's EOF half-closes the agent socket

    got = bytearray()

    def drain():
        while data := os.read(out_r, 65536):
            got.extend(data)

    t1 = threading.Thread(target=feed)
    t2 = threading.Thread(target=drain)
    t1.start()
    t2.start()
    bridge(ours, in_r, out_w)
    os.close(out_w)
    t1.join(10)
    t2.join(10)
    os.close(in_r)
    os.close(out_r)
    ours.close()
    assert bytes(got) == payload.upper() + b"BYE"


def test_dial_stdio_command_speaks_the_protocol_on_stdout_only(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ready = threading.Event()
    stop = threading.Event()

    async def info(req):
        print("noise that must not reach stdout")  # a stray print in the agent's process is fine
        return {"paths": {"run": str(run)}}

    async def main():
        async with trio.open_nursery() as n:
            await n.start(AgentServer({"agent.info": Method(info)}, node={"name": "t"}).serve,
                          str(run / "agent.sock"))
            ready.set()
            await trio.to_thread.run_sync(stop.wait)
            n.cancel_scope.cancel()

    th = threading.Thread(target=trio.run, args=(main,))
    th.start()
    try:
        assert ready.wait(10)
        env = dict(os.environ, STACKCTL_RUN_DIR=str(run), STACKCTL_STATE_DIR=str(tmp_path / "s"))
        conn = P.Connection(P.CLIENT)
        data = conn.send_hello({}) + conn.send_request(1, "agent.info", {})
        proc = subprocess.Popen([sys.executable, "-m", "stackctl", "agent", "dial-stdio"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        proc.stdin.write(data)
        proc.stdin.flush()
        events = []
        while len(events) < 2:  # the agent's hello, then the answer (bounded by the timeout)
            ev = conn.next_event()
            if ev is P.NEED_DATA:
                ready_fds, _, _ = select.select([proc.stdout], [], [], 30)
                assert ready_fds, "no answer within 30 s"
                conn.receive_data(os.read(proc.stdout.fileno(), 65536))
            else:
                events.append(ev)
        proc.stdin.close()  # the client leaves: the bridge ends with the agent's side
        rest = proc.stdout.read()
        assert proc.wait(30) == 0, proc.stderr.read()
        conn.receive_data(rest)
        conn.receive_data(b"")
        assert isinstance(events[0], P.Hello) and events[0].node == {"name": "t"}
        assert events[1] == P.Response(1, {"paths": {"run": str(run)}})
        assert conn.next_event() == P.ConnectionClosed()  # nothing else came out of stdout
    finally:
        stop.set()
        th.join(10)
