"""``stackctl info`` and ``stackctl version``: Docker's fields where they mean something here
(counts of containers and images, the storage and cgroup drivers, the kernel, the state
directory), with ``--format`` templates and ``json`` as Docker has them."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import click

from stackctl.cli.common import manager


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _cgroup_version() -> str:
    from stackctl.runtime.containers.cgroups import detect

    try:
        return str(detect.layout()["version"] or "")
    except OSError:
        return ""


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def info_data() -> dict[str, Any]:
    """``docker info``'s object, as far as it applies (names as Docker's JSON)."""
    from stackctl import __version__

    mgr = manager()
    recs = mgr.records()
    running = [r for r in recs if r.state.status == "running"]
    paused = [r for r in running if r.state.paused]
    try:
        images = len(mgr.images.list())
    except Exception:  # noqa: BLE001 - a broken image store must not hide the rest of info
        images = 0
    try:
        from stackctl.net import networks

        nets = [n.name for n in networks.list_networks(mgr.paths)]
    except Exception:  # noqa: BLE001
        nets = []
    return {
        "ID": "",
        "Containers": len(recs),
        "ContainersRunning": len(running) - len(paused),
        "ContainersPaused": len(paused),
        "ContainersStopped": len(recs) - len(running),
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", "overlayfs"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"], "Log": ["json-file"]},
        "Networks": nets,
        "MemoryLimit": True,
        "SwapLimit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
        "CpuCfsQuota": True,
        "PidsLimit": True,
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "DockerRootDir": mgr.paths.state,
        "Name": platform.node(),
        "ServerVersion": __version__,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": _cgroup_version(),
        "DefaultRuntime": "stackctl",
        "Runtimes": {"stackctl": {"path": sys.executable}},
        "LoggingDriver": "json-file",
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=no-new-privileges"],
        "Swarm": {"LocalNodeState": "inactive"},
    }


def _render(fmt: str, obj: dict[str, Any]) -> str:
    from stackctl.cli import format as F

    template = F.unescape_template(fmt)
    if template.strip() in ("json", "{{json .}}"):
        import json

        return json.dumps(obj)
    return F.render_template(template, obj)


@click.command()
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go-like template, or json.")
def info(fmt: str) -> None:
    """Display system-wide information."""
    from stackctl.runtime.images.view import human_size

    d = info_data()
    if fmt:
        click.echo(_render(fmt, d))
        return
    lines = [
        "Client:",
        f" Version:    {d['ServerVersion']}",
        " Context:    default",
        "",
        "Server:",
        f" Containers: {d['Containers']}",
        f"  Running: {d['ContainersRunning']}",
        f"  Paused: {d['ContainersPaused']}",
        f"  Stopped: {d['ContainersStopped']}",
        f" Images: {d['Images']}",
        f" Server Version: {d['ServerVersion']}",
        f" Storage Driver: {d['Driver']}",
        f" Logging Driver: {d['LoggingDriver']}",
        f" Cgroup Driver: {d['CgroupDriver']}",
        f" Cgroup Version: {d['CgroupVersion']}",
        " Plugins:",
        "  Volume: local",
        "  Network: bridge host none",
        "  Log: json-file",
        f" Swarm: {d['Swarm']['LocalNodeState']}",
        f" Runtimes: {' '.join(d['Runtimes'])}",
        f" Default Runtime: {d['DefaultRuntime']}",
        " Security Options:",
        "  seccomp",
        "   Profile: builtin",
        "  no-new-privileges",
        f" Kernel Version: {d['KernelVersion']}",
        f" Operating System: {d['OperatingSystem']}",
        f" OSType: {d['OSType']}",
        f" Architecture: {d['Architecture']}",
        f" CPUs: {d['NCPU']}",
        f" Total Memory: {human_size(d['MemTotal'])}",
        f" Name: {d['Name']}",
        f" Docker Root Dir: {d['DockerRootDir']}",
    ]
    click.echo("\n".join(lines))


def version_data() -> dict[str, Any]:
    from stackctl import __version__

    client = {"Version": __version__, "PythonVersion": platform.python_version(), "Os": "linux",
              "Arch": _arch(), "Context": "default"}
    server = {"Version": __version__, "KernelVersion": platform.release(), "Os": "linux", "Arch": _arch(),
              "Components": [{"Name": "Engine", "Version": __version__,
                              "Details": {"CgroupVersion": _cgroup_version(), "Runtime": "stackctl"}}]}
    return {"Client": client, "Server": server}


@click.command()
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go-like template, or json.")
def version(fmt: str) -> None:
    """Show the stackctl version information."""
    d = version_data()
    if fmt:
        click.echo(_render(fmt, d))
        return
    c, s = d["Client"], d["Server"]
    click.echo("\n".join([
        "Client:",
        f" Version:           {c['Version']}",
        f" Python version:    {c['PythonVersion']}",
        f" OS/Arch:           {c['Os']}/{c['Arch']}",
        f" Context:           {c['Context']}",
        "",
        "Server: stackctl (daemonless runtime)",
        " Engine:",
        f"  Version:          {s['Version']}",
        f"  OS/Arch:          {s['Os']}/{s['Arch']}",
        f"  Kernel Version:   {s['KernelVersion']}",
        f"  Cgroup Version:   {s['Components'][0]['Details']['CgroupVersion']}",
    ]))
