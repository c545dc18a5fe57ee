"""SSH targets (``ssh://user@host[:port]``): parsing and rendering, pure. Shared by the
manager's asyncssh transport and the CLI's OpenSSH one, so both read a node's URL alike.

``host`` may be an alias from ``~/.ssh/config`` (``ssh://n1``): the SSH client resolves
HostName, User, Port, IdentityFile, ProxyJump from there; a user or port in the URL wins over
the config, as on ``ssh``'s command line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from stackctl.transport.errors import SSHTargetError

DEFAULT_REMOTE_COMMAND = "stackctl agent dial-stdio"

#: a shell prefix that sets $p to the stackctl a node runs: the one under the node's prefix
#: when `node bootstrap` installed it there, else the one on PATH
NODE_STACKCTL = 'p="${STACKCTL_PREFIX:-/opt/stackctl}/bin/stackctl"; [ -x "$p" ] || p=stackctl; '
#: what the CLI and the manager run on a node to reach its agent (the manager's own key is
#: authorized with a forced command, which wins over this)
REMOTE_COMMAND = NODE_STACKCTL + 'exec "$p" agent dial-stdio'
CONNECT_TIMEOUT = 10.0
KEEPALIVE_INTERVAL = 15.0  # seconds between keepalives on an idle connection (asyncssh)

_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*\$?$")
_HOST = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?$")


@dataclass(frozen=True, slots=True)
class SSHTarget:
    """Where a node's sshd is: ``host`` (a name, an address or a config alias), and the user
    and port when the URL names them (else the SSH config's, else the defaults)."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, url: str) -> SSHTarget:
        """``ssh://[user@]host[:port]`` (IPv6 in brackets). :class:`SSHTargetError` names the
        bad URL and what is wrong with it."""
        def bad(why: str) -> SSHTargetError:
            return SSHTargetError(f"invalid SSH URL {url!r}: {why}",
                                  hint="write it as ssh://user@host or ssh://user@host:port")

        if not isinstance(url, str) or not url.startswith("ssh://"):
            raise bad("it must start with ssh://")
        rest = url[len("ssh://"):]
        if rest.endswith("/"):
            rest = rest[:-1]
        if "/" in rest or "?" in rest or "#" in rest:
            raise bad("a path, query or fragment is not allowed")
        user: str | None = None
        if "@" in rest:
            user, rest = rest.rsplit("@", 1)
            if ":" in user:
                raise bad("a password in the URL is not supported (use a key or ssh-agent)")
            if not _USER.match(user):
                raise bad(f"{user!r} is not a valid user name")
        port: int | None = None
        if rest.startswith("["):
            end = rest.find("]")
            if end < 0:
                raise bad("an IPv6 address needs a closing ]")
            host, tail = rest[1:end], rest[end + 1:]
            if not host or not all(c in "0123456789abcdefABCDEF:." for c in host):
                raise bad(f"{host!r} is not an IPv6 address")
            if tail and not tail.startswith(":"):
                raise bad(f"unexpected {tail!r} after the address")
            port_text = tail[1:] if tail else None
        else:
            host, _, port_text = rest.partition(":")
            port_text = port_text if ":" in rest else None
            if not host:
                raise bad("the host is missing")
            if not _HOST.match(host):
                raise bad(f"{host!r} is not a valid host name or address")
        if port_text is not None:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise bad(f"port {port_text!r} is not a number from 1 to 65535")
            port = int(port_text)
        return cls(host=host, user=user, port=port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"ssh://{user}{host}{port}"

    def __str__(self) -> str:
        return self.url

    def openssh_args(self) -> list[str]:
        """The destination as ``ssh`` takes it: ``[-l USER] [-p PORT] HOST``."""
        args: list[str] = []
        if self.user:
            args += ["-l", self.user]
        if self.port is not None:
            args += ["-p", str(self.port)]
        return args + ["--", self.host]


@dataclass(frozen=True)
class SSHOptions:
    """How to reach nodes, for both SSH clients (asyncssh in :mod:`.ssh`, OpenSSH in
    :mod:`.openssh`). ``None`` means "as ssh would": the SSH config's value, else the default
    (``~/.ssh/config``, the user's keys and ssh-agent, ``~/.ssh/known_hosts``)."""

    config: str | None = None  # an ssh_config file instead of ~/.ssh/config
    identity: str | None = None  # a private key file, tried before the config's and defaults
    known_hosts: str | None = None  # a known_hosts file instead of the config's / default
    connect_timeout: float = CONNECT_TIMEOUT
    remote_command: str = DEFAULT_REMOTE_COMMAND
    keepalive_interval: float = KEEPALIVE_INTERVAL

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **kw) -> SSHOptions:
        """From ``STACKCTL_SSH_CONFIG``, ``STACKCTL_SSH_IDENTITY``, ``STACKCTL_SSH_KNOWN_HOSTS``
        (``scripts/demo-cluster env`` prints the first), unless given in ``kw``."""
        env = os.environ if environ is None else environ
        values = {"config": env.get("STACKCTL_SSH_CONFIG") or None,
                  "identity": env.get("STACKCTL_SSH_IDENTITY") or None,
                  "known_hosts": env.get("STACKCTL_SSH_KNOWN_HOSTS") or None}
        values.update(kw)
        return cls(**values)
