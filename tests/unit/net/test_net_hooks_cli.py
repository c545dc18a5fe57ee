import json
import os

from click.testing import CliRunner

from stackctl.net import runtime_hooks, store
from stackctl.net.sandbox import NetworkSetup
from stackctl.runtime.spec import ContainerSpec

from netstate import sample_state  # noqa: E402


def test_wants_bridge_only_for_network_names():
    assert runtime_hooks.wants_bridge("front")
    for mode in ("", "none", "host", "container:abc", "netns:/run/x"):
        assert not runtime_hooks.wants_bridge(mode)


def test_attach_fills_the_container_spec(node_paths):
    spec = ContainerSpec(id="c" * 64, name="web", image="bb", image_id="sha256:x", rootfs_layers=[],
                         argv=["true"], hostname="web", dns=["192.0.2.53"], extra_hosts=["db:10.0.0.9"])
    seen = {}

    def fake_setup(paths, cid, **kw):
        seen.update(kw, cid=cid)
        return NetworkSetup(netns="/run/x/netns/" + cid, addresses={"front": "10.89.0.2"}, ports=[],
                            dns=["10.89.0.1"], dns_search=[], dns_options=[],
                            extra_hosts=["web:10.89.0.2", *kw["extra_hosts"]])

    runtime_hooks.attach(node_paths, spec, networks=["front"], ports=["8080:80"], setup=fake_setup)
    assert spec.network == "netns:/run/x/netns/" + "c" * 64
    assert spec.dns == ["10.89.0.1"]
    assert spec.extra_hosts == ["web:10.89.0.2", "db:10.0.0.9"]
    # the user's --dns servers become the embedded server's upstreams for this container
    assert seen["dns"] == ["192.0.2.53"] and seen["ports"] == ["8080:80"]
    assert seen["networks"][0].network == "front"


def test_release_without_networking_is_a_no_op(node_paths):
    runtime_hooks.release(node_paths, "d" * 64)
    assert store.load(node_paths).sandboxes == {}


def _cli(node_paths, *args):
    from stackctl.cli.main import cli

    env = {"STACKCTL_STATE_DIR": node_paths.state, "STACKCTL_RUN_DIR": node_paths.run}
    return CliRunner().invoke(cli, ["network", *args], env=env, catch_exceptions=False)


def test_cli_ls_and_inspect_from_state(node_paths):
    import os

    os.makedirs(store.net_dir(node_paths), exist_ok=True)
    store.save(node_paths, sample_state())
    out = _cli(node_paths, "ls").output.splitlines()
    assert out[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert out[1].split() == ["bbbbbbbbbbbb", "back", "bridge", "local"]
    assert _cli(node_paths, "ls", "-q").output.split() == ["bbbbbbbbbbbb", "ffffffffffff"]
    rows = [json.loads(line) for line in _cli(node_paths, "ls", "--format", "json").output.splitlines()]
    assert rows[1]["Name"] == "front" and rows[0]["Internal"] == "true"
    data = json.loads(_cli(node_paths, "inspect", "front").output)
    assert data[0]["IPAM"]["Config"] == [{"Subnet": "10.89.0.0/24", "Gateway": "10.89.0.1"}]
    assert data[0]["Services"] == {"web": {"VIP": "10.89.0.254"}}
    assert len(data[0]["Containers"]) == 4


def test_network_settings_and_ps_ports_are_dockers_shapes():
    from netstate import cid

    from stackctl.cli.format import ports_column

    settings = runtime_hooks.network_settings(sample_state(), cid(6), exposed=["443/tcp", "80/tcp"])
    assert list(settings["Networks"]) == ["front", "back"]
    front = settings["Networks"]["front"]
    assert front["IPAddress"] == "10.89.0.5" and front["Gateway"] == "10.89.0.1" and front["IPPrefixLen"] == 24
    assert front["Aliases"] == ["proxy", "gateway-alias"] and front["MacAddress"] == "02:42:0a:59:00:05"
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                                 "443/tcp": None,
                                 "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]}
    assert ports_column(settings) == "127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp, 443/tcp"
    assert runtime_hooks.network_settings(sample_state(), "0" * 64) == {"Networks": {}, "Ports": {}}
    assert ports_column(None) == ""


def test_release_orphans_tears_down_only_containers_without_a_record(node_paths, monkeypatch):
    from netstate import cid

    os.makedirs(store.net_dir(node_paths))
    store.save(node_paths, sample_state())
    torn = []
    monkeypatch.setattr(runtime_hooks.sandbox, "teardown_container", lambda paths, c: torn.append(c))
    gone = runtime_hooks.release_orphans(node_paths, lambda c: c != cid(2))
    assert gone == torn == [cid(2)]


def test_dns_daemon_pid_checks():
    from stackctl.net import dnsd
    from stackctl.paths import NodePaths

    paths = NodePaths(state="/var/lib/x", run="/run/x", cgroup_parent="x")
    assert dnsd.parse_pid("123\n") == 123 and dnsd.parse_pid("") is None and dnsd.parse_pid("0") is None
    assert dnsd.is_daemon_cmdline(b"python3\0-m\0stackctl.net.dnsd\0/var/lib/x\0/run/x\0x\0003\0", paths)
    assert not dnsd.is_daemon_cmdline(b"python3\0-m\0stackctl.net.dnsd\0/var/lib/y\0/run/y\0x\0003\0", paths)
    assert not dnsd.is_daemon_cmdline(b"sleep\0/var/lib/x\0", paths)
