"""Helpers of the end-to-end stack tests: a private node (state, run dir, cgroup parent), the
busybox image, the `stackctl` command run as a user runs it, and a teardown that brings every
stack down, stops the agent by its PID and checks that nothing is left behind — containers,
networks, volumes, mounts, cgroups, processes — also when the test failed. Also the scenario
two tests share: a start-first update under a looping client (`check_update_loses_no_request`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Self

from kernel_cleanup import processes_mentioning  # noqa: F401  (tests/: on sys.path)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
IMAGE = "stackctl/busybox:latest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str = "/", timeout: float = 2.0) -> str:
    # from the host with urllib (no container needed)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def events_of(stdout: str) -> list[dict]:
    """The JSON events of `--format json` output (its other lines are left out)."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def ids(containers: list[dict]) -> dict[str, str]:
    """Name -> ID of `ps --format json` rows."""
    return {c["Name"]: c["ID"] for c in containers}


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep trying until the deadline
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Node:
    """`stackctl` against one private node; remembers the stacks it brought up."""

    def __init__(self, paths, tmp_path) -> None:
        self.paths = paths
        self.tmp = tmp_path
        self.env = dict(os.environ, STACKCTL_STATE_DIR=paths.state, STACKCTL_RUN_DIR=paths.run,
                        STACKCTL_CGROUP_PARENT=paths.cgroup_parent, PYTHONPATH=ROOT)
        self.projects: set[str] = set()
        self.bridges: set[str] = set()

    def cli(self, *args: str, check: bool = True, timeout: float = 120, cwd: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "stackctl", *args], cwd=cwd or str(self.tmp),
                           env={**self.env, **(env or {})}, capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"stackctl {' '.join(args)} exited {p.returncode}\n"
                                 f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
        return p

    def up(self, file: str, *args: str, project: str | None = None, **kw):
        name = project or self.project_of(file)
        self.projects.add(name)
        return self.cli("up", "-f", file, *args, **kw)

    def write_stack(self, text: str, name: str = "stack.yml") -> str:
        """Write a stack file into the test's directory; its path."""
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def deploy(self, text: str, **kw) -> str:
        """Write `text` as stack.yml and `up -d --wait` it; the stack file's path."""
        stack = self.write_stack(text)
        self.up(stack, "-d", "--wait", **kw)
        return stack

    def project_of(self, file: str) -> str:
        return json.loads(self.cli("config", "-f", file, "--format", "json").stdout)["name"]

    def ps(self, project: str, *, all_: bool = True) -> list[dict]:
        args = ["ps", "-p", project, "--format", "json"] + (["-a"] if all_ else [])
        out = self.cli(*args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def running(self, project: str, service: str | None = None) -> list[dict]:
        return [c for c in self.ps(project, all_=False)
                if c["State"] == "running" and (service is None or c["Service"] == service)]

    def agent_pid(self) -> int | None:
        try:
            with open(os.path.join(self.paths.run, "agent.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def remember_bridges(self) -> None:
        from stackctl.net import store

        for net in store.load(self.paths).networks.values():
            self.bridges.add(net.bridge)

    def stop_agent(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        pid = self.agent_pid()
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def leftovers(self) -> dict[str, list[str]]:
        """What this node still holds: should all be empty after `down -v`."""
        from stackctl.net import store

        out: dict[str, list[str]] = {}
        cdir = os.path.join(self.paths.state, "containers")
        out["containers"] = sorted(os.listdir(cdir)) if os.path.isdir(cdir) else []
        vdir = os.path.join(self.paths.state, "volumes")
        out["volumes"] = sorted(os.listdir(vdir)) if os.path.isdir(vdir) else []
        try:
            # Docker's default `bridge` network (made by a plain `run`) is node infrastructure
            out["networks"] = sorted(nid for nid, n in store.load(self.paths).networks.items() if n.name != "bridge")
        except Exception as exc:  # noqa: BLE001
            out["networks"] = [f"unreadable: {exc}"]
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        out["bridges"] = [b for b in self.bridges if f": {b}:" in links or f": {b}@" in links]
        with open("/proc/self/mountinfo") as f:
            root = str(self.tmp)
            # <run>/netns is the node's netns directory, bind-mounted onto itself once (as
            # `ip netns` does with /run/netns): node infrastructure, not a stack's. The
            # namespaces mounted below it are a stack's, and count.
            netns_dir = os.path.join(self.paths.run, "netns")
            out["mounts"] = [line.split()[4] for line in f
                             if line.split()[4].startswith(root + "/")
                             and line.split()[4] != netns_dir]
        out["cgroups"] = []
        pool_pids: set[int] = set()
        for ctrl in os.listdir("/sys/fs/cgroup"):
            top = os.path.join("/sys/fs/cgroup", ctrl, self.paths.cgroup_parent)
            if os.path.isdir(top):
                for d in os.listdir(top):
                    if not os.path.isdir(os.path.join(top, d)):
                        continue
                    if d.startswith("pool-"):  # the agent's warm server's pool (docs/warm.md)
                        pool_pids |= _pids_in(os.path.join(top, d))
                    else:
                        out["cgroups"].append(os.path.join(top, d))
        infra = {self.agent_pid()} | self._warm_server_family(pool_pids)
        out["processes"] = [_describe(p) for p in processes_mentioning(str(self.tmp)) if p not in infra]
        return {k: v for k, v in out.items() if v}

    def _warm_server_family(self, pool_pids: set[int]) -> set[int]:
        """The agent's warm server and its descendants that are node infrastructure while it
        runs (docs/warm.md): its spare worker, its pool slots (also while one is being made)
        — every descendant that is neither in a container's cgroup nor the parent of a process
        in one. A container's monitor is the server's child too, and a container left behind
        still counts."""
        try:
            with open(os.path.join(self.paths.run, "warm.pid")) as f:
                server = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return set()
        family = {server} | pool_pids
        todo = _children(server)
        while todo:
            pid = todo.pop()
            kids = _children(pid)
            todo += kids
            if not self._in_container_cgroup(pid) and not any(self._in_container_cgroup(k) for k in kids):
                family.add(pid)
        return family

    def _in_container_cgroup(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        for line in lines:
            path = line.split(":", 2)[2]
            head, _, name = path.rpartition("/")
            if head.endswith("/" + self.paths.cgroup_parent) and name and not name.startswith("pool-"):
                return True
        return False


class RequestLoop:
    """GETs in a loop against 127.0.0.1:<port> from a thread while the `with` block runs:
    counts what answered and what failed (with the errors), and collects the bodies seen."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.versions: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.versions.add(http_get(self.port, timeout=3).strip())
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.failed += 1
                self.errors.append(repr(exc))
            time.sleep(0.01)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def check_update_loses_no_request(node: Node, text: str) -> None:
    """Deploy `text` (its PORT replaced by a free port; it serves v$VERSION, VERSION 1 by
    default, from 3 start-first replicas), then update it to VERSION=2 while a RequestLoop
    runs: no request fails, the new version answered, and every slot was recreated."""
    port = free_port()
    stack = node.deploy(text.replace("PORT", str(port)))
    # --wait returned: every replica answers already (no sleep needed)
    assert http_get(port).strip() == "v1"
    with RequestLoop(port) as requests:
        p = node.up(stack, "-d", "--wait", "--format", "json", env={"VERSION": "2"}, timeout=120)
        time.sleep(0.5)
    assert requests.failed == 0, (requests.failed, requests.errors[:5])
    assert requests.ok > 50
    assert "v2" in requests.versions
    assert http_get(port).strip() == "v2"
    recreates = [e for e in events_of(p.stdout) if e["action"] == "recreate"]
    assert {e["slot"] for e in recreates} == {"1", "2", "3"}


def _describe(pid: int) -> str:
    """``pid (ppid) command line`` for a leftover report."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ppid = f.read().rsplit(")", 1)[1].split()[1]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return str(pid)
    return f"{pid} (parent {ppid}) {cmd[:200]}"


def _pids_in(cgroup_dir: str) -> set[int]:
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs")) as f:
            return {int(x) for x in f.read().split()}
    except OSError:
        return set()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


