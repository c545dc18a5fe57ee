"""`stackctl agent ...`: run and manage the node agent (stackctl/agent/, docs/agent.md)."""

from __future__ import annotations

import json

import click


def _paths(state_dir: str | None = None, run_dir: str | None = None,
           cgroup_parent: str | None = None):
    from stackctl.paths import NodePaths, default_paths

    d = default_paths()
    return NodePaths(state=state_dir or d.state, run=run_dir or d.run,
                     cgroup_parent=cgroup_parent or d.cgroup_parent)


def _uptime(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@click.group("agent")
def agent() -> None:
    """Run and manage the node agent (it starts by itself when a stack verb needs it)."""


@agent.command("serve")
@click.option("--foreground", is_flag=True, help="Run in this process (log to the terminal).")
@click.option("--state-dir", default=None, help="State directory (default $STACKCTL_STATE_DIR).")
@click.option("--run-dir", default=None, help="Runtime directory (default $STACKCTL_RUN_DIR).")
@click.option("--cgroup-parent", default=None, help="Cgroup parent (default $STACKCTL_CGROUP_PARENT).")
def serve(foreground: bool, state_dir: str | None, run_dir: str | None,
          cgroup_parent: str | None) -> None:
    """Run the node agent. Without --foreground it is started detached and this prints its pid
    once it answers."""
    import sys

    paths = _paths(state_dir, run_dir, cgroup_parent)
    if foreground:
        from stackctl.agent.daemon import serve as run

        # started detached by ensure_agent, stdio already goes to the log file
        run(paths, log_to_file=not sys.stderr.isatty())
        return
    from stackctl.agent.client import ensure_agent

    info = ensure_agent(paths, timeout=10)
    click.echo(info["pid"])


@agent.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="Output format.")
def status(fmt: str) -> None:
    """Show the agent's pid, uptime, role, stacks and containers (exit 1 if it is not running)."""
    from stackctl.agent.client import try_info

    info = try_info(_paths())
    if fmt == "json":
        click.echo(json.dumps(info if info is not None else {"running": False}, indent=2))
    elif info is None:
        click.echo("agent: not running")
    else:
        click.echo(f"agent:      running (pid {info['pid']}, up {_uptime(info['uptime'])})")
        click.echo(f"role:       {info['role']}"
                   + ("" if info.get("controller") else " (no controller)"))
        click.echo(f"node:       {info['node']}")
        click.echo(f"stacks:     {info['stacks']}")
        click.echo(f"containers: {info['containers']} ({info['running']} running)")
        click.echo(f"state:      {info['paths']['state']}")
        from stackctl.warm.files import running_pid

        warm = running_pid(_paths())
        click.echo(f"warm run:   {f'ready (pid {warm})' if warm else 'off (stackctl run starts cold)'}")
    if info is None:
        raise click.exceptions.Exit(1)


@agent.command("dial-stdio")
@click.option("--state-dir", default=None, help="State directory (default $STACKCTL_STATE_DIR).")
@click.option("--run-dir", default=None, help="Runtime directory (default $STACKCTL_RUN_DIR).")
@click.option("--cgroup-parent", default=None, help="Cgroup parent (default $STACKCTL_CGROUP_PARENT).")
def dial_stdio(state_dir: str | None, run_dir: str | None, cgroup_parent: str | None) -> None:
    """Bridge stdin/stdout to this node's agent socket, starting the agent if needed (what a
    manager or `ssh NODE stackctl agent dial-stdio` runs; like `docker system dial-stdio`)."""
    from stackctl.transport.dial import dial_stdio as run

    run(_paths(state_dir, run_dir, cgroup_parent))


@agent.command("stop")
@click.option("-t", "--timeout", type=float, default=15.0, show_default=True,
              help="Seconds to wait before killing the agent.")
def stop(timeout: float) -> None:
    """Stop the agent. Containers keep running; the next stack command starts it again."""
    from stackctl.agent.daemon import stop_agent

    pid = stop_agent(_paths(), timeout=timeout)
    click.echo(f"agent {pid} stopped; containers keep running" if pid else "agent: not running")
