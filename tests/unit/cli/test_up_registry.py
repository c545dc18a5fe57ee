"""`up --with-registry-auth` (the credentials sent with stack.deploy only) and which images
the CLI ships to the nodes when they are to be pulled from a registry instead."""

from __future__ import annotations

import base64
import json

from stackctl.cli import stack_cmd
from test_stack_cmd import fake, run_main  # noqa: F401  (the fixture)

STACK = """name: regapp
services:
  web:
    image: reg.example:5000/team/web:1
  hub:
    image: busybox
  local:
    image: app-local
"""


def _auth_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "auth.json"
    token = base64.b64encode(b"alice:pw").decode()
    path.write_text(json.dumps({"auths": {"reg.example:5000": {"auth": token}}}))
    monkeypatch.setenv("STACKCTL_AUTH_FILE", str(path))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("DOCKER_AUTH_CONFIG", raising=False)


def test_with_registry_auth_sends_the_users_credentials_with_the_deploy_only(
        fake, tmp_path, monkeypatch, capsys):  # noqa: F811
    _auth_file(tmp_path, monkeypatch)
    f = tmp_path / "stack.yml"
    f.write_text(STACK)
    fake.script["stack.deploy"] = []
    code, _, err = run_main(["up", "-d", "--with-registry-auth", "-f", str(f)], capsys)
    assert code == 0, err
    (method, params), = fake.requests
    assert method == "stack.deploy"
    # only registries with stored credentials; Docker Hub has none here
    assert params["registry_auth"] == {"reg.example:5000": {"username": "alice",
                                                            "password": "pw"}}
    assert "registry_auth" not in params["options"]
    fake.requests.clear()
    code, _, err = run_main(["up", "-d", "-f", str(f)], capsys)
    assert code == 0 and "registry_auth" not in fake.requests[0][1]


def test_send_images_leaves_the_images_the_nodes_pull(tmp_path, monkeypatch):
    """With pull_policy always (or --pull always) an image is pulled by the nodes, not
    shipped; the others still are."""
    from types import SimpleNamespace

    from stackctl.cli import stack_client
    from stackctl.cluster import ship as ship_mod
    from stackctl.runtime.images import store as store_mod
    from stackctl.spec.load import LoadOptions, load_project

    f = tmp_path / "stack.yml"
    f.write_text(STACK.replace("    image: reg.example:5000/team/web:1\n",
                               "    image: reg.example:5000/team/web:1\n"
                               "    pull_policy: always\n"))
    project = load_project(LoadOptions(files=(str(f),), project_directory=str(tmp_path)))

    class Store:
        def __init__(self, root):
            pass

        def exists(self, ref):  # every image is on this machine
            return True

    shipped = {}
    monkeypatch.setattr(store_mod, "ImageStore", Store)
    monkeypatch.setattr(ship_mod, "ship", lambda store, per_node, ssh, out: shipped.update(
        per_node))
    nodes = [SimpleNamespace(name="n1", id="n1", is_local=True, labels={}),
             SimpleNamespace(name="n2", id="n2", is_local=False, labels={})]
    monkeypatch.setattr(stack_client, "selected_inventory", lambda: SimpleNamespace(
        nodes=nodes, get=lambda n: n, role_of=lambda n: "worker"))
    client = SimpleNamespace(call=lambda method, params: {})  # nothing asked of the manager
    stack_cmd.send_images(client, project, {}, (), "text", built=True)
    assert shipped == {"n2": ["app-local", "busybox"]}
    shipped.clear()
    stack_cmd.send_images(client, project, {}, (), "text", built=True, pull="always")
    assert shipped == {}  # --pull always: every node pulls every image itself
