"""SSH targets and options (pure), and how OpenSSH's own failures are read (recorded stderr)."""

from __future__ import annotations

import pytest

from stackctl.transport.errors import (HostKeyChanged, HostKeyUnknown, NodeUnreachable,
                                       SSHError, SSHTargetError)
from stackctl.transport.openssh import failure_error, ssh_argv
from stackctl.transport.target import SSHOptions, SSHTarget


@pytest.mark.parametrize("url, host, user, port", [
    ("ssh://root@10.0.0.2", "10.0.0.2", "root", None),
    ("ssh://root@10.0.0.2:2222", "10.0.0.2", "root", 2222),
    ("ssh://n1", "n1", None, None),
    ("ssh://deploy@node-a.example.com:22/", "node-a.example.com", "deploy", 22),
    ("ssh://admin@[fd00::2]:2200", "fd00::2", "admin", 2200),
    ("ssh://[::1]", "::1", None, None),
])
def test_parse(url, host, user, port):
    t = SSHTarget.parse(url)
    assert (t.host, t.user, t.port) == (host, user, port)
    assert SSHTarget.parse(t.url) == t


@pytest.mark.parametrize("url, why", [
    ("root@10.0.0.2", "it must start with ssh://"),
    ("http://10.0.0.2", "it must start with ssh://"),
    ("ssh://", "the host is missing"),
    ("ssh://root@", "the host is missing"),
    ("ssh://root:secret@h", "a password in the URL is not supported"),
    ("ssh://h:0", "port '0' is not a number from 1 to 65535"),
    ("ssh://h:70000", "port '70000' is not a number from 1 to 65535"),
    ("ssh://h:ssh", "port 'ssh' is not a number"),
    ("ssh://h/path", "a path, query or fragment is not allowed"),
    ("ssh://bad host", "'bad host' is not a valid host name"),
    ("ssh://[fd00::2", "an IPv6 address needs a closing ]"),
    ("ssh://-oProxyCommand=x", "is not a valid host name"),
])
def test_parse_errors_name_the_url(url, why):
    with pytest.raises(SSHTargetError) as err:
        SSHTarget.parse(url)
    assert err.value.message.startswith(f"invalid SSH URL {url!r}: ")
    assert why in err.value.message
    assert err.value.exit_code == 2


def test_options_from_env():
    opts = SSHOptions.from_env({"STACKCTL_SSH_CONFIG": "/c", "STACKCTL_SSH_KNOWN_HOSTS": "/k"},
                               connect_timeout=3)
    assert (opts.config, opts.identity, opts.known_hosts, opts.connect_timeout) == \
        ("/c", None, "/k", 3)


def test_ssh_argv_checks_host_keys_strictly_whatever_the_config():
    argv = ssh_argv(SSHTarget.parse("ssh://root@h:2222"),
                    SSHOptions(config="/cfg", identity="/key", known_hosts="/kh",
                               connect_timeout=2.5))
    assert argv == ["ssh", "-T", "-x", "-e", "none", "-F", "/cfg", "-i", "/key",
                    "-o", "UserKnownHostsFile=/kh", "-o", "StrictHostKeyChecking=yes",
                    "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
                    "-l", "root", "-p", "2222", "--", "h", "stackctl agent dial-stdio"]


CHANGED = """\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:xuTTKExjGmNpFsNPpd+KkvRoBNhjJJNBVDcQfCjnZSM.
Please contact your system administrator.
Add correct host key in /tmp/kh2 to get rid of this message.
Offending ED25519 key in /tmp/kh2:1
Host key for 127.0.0.1 has changed and you have requested strict checking.
Host key verification failed.
"""


def test_openssh_changed_host_key():
    exc = failure_error(SSHTarget.parse("ssh://root@127.0.0.1:1"), SSHOptions(), CHANGED)
    assert isinstance(exc, HostKeyChanged)
    assert exc.message.startswith("host key of 127.0.0.1:1 has CHANGED (now SHA256:xuTTKExjGmNp"
                                  "FsNPpd+KkvRoBNhjJJNBVDcQfCjnZSM), refusing to connect")
    assert "ssh-keygen -R '[127.0.0.1]:1' -f /tmp/kh2" in exc.message


def test_openssh_unknown_host_key():
    stderr = ("No ED25519 host key is known for [127.0.0.1]:1 and you have requested strict "
              "checking.\r\nHost key verification failed.\r\n")
    exc = failure_error(SSHTarget.parse("ssh://root@127.0.0.1:1"),
                        SSHOptions(known_hosts="/tmp/none"), stderr)
    assert isinstance(exc, HostKeyUnknown)  # no fingerprint: nothing listens on port 1
    assert exc.message.startswith("host key of 127.0.0.1:1 is unknown, not in /tmp/none; ")
    assert "ssh-keyscan -p 1 127.0.0.1 >> /tmp/none" in exc.message


@pytest.mark.parametrize("stderr, cls", [
    ("root@10.0.0.2: Permission denied (publickey).\r\n", SSHError),
    ("ssh: connect to host 10.0.0.2 port 22: Connection refused\r\n", NodeUnreachable),
    ("ssh: Could not resolve hostname nope: Name or service not known\r\n", NodeUnreachable),
    ("something else entirely\n", type(None)),
])
def test_openssh_other_failures(stderr, cls):
    exc = failure_error(SSHTarget.parse("ssh://root@10.0.0.2"), SSHOptions(), stderr, name="n2")
    assert isinstance(exc, cls)
    if isinstance(exc, NodeUnreachable):
        assert exc.message == f"node n2 is unreachable: {stderr.strip()}"
