"""Docker's default network, as root: ``stackctl run -d -p PORT:80 IMG httpd`` answers on
127.0.0.1:PORT with no other setup (the ``bridge`` network is made on first use); no name
resolution on it, ``--link`` as /etc/hosts entries; ``network connect`` gives a running
container a second network it is reachable on, ``disconnect`` takes it away."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from stackctl.net import dnsd, gc

from conftest import leftovers  # noqa: E402

pytestmark = pytest.mark.root

IMG = "bb:latest"
HTTPD = ["httpd", "-f", "-p", "80", "-h", "/www"]


@pytest.fixture
def cli(net_paths, busybox_rootfs):
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore

    os.makedirs(os.path.join(busybox_rootfs, "www"))
    with open(os.path.join(busybox_rootfs, "www", "index.html"), "w") as f:
        f.write("hello from the default bridge\n")
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
        run("network", "rm", "side")
        dnsd.stop(net_paths)
        gc.gc_stale(net_paths, live_containers=[])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_run_publishes_on_the_default_bridge_with_no_setup(cli):
    port = _free_port()
    cli("run", "-d", "--name", "web", "-p", f"{port}:80", IMG, *HTTPD, check=0)
    assert _get(f"http://127.0.0.1:{port}/") == "hello from the default bridge\n"
    nets = cli("network", "ls", "--format", "json", check=0).stdout.splitlines()
    assert [json.loads(n)["Name"] for n in nets] == ["bridge"]
    info = json.loads(cli("inspect", "web", check=0).stdout)[0]["NetworkSettings"]
    assert list(info["Networks"]) == ["bridge"] and info["Networks"]["bridge"]["IPAddress"]
    assert cli("ps", "--format", "{{.Ports}} {{.Networks}}", check=0).stdout.strip() == f"0.0.0.0:{port}->80/tcp bridge"
    ip = info["Networks"]["bridge"]["IPAddress"]
    # no name resolution on the default bridge (the host's resolvers, not the embedded server),
    # but containers reach each other by address, and by a --link name through /etc/hosts
    p = cli("run", "--rm", IMG, "cat", "/etc/resolv.conf", check=0)
    gateway = info["Networks"]["bridge"]["Gateway"]
    assert f"nameserver {gateway}" not in p.stdout
    assert dnsd.running_pid(cli.paths) is None
    p = cli("run", "--rm", IMG, "wget", "-q", "-O", "-", f"http://{ip}/", check=0)
    assert p.stdout == "hello from the default bridge\n"
    p = cli("run", "--rm", "--link", "web:site", IMG, "sh", "-c", "grep site /etc/hosts; wget -q -O - http://site/",
            check=0)
    assert p.stdout.splitlines() == [f"{ip}\tsite", "hello from the default bridge"]
    p = cli("run", "--rm", "--link", "nosuch", IMG, "true")
    assert p.returncode == 125 and "nosuch" in p.stderr
    # the predefined network stays; `none` only when asked
    p = cli("network", "rm", "bridge")
    assert p.returncode == 1 and "pre-defined" in p.stderr
    assert cli("run", "--rm", "--network", "none", IMG, "ip", "-o", "link", check=0).stdout.count("\n") == 1
    cli("rm", "-f", "web", check=0)


def test_network_connect_gives_a_running_container_a_second_network(cli):
    cli("network", "create", "side", check=0)
    port = _free_port()
    cli("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", IMG, *HTTPD, check=0)
    assert cli("network", "connect", "--alias", "www", "side", "web", check=0).stdout == ""
    nets = json.loads(cli("inspect", "web", check=0).stdout)[0]["NetworkSettings"]["Networks"]
    assert list(nets) == ["bridge", "side"] and "www" in nets["side"]["Aliases"]
    assert "eth1" in cli("exec", "web", "ip", "-o", "link", check=0).stdout
    # reachable on the new network, by name and alias (a user network has the DNS server)
    p = cli("run", "--rm", "--network", "side", IMG, "wget", "-q", "-O", "-", "http://www/", check=0)
    assert p.stdout == "hello from the default bridge\n"
    p = cli("network", "connect", "side", "web")
    assert p.returncode == 1 and "already exists in network side" in p.stderr
    # rename: the container answers to its new name on the network (DNS), not the old one
    cli("rename", "web", "web2", check=0)
    p = cli("run", "--rm", "--network", "side", IMG, "wget", "-q", "-O", "-", "http://web2/", check=0)
    assert p.stdout == "hello from the default bridge\n"
    p = cli("run", "--rm", "--network", "side", IMG, "wget", "-q", "-O", "-", "http://web/")
    assert p.returncode != 0 and "bad address" in p.stderr
    cli("rename", "web2", "web", check=0)
    p = cli("network", "connect", "--alias", "x", "bridge", "web")
    assert p.returncode == 1 and "user defined networks" in p.stderr
    # off the default bridge: the published port now goes over the other network
    cli("network", "disconnect", "bridge", "web", check=0)
    assert list(json.loads(cli("inspect", "web", check=0).stdout)[0]["NetworkSettings"]["Networks"]) == ["side"]
    assert _get(f"http://127.0.0.1:{port}/") == "hello from the default bridge\n"
    cli("network", "disconnect", "side", "web", check=0)
    p = cli("run", "--rm", "--network", "side", IMG, "wget", "-q", "-O", "-", "http://www/")
    assert p.returncode != 0
    p = cli("network", "disconnect", "side", "web")
    assert p.returncode == 1 and "is not connected to network side" in p.stderr
    p = cli("run", "-d", "--name", "lonely", "--network", "none", IMG, "sleep", "30", check=0)
    p = cli("network", "connect", "side", "lonely")
    assert p.returncode == 1 and "private (none) mode" in p.stderr
    cli("rm", "-f", "web", "lonely", check=0)
    cli("network", "rm", "side", check=0)
    assert leftovers(cli.paths)["netns"] == []
