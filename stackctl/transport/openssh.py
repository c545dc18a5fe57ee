"""The CLI's SSH transport: OpenSSH's ``ssh`` as a subprocess running ``stackctl agent
dial-stdio`` on the node, its stdin/stdout as a blocking byte channel with a socket's shape
(``sendall``, ``recv``, ``settimeout``, ``close``) for :class:`~stackctl.agent.client.AgentClient`.

Why OpenSSH here and asyncssh in the manager (docs/transport.md): the CLI runs on the user's
machine, where ``ssh`` already works — every option of their config (ProxyJump, ProxyCommand,
Match, ControlMaster/ControlPersist, certificates, hardware keys, ssh-agent), exactly as their
shell uses it — and a blocking CLI then imports neither asyncssh (~150 ms) nor an event loop.

Host keys are checked strictly whatever the user's config says (``-o
StrictHostKeyChecking=yes``: ``accept-new`` or ``no`` there would accept a key silently) and
without prompts (``BatchMode=yes``: stdin carries the protocol). ssh's failures (exit 255) are
mapped to the same one-line errors as the manager's: :class:`HostKeyUnknown`,
:class:`HostKeyChanged`, :class:`SSHError`, :class:`NodeUnreachable`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import select
import signal
import socket
import subprocess
from dataclasses import dataclass

from stackctl.transport.errors import (HostKeyChanged, HostKeyUnknown, NodeUnreachable,
                                       SSHError)
from stackctl.transport.target import SSHOptions, SSHTarget

STDERR_KEEP = 8192


def ssh_argv(target: SSHTarget, options: SSHOptions, command: str | None = None) -> list[str]:
    """The ``ssh`` command line (pure)."""
    argv = ["ssh", "-T", "-x", "-e", "none"]
    if options.config:
        argv += ["-F", options.config]
    if options.identity:
        argv += ["-i", options.identity]
    if options.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={options.known_hosts}"]
    argv += ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             "-o", f"ConnectTimeout={max(1, math.ceil(options.connect_timeout))}"]
    return argv + target.openssh_args() + [command or options.remote_command]


# -- ssh's own failures ------------------------------------------------------------------------

_CHANGED = re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED")
_NEW_FP = re.compile(r"key sent by the remote host is\s*\n?\s*(SHA256:[A-Za-z0-9+/=]+)")
_OFFENDING = re.compile(r"Offending \S+ key in (\S+?):\d+")
_NO_KEY = re.compile(r"No (\S+) host key is known for (\S+) and you have requested strict")
_VERIFY_FAILED = "Host key verification failed"
_UNREACHABLE = ("Connection refused", "Connection timed out", "No route to host",
                "Could not resolve hostname", "Network is unreachable", "Connection reset",
                "Connection closed by", "timed out during banner exchange")


@dataclass(frozen=True)
class _Resolved:
    host: str
    port: int
    known_hosts: str | None


def resolve(target: SSHTarget, options: SSHOptions) -> _Resolved:
    """HostName, Port and the first UserKnownHostsFile as ssh sees them (``ssh -G``)."""
    argv = ssh_argv(target, options)[:-1]
    argv.insert(1, "-G")
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    conf: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        conf.setdefault(key.lower(), value)
    known = (conf.get("userknownhostsfile") or "").split()
    return _Resolved(host=conf.get("hostname", target.host),
                     port=int(conf.get("port", target.port or 22)),
                     known_hosts=os.path.expanduser(known[0]) if known else None)


def scan_fingerprint(host: str, port: int, key_type: str | None = None) -> str | None:
    """The SHA256 fingerprint of the host's key (``ssh-keyscan | ssh-keygen -lf -``), for an
    error message only; None when it cannot be read."""
    try:
        scan = subprocess.run(["ssh-keyscan", "-T", "3", "-p", str(port), host],
                              capture_output=True, timeout=8).stdout
        if not scan:
            return None
        listing = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", "-"], input=scan,
                                 capture_output=True, timeout=5).stdout.decode()
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = []
    for line in listing.splitlines():  # "256 SHA256:... host (ED25519)"
        parts = line.split()
        if len(parts) >= 2:
            found.append((parts[-1].strip("()").upper(), parts[1]))
    for kind, fp in found:
        if key_type and kind == key_type.upper():
            return fp
    return found[0][1] if found else None


def failure_error(target: SSHTarget, options: SSHOptions, stderr: str, *,
                  name: str | None = None) -> Exception | None:
    """The error for ssh's exit 255 with ``stderr``, or None if it is not ssh's own failure."""
    name = name or target.url
    if _CHANGED.search(stderr):
        r = resolve(target, options)
        fp = _NEW_FP.search(stderr)
        offending = _OFFENDING.search(stderr)
        return HostKeyChanged(r.host, r.port, fp.group(1) if fp else None,
                              offending.group(1) if offending else r.known_hosts)
    if _VERIFY_FAILED in stderr:
        r = resolve(target, options)
        m = _NO_KEY.search(stderr)
        fp = scan_fingerprint(r.host, r.port, m.group(1) if m else None)
        return HostKeyUnknown(r.host, r.port, fp, r.known_hosts)
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "ssh failed"
    if "Permission denied" in stderr:
        return SSHError(f"ssh to {target.url} was refused: {last}",
                        hint="check that a key of yours is in the node's authorized_keys "
                             "(`ssh -v` shows which keys are tried)")
    if any(s in stderr for s in _UNREACHABLE):
        return NodeUnreachable(name, last, hint=f"check that `ssh {target.url}` works")
    return None


# -- the channel -------------------------------------------------------------------------------


class OpenSSHChannel:
    """A running ``ssh ... dial-stdio`` as a blocking, socket-shaped byte channel."""

    def __init__(self, target: SSHTarget, options: SSHOptions | None = None, *,
                 name: str | None = None) -> None:
        self.target = target
        self.options = options or SSHOptions()
        self.name = name or target.url
        self.timeout: float | None = None
        self.proc: subprocess.Popen | None = None
        self._stderr = b""

    def open(self) -> OpenSSHChannel:
        argv = ssh_argv(self.target, self.options)
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0, close_fds=True,
                                         start_new_session=True)
        except OSError as exc:
            raise SSHError(f"cannot run {argv[0]}: {exc.strerror or exc}",
                           hint="install OpenSSH's client (apt-get install openssh-client)"
                           ) from None
        return self

    # -- the socket shape AgentClient uses --

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def sendall(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except BrokenPipeError:
            self._fail_if_ssh_failed()
            raise

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end. ssh's own failure raises its error;
        ``socket.timeout`` after :attr:`timeout` seconds without data."""
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout.fileno()
        err = self.proc.stderr.fileno() if self.proc.stderr else None
        poller = select.poll()
        poller.register(out, select.POLLIN)
        if err is not None:
            poller.register(err, select.POLLIN)
        timeout_ms = None if self.timeout is None else int(self.timeout * 1000)
        while True:
            ready = poller.poll(timeout_ms)
            if not ready:
                raise socket.timeout("timed out")
            for fd, _mask in ready:
                if fd == err:
                    chunk = os.read(err, 4096)
                    if chunk:
                        self._stderr = (self._stderr + chunk)[-STDERR_KEEP:]
                    else:
                        poller.unregister(err)
                        err = None
            if any(fd == out for fd, _ in ready):
                data = os.read(out, size)
                if not data:
                    self._fail_if_ssh_failed()
                return data

    def _fail_if_ssh_failed(self) -> None:
        """At EOF: if ssh itself failed (exit 255), raise what it means."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return
        if self.proc.stderr is not None:
            with contextlib.suppress(OSError):
                self._stderr += self.proc.stderr.read() or b""
        stderr = self._stderr.decode(errors="replace")
        if rc == 255:
            exc = failure_error(self.target, self.options, stderr, name=self.name)
            if exc is not None:
                raise exc
        if rc != 0:
            tail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
            raise NodeUnreachable(
                self.name, f"`{self.options.remote_command}` there exited with status {rc}"
                           + (f": {tail}" if tail else ""),
                hint=f"check that `ssh {self.target.url} {self.options.remote_command}` works "
                     f"(stackctl installed there: `stackctl node bootstrap`)")

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for f in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                if f is not None:
                    f.close()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def fileno(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.fileno()


def open_channel(target: SSHTarget, options: SSHOptions | None = None, *,
                 name: str | None = None) -> OpenSSHChannel:
    return OpenSSHChannel(target, options, name=name).open()




def ssh_agent_client(target: SSHTarget, options: SSHOptions | None = None, *,
                     node: str | None = None, timeout: float | None = 30.0):
    """A blocking :class:`~stackctl.agent.client.AgentClient` to the agent of the node at
    ``target`` through OpenSSH (not yet connected: use it in ``with``)."""
    from stackctl.agent.client import AgentClient

    return AgentClient.over_ssh(target, options, timeout=timeout, name=node)
