"""Starting and stopping the peers the stack benchmarks compare against (see
../shared/PEERS.md): dockerd (for docker-compose v1 and swarm mode) and podman (for
podman-compose), each with its state in the benchmark's temporary directory, started by the
benchmark and stopped by PID; plus the cleanup of what they leave on the host (bridges
docker0 / docker_gwbridge / podman*, nft tables they created, ``ip_forward``).

Everything is a context manager, so a benchmark's ``try/finally`` (or ``with``) always cleans
up, also on error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

INSTALL_HINT = ("not installed (apt-get install docker.io docker-compose podman; "
                "pip install podman-compose)")
# Debian's docker CLI matches its dockerd; a newer /usr/local/bin/docker may not.
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else (shutil.which("docker") or "docker")
PEER_LINK_PREFIXES = ("docker0", "docker_gwbridge", "br-", "podman", "cni-podman", "veth")


def have(*tools: str) -> bool:
    return all(shutil.which(t) or os.path.exists(t) for t in tools)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def bench_dir(prefix: str) -> Iterator[tuple[str, Stackctl, Dockerd]]:
    """A temporary directory holding a private stackctl node and a private dockerd (not
    started yet): stopped and removed on exit, also on error or Ctrl-C."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    st = Stackctl(os.path.join(tmp, "stackctl"), f"stackctl-bench-{uuid.uuid4().hex[:8]}")
    dockerd = Dockerd(os.path.join(tmp, "docker"))
    try:
        yield tmp, st, dockerd
    finally:
        st.stop()
        dockerd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# --- host state the peers change ------------------------------------------------------------

def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {line[len("table "):].strip() for line in out.splitlines() if line.startswith("table ")}


def read_forward() -> str:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip()


@contextlib.contextmanager
def host_snapshot() -> Iterator[None]:
    """Undo on exit what a peer added to the host: new bridges/veths of the peers' kinds, new
    nft tables (``ip nat``, ``ip filter``, netavark's ...), and ``ip_forward``."""
    before_links, before_tables, forward = links(), nft_tables(), read_forward()
    try:
        yield
    finally:
        for name in sorted(links() - before_links):
            if name.startswith(PEER_LINK_PREFIXES):
                subprocess.run(["ip", "link", "delete", name], capture_output=True)
        for table in sorted(nft_tables() - before_tables):
            # stackctl's own tables (``ip stackctl_<hash>``) belong to the node that made them
            # (maybe another run on this machine) and are removed by it, not here
            if not table.split()[-1].startswith("stackctl"):
                subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(forward)


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM, wait, then SIGKILL — one process, by its PID."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --- dockerd --------------------------------------------------------------------------------

class Dockerd:
    """A private dockerd: data root, exec root, socket and pid file under ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.sock = os.path.join(root, "docker.sock")
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")
        self.env.pop("DOCKER_CONTEXT", None)
        self.proc: subprocess.Popen | None = None
        self.swarm = False

    def docker(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        p = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True, **kw)
        if check and p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {p.stderr.strip()[-500:]}")
        return p

    def start(self, timeout: float = 30.0) -> None:
        os.makedirs(self.root, exist_ok=True)
        log = open(os.path.join(self.root, "dockerd.log"), "ab")
        self.proc = subprocess.Popen(
            ["dockerd", "--iptables=true", "-H", f"unix://{self.sock}",
             "--data-root", os.path.join(self.root, "data"),
             "--exec-root", os.path.join(self.root, "exec"),
             "--pidfile", os.path.join(self.root, "docker.pid"),
             "--default-ulimit", "nofile=20000:20000"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.proc.returncode}; see {self.root}/dockerd.log")
            if self.docker("info", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not answer in {timeout}s; see {self.root}/dockerd.log")

    def import_rootfs(self, tarball: str, tag: str) -> None:
        with open(tarball, "rb") as f:
            self.docker("import", "-", tag, stdin=f)

    def swarm_init(self) -> None:
        self.docker("swarm", "init", "--advertise-addr", "127.0.0.1",
                    "--listen-addr", "127.0.0.1:2377")
        self.swarm = True

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            if self.swarm:
                self.docker("swarm", "leave", "--force", check=False, timeout=60)
            ids = self.docker("ps", "-aq", check=False, timeout=30).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=60)
        stop_pid(self.proc.pid)
        self.proc = None
        # dockerd's own containerd (a child in its session) may outlive it for a moment
        _kill_mentioning(self.root)
        _umount_under(self.root)


# --- podman ---------------------------------------------------------------------------------

class Podman:
    """podman with storage, run root and config under ``root`` (no daemon to start)."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)
        conf = os.path.join(root, "containers.conf")
        with open(conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
                    '[engine]\nruntime = "runc"\n')
        storage = os.path.join(root, "storage.conf")
        with open(storage, "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\n'
                    f'runroot = "{root}/run"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage)

    def podman(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        p = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, **kw)
        if check and p.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {p.stderr.strip()[-500:]}")
        return p

    def import_rootfs(self, tarball: str, tag: str) -> None:
        self.podman("import", tarball, tag)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.podman("rm", "-af", "-t", "0", check=False, timeout=60)
            self.podman("pod", "rm", "-af", check=False, timeout=60)
            self.podman("network", "prune", "-f", check=False, timeout=60)
            self.podman("volume", "prune", "-f", check=False, timeout=60)
        _kill_mentioning(self.root)
        _umount_under(self.root)


# --- helpers --------------------------------------------------------------------------------

def _kill_mentioning(text: str) -> None:
    """Processes whose command line names our private directory (conmon, containerd-shim)."""
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def _umount_under(root: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for p in sorted((p for p in points if p == root or p.startswith(root + "/")), key=len,
                    reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


def make_rootfs_tarball(tmp: str) -> tuple[str, str]:
    """A busybox rootfs directory and its tarball (the same bits for every tool)."""
    from bench.start_latency import make_rootfs

    rootfs = os.path.join(tmp, "rootfs")
    make_rootfs(rootfs)
    os.makedirs(os.path.join(rootfs, "var", "www"), exist_ok=True)
    tarball = os.path.join(tmp, "rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tarball, "."], check=True)
    return rootfs, tarball


class Stackctl:
    """stackctl on a private node (state, run dir, cgroup parent) under ``root``."""

    def __init__(self, root: str, cgroup_parent: str) -> None:
        self.root = root
        self.state, self.run = os.path.join(root, "state"), os.path.join(root, "run")
        os.makedirs(self.state, exist_ok=True)
        os.makedirs(self.run, exist_ok=True)
        self.cgroup_parent = cgroup_parent
        self.env = dict(os.environ, STACKCTL_STATE_DIR=self.state, STACKCTL_RUN_DIR=self.run,
                        STACKCTL_CGROUP_PARENT=cgroup_parent,
                        PYTHONPATH=os.path.dirname(HERE))
        self.argv = [sys.executable, "-m", "stackctl"]

    def cli(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        p = subprocess.run([*self.argv, *args], env=kw.pop("env", self.env),
                           capture_output=True, text=True, **kw)
        if check and p.returncode != 0:
            raise RuntimeError(f"stackctl {' '.join(args)} ({p.returncode}): "
                               f"{p.stderr.strip()[-800:]}")
        return p

    def import_rootfs(self, rootfs: str, tag: str) -> None:
        from stackctl.runtime.images.archive import import_rootfs
        from stackctl.runtime.images.store import ImageStore

        import_rootfs(ImageStore(os.path.join(self.state, "images")), rootfs, tag)

    def stop(self) -> None:
        """Stop the agent by its PID, then anything left under our directory."""
        try:
            with open(os.path.join(self.run, "agent.pid")) as f:
                stop_pid(int(f.read().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
        _kill_mentioning(self.root)
        with contextlib.suppress(Exception):
            self._remove_networks()
        _umount_under(self.root)
        _remove_cgroups(self.cgroup_parent)

    def _remove_networks(self) -> None:
        """Networks a failed run left (a clean run's ``down -v`` removed them)."""
        from stackctl.net import firewall, gc, store
        from stackctl.net import networks as nets
        from stackctl.paths import NodePaths

        paths = NodePaths(state=self.state, run=self.run, cgroup_parent=self.cgroup_parent)
        state = store.load(paths)
        if state.networks:
            nets.remove(paths, list(state.networks), force=True)
        gc.gc_stale(paths, live_containers=[])
        subprocess.run(["nft", "delete", "table", "ip", firewall.table_name(paths)],
                       capture_output=True)


def _remove_cgroups(parent: str) -> None:
    base = "/sys/fs/cgroup"
    for ctrl in os.listdir(base):
        top = os.path.join(base, ctrl, parent)
        if not os.path.isdir(top):
            continue
        for dirpath, _d, _f in sorted(os.walk(top), key=lambda t: -len(t[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
