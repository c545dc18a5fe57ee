"""A cluster of N nodes on this machine, for tests, benchmarks and users who want to try
stackctl's multi-node side without N machines (``scripts/demo-cluster``, the ``cluster``
fixture of tests/multinode).

Each node is:

- a network namespace ``stackctl-<cluster>-n<i>`` with an ``eth0`` (a veth) on one bridge
  ``stkc<k>`` in the host namespace; the host has ``10.213.<k>.1/24`` on it, node i has
  ``10.213.<k>.<i+1>`` (``k`` the first free /24 of 10.213.0.0/16, or the one asked for —
  refused if its bridge or subnet exists);
- its own sshd (Debian's openssh-server): key-only, listening on the node's address, its own
  host key, pid file and authorized_keys, in a private mount and UTS namespace (hostname
  ``n<i>``; a fresh /sys for its netns with the host's cgroup tree mounted back), so that each
  node's container mounts are its own;
- every SSH session on it sees that node's paths: ``SetEnv STACKCTL_STATE_DIR=<dir>/n<i>/state
  STACKCTL_RUN_DIR=<dir>/n<i>/run STACKCTL_CGROUP_PARENT=stackctl-<cluster>-n<i>
  STACKCTL_NODE_NAME=n<i>`` and a PATH whose ``stackctl`` is this checkout's (a launcher in
  ``<dir>/bin``); its agent starts on demand through ``stackctl agent dial-stdio``.

The client side: ``<dir>/client_key``, ``<dir>/known_hosts`` with the nodes' host keys, and
``<dir>/ssh_config`` with Host aliases n1..nN (``ssh -F <dir>/ssh_config n1 ...`` works, as
does asyncssh with ``SSHOptions(config=...)``).

Everything made is recorded in ``<dir>/cluster.json`` *before* it is made, so :func:`down`
removes it all — processes in the nodes' netns and cgroups, sshd, netns, veths, bridge, cgroup
subtrees, the directory — also after a half-finished :func:`up`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from stackctl.errors import ConflictError, StackctlError, UsageError

DEFAULT_BASE = "/var/lib/stackctl-demo"
SUBNET_PREFIX = "10.213"
SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 10.0
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class DemoClusterError(StackctlError):
    """The demo cluster cannot be made or removed."""


@dataclass
class DemoNode:
    name: str  # n1, n2, ...
    netns: str
    address: str
    dir: str
    cgroup_parent: str
    veth: str  # the host side, on the bridge

    @property
    def state(self) -> str:
        return os.path.join(self.dir, "state")

    @property
    def run(self) -> str:
        return os.path.join(self.dir, "run")

    @property
    def ssh_dir(self) -> str:
        return os.path.join(self.dir, "ssh")

    @property
    def pid_file(self) -> str:
        return os.path.join(self.ssh_dir, "sshd.pid")

    @property
    def sshd_log(self) -> str:
        return os.path.join(self.ssh_dir, "sshd.log")

    @property
    def url(self) -> str:
        """The node as an inventory names it (with the cluster's ssh_config: its alias)."""
        return f"ssh://root@{self.address}"


@dataclass
class DemoCluster:
    name: str
    index: int  # k of 10.213.k.0/24
    dir: str
    nodes: list[DemoNode] = field(default_factory=list)
    made: list[str] = field(default_factory=list)  # what exists (or may): for down()
    warm: bool = True  # the nodes' agents run a warm-run server
    #: extra environment of every SSH session on the nodes (``up(env=...)``), such as
    #: ``STACKCTL_INSECURE_REGISTRIES`` for a registry on the bridge's address
    node_env: dict[str, str] = field(default_factory=dict)
    #: each node's state directory on a tmpfs of this size (``up(state_size="96m")``): a
    #: disk a test can fill (the chaos suite's full disk)
    state_size: str = ""

    @property
    def bridge(self) -> str:
        return f"stkc{self.index}"

    @property
    def subnet(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.0/24"

    @property
    def gateway(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.1"

    @property
    def ssh_config(self) -> str:
        return os.path.join(self.dir, "ssh_config")

    @property
    def known_hosts(self) -> str:
        return os.path.join(self.dir, "known_hosts")

    @property
    def client_key(self) -> str:
        return os.path.join(self.dir, "client_key")

    @property
    def inventory(self) -> str:
        """A ``nodes.yml`` for the cluster (n1 the manager; zone labels a, b, c, a, ...)."""
        return os.path.join(self.dir, "nodes.yml")

    @property
    def bin_dir(self) -> str:
        return os.path.join(self.dir, "bin")

    def node(self, name: str) -> DemoNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def ssh_command(self, node: str, *argv: str) -> list[str]:
        """``ssh -F <ssh_config> -T <node> argv...`` (OpenSSH)."""
        return ["ssh", "-F", self.ssh_config, "-T", node, *argv]

    def ssh_options(self, **kw):
        """:class:`~stackctl.transport.ssh.SSHOptions` for asyncssh with this ssh_config."""
        from stackctl.transport.ssh import SSHOptions

        return SSHOptions(config=self.ssh_config, **kw)

    def save(self) -> None:
        path = os.path.join(self.dir, "cluster.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=1)
        os.replace(tmp, path)

    @classmethod
    def load(cls, cluster_dir: str) -> DemoCluster:
        try:
            with open(os.path.join(cluster_dir, "cluster.json")) as f:
                raw = json.load(f)
        except FileNotFoundError:
            raise DemoClusterError(f"no demo cluster in {cluster_dir} (no cluster.json)",
                                   hint="list them with `ls " + os.path.dirname(cluster_dir)
                                        + "`") from None
        nodes = [DemoNode(**n) for n in raw.pop("nodes")]
        return cls(nodes=nodes, **raw)

    def env(self) -> dict[str, str]:
        """Environment for a shell that talks to this cluster."""
        return {"STACKCTL_NODES": self.inventory, "STACKCTL_SSH_CONFIG": self.ssh_config}

    def _mark(self, what: str) -> None:
        if what not in self.made:
            self.made.append(what)
            self.save()


# -- small helpers -----------------------------------------------------------------------------


def _run(argv: list[str], *, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise DemoClusterError(f"`{' '.join(argv)}` failed: "
                               f"{(proc.stderr or proc.stdout).strip() or proc.returncode}")
    return proc


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def _netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def _subnet_in_use(net: ipaddress.IPv4Network) -> str | None:
    """An address or route of the host that overlaps ``net``, or None."""
    for cmd in (["ip", "-j", "-4", "addr"], ["ip", "-j", "-4", "route"]):
        out = _run(cmd, check=False).stdout or "[]"
        for entry in json.loads(out):
            infos = entry.get("addr_info", [entry])
            for info in infos:
                raw = info.get("local") or info.get("dst")
                if not raw or raw == "default":
                    continue
                plen = info.get("prefixlen")
                try:
                    other = ipaddress.ip_network(f"{raw}/{plen}" if plen and "/" not in raw
                                                 else raw, strict=False)
                except ValueError:
                    continue
                if other.overlaps(net):
                    return f"{raw}" + (f"/{plen}" if plen else "")
    return None


def _launcher_text() -> str:
    """A ``stackctl`` launcher for *this* checkout (the package this process imported) and
    this interpreter's site-packages — what sshd's sessions run."""
    import stackctl
    from stackctl.launcher import render

    root = os.path.dirname(os.path.dirname(os.path.abspath(stackctl.__file__)))
    site = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and
            os.path.isdir(p)]
    return render(os.path.realpath(sys.executable), [root, *dict.fromkeys(site)])


def _pids_in_netns(netns: str) -> list[int]:
    if not _netns_exists(netns):
        return []
    out = _run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _cgroup_dirs(parent: str) -> list[str]:
    base = "/sys/fs/cgroup"
    if not parent or not os.path.isdir(base):
        return []
    tops = [os.path.join(base, parent)]
    tops += [os.path.join(base, c, parent) for c in sorted(os.listdir(base))]
    return [t for t in tops if os.path.isdir(t)]


def _kill_cgroups(parent: str) -> None:
    for top in _cgroup_dirs(parent):
        for dirpath, _d, _f in os.walk(top):
            with contextlib.suppress(OSError):
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)


def _remove_cgroups(parent: str, timeout: float = 5.0) -> list[str]:
    """Kill what is left in the subtree, then rmdir it bottom-up (bounded). Returns what could
    not be removed."""
    left = []
    for top in _cgroup_dirs(parent):
        for dirpath, _d, _f in sorted(os.walk(top), key=lambda t: -len(t[0])):
            deadline = time.monotonic() + timeout
            while True:
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        left.append(dirpath)
                        break
                    _kill_cgroups(parent)
                    time.sleep(0.02)  # the killed tasks leave the cgroup asynchronously
    return left


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone: it holds nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            # another process's exit is not something we can wait on without owning it
            time.sleep(0.01)


def _wait_tcp(address: str, port: int, timeout: float, *, what: str, log: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=0.5) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            tail = ""
            with contextlib.suppress(OSError), open(log, errors="replace") as f:
                tail = " / ".join(f.read().strip().splitlines()[-2:])
            raise DemoClusterError(f"{what} does not answer on {address}:{port} after "
                                   f"{timeout:g} s ({tail or 'no log'})")
        time.sleep(0.02)  # sshd's listen socket appears when it is ready: nothing to wait on


# -- up ----------------------------------------------------------------------------------------


def _pick_index(index: int | None) -> tuple[int, str | None]:
    """The subnet index k to use: the asked one (refused if taken) or the first free one."""
    candidates = [index] if index is not None else list(range(1, 255))
    why = None
    for k in candidates:
        if not 1 <= k <= 254:
            raise UsageError(f"subnet index {k} is outside 1..254")
        net = ipaddress.ip_network(f"{SUBNET_PREFIX}.{k}.0/24")
        if _link_exists(f"stkc{k}"):
            why = f"bridge stkc{k} exists"
            continue
        used = _subnet_in_use(net)
        if used:
            why = f"subnet {net} overlaps {used} on this host"
            continue
        return k, None
    return 0, why


def up(n: int, *, name: str = "demo", base: str = DEFAULT_BASE,
       index: int | None = None, cluster_dir: str | None = None,
       warm: bool = True, env: dict[str, str] | None = None,
       state_size: str = "") -> DemoCluster:
    """Make an N-node cluster in ``cluster_dir`` (default ``<base>/<name>``). On any failure
    everything made so far is removed and the error raised. ``warm=False`` sets
    ``STACKCTL_WARM=0`` on the nodes (no warm-run server per agent: lighter for tests);
    ``env`` is added to the environment of every node (sshd's ``SetEnv``)."""
    if os.geteuid() != 0:
        raise DemoClusterError("a demo cluster needs root (network namespaces, sshd)")
    if not 1 <= n <= 250:
        raise UsageError(f"a demo cluster has 1 to 250 nodes, not {n}")
    if not _NAME.match(name):
        raise UsageError(f"invalid cluster name {name!r}: lower-case letters, digits and -, "
                         f"at most 20 characters")
    for tool in (SSHD, "/usr/bin/ssh-keygen"):
        if not os.path.exists(tool):
            raise DemoClusterError(f"{tool} is missing",
                                   hint="apt-get install openssh-server openssh-client")
    cdir = os.path.abspath(cluster_dir or os.path.join(base, name))
    if os.path.exists(os.path.join(cdir, "cluster.json")):
        raise ConflictError(f"a demo cluster exists in {cdir}",
                            hint=f"remove it first: scripts/demo-cluster down {name}")
    for i in range(1, n + 1):
        if _netns_exists(f"stackctl-{name}-n{i}"):
            raise ConflictError(f"network namespace stackctl-{name}-n{i} exists",
                                hint=f"remove it (`ip netns del stackctl-{name}-n{i}`) or pick "
                                     "another cluster name")
    os.makedirs(cdir, mode=0o700, exist_ok=True)
    k, why = _pick_index(index)
    if not k:
        shutil.rmtree(cdir, ignore_errors=True)
        raise ConflictError(f"no free subnet for a demo cluster: {why}",
                            hint="remove an old one (scripts/demo-cluster down NAME) or pass "
                                 "another --index")
    cluster = DemoCluster(name=name, index=k, dir=cdir, warm=warm, node_env=dict(env or {}),
                          state_size=state_size)
    cluster.save()
    try:
        _make(cluster, n)
    except BaseException:
        down(cluster)
        raise
    return cluster


def _make(c: DemoCluster, n: int) -> None:
    c._mark(f"bridge:{c.bridge}")
    _run(["ip", "link", "add", c.bridge, "type", "bridge"])
    _run(["ip", "addr", "add", f"{c.gateway}/24", "dev", c.bridge])
    _run(["ip", "link", "set", c.bridge, "up"])
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    os.makedirs(c.bin_dir, exist_ok=True)
    launcher = os.path.join(c.bin_dir, "stackctl")
    with open(launcher, "w") as f:
        f.write(_launcher_text())
    os.chmod(launcher, 0o755)
    # the nodes' python3 is this one (with stackctl's dependencies installed), as on a host
    # set up by scripts/setup; `node bootstrap` installs with it
    os.symlink(os.path.realpath(sys.executable), os.path.join(c.bin_dir, "python3"))
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"stackctl-demo-{c.name}",
          "-f", c.client_key])
    with open(c.client_key + ".pub") as f:
        client_pub = f.read()
    known = []
    for i in range(1, n + 1):
        node = DemoNode(name=f"n{i}", netns=f"stackctl-{c.name}-n{i}",
                        address=f"{SUBNET_PREFIX}.{c.index}.{i + 1}",
                        dir=os.path.join(c.dir, f"n{i}"),
                        cgroup_parent=f"stackctl-{c.name}-n{i}", veth=f"stkc{c.index}n{i}")
        c.nodes.append(node)
        c.save()
        known.append(_make_node(c, node, client_pub))
    with open(c.known_hosts, "w") as f:
        f.writelines(known)
    _write_ssh_config(c)
    _write_inventory(c)
    for node in c.nodes:
        _wait_tcp(node.address, 22, START_TIMEOUT, what=f"sshd of {node.name}",
                  log=node.sshd_log)


def _make_node(c: DemoCluster, node: DemoNode, client_pub: str) -> str:
    """Netns, veth, sshd of one node; returns its known_hosts line."""
    for d in (node.state, node.run, node.ssh_dir, os.path.join(node.dir, "cg")):
        os.makedirs(d, mode=0o700, exist_ok=True)
    if c.state_size:
        c._mark(f"mount:{node.state}")
        _run(["mount", "-t", "tmpfs", "-o", f"size={c.state_size},mode=0700", "tmpfs",
              node.state])
    c._mark(f"netns:{node.netns}")
    _run(["ip", "netns", "add", node.netns])
    c._mark(f"link:{node.veth}")
    peer = node.veth + "p"
    _run(["ip", "link", "add", node.veth, "type", "veth", "peer", "name", peer])
    _run(["ip", "link", "set", peer, "netns", node.netns])
    _run(["ip", "link", "set", node.veth, "master", c.bridge, "up"])
    ns = ["ip", "-n", node.netns]
    _run([*ns, "link", "set", peer, "name", "eth0"])
    _run([*ns, "addr", "add", f"{node.address}/24", "dev", "eth0"])
    _run([*ns, "link", "set", "eth0", "up"])
    _run([*ns, "link", "set", "lo", "up"])
    _run([*ns, "route", "add", "default", "via", c.gateway])
    host_key = os.path.join(node.ssh_dir, "host_key")
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{node.name}.{c.name}",
          "-f", host_key])
    authorized = os.path.join(node.ssh_dir, "authorized_keys")
    with open(authorized, "w") as f:
        f.write(client_pub)
    config = os.path.join(node.ssh_dir, "sshd_config")
    env = {"STACKCTL_STATE_DIR": node.state, "STACKCTL_RUN_DIR": node.run,
           "STACKCTL_CGROUP_PARENT": node.cgroup_parent, "STACKCTL_NODE_NAME": node.name,
           # `node bootstrap`: one filesystem for all nodes, so each installs into its own
           # prefix and keeps the manager's key in its own authorized_keys (docs/nodes.md)
           # (until a node is bootstrapped, its prefix has no stackctl and the remote command,
           # transport/target.REMOTE_COMMAND, runs the one on PATH: this checkout's)
           "STACKCTL_PREFIX": os.path.join(node.dir, "prefix"),
           "STACKCTL_AUTHORIZED_KEYS": authorized,
           "PATH": f"{c.bin_dir}:{SYSTEM_PATH}",
           # bash reads ~/.bashrc for a command run by sshd only as a top-level shell (SHLVL
           # < 2); a node looks like a fresh host, not like this machine's root account
           "SHLVL": "1"}
    if not c.warm:
        env["STACKCTL_WARM"] = "0"
    for key, value in c.node_env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or any(ch.isspace() or ch == '"'
                                                                  for ch in value):
            raise UsageError(f"demo cluster env {key}={value!r}: a name and a value without "
                             "spaces or quotes (sshd's SetEnv)")
        env[key] = value
    with open(config, "w") as f:
        f.write("\n".join([
            f"# sshd of demo node {node.name} of cluster {c.name} (stackctl/cluster/demo.py)",
            f"ListenAddress {node.address}",
            "Port 22",
            f"HostKey {host_key}",
            f"PidFile {node.pid_file}",
            f"AuthorizedKeysFile {authorized}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PrintMotd no",
            "UseDNS no",
            # the manager opens a channel per agent connection and per command on one kept
            # connection; OpenSSH's default of 10 sessions is kept on purpose by real hosts
            "MaxSessions 64",
            "MaxStartups 64:30:128",
            "Subsystem sftp internal-sftp",
            "SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()),
            "",
        ]))
    c._mark(f"sshd:{node.name}")
    _start_sshd(node)
    with open(host_key + ".pub") as f:
        alg, b64 = f.read().split()[:2]
    return f"{node.address} {alg} {b64}\n"


def _start_sshd(node: DemoNode) -> None:
    config = os.path.join(node.ssh_dir, "sshd_config")
    script = ('set -e; hostname "$1"; mount --rbind /sys/fs/cgroup "$2"; '
              'mount -t sysfs sysfs /sys; mount --move "$2" /sys/fs/cgroup; '
              f'exec {SSHD} -f "$3" -E "$4"')
    _run(["unshare", "--mount", "--uts", "--propagation", "slave", "--",
          "nsenter", f"--net=/run/netns/{node.netns}", "--",
          "sh", "-c", script, "sh", node.name, os.path.join(node.dir, "cg"), config,
          node.sshd_log], timeout=START_TIMEOUT)


def stop_sshd(c: DemoCluster, name: str) -> None:
    """Stop one node's sshd (its agent and containers keep running): the manager can no
    longer reach it — what a chaos test does to a node."""
    node = c.node(name)
    with contextlib.suppress(OSError, ValueError):
        with open(node.pid_file) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if os.fsencode(os.path.join(node.ssh_dir, "sshd_config")) in f.read():
                os.kill(pid, signal.SIGTERM)
                _wait_gone([pid], 5.0)


def start_sshd(c: DemoCluster, name: str) -> None:
    """Start a stopped node's sshd again (as :func:`up` started it)."""
    node = c.node(name)
    _start_sshd(node)
    _wait_tcp(node.address, 22, START_TIMEOUT, what=f"sshd of {node.name}",
              log=node.sshd_log)


def _write_ssh_config(c: DemoCluster) -> None:
    lines = [f"# demo cluster {c.name} (stackctl/cluster/demo.py): ssh -F {c.ssh_config} n1"]
    for node in c.nodes:
        lines += [f"Host {node.name}", f"    HostName {node.address}"]
    aliases = " ".join(n.name for n in c.nodes)
    lines += [
        f"Host {aliases} {SUBNET_PREFIX}.{c.index}.*",
        "    User root",
        "    Port 22",
        f"    IdentityFile {c.client_key}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {c.known_hosts}",
        "    GlobalKnownHostsFile /dev/null",
        "    StrictHostKeyChecking yes",
        "    BatchMode yes",
        "    LogLevel ERROR",
        "",
    ]
    with open(c.ssh_config, "w") as f:
        f.write("\n".join(lines))


def _write_inventory(c: DemoCluster) -> None:
    lines = [f"# demo cluster {c.name} (scripts/demo-cluster): STACKCTL_NODES={c.inventory}",
             "nodes:"]
    for i, node in enumerate(c.nodes):
        lines += [f"  - name: {node.name}",
                  f"    url: ssh://root@{node.address}",
                  f"    role: {'manager' if i == 0 else 'worker'}",
                  f"    labels: {{zone: {'abc'[i % 3]}}}",
                  "    identity: ./client_key",
                  "    known_hosts: ./known_hosts"]
    with open(c.inventory, "w") as f:
        f.write("\n".join(lines) + "\n")


# -- down --------------------------------------------------------------------------------------


def down(cluster: DemoCluster | str) -> list[str]:
    """Remove everything the cluster made (what exists of it). Returns what could not be
    removed (empty when all went)."""
    c = cluster if isinstance(cluster, DemoCluster) else DemoCluster.load(cluster)
    left: list[str] = []
    # 1. stop new logins, then every process of the nodes: in their netns, in their cgroups
    for node in c.nodes:
        with contextlib.suppress(OSError, ValueError):
            with open(node.pid_file) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:  # ours, not a reused pid
                if os.fsencode(os.path.join(node.ssh_dir, "sshd_config")) in f.read():
                    os.kill(pid, signal.SIGKILL)
    for _ in range(3):  # a process may fork while we kill; a few rounds catch those
        pids: list[int] = []
        for node in c.nodes:
            for pid in _pids_in_netns(node.netns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                pids.append(pid)
            _kill_cgroups(node.cgroup_parent)
        _wait_gone(pids, 5.0)
        if not pids:
            break
    for node in c.nodes:
        left += _remove_cgroups(node.cgroup_parent)
    # 2. kernel objects, newest first
    for what in reversed(c.made):
        kind, _, obj = what.partition(":")
        if kind == "netns" and _netns_exists(obj):
            if _run(["ip", "netns", "del", obj], check=False).returncode != 0:
                left.append(what)
        elif kind in ("link", "bridge") and _link_exists(obj):
            if _run(["ip", "link", "del", obj], check=False).returncode != 0:
                left.append(what)
        elif kind == "mount" and os.path.ismount(obj):
            if _run(["umount", "-l", obj], check=False).returncode != 0:
                left.append(what)
    # 3. files: nothing is mounted below the directory in this namespace (the nodes' mounts
    # lived in their own mount namespaces, gone with their processes)
    if not left:
        shutil.rmtree(c.dir, ignore_errors=True)
    return left


def list_clusters(base: str = DEFAULT_BASE) -> list[DemoCluster]:
    out = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.listdir(base)):
            path = os.path.join(base, entry)
            if os.path.isfile(os.path.join(path, "cluster.json")):
                with contextlib.suppress(DemoClusterError, OSError, ValueError, TypeError):
                    out.append(DemoCluster.load(path))
    return out


# -- scripts/demo-cluster ----------------------------------------------------------------------


def _describe(c: DemoCluster) -> list[str]:
    out = [f"demo cluster {c.name}: {len(c.nodes)} node(s) on bridge {c.bridge} "
           f"({c.subnet}, this host {c.gateway}), files in {c.dir}"]
    for node in c.nodes:
        out.append(f"  {node.name}  {node.address}  netns {node.netns}  state {node.state}")
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="scripts/demo-cluster",
                                 description="N stackctl nodes on this machine (netns + sshd "
                                             "each); see docs/transport.md")
    ap.add_argument("--base", default=DEFAULT_BASE, help=f"where clusters live ({DEFAULT_BASE})")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="make a cluster of N nodes")
    p_up.add_argument("n", type=int)
    p_up.add_argument("--name", default="demo")
    p_up.add_argument("--index", type=int, default=None,
                      help="use 10.213.INDEX.0/24 (default: the first free one)")
    p_up.add_argument("--no-warm", action="store_true",
                      help="no warm-run server beside each node's agent (less memory)")
    for cmd, what in (("down", "remove a cluster and everything it made"),
                      ("env", "print shell exports for a cluster")):
        p = sub.add_parser(cmd, help=what)
        p.add_argument("name", nargs="?", default="demo")
        p.add_argument("--dir", default=None,
                       help="the cluster's directory, wherever it is (e.g. a test's, left "
                            "behind by a killed pytest)")
    sub.add_parser("ls", help="list the clusters")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            c = up(args.n, name=args.name, base=args.base, index=args.index,
                   warm=not args.no_warm)
            print("\n".join(_describe(c)))
            print(f"try:  ssh -F {c.ssh_config} n1 stackctl agent status")
            print(f"      eval \"$(scripts/demo-cluster env {c.name})\"; stackctl node ls")
            print(f"down: scripts/demo-cluster down {c.name}")
        elif args.cmd == "down":
            left = down(args.dir or os.path.join(args.base, args.name))
            if left:
                print("could not remove: " + ", ".join(left), file=sys.stderr)
                return 1
            print(f"demo cluster {args.name} removed")
        elif args.cmd == "env":
            c = DemoCluster.load(args.dir or os.path.join(args.base, args.name))
            for key, value in c.env().items():
                print(f"export {key}={value}")
        else:
            for c in list_clusters(args.base):
                print("\n".join(_describe(c)))
    except StackctlError as exc:
        print("error: " + "\n".join(exc.lines()), file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
