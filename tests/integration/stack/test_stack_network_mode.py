"""`network_mode: container:NAME`: a stack's task shares the network namespace of a container
outside the stack; a target that does not run is refused with one clear line."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.root

SIDECAR = """\
name: side
services:
  probe:
    image: stackctl/busybox:latest
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    network_mode: container:netowner
"""


def _netns(node, *target: str) -> str:
    return node.cli("exec", *target, "readlink", "/proc/1/ns/net").stdout.strip()


def test_a_task_joins_a_container_s_network(node):
    stack = node.write_stack(SIDECAR)
    # not there yet: refused before anything is made
    p = node.up(stack, "-d", check=False)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 1 and len(errors) == 1 and "netowner" in errors[0], p.stderr
    assert node.ps("side") == []

    node.cli("run", "-d", "--name", "netowner", "stackctl/busybox:latest", "sleep", "1000")
    try:
        node.up(stack, "-d", "--wait")
        ns = _netns(node, "-f", stack, "probe")
        assert ns.startswith("net:[") and ns == _netns(node, "netowner")
    finally:
        node.cli("down", "-p", "side", check=False)
        node.cli("rm", "-f", "netowner", check=False)
