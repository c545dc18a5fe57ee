"""The stack counterparts of `build`, `push`, `pull` and `create` (stackctl/cli/stack_more.py,
stack_scoped_more.py) on one node, against a real registry (Debian's docker-registry, as the
registry tests run it): the images of a stack's services built, pushed, pulled back after
`rmi`, and its containers created without starting."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

pytestmark = pytest.mark.root

_HERE = os.path.dirname(os.path.abspath(__file__))
_REG = os.path.join(_HERE, "..", "registry", "conftest.py")


def _run_registry():
    spec = importlib.util.spec_from_file_location("stack_registry_conftest", _REG)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # (its dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod.run_registry


@pytest.fixture
def registry(tmp_path):
    with _run_registry()(str(tmp_path / "registry")) as reg:
        yield reg


STACK = """\
name: imgs
services:
  app:
    build: ./app
    image: REG/imgs/app:1
    command: ["cat", "/hi"]
  plain:
    image: stackctl/busybox:latest
    command: ["sleep", "1000"]
"""


def _images(node) -> set[str]:
    out = node.cli("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout
    return set(out.split())


def test_build_push_pull_create(node, registry, tmp_path):
    os.makedirs(tmp_path / "app")
    (tmp_path / "app" / "Dockerfile").write_text(
        "FROM stackctl/busybox:latest\nRUN echo built-here > /hi\n")
    stack = node.write_stack(STACK.replace("REG", registry.host))
    ref = f"{registry.host}/imgs/app:1"

    # build: the services with a build: section, tagged with their image:
    node.cli("build", "-f", stack, timeout=300)
    assert ref in _images(node)
    nothing = node.cli("build", "-f", stack, "plain")
    assert "No services to build" in nothing.stderr

    # push: what has build: and image:; the others are skipped
    p = node.cli("push", "-f", stack, timeout=120)
    assert "Service app  Pushed" in p.stderr and "Service plain  Skipped" in p.stderr
    assert registry.requests("PUT", "/v2/imgs/app/manifests/1") == 1

    # pull: back into the store after rmi
    node.cli("rmi", ref)
    assert ref not in _images(node)
    p = node.cli("pull", "-f", stack, "app", timeout=120)
    assert "Service app  Pulled" in p.stderr
    assert ref in _images(node)
    p = node.cli("pull", "-f", stack, "--policy", "missing", "app", timeout=120)
    assert "Service app  Skipped (image is already present locally)" in p.stderr
    # an image no registry here has: exit 1 naming the service; ignored when asked
    bad = node.write_stack(STACK.replace("REG", registry.host)
                           .replace("stackctl/busybox:latest", f"{registry.host}/no/such:1"),
                           "bad.yml")
    failed = node.cli("pull", "-f", bad, "plain", check=False, timeout=120)
    assert failed.returncode == 1 and "plain" in failed.stderr
    node.cli("pull", "-f", bad, "--ignore-pull-failures", "plain", timeout=120)

    # create: the containers exist, none started
    node.projects.add("imgs")
    node.cli("create", "-f", stack, timeout=120)
    assert "created(2)" in node.cli("ls", "-a").stdout  # left for `start`: not healed up
    rows = node.ps("imgs")
    assert sorted((r["Service"], r["State"]) for r in rows) == [("app", "created"),
                                                                ("plain", "created")]
    node.cli("start", "-f", stack, "app")


def test_docker_forms_unchanged(node):
    assert node.cli("pull", check=False).returncode == 2
    assert node.cli("push", "--ignore-push-failures", "x", check=False).returncode == 2
    assert node.cli("create", "--no-recreate", "img", check=False).returncode == 2
    # docker build with a Dockerfile named by -f: the Docker form
    ctx = node.tmp / "ctx"
    os.makedirs(ctx)
    (ctx / "Other.dockerfile").write_text("FROM stackctl/busybox:latest\nRUN true\n")
    out = node.cli("build", "-q", "-f", str(ctx / "Other.dockerfile"), "-t", "x/y:1", str(ctx),
                   timeout=300).stdout
    assert out.strip().startswith("sha256:")
