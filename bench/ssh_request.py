#!/usr/bin/env python3
"""One agent request over a kept SSH connection, next to OpenSSH's `ssh host true` over a
ControlMaster connection, on a one-node demo cluster (stackctl/cluster/demo.py). As root:

    python3 bench/ssh_request.py [-n 200]

Rows:
- agent.info over the node's unix socket (the floor: no SSH), async client; agent.info itself
  costs a few ms in the agent (host facts, the store), so "round trip" rows send a request the
  agent's server answers at once (an unknown method: its error answer) — the transport alone;
- agent.info over a kept asyncssh connection and channel (a request that reads the node's
  containers and host facts);
- agent.ping over the same (the manager's heartbeat, answered at once: the request the target
  of issue 10, <= 10 ms, is read against);
- the same, 8 requests in flight at once (per request: wall time / requests);
- a round trip over a direct-streamlocal channel to the agent socket (no dial-stdio process:
  what that hop costs);
- connect + open the channel + first request (a manager reaching a node anew);
- `ssh n1 true` over a ControlMaster connection (OpenSSH, the peer named by the issue);
- the CLI's path: `ssh -T n1 stackctl agent dial-stdio` over the ControlMaster, hello and one
  request (a blocking AgentClient.over_ssh, what a CLI command to a remote manager pays).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _timing  # noqa: E402
from _timing import print_table, runs_from_argv, time_calls, time_command  # noqa: E402
from results import Result, group_of, write  # noqa: E402


def main() -> None:
    runs = runs_from_argv(__doc__, 200, "requests per row")
    if os.geteuid() != 0:
        sys.exit("bench/ssh_request.py needs root (it makes a demo cluster)")
    import trio

    from stackctl.agent.client import AgentClient, AgentError
    from stackctl.cluster import demo
    from stackctl.transport.aclient import open_client
    from stackctl.transport.ssh import SSHConnection, open_ssh_client
    from stackctl.transport.target import SSHOptions, SSHTarget
    from stackctl.transport.unix import connect_unix

    tmp = tempfile.mkdtemp(prefix="stackctl-bench-ssh-")
    c = demo.up(1, name=f"bench{os.getpid() % 100000}", cluster_dir=os.path.join(tmp, "c"),
                warm=False)
    rows: list[tuple[str, list[float]]] = []
    try:
        node = c.nodes[0]
        target = SSHTarget.parse("ssh://n1")

        async def measure() -> None:
            async def timed(agent, n: int, method: str = "agent.info") -> list[float]:
                samples = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    try:
                        await agent.call(method, timeout=30)
                    except AgentError:
                        pass  # the round-trip row's unknown method
                    samples.append(time.perf_counter() - t0)
                return samples

            conn = await SSHConnection.connect(target, c.ssh_options(), name="n1")
            try:
                async with open_ssh_client(conn, node="n1") as agent:
                    await timed(agent, 20)  # the agent started; warm up
                    async with open_client(await connect_unix(
                            os.path.join(node.run, "agent.sock")), node="n1") as local:
                        await timed(local, 20)
                        rows.append(("agent.info, unix socket (floor)", await timed(local, runs)))
                        rows.append(("round trip, unix socket (floor)",
                                     await timed(local, runs, "bench.no-such-method")))
                    rows.append(("agent.info, kept asyncssh connection", await timed(agent, runs)))
                    rows.append(("agent.ping, kept asyncssh connection",
                                 await timed(agent, runs, "agent.ping")))
                    rows.append(("round trip, kept asyncssh connection",
                                 await timed(agent, runs, "bench.no-such-method")))
                    direct = await conn.open_unix_stream(os.path.join(node.run, "agent.sock"))
                    async with open_client(direct, node="n1") as unix_fwd:
                        await timed(unix_fwd, 20)
                        rows.append(("round trip, asyncssh to the agent socket (no dial-stdio)",
                                     await timed(unix_fwd, runs, "bench.no-such-method")))
                    burst = []
                    for _ in range(max(1, runs // 8)):
                        t0 = time.perf_counter()
                        async with trio.open_nursery() as n:
                            for _ in range(8):
                                n.start_soon(agent.call, "agent.info")
                        burst.append((time.perf_counter() - t0) / 8)
                    rows.append(("agent.info, asyncssh, 8 in flight (per req)", burst))
            finally:
                await conn.aclose()
            fresh = []
            for _ in range(max(3, runs // 20)):
                t0 = time.perf_counter()
                conn = await SSHConnection.connect(target, c.ssh_options(), name="n1")
                async with open_ssh_client(conn, node="n1") as agent:
                    await agent.call("agent.info", timeout=30)
                fresh.append(time.perf_counter() - t0)
                await conn.aclose()
            rows.append(("asyncssh connect + channel + agent.info", fresh))

        trio.run(measure)

        control = ["-o", "ControlMaster=auto", "-o", f"ControlPath={tmp}/cm-%C",
                   "-o", "ControlPersist=120"]
        subprocess.run(["ssh", "-F", c.ssh_config, *control, "n1", "true"], check=True)
        rows.append(("ssh n1 true, ControlMaster (OpenSSH)",
                     time_command(["ssh", "-F", c.ssh_config, *control, "n1", "true"],
                                  max(5, runs // 4))))
        cfg = os.path.join(tmp, "ssh_config_cm")
        with open(cfg, "w") as f:  # the user's config with ControlMaster, as the CLI sees it
            f.write(f"Host *\n    ControlMaster auto\n    ControlPath {tmp}/cm-%C\n"
                    f"    ControlPersist 120\nInclude {c.ssh_config}\n")

        def cli_request(_i: int) -> None:
            with AgentClient.over_ssh(target, SSHOptions(config=cfg), name="n1") as agent:
                agent.call("agent.info")

        cli_request(0)
        rows.append(("CLI: ssh -T n1 dial-stdio + agent.info, ControlMaster",
                     time_calls(cli_request, max(5, runs // 4))))
        subprocess.run(["ssh", "-F", c.ssh_config, *control, "-O", "exit", "n1"],
                       capture_output=True)
    finally:
        demo.down(c)
        subprocess.run(["rm", "-rf", tmp])
    print_table(rows, baseline="ssh n1 true, ControlMaster (OpenSSH)")
    kept = statistics.median(dict(rows)["agent.ping, kept asyncssh connection"]) * 1000
    info = statistics.median(dict(rows)["agent.info, kept asyncssh connection"]) * 1000
    print(f"\none agent request over a kept SSH connection (agent.ping, the manager's "
          f"heartbeat): {kept:.2f} ms median (target <= 10 ms: "
          f"{'met' if kept <= 10 else 'NOT met'}); agent.info, which reads the node's "
          f"containers and facts: {info:.2f} ms")
    peer = "ssh n1 true, ControlMaster (OpenSSH)"
    write(_timing.JSON_PATH, Result("ssh_request", [group_of(
        "agent request over SSH", "ms",
        [(name if name == peer else f"stackctl {name}", s) for name, s in rows], scale=1000)]))


if __name__ == "__main__":
    main()
