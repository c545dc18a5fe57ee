"""`--network container:NAME` as root: the new container joins the named container's network
namespace; NAME is a name, a full id or a unique id prefix."""

from __future__ import annotations

import time

import pytest
from test_cli_containers import IMG, cli  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


def _links(out: str) -> list[str]:
    # "1: lo: <LOOPBACK,...>" -> "lo"; interface names and their addresses
    return [line.split(":")[1].strip() for line in out.splitlines() if line[:1].isdigit()]


def test_network_container_shares_the_namespace(cli):  # noqa: F811
    cid = cli("run", "-d", "--name", "srv", "--network", "none", IMG,
              "sh", "-c", "echo hi | nc -l -p 1234", check=0).stdout.strip()
    a_links = cli("exec", "srv", "ip", "addr", check=0).stdout
    a_inode = cli("exec", "srv", "readlink", "/proc/self/ns/net", check=0).stdout.strip()
    for ref in ("srv", cid, cid[:10]):
        p = cli("run", "--rm", "--network", f"container:{ref}", IMG,
                "readlink", "/proc/self/ns/net", check=0)
        assert p.stdout.strip() == a_inode, ref
    p = cli("run", "--rm", "--network", "container:srv", IMG, "ip", "addr", check=0)
    assert _links(p.stdout) == _links(a_links)
    # a's listener on its loopback answers a client in b
    deadline = time.monotonic() + 10
    while True:
        p = cli("run", "--rm", "--network", "container:srv", IMG,
                "sh", "-c", "nc 127.0.0.1 1234 </dev/null")
        if "hi" in p.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert p.returncode == 0 and "hi" in p.stdout, (p.stdout, p.stderr)
    # the container's record keeps the full id
    assert cli("inspect", "-f", "{{.HostConfig.NetworkMode}}", "srv", check=0).stdout.strip() == "none"


def test_network_container_errors(cli):  # noqa: F811
    p = cli("run", "--rm", "--network", "container:nosuch", IMG, "true")
    assert p.returncode == 125 and p.stderr.strip() == "error: no such container: nosuch", p.stderr
    cli("container", "create", "--name", "idle", "--network", "none", IMG, "true", check=0)
    p = cli("run", "--rm", "--network", "container:idle", IMG, "true")
    assert p.returncode == 125 and p.stderr.splitlines()[0] == "error: container idle is not running", p.stderr
    assert cli("ps", "-aq").stdout.split() == [cli("ps", "-aq", "--filter", "name=idle").stdout.strip()]
