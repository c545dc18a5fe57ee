"""``stackctl run --network NAME -p ...`` end to end, as root: a busybox httpd on a user network,
published on 127.0.0.1, reached from the host (Python's urllib), by name from a container on the
same network with busybox `wget` (names resolved by the on-demand DNS daemon), not from a
container on another network; ps/inspect show it; nothing is left after rm + network rm.
(No `wget -T`: Debian 12's busybox-static `wget` dies with SIGSEGV when given a timeout.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from stackctl.net import dnsd, gc

from conftest import leftovers  # noqa: E402

pytestmark = pytest.mark.root

IMG = "bb:latest"
GET_BY_NAME = ('ip=$(nslookup "$1" | sed -n "s/^Address: \\([0-9.]*\\)$/\\1/p" | tail -n 1); '
               '[ -n "$ip" ] || { echo "cannot resolve $1"; exit 2; }; '
               'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 3 "$ip" 80')
GET_BY_IP = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 2 "$1" 80'


@pytest.fixture
def cli(net_paths, busybox_rootfs):
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore

    os.makedirs(os.path.join(busybox_rootfs, "www"))
    with open(os.path.join(busybox_rootfs, "www", "index.html"), "w") as f:
        f.write("hello from the front\n")
    import_rootfs(ImageStore(net_paths.images), busybox_rootfs, IMG, changes=['CMD ["sh"]'])
    env = dict(os.environ, STACKCTL_STATE_DIR=net_paths.state, STACKCTL_RUN_DIR=net_paths.run,
               STACKCTL_CGROUP_PARENT=net_paths.cgroup_parent)

    def run(*args, timeout=30, check=None):
        p = subprocess.run([sys.executable, "-m", "stackctl", *args], env=env, capture_output=True, text=True,
                           timeout=timeout)
        if check is not None:
            assert p.returncode == check, (args, p.returncode, p.stdout, p.stderr)
        return p

    run.paths = net_paths
    try:
        yield run
    finally:
        ids = run("ps", "-aq", "--no-trunc").stdout.split()
        if ids:
            run("rm", "-f", "-v", *ids)
        for n in ("front", "back"):
            run("network", "rm", n)
        dnsd.stop(net_paths)
        gc.gc_stale(net_paths, live_containers=[])


def _get(url: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _wait(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_run_on_network_with_published_port(cli):
    cli("network", "create", "front", check=0)
    cli("network", "create", "back", check=0)
    cid = cli("run", "-d", "--name", "web", "--network", "front", "--network-alias", "www",
              "-p", "127.0.0.1:18080:80", IMG, "httpd", "-f", "-p", "80", "-h", "/www", check=0).stdout.strip()

    assert _get("http://127.0.0.1:18080/") == "hello from the front\n"

    info = json.loads(cli("inspect", "web", check=0).stdout)[0]["NetworkSettings"]
    front = info["Networks"]["front"]
    ip = front["IPAddress"]
    assert ip and front["Gateway"] and front["MacAddress"].startswith("02:42:")
    assert {"web", "www"} <= set(front["Aliases"])
    assert info["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    ps = cli("ps", "--format", "{{.Names}} {{.Ports}} {{.Networks}}", check=0).stdout
    assert ps.strip() == "web 127.0.0.1:18080->80/tcp front"

    # same network: by name (and alias) through the DNS daemon; another network: not even by IP
    p = cli("run", "--rm", "--network", "front", IMG, "sh", "-c", GET_BY_NAME, "sh", "www", check=0)
    assert "hello from the front" in p.stdout
    p = cli("run", "--rm", "--network", "front", IMG, "wget", "-q", "-O", "-", "http://web/", check=0)
    assert p.stdout == "hello from the front\n"
    p = cli("run", "--rm", "--network", "back", IMG, "wget", "-q", "-O", "-", "http://web/")
    assert p.returncode != 0 and "bad address" in p.stderr
    p = cli("run", "--rm", "--network", "back", IMG, "sh", "-c", GET_BY_IP, "sh", ip)
    assert p.returncode != 0 and "hello from the front" not in p.stdout
    # a host port in use is refused before anything is made
    p = cli("run", "-d", "--network", "front", "-p", "127.0.0.1:18080:80", IMG, "true")
    assert p.returncode == 125 and "18080" in p.stderr and p.stderr.startswith("error: ")
    assert cli("ps", "-aq", "--no-trunc").stdout.split() == [cid]

    cli("rm", "-f", "web", check=0)
    cli("network", "rm", "front", "back", check=0)
    left = leftovers(cli.paths)
    assert left["links"] == [] and left["nft"] == [] and left["netns"] == [], left
    _wait(lambda: dnsd.running_pid(cli.paths) is None)  # the DNS daemon leaves with the last sandbox


def test_run_rm_detached_releases_network(cli):
    cli("network", "create", "front", check=0)
    cid = cli("run", "-d", "--rm", "--network", "front", IMG, "true", check=0).stdout.strip()
    _wait(lambda: not os.path.exists(os.path.join(cli.paths.containers, cid)))
    assert cli("ps", "-aq").stdout == ""  # ps releases the networking the monitor could not
    assert leftovers(cli.paths)["netns"] == []
    cli("network", "rm", "front", check=0)
    assert leftovers(cli.paths)["links"] == []


def test_network_flags_need_a_network(cli):
    p = cli("run", "--rm", "--network", "none", "-p", "8080:80", IMG, "true")
    assert p.returncode == 125 and "bridge network" in p.stderr
    # the default bridge takes -p (tests/integration/net/test_default_bridge.py), not aliases
    p = cli("run", "--rm", "--network-alias", "www", IMG, "true")
    assert p.returncode == 125 and "user defined networks" in p.stderr
    p = cli("run", "--rm", "--network", "nosuch", IMG, "true")
    assert p.returncode == 125 and "nosuch" in p.stderr and p.stderr.startswith("error: ")
    assert cli("ps", "-aq").stdout == ""
