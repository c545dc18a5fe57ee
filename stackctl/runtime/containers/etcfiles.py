"""The contents of a container's /etc/hostname, /etc/hosts and /etc/resolv.conf, as Docker
writes them. Pure: the caller reads the host's files and writes the results into the
container's directory; the setup child bind-mounts them over the image's files."""

from __future__ import annotations

DEFAULT_DNS = ["8.8.8.8", "8.8.4.4"]

_HOSTS_BASE = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def hostname_file(hostname: str) -> str:
    return hostname + "\n"


def hosts_file(hostname: str, extra_hosts: list[str], *, network: str, host_hosts: str = "", ip: str = "") -> str:
    """``network == "host"`` uses the host's file (as Docker does); otherwise the standard
    localhost lines, the container's own address if it has one, then ``extra_hosts``
    (``name:ip``; ``ip`` may be IPv6)."""
    if network == "host":
        text = host_hosts if host_hosts.endswith("\n") or not host_hosts else host_hosts + "\n"
    else:
        text = _HOSTS_BASE
        if ip:
            text += f"{ip}\t{hostname}\n"
    for entry in extra_hosts:
        name, sep, addr = entry.partition(":")
        if not sep or not name or not addr:
            raise ValueError(f"invalid extra host {entry!r}: expected NAME:IP")
        text += f"{addr}\t{name}\n"
    return text


def parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    ns, search, opts = [], [], []
    for line in text.splitlines():
        f = line.split()
        if not f or f[0].startswith(("#", ";")):
            continue
        if f[0] == "nameserver" and len(f) > 1:
            ns.append(f[1])
        elif f[0] in ("search", "domain"):
            search = f[1:]
        elif f[0] == "options":
            opts += f[1:]
    return ns, search, opts


def resolv_file(host_resolv: str, *, dns: list[str], dns_search: list[str], dns_options: list[str], network: str) -> str:
    """Docker's rules: ``dns``/``dns_search``/``dns_options`` replace the host's values; in a
    container with its own network namespace the host's loopback resolvers (127.0.0.53 of
    systemd-resolved, ::1) cannot be reached, so they are dropped and Google's public
    resolvers are used if nothing is left."""
    ns, search, opts = parse_resolv(host_resolv)
    if dns:
        ns = list(dns)
    elif network != "host":
        ns = [n for n in ns if not n.startswith("127.") and n != "::1"]
        if not ns:
            ns = list(DEFAULT_DNS)
    if dns_search:
        search = [] if dns_search == ["."] else list(dns_search)
    if dns_options:
        opts = list(dns_options)
    lines = [f"nameserver {n}" for n in ns]
    if search:
        lines.append("search " + " ".join(search))
    if opts:
        lines.append("options " + " ".join(opts))
    return "\n".join(lines) + "\n"
