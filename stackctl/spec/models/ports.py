"""Published ports (``ports``) and exposed ports (``expose``).

Short syntax ``[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTOCOL]`` (IPv6 host
addresses in brackets) becomes the long syntax. As in Docker, a container port range is
expanded into one entry per port (``8000-8001:80-81`` -> 8000:80 and 8001:81); a single
container port with a host range keeps the range as ``published`` (any free port of it).
A host range and a container range of different lengths is an error.
"""

import re
from typing import Any, ClassVar

from stackctl.spec.models.core import PrivateAttr, field_validator

from stackctl.spec.models.base import Choice, Model, Str, describe, fail

PROTOCOLS = ("tcp", "udp", "sctp")
_RANGE = re.compile(r"^([0-9]{1,10})(?:-([0-9]{1,10}))?$")  # ASCII digits, as Go's Atoi


def parse_range(text: str, what: str) -> tuple[int, int]:
    """``"80"`` -> (80, 80); ``"80-90"`` -> (80, 90); checks 1..65535 and order."""
    match = _RANGE.match(text.strip())
    if not match:
        raise fail(f"invalid {what} {describe(text)}: expected a port number or a range "
                   "such as 8000-8010")
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else start
    for port in (start, end):
        if not 1 <= port <= 65535:
            raise fail(f"invalid {what} {describe(text)}: ports are 1 to 65535")
    if end < start:
        raise fail(f"invalid {what} range {describe(text)}: the end is before the start")
    return start, end


def parse_port_short(value: Any) -> dict[str, Any]:
    """The long form of a short port spec (before range expansion)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise fail(f"expected a port spec such as \"8080:80\" or a mapping, got {describe(value)}")
    text = value.strip()
    protocol = "tcp"
    if "/" in text:
        text, protocol = text.rsplit("/", 1)
    parts = text.split(":")
    target = parts[-1]
    published = parts[-2] if len(parts) >= 2 else ""
    host_ip = ":".join(parts[:-2]) if len(parts) >= 3 else ""
    if host_ip.startswith("[") and host_ip.endswith("]"):
        host_ip = host_ip[1:-1]
    out: dict[str, Any] = {"target": target, "protocol": protocol, "mode": "ingress"}
    if published:
        out["published"] = published
    if host_ip:
        out["host_ip"] = host_ip
    return out


class Port(Model):
    """One published port, long syntax (``services.*.ports[]``)."""

    area: ClassVar[str] = "port"

    target: int
    published: str | None = None
    host_ip: str | None = None
    protocol: Choice(*PROTOCOLS) = "tcp"  # type: ignore[valid-type]
    mode: Choice("ingress", "host") = "ingress"  # type: ignore[valid-type]
    name: Str | None = None

    # the end of a container port range, until Service expands it
    _target_end: int | None = PrivateAttr(default=None)

    @field_validator("target", mode="plain")
    @classmethod
    def _target(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise fail(f"expected a port number, got {describe(value)}")
        return parse_range(str(value), "container port")[0]

    @field_validator("published", mode="plain")
    @classmethod
    def _published(cls, value: Any) -> str | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise fail(f"expected a port number or range, got {describe(value)}")
        start, end = parse_range(str(value), "published port")
        return str(start) if start == end else f"{start}-{end}"

    @field_validator("host_ip", mode="plain")
    @classmethod
    def _host_ip(cls, value: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise fail(f"expected an IP address, got {describe(value)}")
        import ipaddress  # here: only files that give host addresses pay its import

        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise fail(f"expected an IP address, got {describe(value)}") from None
        return value

    def finish(self, data: dict[str, Any]) -> None:
        start, end = parse_range(str(data["target"]), "container port")
        if end == start:
            return
        self._target_end = end
        count = end - start + 1
        if self.published and "-" in self.published:
            lo, hi = (int(p) for p in self.published.split("-"))
            if hi - lo + 1 != count:
                raise fail(
                    f"the host port range {self.published} and the container port range "
                    f"{start}-{end} have different lengths")
        elif self.published:
            raise fail(f"a single host port {self.published} cannot publish the container "
                       f"port range {start}-{end}")

    def expand(self) -> "list[Port]":
        """One port per container port of a range (this port alone if it is no range)."""
        if self._target_end is None:
            return [self]
        out = []
        lo = int(self.published.split("-")[0]) if self.published else None
        for offset in range(self._target_end - self.target + 1):
            published = str(lo + offset) if lo is not None else None
            out.append(self.model_copy(update={"target": self.target + offset,
                                               "published": published}))
            out[-1]._target_end = None
        return out


def port_item(value: Any) -> Any:
    """A ports item: the short syntax becomes a mapping; mappings pass as they are."""
    if isinstance(value, dict):
        return value
    return parse_port_short(value)


def expose_item(value: Any) -> str:
    """An ``expose`` item: ``"3000"``, ``3000``, ``"3000-3005"``, ``"53/udp"``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise fail(f"expected a port or a range such as \"3000\" or \"3000-3005/udp\", "
                   f"got {describe(value)}")
    text = str(value).strip()
    port, _, protocol = text.partition("/")
    if protocol and protocol not in PROTOCOLS:
        raise fail(f"invalid protocol {describe(protocol)}: expected one of: "
                   + ", ".join(PROTOCOLS))
    start, end = parse_range(port, "port")
    port_text = str(start) if start == end else f"{start}-{end}"
    return f"{port_text}/{protocol}" if protocol else port_text
