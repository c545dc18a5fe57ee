"""The cgroup v2 device filter: Docker's allow-list as eBPF, decided by a reference
interpreter (no kernel)."""

from __future__ import annotations

import pytest

from stackctl.runtime.containers.cgroups import devices_bpf
from stackctl.runtime.containers.cgroups.v1 import DEVICE_ALLOW

PROG = devices_bpf.program(DEVICE_ALLOW)


@pytest.mark.parametrize("kind,major,minor,access,allowed", [
    ("c", 1, 3, "rw", True),      # /dev/null
    ("c", 1, 9, "r", True),       # urandom
    ("c", 136, 7, "rw", True),    # a pty
    ("c", 10, 200, "rwm", True),  # tun
    ("b", 8, 0, "m", True),       # mknod of anything is allowed (as Docker: c/b *:* m)...
    ("b", 8, 0, "r", False),      # ...but opening a disk is not
    ("b", 254, 0, "rw", False),
    ("c", 1, 1, "r", False),      # /dev/mem
    ("c", 1, 2, "r", False),      # /dev/kmem
    ("c", 4, 1, "w", False),      # a virtual console
    ("c", 1, 3, "rwm", True),
])
def test_allow_list(kind, major, minor, access, allowed):
    assert devices_bpf.evaluate(PROG, kind, major, minor, access) is allowed


def test_rules_parse():
    assert devices_bpf.parse_rule("c 136:* rwm") == (2, 136, -1, 7)
    assert devices_bpf.parse_rule("b *:* m") == (1, -1, -1, 1)
