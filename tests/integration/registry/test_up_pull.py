"""`up` pulling a stack's images as pull_policy says, on one node, from a real registry
(Debian's docker-registry on 127.0.0.1): missing pulls once, always asks again (and a moved
tag recreates the service with the new image), never refuses a missing image, a wrong
password is one line. Each test brings its stacks down and stops the agent it started."""

from __future__ import annotations

import base64
import json
import os
import signal
import time

import pytest

from registry_support import USER

pytestmark = pytest.mark.root


class StackNode:
    def __init__(self, cli, node_paths, tmp_path) -> None:
        self.cli = cli
        self.paths = node_paths
        self.dir = tmp_path
        self.projects: list[str] = []

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, f"{name}.yml")
        with open(path, "w") as f:
            f.write(f"name: {name}\n{text}")
        if name not in self.projects:
            self.projects.append(name)
        return path

    def ps(self, name: str) -> list[dict]:
        out = self.cli("ps", "-p", name, "--format", "json", check=0).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def image_id(self, ref: str) -> str:
        return json.loads(self.cli("image", "inspect", ref, check=0).stdout)[0]["Id"]

    def stop_agent(self) -> None:
        try:
            with open(os.path.join(self.paths.run, "agent.pid")) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def node(cli, node_paths, tmp_path):
    n = StackNode(cli, node_paths, tmp_path)
    try:
        yield n
    finally:
        try:
            for name in n.projects:
                cli("down", "-v", "-p", name, timeout=90)
        finally:
            n.stop_agent()


def _push_busybox(cli, ref: str, marker: str) -> str:
    """Build a busybox image whose /marker says ``marker``, push it as ``ref``; its digest."""
    cli("image", "build-busybox", "-q", "-t", "bb-base:1", check=0)
    ctx = os.path.join(os.path.dirname(cli.env["STACKCTL_STATE_DIR"]), f"ctx-{marker}")
    os.makedirs(ctx, exist_ok=True)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM bb-base:1\nRUN echo {marker} > /marker\n")
    cli("image", "build", "-q", "-t", ref, ctx, check=0)
    p = cli("push", ref, check=0)
    return p.stdout.split("digest: ")[1].split()[0]


STACK = """services:
  web:
    image: {ref}
    command: ["sh", "-c", "cat /marker; exec sleep 3600"]
{extra}"""


def test_up_pulls_as_pull_policy_says(registry, node):
    cli = node.cli
    ref = f"{registry.host}/team/web:1"
    _push_busybox(cli, ref, "first")
    first = node.image_id(ref)
    cli("image", "rm", ref, check=0)
    cli("image", "prune", "-a", "-f", "--build-cache", check=0)
    manifests = lambda: registry.requests("GET", "/v2/team/web/manifests/")  # noqa: E731

    # missing (the default): the image is not here, so `up` pulls it and runs it
    path = node.write("pp", STACK.format(ref=ref, extra=""))
    p = cli("up", "-d", "--wait", "-f", path, check=0)
    assert f"pulling {ref}" in p.stdout + p.stderr
    # Docker's pull lines, as `pull` progress events
    assert "pull: progress (1: Pulling from team/web)" in p.stdout, p.stdout
    assert ": Pull complete)" in p.stdout, p.stdout
    assert node.image_id(ref) == first
    rows = node.ps("pp")
    assert [r["State"] for r in rows] == ["running"]
    asked = manifests()
    assert asked >= 1
    # again: present, nothing asked of the registry, nothing recreated
    cli("up", "-d", "--wait", "-f", path, check=0)
    assert manifests() == asked
    assert node.ps("pp")[0]["ID"] == rows[0]["ID"]

    # the tag moves in the registry: missing keeps what is here; --pull always takes the new
    # image and the service is recreated with it (the image id is part of its config)
    cli("image", "rm", "-f", ref, check=0)  # untagged here (the container still uses it)
    _push_busybox(cli, ref, "second")
    second = node.image_id(ref)
    assert second != first
    cli("image", "rm", "-f", ref, check=0)
    cli("up", "-d", "--wait", "-f", path, check=0)  # missing: pulls the tag as it is now
    assert node.image_id(ref) == second
    recreated = node.ps("pp")[0]
    assert recreated["ID"] != rows[0]["ID"]
    before = manifests()
    cli("up", "-d", "--wait", "--pull", "always", "-f", path, check=0)
    assert manifests() > before  # always: asked again
    assert node.ps("pp")[0]["ID"] == recreated["ID"]  # same digest: nothing to recreate

    # pull_policy always in the file: asked on every up
    path = node.write("pp", STACK.format(ref=ref, extra="    pull_policy: always\n"))
    before = manifests()
    cli("up", "-d", "--wait", "-f", path, check=0)
    assert manifests() > before

    # never: a missing image is refused in one line, and nothing is pulled
    cli("down", "-p", "pp", check=0)
    cli("image", "rm", ref, check=0)
    before = manifests()
    p = cli("up", "-d", "--pull", "never", "-f", path, check=1)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, p.stderr
    assert f"service web: image {ref} is not on this node (pull_policy never)" in errors[0]
    assert manifests() == before


def test_up_with_wrong_password_unknown_tag_or_unreachable_registry_is_one_line(registry_basic, node, tmp_path):
    cli = node.cli
    ref = f"{registry_basic.host}/team/secret:1"
    cli("login", "-u", USER, "--password-stdin", registry_basic.host,
        input=registry_basic.users[USER] + "\n", check=0)
    _push_busybox(cli, ref, "secret")
    cli("image", "rm", ref, check=0)
    # the stored credentials are replaced by a wrong password
    auth_file = os.path.join(cli.env["XDG_CONFIG_HOME"], "stackctl", "auth.json")
    wrong = base64.b64encode(f"{USER}:not-the-password".encode()).decode()
    with open(auth_file, "w") as f:
        json.dump({"auths": {registry_basic.host: {"auth": wrong}}}, f)
    path = node.write("pw", STACK.format(ref=ref, extra=""))
    p = cli("up", "-d", "-f", path, check=1)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, p.stderr
    assert f"service web: pull {ref}: " in errors[0]
    assert f"refused the credentials of '{USER}'" in errors[0], errors[0]
    assert node.ps("pw") == []  # nothing deployed
    # an unknown tag: one line naming it
    path = node.write("pw", STACK.format(ref=ref.replace(":1", ":nope"), extra=""))
    with open(auth_file, "w") as f:
        json.dump({"auths": {}}, f)
    cli("login", "-u", USER, "--password-stdin", registry_basic.host,
        input=registry_basic.users[USER] + "\n", check=0)
    p = cli("up", "-d", "-f", path, check=1)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tag nope not found" in errors[0], p.stderr
    # a registry that does not answer: one line naming the reference and the address
    from registry_support import free_port

    gone = f"127.0.0.1:{free_port()}/team/app:1"
    path = node.write("pw", STACK.format(ref=gone, extra=""))
    p = cli("up", "-d", "-f", path, check=1)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, p.stderr
    assert f"service web: pull {gone}: cannot connect to registry" in errors[0], errors[0]
    assert node.ps("pw") == []


def test_up_pulls_an_image_pinned_by_digest(registry, node):
    cli = node.cli
    ref = f"{registry.host}/team/pin:1"
    digest = _push_busybox(cli, ref, "pinned")
    image = node.image_id(ref)
    cli("image", "rm", ref, check=0)
    repo = ref.rsplit(":", 1)[0]
    for name, pinned in (("pd", f"{repo}@{digest}"), ("ptd", f"{ref}@{digest}")):
        path = node.write(name, STACK.format(ref=pinned, extra=""))
        cli("up", "-d", "--wait", "-f", path, check=0)
        assert [r["State"] for r in node.ps(name)] == ["running"]
        assert node.image_id(pinned) == image
        before = registry.requests("GET", "/manifests/")
        cli("up", "-d", "--wait", "--pull", "always", "-f", path, check=0)
        assert registry.requests("GET", "/manifests/") == before  # a digest is never asked again


def test_up_with_a_periodic_pull_policy_asks_when_the_last_pull_is_old(registry, node):
    """daily / weekly / every_<d>: the last pull's time (registry.json next to the store) is
    aged by editing it — no waiting."""
    cli = node.cli
    ref = f"{registry.host}/team/tick:1"
    _push_busybox(cli, ref, "tick")
    cli("image", "rm", ref, check=0)
    manifests = lambda: registry.requests("GET", "/v2/team/tick/manifests/")  # noqa: E731
    records = os.path.join(node.paths.images, "registry.json")

    def age(seconds: float) -> None:
        with open(records) as f:
            data = json.load(f)
        data["pulls"][ref]["pulled_at"] = time.time() - seconds
        with open(records, "w") as f:
            json.dump(data, f)

    path = node.write("pt", STACK.format(ref=ref, extra="    pull_policy: daily\n"))
    cli("up", "-d", "--wait", "-f", path, check=0)  # missing: pulled
    asked = manifests()
    cli("up", "-d", "--wait", "-f", path, check=0)  # pulled just now: not asked
    assert manifests() == asked
    age(25 * 3600)  # a day ago: daily asks again
    cli("up", "-d", "--wait", "-f", path, check=0)
    assert manifests() > asked
    asked = manifests()
    age(25 * 3600)
    path = node.write("pt", STACK.format(ref=ref, extra="    pull_policy: weekly\n"))
    cli("up", "-d", "--wait", "-f", path, check=0)  # a day is not a week
    assert manifests() == asked
    path = node.write("pt", STACK.format(ref=ref, extra="    pull_policy: every_12h\n"))
    cli("up", "-d", "--wait", "-f", path, check=0)  # but more than 12 hours
    assert manifests() > asked
