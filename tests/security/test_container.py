"""What a default container sees of its host and what it can change: processes, masked
paths, devices, capabilities, the agent's socket, its own addresses, chroot, resource
exhaustion, and the options that must not reach the host. Each test states Docker's
default; stackctl must be at least as strict."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.root


def test_host_processes_are_invisible(sec_node):
    """Docker: a new pid namespace; the container's `ps` lists its own processes only, and
    /proc holds no host pid."""
    p = sec_node.sh(f"ls -d /proc/[0-9]* | wc -l; test -e /proc/{os.getpid()} && echo HOSTPID; exit 0")
    assert p.returncode == 0, p.stderr
    count, *rest = p.stdout.split()
    assert int(count) <= 4 and "HOSTPID" not in rest, p.stdout


@pytest.mark.parametrize("path", ["/proc/kcore", "/proc/keys", "/proc/timer_list",
                                  "/proc/sched_debug", "/proc/latency_stats"])
def test_masked_proc_files_read_empty(sec_node, path):
    """Docker (maskedPaths): /dev/null is bind-mounted over these /proc files, so they read
    as empty (kcore would be the host's physical memory, keys the host's keyrings)."""
    p = sec_node.sh(f"test ! -e {path} || wc -c < {path}")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() in ("", "0"), p.stdout


@pytest.mark.parametrize("path", ["/sys/firmware", "/proc/acpi", "/proc/scsi"])
def test_masked_dirs_are_empty(sec_node, path):
    """Docker (maskedPaths): an empty read-only tmpfs over these directories (firmware
    tables, ACPI, SCSI control)."""
    p = sec_node.sh(f"test ! -e {path} || ls -A {path} | wc -l; touch {path}/x 2>/dev/null && echo WROTE")
    assert p.stdout.split()[:1] in ([], ["0"]) and "WROTE" not in p.stdout, p.stdout


def test_no_host_devices(sec_node):
    """Docker: /dev is a fresh tmpfs with null, zero, full, random, urandom, tty, pts, ptmx,
    shm, mqueue; no host disk or /dev/mem."""
    p = sec_node.sh("ls /dev; test -e /dev/mem && echo MEM; ls /dev | grep -E '^(sd|vd|nvme|xvd|loop|mem|kmsg)' && echo DISK")
    assert "MEM" not in p.stdout and "DISK" not in p.stdout, p.stdout


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


def test_capabilities_are_dockers_default_set(sec_node):
    """Docker: the 14 default capabilities (CapEff 00000000a80425fb), an empty inheritable
    set, no_new_privs (stackctl: on by default, stricter than Docker) and a seccomp filter."""
    p = sec_node.sh("grep -E '^(CapEff|CapInh|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status")
    got = dict(line.split(":\t") for line in p.stdout.splitlines())
    assert got["CapEff"] == "00000000a80425fb" and got["CapBnd"] == "00000000a80425fb"
    assert got["CapInh"] == "0000000000000000"
    assert got["Seccomp"] == "2" and got["NoNewPrivs"] == "1"


def test_no_agent_socket_inside(sec_node):
    """Docker: the daemon's socket is never mounted into a container unless asked for
    (-v /var/run/docker.sock). No unix socket of the node (agent, warm server, DNS) is
    reachable from a default container's filesystem."""
    run = sec_node.paths.run
    p = sec_node.sh(f"test -e {run}/agent.sock && echo AGENT; "
                    "find / -xdev -type s 2>/dev/null; ls /run /var/run 2>/dev/null")
    assert "AGENT" not in p.stdout and ".sock" not in p.stdout, p.stdout


def test_chroot_escape_stays_in_the_container(sec_node):
    """Docker: CAP_SYS_CHROOT is a default cap, but the root is a pivot_root'ed mount
    namespace: the classic chroot-and-walk-up escape ends at the container's own root."""
    p = sec_node("run", "--rm", "stackctl-test/attack:1", "attack", "chroot-escape", sec_node.paths.state)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "blocked" in p.stdout


def test_cannot_add_an_address(sec_node):
    """Docker: no CAP_NET_ADMIN by default: `ip addr add` fails (EPERM), so a container
    cannot take another container's address."""
    p = sec_node.sh("ip addr add 10.89.250.250/24 dev eth0 && echo ADDED")
    assert p.returncode != 0 and "ADDED" not in p.stdout, p.stdout


def test_cannot_change_its_mac(sec_node):
    """Docker: no CAP_NET_ADMIN: `ip link set eth0 address` fails (EPERM), so no MAC
    spoofing of a neighbour on the bridge."""
    p = sec_node.sh("ip link set dev eth0 address 02:42:ac:11:00:99 && echo CHANGED")
    assert p.returncode != 0 and "CHANGED" not in p.stdout, p.stdout


def test_cannot_add_a_route_or_arp_entry(sec_node):
    """Docker: no CAP_NET_ADMIN: routes and neighbour entries cannot be changed either."""
    p = sec_node.sh("ip route add 192.0.2.0/24 dev eth0 && echo ROUTE; "
                    "ip neigh add 10.89.250.1 lladdr 02:00:00:00:00:01 dev eth0 && echo NEIGH")
    assert "ROUTE" not in p.stdout and "NEIGH" not in p.stdout, p.stdout


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
