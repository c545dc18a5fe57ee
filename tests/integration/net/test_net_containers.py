"""The issue's must-show with real containers of our runtime: busybox `wget` in one container
reaches busybox `httpd` in another by name; a container on another network cannot.

(No `wget -T`: Debian 12's busybox-static `wget` dies with SIGSEGV when given a timeout.)"""

from __future__ import annotations

import os

import pytest

from stackctl.net import dnsserver, runtime_hooks
from stackctl.net import networks as nets

pytestmark = pytest.mark.root

core = pytest.importorskip("stackctl.runtime.containers.api")
from stackctl.runtime.spec import ContainerSpec  # noqa: E402


GET_BY_NAME = 'wget -q -O - "http://$1/"'


def spec(cid: int, name: str, rootfs: str, argv: list[str]) -> ContainerSpec:
    return ContainerSpec(id=f"{cid:064x}", name=name, image="busybox", image_id="sha256:" + "0" * 64,
                         rootfs_layers=[rootfs], argv=argv, hostname=name)


def run(paths, s: ContainerSpec, timeout: float = 20) -> tuple[int, str]:
    core.start_container(paths, s)
    state = core.wait_container(paths, s.id, timeout=timeout)
    from stackctl.runtime import logs

    log = os.path.join(core.container_dir(paths, s.id), f"{s.id}-json.log")
    with open(log) as f:
        entries = [logs.parse_line(line) for line in f]
    return state.exit_code, "".join(logs.render(e) for e in entries if e)


@pytest.fixture
def started(net_paths):
    made = []
    yield made
    for s in made:
        try:
            core.signal_container(net_paths, s.id, "SIGKILL")
        except Exception:
            pass
        try:
            core.wait_container(net_paths, s.id, timeout=5)
        except Exception:
            pass
        core.cleanup_container(net_paths, s.id)
        runtime_hooks.release(net_paths, s.id)


def test_wget_reaches_httpd_by_name_not_from_another_network(net_paths, busybox_rootfs, started, tmp_path):
    os.makedirs(os.path.join(busybox_rootfs, "www"))
    with open(os.path.join(busybox_rootfs, "www", "index.html"), "w") as f:
        f.write("hello from web\n")
    nets.create(net_paths, "front")
    nets.create(net_paths, "elsewhere")
    web = spec(1, "web", busybox_rootfs, ["httpd", "-f", "-v", "-p", "80", "-h", "/www"])
    runtime_hooks.attach(net_paths, web, networks=["front"])
    started.append(web)
    core.start_container(net_paths, web)
    thread, stop = dnsserver.start_in_thread(net_paths)
    try:
        client = spec(2, "client", busybox_rootfs, ["sh", "-c", GET_BY_NAME, "sh", "web"])
        runtime_hooks.attach(net_paths, client, networks=["front"])
        started.append(client)
        code, out = run(net_paths, client)
        assert code == 0, out
        assert "hello from web" in out
        outsider = spec(3, "outsider", busybox_rootfs, ["sh", "-c", GET_BY_NAME, "sh", "web"])
        runtime_hooks.attach(net_paths, outsider, networks=["elsewhere"])
        started.append(outsider)
        code, out = run(net_paths, outsider)
        assert code != 0 and "bad address" in out, out
        # and by address it does not get through either
        web_addr = web.extra_hosts[0].split(":")[1]
        # `; exit $?` keeps sh as PID 1: an exec'd `timeout` as PID 1 could not be signalled
        web_ip = spec(4, "byaddr", busybox_rootfs,
                      ["sh", "-c", f"timeout 3 wget -q -O - http://{web_addr}/; exit $?"])
        runtime_hooks.attach(net_paths, web_ip, networks=["elsewhere"])
        started.append(web_ip)
        code, out = run(net_paths, web_ip)
        assert code != 0 and "hello" not in out
    finally:
        stop.set()
        thread.join()
