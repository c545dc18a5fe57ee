"""Published ports: parse ``-p [IP:][HOST:]CONTAINER[/tcp|udp]`` (with ranges), and resolve
them — plus ``-P`` for exposed ports — into concrete :class:`PortBinding`s.

The parser and :func:`resolve` are pure; whether a host port is free is asked through the
``is_free`` callable, which in production is :func:`port_is_free` (it binds the port, TCP or
UDP, and lets go). Ports are forwarded by DNAT rules (see :mod:`stackctl.net.firewall`), not
by a proxy holding the socket, so ports published by other containers are checked from state.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stackctl.net.model import NetworkError, PortBinding

EPHEMERAL = (49153, 60999)  # where -P and HOST-less specs find free host ports
MAX_RANGE = 1024

_SPEC = re.compile(
    # [0-9], not \d: Python's int() takes Arabic-Indic and other digits, Docker does not
    r"^(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]+):)??(?:(?P<host>[0-9]*(?:-[0-9]+)?):)?"
    r"(?P<container>[0-9]+(?:-[0-9]+)?)(?:/(?P<proto>[a-zA-Z]+))?$"
)


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One -p argument, parsed. ``host`` is None when the host port is to be chosen."""

    host_ip: str
    host: tuple[int, int] | None
    container: tuple[int, int]
    protocol: str = "tcp"

    @property
    def text(self) -> str:
        def rng(r):
            return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"

        h = rng(self.host) if self.host else ""
        ip = f"{self.host_ip}:" if self.host_ip else ""
        return f"{ip}{h}:{rng(self.container)}/{self.protocol}"


def _range(text: str, what: str, spec: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    if not lo or len(lo) > 5 or len(hi) > 5:  # "-1:80", or more digits than a port has
        raise NetworkError(f"invalid port spec {spec!r}: {what} port must be 1-65535")
    a, b = int(lo), int(hi or lo)
    if not (1 <= a <= 65535 and 1 <= b <= 65535):
        raise NetworkError(f"invalid port spec {spec!r}: {what} port must be 1-65535")
    if b < a:
        raise NetworkError(f"invalid port spec {spec!r}: {what} range {text} ends before it starts")
    if b - a >= MAX_RANGE:
        raise NetworkError(f"invalid port spec {spec!r}: {what} range is larger than {MAX_RANGE} ports")
    return a, b


def parse(spec: str) -> PortSpec:
    m = _SPEC.match(spec.strip())
    if not m:
        raise NetworkError(
            f"invalid port spec {spec!r}: expected [IP:][HOST:]CONTAINER[/tcp|udp], e.g. 8080:80"
        )
    proto = (m["proto"] or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise NetworkError(f"invalid port spec {spec!r}: protocol must be tcp or udp, not {proto!r}")
    ip = m["ip"] or ""
    if ip:
        if ip.startswith("["):
            raise NetworkError(f"invalid port spec {spec!r}: IPv6 host addresses are not supported yet")
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise NetworkError(f"invalid port spec {spec!r}: {ip!r} is not an IPv4 address") from None
        if ip == "0.0.0.0":
            ip = ""
    container = _range(m["container"], "container", spec)
    host = _range(m["host"], "host", spec) if m["host"] else None
    if host is not None:
        hn, cn = host[1] - host[0], container[1] - container[0]
        if cn != 0 and hn != cn:
            raise NetworkError(
                f"invalid port spec {spec!r}: host and container ranges differ in length"
            )
    return PortSpec(ip, host, container, proto)


def parse_exposed(items: Iterable[str]) -> list[PortSpec]:
    """Image EXPOSE entries (``"80/tcp"``, ``"53/udp"``, ``"8000-8002"``) as HOST-less specs."""
    return [parse(item) for item in items]


def resolve(
    specs: Iterable[PortSpec],
    *,
    is_free: Callable[[str, int, str], bool],
    published: Iterable[PortBinding] = (),
    ephemeral: tuple[int, int] = EPHEMERAL,
) -> list[PortBinding]:
    """Concrete bindings for the specs, every host port checked free; refuses with a clear
    error before anything is created. ``published`` are the bindings other containers hold."""
    taken = {(p.host_ip, p.host_port, p.protocol) for p in published}
    out: list[PortBinding] = []

    def conflict(ip: str, port: int, proto: str) -> str | None:
        for tip, tport, tproto in taken:
            if tport == port and tproto == proto and (not tip or not ip or tip == ip):
                return "is already published by another container or service"
        if not is_free(ip, port, proto):
            return "is already in use on {} (by another process)".format(ip or "0.0.0.0")
        return None

    def take(ip: str, port: int, proto: str, cport: int) -> None:
        taken.add((ip, port, proto))
        out.append(PortBinding(ip, port, cport, proto))  # type: ignore[arg-type]

    for spec in specs:
        cports = range(spec.container[0], spec.container[1] + 1)
        if spec.host is not None and (spec.container[0] == spec.container[1]) and spec.host[0] != spec.host[1]:
            # HOST range, one container port: the first free host port of the range
            for port in range(spec.host[0], spec.host[1] + 1):
                if conflict(spec.host_ip, port, spec.protocol) is None:
                    take(spec.host_ip, port, spec.protocol, spec.container[0])
                    break
            else:
                raise NetworkError(
                    f"no free host port in {spec.host[0]}-{spec.host[1]}/{spec.protocol} "
                    f"for {spec.text}; choose another host port range"
                )
            continue
        for i, cport in enumerate(cports):
            if spec.host is not None:
                port = spec.host[0] + i
                why = conflict(spec.host_ip, port, spec.protocol)
                if why:
                    raise NetworkError(f"port {port}/{spec.protocol} {why}; choose another host port")
                take(spec.host_ip, port, spec.protocol, cport)
            else:
                for port in range(ephemeral[0], ephemeral[1] + 1):
                    if conflict(spec.host_ip, port, spec.protocol) is None:
                        take(spec.host_ip, port, spec.protocol, cport)
                        break
                else:
                    raise NetworkError(f"no free host port left in {ephemeral[0]}-{ephemeral[1]}")
    return out


def port_is_free(ip: str, port: int, protocol: str) -> bool:
    """Bind the port (TCP: with SO_REUSEADDR, so TIME_WAIT leftovers don't count) and let go."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip or "0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            if exc.errno == errno.EADDRNOTAVAIL:
                raise NetworkError(f"cannot publish on {ip}: it is not an address of this host",
                                   hint="leave the IP out to publish on every address") from None
            raise
    return True
