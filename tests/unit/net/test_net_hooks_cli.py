import json

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
