"""Which TCP ports a container listens on, read from the host.

A container's network namespace shows in ``/proc/<pid>/net/tcp`` and ``tcp6`` for any process
in it (its PID 1 as the host sees it: ``ContainerState.pid``). :func:`parse_proc_net_tcp` is
pure (text in, ports out; tested from recorded files under ``tests/fixtures/proc/``);
:func:`listening_tcp_ports` is the thin reader, with the ``/proc`` root as a parameter.

Only sockets in state ``0A`` (LISTEN) count, and not those bound to a loopback address
(``127.0.0.0/8``, ``::1``, ``::ffff:127.x``): traffic from a VIP or a published port arrives on
the container's own address, so a server listening on loopback alone cannot receive it.
"""

from __future__ import annotations

import os

TCP_LISTEN = "0A"


def _loopback(hex_addr: str) -> bool:
    """Whether a /proc/net/tcp{,6} address (hex, 32-bit words in host byte order — little
    endian on every platform we run on) is a loopback address."""
    if len(hex_addr) == 8:  # IPv4: 0100007F is 127.0.0.1
        return bytes.fromhex(hex_addr)[::-1][0] == 127
    if len(hex_addr) == 32:
        raw = b"".join(bytes.fromhex(hex_addr[i:i + 8])[::-1] for i in range(0, 32, 8))
        if raw == bytes(15) + b"\x01":  # ::1
            return True
        return raw[:12] == bytes(10) + b"\xff\xff" and raw[12] == 127  # ::ffff:127.x.y.z
    return False


def parse_proc_net_tcp(text: str) -> frozenset[int]:
    """The local ports in LISTEN state (not on loopback) of a ``/proc/net/tcp`` or ``tcp6``
    text. Lines that do not parse are skipped (the header, a truncated last line)."""
    ports: set[int] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[0].endswith(":") or fields[3] != TCP_LISTEN:
            continue
        addr, _, port = fields[1].partition(":")
        try:
            number = int(port, 16)
            if _loopback(addr):
                continue
        except ValueError:
            continue
        ports.add(number)
    return frozenset(ports)


def listening_tcp_ports(pid: int, proc: str = "/proc") -> frozenset[int] | None:
    """(blocking) The TCP ports listening (not on loopback) in ``pid``'s network namespace;
    None when the process is gone (or not readable)."""
    ports: set[int] = set()
    found = False
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, str(pid), "net", name), encoding="ascii",
                      errors="replace") as f:
                text = f.read()
        except FileNotFoundError:  # no IPv6 in that kernel: tcp6 is missing
            continue
        except OSError:
            return None
        found = True
        ports |= parse_proc_net_tcp(text)
    return frozenset(ports) if found else None
