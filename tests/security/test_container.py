"""What a default container sees of its host and what it can change: processes, masked
paths, devices, capabilities, the agent's socket, its own addresses, chroot, resource
exhaustion, and the options that must not reach the host. Each test states Docker's
default; stackctl must be at least as strict."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.root


VIEW_SCRIPT = r"""
echo "procs=$(ls -d /proc/[0-9]* | wc -l)"
test -e /proc/$1 && echo "hostpid=visible"
for f in kcore keys timer_list sched_debug latency_stats; do
  if [ -e /proc/$f ]; then echo "size_$f=$(wc -c < /proc/$f)"; else echo "size_$f=0"; fi
done
for d in /sys/firmware /proc/acpi /proc/scsi; do
  echo "entries_$d=$(ls -A $d 2>/dev/null | wc -l)"
  touch $d/x 2>/dev/null && echo "wrote_$d=yes"
done
echo "dev=$(ls /dev | tr '
' ' ')"
grep -E '^(CapEff|CapInh|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '	' | tr ':' '='
test -e $2/agent.sock && echo "agent_sock=visible"
echo "sockets=$(find / -xdev -type s 2>/dev/null | tr '
' ' ')"
ip link show eth0 >/dev/null 2>&1 && echo "eth0=present"
ip addr add 10.89.250.250/24 dev eth0 2>/dev/null && echo "addr_add=ok"
ip link set dev eth0 address 02:42:ac:11:00:99 2>/dev/null && echo "mac_set=ok"
ip route add 192.0.2.0/24 dev eth0 2>/dev/null && echo "route_add=ok"
ip neigh add 10.89.250.1 lladdr 02:00:00:00:00:01 dev eth0 2>/dev/null && echo "neigh_add=ok"
exit 0
"""


@pytest.fixture(scope="module")
def view(sec_node) -> dict[str, str]:
    """What one default container sees and may change (one run for the tests below):
    KEY=VALUE lines of VIEW_SCRIPT. $1: this test process's host pid, $2: the node's run
    directory (where the agent's socket lives)."""
    p = sec_node("run", "--rm", "stackctl-test/attack:1", "sh", "-c", VIEW_SCRIPT, "view",
                 str(os.getpid()), sec_node.paths.run, check=0)
    out = {}
    for line in p.stdout.splitlines():
        k, _, v = line.partition("=")
        out[k] = v.strip()
    assert "procs" in out and "CapEff" in out, p.stdout + p.stderr
    return out


def test_host_processes_are_invisible(view):
    """Docker: a new pid namespace; the container's `ps` lists its own processes only, and
    /proc holds no host pid."""
    assert int(view["procs"]) <= 4 and "hostpid" not in view, view


@pytest.mark.parametrize("name", ["kcore", "keys", "timer_list", "sched_debug", "latency_stats"])
def test_masked_proc_files_read_empty(view, name):
    """Docker (maskedPaths): /dev/null is bind-mounted over these /proc files, so they read
    as empty (kcore would be the host's physical memory, keys the host's keyrings)."""
    assert view[f"size_{name}"] == "0"


@pytest.mark.parametrize("path", ["/sys/firmware", "/proc/acpi", "/proc/scsi"])
def test_masked_dirs_are_empty(view, path):
    """Docker (maskedPaths): an empty read-only tmpfs over these directories (firmware
    tables, ACPI, SCSI control)."""
    assert view[f"entries_{path}"] == "0" and f"wrote_{path}" not in view


def test_no_host_devices(view):
    """Docker: /dev is a fresh tmpfs with null, zero, full, random, urandom, tty, pts, ptmx,
    shm, mqueue; no host disk, no /dev/mem or /dev/kmsg."""
    devs = view["dev"].split()
    assert "null" in devs
    assert not [d for d in devs if d.startswith(("sd", "vd", "nvme", "xvd", "loop", "mem", "kmsg", "port"))]


def test_mknod_of_the_host_disk_cannot_be_read(sec_node):
    """Docker: CAP_MKNOD is a default cap, but the device cgroup (deny all, then the
    standard devices) refuses opening a block device made by hand: the host's disk stays
    unreadable."""
    st = os.stat("/")
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    if major == 0:
        pytest.skip("the host's root is not on a block device")
    p = sec_node.sh(f"mknod /tmp/disk b {major} {minor} && head -c 512 /tmp/disk >/dev/null && echo READ")
    assert "READ" not in p.stdout, p.stdout + p.stderr


def test_capabilities_are_dockers_default_set(view):
    """Docker: the 14 default capabilities (CapEff 00000000a80425fb), an empty inheritable
    set, no_new_privs (stackctl: on by default, stricter than Docker) and a seccomp filter."""
    assert view["CapEff"] == "00000000a80425fb" and view["CapBnd"] == "00000000a80425fb"
    assert view["CapInh"] == "0000000000000000"
    assert view["Seccomp"] == "2" and view["NoNewPrivs"] == "1"


def test_no_agent_socket_inside(view):
    """Docker: the daemon's socket is never mounted into a container unless asked for
    (-v /var/run/docker.sock). No unix socket of the node (agent, warm server, DNS) is
    reachable from a default container's filesystem."""
    assert "agent_sock" not in view and view["sockets"] == "", view


def test_chroot_escape_stays_in_the_container(sec_node):
    """Docker: CAP_SYS_CHROOT is a default cap, but the root is a pivot_root'ed mount
    namespace: the classic chroot-and-walk-up escape ends at the container's own root."""
    p = sec_node("run", "--rm", "stackctl-test/attack:1", "attack", "chroot-escape", sec_node.paths.state)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "blocked" in p.stdout


def test_cannot_add_an_address(view):
    """Docker: no CAP_NET_ADMIN by default: `ip addr add` fails (EPERM), so a container
    cannot take another container's address."""
    assert view.get("eth0") == "present"  # the control: the device is there
    assert "addr_add" not in view


def test_cannot_change_its_mac(view):
    """Docker: no CAP_NET_ADMIN: `ip link set eth0 address` fails (EPERM), so no MAC
    spoofing of a neighbour on the bridge."""
    assert "mac_set" not in view


def test_cannot_add_a_route_or_arp_entry(view):
    """Docker: no CAP_NET_ADMIN: routes and neighbour entries cannot be changed either."""
    assert "route_add" not in view and "neigh_add" not in view


def test_fork_bomb_is_held_by_the_pids_limit(sec_node):
    """Docker: --pids-limit sets pids.max; a fork bomb inside hits it (fork fails) while the
    host keeps forking."""
    p = sec_node("run", "--rm", "--pids-limit", "40", "stackctl-test/attack:1",
                 "attack", "forkbomb", "500", timeout=60)
    assert "forkbomb stopped after" in p.stdout, p.stdout + p.stderr
    assert int(p.stdout.split("after")[1].split(":")[0]) < 40
    assert subprocess.run(["true"]).returncode == 0  # the host still forks


def test_memory_exhaustion_is_an_oom_kill(sec_node):
    """Docker: with -m the kernel OOM-kills inside the container's cgroup: exit 137 and
    State.OOMKilled true; the host is unaffected."""
    p = sec_node("run", "--name", "oom1", "-m", "32m", "stackctl-test/attack:1", "sh", "-c",
                 "head -c 200m /dev/zero | tail", timeout=120)
    try:
        assert p.returncode == 137, (p.returncode, p.stderr)
        st = sec_node("inspect", "-f", "{{.State.OOMKilled}}", "oom1", check=0)
        assert st.stdout.strip() == "true"
    finally:
        sec_node("rm", "-f", "oom1")
    assert subprocess.run(["true"]).returncode == 0


def test_net_sysctl_with_host_network_is_refused(sec_node):
    """Docker (runc's config validation): `sysctl "net.…" not allowed in host network
    namespace`. Before the fix, stackctl changed the host's own value."""
    key = "net/ipv4/tcp_keepalive_probes"
    before = open(f"/proc/sys/{key}").read().strip()
    new = "8" if before != "8" else "7"
    p = sec_node("run", "--rm", "--network", "host", "--sysctl",
                 f"net.ipv4.tcp_keepalive_probes={new}", "stackctl/busybox", "true")
    assert open(f"/proc/sys/{key}").read().strip() == before
    assert p.returncode == 125
    assert 'sysctl "net.ipv4.tcp_keepalive_probes" not allowed in host network namespace' in p.stderr


def test_privileged_gets_what_the_host_has(sec_node):
    """Docker (since moby#42933): --privileged grants the capabilities the daemon itself has;
    on a host whose root lacks one (here CAP_SYS_RESOURCE may be missing) the container still
    starts, where stackctl used to fail with capset: EPERM. The left-out ones are named."""
    from stackctl.runtime.containers import caps

    p = sec_node("run", "--rm", "--privileged", "stackctl/busybox", "sh", "-c",
                 "grep CapEff /proc/self/status")
    assert p.returncode == 0, p.stderr
    host = caps.host_caps()
    eff = int(p.stdout.split()[-1], 16)
    assert caps.names_from_mask(eff) == sorted(c for c in host if caps.CAPS[c] <= 40 and
                                               os.path.exists("/proc/sys/kernel/cap_last_cap")
                                               and caps.CAPS[c] <= int(open("/proc/sys/kernel/cap_last_cap").read()))
    missing = [c for c, v in caps.CAPS.items() if c not in host
               and v <= int(open("/proc/sys/kernel/cap_last_cap").read())]
    for c in missing:
        assert f"CAP_{c}" in p.stderr


def test_state_is_root_only(sec_node):
    """Docker: /var/lib/docker is 0710 root and its containers' configs (with environment
    values) 0600. stackctl's state and run directories are 0700 and the agent's database
    0600 (checked and fixed at agent start), so no local user reads stack data."""
    from stackctl.agent.daemon import secure_node_dirs

    secure_node_dirs(sec_node.paths)
    for d in (sec_node.paths.state, sec_node.paths.run):
        assert os.stat(d).st_mode & 0o077 == 0, d
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "ls",
                        sec_node.paths.state], capture_output=True, text=True)
    assert p.returncode != 0, p.stdout


def _cgroup2_root() -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            fstype = parts[parts.index("-") + 1]
            if fstype == "cgroup2" and parts[4] in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                return parts[4]
    return None


def test_cgroup_v2_device_filter(sec_node):
    """Docker (runc on cgroup v2): an eBPF device program with the same allow-list as v1's
    devices.allow, so CAP_MKNOD cannot open the host's disk on a v2 host either. Checked on
    this host's cgroup2 hierarchy: a process in a cgroup made by stackctl's v2 code opens
    /dev/null, may mknod a block device, and cannot open it."""
    import sys
    import uuid

    from stackctl.runtime.containers.cgroups.v2 import V2Cgroup

    root = _cgroup2_root()
    if root is None:
        pytest.skip("no cgroup2 hierarchy")
    st = os.stat("/")
    if os.major(st.st_dev) == 0:
        pytest.skip("the host's root is not on a block device")
    parent = f"stackctl-sec-{uuid.uuid4().hex[:8]}"
    cg = V2Cgroup(root, parent, "c1")
    cg.create({})
    node = f"/tmp/stackctl-devtest-{uuid.uuid4().hex[:8]}"
    try:
        code = (f"import os\nopen({cg.dir + '/cgroup.procs'!r}, 'w').write(str(os.getpid()))\n"
                "open('/dev/null', 'rb').close()\n"
                f"os.mknod({node!r}, 0o600 | 0o060000, os.makedev({os.major(st.st_dev)}, {os.minor(st.st_dev)}))\n"
                f"try:\n    open({node!r}, 'rb')\n    print('OPENED')\n"
                "except PermissionError:\n    print('DENIED')\n")
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert p.stdout.strip() == "DENIED", p.stdout + p.stderr
    finally:
        if os.path.exists(node):
            os.unlink(node)
        os.rmdir(cg.dir)
        os.rmdir(os.path.join(root, parent))
