"""Clean-up helpers shared by fixtures: unmount, remove cgroups, and end the processes a test
left running, below a test's dirs."""

from __future__ import annotations

import os
import subprocess
import time


def unmount_under(root: str) -> None:
    """Unmount everything mounted below ``root`` (deepest first)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    points = [p.replace("\\040", " ") for p in points if p == root or p.startswith(root + "/")]
    for p in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


def remove_cgroups(parent: str) -> None:
    base = "/sys/fs/cgroup"
    if not os.path.isdir(base):
        return
    candidates = [os.path.join(base, parent)]
    for ctrl in os.listdir(base):
        candidates.append(os.path.join(base, ctrl, parent))
    for top in candidates:
        if not os.path.isdir(top):
            continue
        # kill what is left, then rmdir bottom-up (cgroupfs dirs cannot be rm -r'ed)
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
            procs = os.path.join(dirpath, "cgroup.procs")
            try:
                with open(procs) as f:
                    for pid in f.read().split():
                        try:
                            os.kill(int(pid), 9)
                        except ProcessLookupError:
                            pass
            except OSError:
                pass
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
            for _ in range(50):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def remove_networking(paths) -> None:
    """The networking a test's node made (``run`` puts containers on the default ``bridge``
    network, made on first use): sandboxes, networks, leftover links, the DNS daemon and the
    node's nftables table. Costs one ``stat`` when the node made none."""
    if not os.path.exists(os.path.join(paths.state, "networks", "state.json")):
        return
    from stackctl.net import dnsd, firewall, gc, store
    from stackctl.net import networks as nets_mod
    from stackctl.net import sandbox as sb_mod

    dnsd.stop(paths)
    for cid in list(store.load(paths).sandboxes):
        sb_mod.teardown_container(paths, cid)
    nets = [n.id for n in store.load(paths).networks.values()]
    if nets:
        nets_mod.remove(paths, nets, force=True)
    gc.gc_stale(paths, live_containers=[])
    subprocess.run(["nft", "delete", "table", "ip", firewall.table_name(paths)], capture_output=True)


def processes_mentioning(text: str) -> list[int]:
    """Processes (not this one) whose command line or environment names ``text``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().decode(errors="replace")
        except OSError:
            continue
        if text in cmd or text in env:
            found.append(int(pid))
    return found


def kill_processes_mentioning(text: str) -> None:
    """SIGKILL every process that names ``text`` (a test's node daemons: agent, DNS server,
    warm server, a registry), and wait for them to go."""
    import signal

    pids = processes_mentioning(text)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
        time.sleep(0.05)
