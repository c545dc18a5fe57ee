"""Sizes and durations as Docker prints them (go-units), shared by every table of the CLI."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def custom_size(size: float, base: float, units: tuple[str, ...], precision: int = 4) -> str:
    """go-units' CustomSize: divide by ``base`` until below it, ``precision`` significant digits."""
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    text = f"{size:.{precision}g}"
    if "e" in text:  # only for absurd sizes; keep it readable
        text = f"{size:.0f}"
    return f"{text}{units[i]}"


def human_size(n: float, precision: int = 4) -> str:
    """Decimal size: ``4.26MB`` (``docker images`` asks for precision 3, ``system df`` 4)."""
    return custom_size(float(n), 1000.0, DECIMAL, precision)


def bytes_size(n: float) -> str:
    """Binary size as ``docker stats`` prints memory: ``1.5MiB``."""
    return custom_size(float(n), 1024.0, BINARY)


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(math.floor(seconds / 3600 + 0.5))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ports_column(settings: dict[str, Any] | None, extra: Iterable[Any] = ()) -> str:
    """``docker ps`` PORTS (the CLI's and the agent's) from :func:`stackctl.net.runtime_hooks.network_settings`: ``0.0.0.0:8080->80/tcp, 443/tcp``.

    ``extra``: more bindings with ``host_ip``, ``host_port``, ``container_port`` and
    ``protocol`` (a stack service's published ports, :class:`stackctl.net.model.PortBinding`),
    shown like the container's own, as ``docker compose ps`` shows a service's ports."""
    ports: dict[str, Any] = dict((settings or {}).get("Ports") or {})
    for pb in extra:
        key = f"{pb.container_port}/{pb.protocol}"
        binding = {"HostIp": pb.host_ip or "0.0.0.0", "HostPort": str(pb.host_port)}
        if binding not in (ports.get(key) or []):
            ports[key] = [*(ports.get(key) or []), binding]
    out = []
    for key, bindings in sorted(ports.items(), key=lambda kv: _port_key(kv[0])):
        if not bindings:
            out.append(key)
        for b in bindings or []:
            out.append(f"{b['HostIp']}:{b['HostPort']}->{key}")
    return ", ".join(out)


def _port_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return (int(port) if port.isdigit() else 0, proto)
