"""Clean-up helpers shared by fixtures: unmount and remove cgroups made below a test's dirs."""

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
