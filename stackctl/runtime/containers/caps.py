"""Linux capabilities: names, Docker's default set, cap_add/cap_drop, and applying a set.

``effective_set`` is pure; ``apply_caps`` changes the calling process (bounding set, then
capset) and is called by the container's setup child right before exec.
"""

from __future__ import annotations

CAPS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
    "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
    "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
    "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
    "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
    "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

# Docker's (moby oci/caps/defaults.go) default set for a non-privileged container.
DEFAULT_CAPS = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


class CapabilityError(ValueError):
    """An unknown capability name in cap_add / cap_drop."""


def normalize(name: str) -> str:
    """``cap_net_admin``, ``NET_ADMIN`` and ``CAP_NET_ADMIN`` are the same; ``all`` is ALL."""
    n = name.strip().upper()
    if n == "ALL":
        return "ALL"
    if n.startswith("CAP_"):
        n = n[4:]
    if n not in CAPS:
        raise CapabilityError(f"unknown capability: {name!r} (e.g. NET_ADMIN, SYS_PTRACE, ALL)")
    return n


def effective_set(cap_add: list[str], cap_drop: list[str], *, privileged: bool = False, last_cap: int = 40) -> frozenset[str]:
    """The capability names a container gets, as Docker computes them (TweakCapabilities):
    privileged → all; else the default set, ``cap_drop`` removes (``ALL`` removes every
    default), then ``cap_add`` adds (``ALL`` adds every known capability). A name in both
    lists is added (Docker: adds win)."""
    known = frozenset(n for n, v in CAPS.items() if v <= last_cap)
    if privileged:
        return known
    adds = {normalize(c) for c in cap_add}
    drops = {normalize(c) for c in cap_drop}
    if "ALL" in adds:
        return known
    caps = set() if "ALL" in drops else set(DEFAULT_CAPS) - drops
    caps |= adds
    return frozenset(c for c in caps if c in known)


def host_caps(status_text: str | None = None) -> frozenset[str]:
    """The capabilities this process could give a container: its bounding set and permitted
    set together (``CapBnd`` & ``CapPrm`` of /proc/self/status; pass the text to test)."""
    if status_text is None:
        with open("/proc/self/status") as f:
            status_text = f.read()
    bnd = prm = None
    for line in status_text.splitlines():
        if line.startswith("CapBnd:"):
            bnd = int(line.split()[1], 16)
        elif line.startswith("CapPrm:"):
            prm = int(line.split()[1], 16)
    if bnd is None or prm is None:
        return frozenset(CAPS)
    return frozenset(names_from_mask(bnd & prm))


def privileged_set(known: frozenset[str], host: frozenset[str]) -> tuple[frozenset[str], list[str]]:
    """What ``--privileged`` grants where the host itself lacks some capabilities (as Docker
    does since moby#42933): the capabilities both know, and the names left out."""
    return known & host, sorted(known - host)


def to_mask(names: frozenset[str] | set[str]) -> int:
    mask = 0
    for n in names:
        mask |= 1 << CAPS[n]
    return mask


def drop_bounding(names: frozenset[str]) -> None:
    """Drop every capability not in ``names`` from the bounding set (before a uid change)."""
    from stackctl.runtime.containers import linux

    mask = to_mask(names)
    for cap in range(linux.cap_last_cap() + 1):
        if not mask & (1 << cap):
            linux.drop_bounding(cap)


def set_caps(names: frozenset[str]) -> None:
    """Effective and permitted = ``names``, inheritable empty (after the bounding drop)."""
    from stackctl.runtime.containers import linux

    mask = to_mask(names)
    linux.capset(mask, mask, 0)


def apply_caps(names: frozenset[str]) -> None:
    """Drop everything not in ``names`` from the bounding set, then set effective and permitted
    to ``names`` (inheritable stays empty, as Docker has done since CVE-2022-24769). Dropping
    the bounding set needs CAP_SETPCAP, so it runs first."""
    from stackctl.runtime.containers import linux

    last = linux.cap_last_cap()
    mask = to_mask(names)
    for cap in range(last + 1):
        if not mask & (1 << cap):
            linux.drop_bounding(cap)
    linux.capset(mask, mask, 0)


def format_mask(mask: int) -> str:
    """As /proc/<pid>/status shows it (CapEff: 00000000a80425fb)."""
    return f"{mask:016x}"


def names_from_mask(mask: int) -> list[str]:
    return sorted(n for n, v in CAPS.items() if mask & (1 << v))
