"""Errors of the transport layer: a node that cannot be reached, a request that took too long,
and the SSH host-key refusals. Each is one line (what, where, what to do), in the one
:class:`~stackctl.errors.StackctlError` family. No I/O, no imports beyond the family."""

from __future__ import annotations

from stackctl.errors import StackctlError


class NodeUnreachable(StackctlError):
    """A node's agent cannot be reached, or the connection to it was lost. Every request that
    was pending on the lost connection fails with this one error."""

    def __init__(self, node: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"node {node} is unreachable: {reason}",
                         hint=hint or f"check that {node} is up and reachable "
                                      f"(`stackctl node inspect {node}`), then retry")
        self.node = node
        self.reason = reason


class RequestTimeout(StackctlError):
    """A request to a node's agent got no answer within the time its caller allowed."""

    def __init__(self, node: str, method: str, seconds: float) -> None:
        super().__init__(f"node {node} did not answer {method} within {seconds:g} s",
                         hint=f"the node's agent may be hung: see `stackctl node inspect "
                              f"{node}` and its agent log")
        self.node = node
        self.method = method
        self.seconds = seconds


class SSHTargetError(StackctlError):
    """An SSH target (``ssh://user@host[:port]``) that cannot be parsed."""

    exit_code = 2


class SSHError(StackctlError):
    """An SSH connection failed (refused, timed out, authentication, the remote command)."""


class HostKeyError(SSHError):
    """The node's host key is not the one we trust; never accepted silently. The message is
    one line: host:port, the fingerprint offered, and how to accept it explicitly."""

    def __init__(self, message: str, *, host: str, port: int,
                 fingerprint: str | None) -> None:
        super().__init__(message)
        self.host = host
        self.port = port
        self.fingerprint = fingerprint


def _keyscan(host: str, port: int, known_hosts: str | None = None) -> str:
    return f"ssh-keyscan -p {port} {host} >> {known_hosts or '~/.ssh/known_hosts'}"


class HostKeyUnknown(HostKeyError):
    """The host is not in known_hosts."""

    def __init__(self, host: str, port: int, fingerprint: str | None = None,
                 known_hosts: str | None = None) -> None:
        fp = f" (fingerprint {fingerprint})" if fingerprint else ""
        super().__init__(
            f"host key of {host}:{port} is unknown{fp}, not in "
            f"{known_hosts or 'known_hosts'}; after checking the fingerprint with the host's "
            f"owner, accept it with `{_keyscan(host, port, known_hosts)}` "
            f"(or `stackctl node add ... --accept-host-key`)",
            host=host, port=port, fingerprint=fingerprint)


class HostKeyChanged(HostKeyError):
    """The host offered a key other than the one known_hosts holds: possibly an attack."""

    def __init__(self, host: str, port: int, fingerprint: str | None = None,
                 known_hosts: str | None = None) -> None:
        fp = f" (now {fingerprint})" if fingerprint else ""
        where = known_hosts or "~/.ssh/known_hosts"
        super().__init__(
            f"host key of {host}:{port} has CHANGED{fp}, refusing to connect (the connection "
            f"may be intercepted); if the host was reinstalled, remove the old key with "
            f"`ssh-keygen -R '{_known_name(host, port)}' -f {where}` and accept the new one "
            f"after checking its fingerprint: `{_keyscan(host, port, known_hosts)}`",
            host=host, port=port, fingerprint=fingerprint)


def _known_name(host: str, port: int) -> str:
    """How known_hosts names a host: ``host`` on port 22, ``[host]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"
