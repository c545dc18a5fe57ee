"""Which registries may be spoken to without verified TLS, and with which CA certificates.

Docker's rules, which stackctl follows:

- TLS is verified against the system's CAs, plus ``ca.crt`` (and a client ``client.cert`` /
  ``client.key`` pair) in ``/etc/stackctl/certs.d/<host[:port]>/`` or Docker's
  ``/etc/docker/certs.d/<host[:port]>/`` (``STACKCTL_CERTS_DIR`` names another such directory,
  looked at first).
- A registry on a loopback address (127.0.0.0/8, ::1, ``localhost``) or listed as insecure may
  use plain HTTP: it is asked over plain HTTP first, and over HTTPS (without verification for
  an insecure one) when that port speaks TLS.
- The insecure list (Docker's ``insecure-registries``) comes from ``STACKCTL_INSECURE_REGISTRIES``
  (comma- or space-separated ``host[:port]`` or CIDR blocks such as ``10.0.0.0/8``) and from
  ``/etc/stackctl/registries.json`` (``{"insecure-registries": [...]}``; the path can be changed
  with ``STACKCTL_REGISTRIES_CONFIG``).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stackctl.errors import StackctlError

DEFAULT_CONFIG = "/etc/stackctl/registries.json"
CERT_DIRS = ("/etc/stackctl/certs.d", "/etc/docker/certs.d")


def split_host(registry: str) -> tuple[str, str]:
    """``host:5000`` -> (host, "5000"); ``[::1]:5000`` -> (::1, "5000")."""
    if registry.startswith("["):
        host, _, rest = registry[1:].partition("]")
        return host, rest.lstrip(":")
    host, _, port = registry.partition(":")
    return host, port


def is_loopback(registry: str) -> bool:
    host, _ = split_host(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_insecure(registry: str, insecure: Iterable[str]) -> bool:
    """True if ``registry`` matches an entry: the same ``host[:port]``, the same host when the
    entry has no port, or an address inside a CIDR entry."""
    host, _ = split_host(registry)
    for entry in insecure:
        entry = entry.strip()
        if not entry:
            continue
        if "/" in entry:
            try:
                net = ipaddress.ip_network(entry, strict=False)
                if ipaddress.ip_address(host) in net:
                    return True
            except ValueError:
                continue
        elif entry == registry or (":" not in entry.strip("[]") and split_host(entry)[0] == host):
            return True
    return False


@dataclass(frozen=True)
class RegistryConfig:
    insecure: tuple[str, ...] = ()

    def plain_http_allowed(self, registry: str) -> bool:
        return is_loopback(registry) or is_insecure(registry, self.insecure)

    def skip_verify(self, registry: str) -> bool:
        return is_insecure(registry, self.insecure)


def load_config(environ: Mapping[str, str] | None = None) -> RegistryConfig:
    env = os.environ if environ is None else environ
    entries: list[str] = []
    raw = env.get("STACKCTL_INSECURE_REGISTRIES", "")
    entries += [e for e in raw.replace(",", " ").split() if e]
    path = env.get("STACKCTL_REGISTRIES_CONFIG", DEFAULT_CONFIG)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError) as exc:
        raise StackctlError(f"cannot read the registry configuration {path}: {exc}; fix the JSON "
                            '(e.g. {"insecure-registries": ["10.0.0.5:5000"]})') from None
    listed = data.get("insecure-registries", []) if isinstance(data, dict) else []
    if not isinstance(listed, list) or not all(isinstance(e, str) for e in listed):
        raise StackctlError(f"{path}: insecure-registries must be a list of strings")
    entries += listed
    return RegistryConfig(insecure=tuple(entries))


def cert_dirs(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``STACKCTL_CERTS_DIR`` (if set) before the standard certs.d directories."""
    env = os.environ if environ is None else environ
    extra = env.get("STACKCTL_CERTS_DIR", "")
    return ((extra,) if extra else ()) + CERT_DIRS


def cert_files(registry: str, dirs: Iterable[str] | None = None) -> tuple[str | None, tuple[str, str] | None]:
    """(CA bundle, (client cert, client key)) for ``registry`` from the certs.d directories."""
    for d in cert_dirs() if dirs is None else dirs:
        base = os.path.join(d, registry)
        ca = os.path.join(base, "ca.crt")
        cert, key = os.path.join(base, "client.cert"), os.path.join(base, "client.key")
        if os.path.isdir(base):
            return (ca if os.path.exists(ca) else None,
                    (cert, key) if os.path.exists(cert) and os.path.exists(key) else None)
    return None, None
