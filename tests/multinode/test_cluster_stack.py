"""A stack across three nodes (issue 10's must-shows), on a demo cluster made on this machine
(stackctl/cluster/demo.py: three network namespaces on a bridge, an sshd and an agent each).
The CLI runs here, in the host's namespace, and reaches the manager (n1) over OpenSSH; the
manager reaches n2 and n3 over asyncssh.

Every stack a test deploys is brought down in its teardown; the cluster (netns, sshd, agents,
containers, cgroups) is removed when the module ends, also on failure."""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from clusterenv import Cluster, _load, make  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.multinode]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from stackctl.cluster import demo

    if os.geteuid() != 0:
        pytest.skip("needs root")
    tmp = str(tmp_path_factory.mktemp("cluster"))
    name = f"t{uuid.uuid4().hex[:6]}"
    d = demo.up(3, name=name, cluster_dir=os.path.join(tmp, "demo"), warm=False)
    try:
        c = make(d, tmp, {"n1": "a", "n2": "b", "n3": "b"})
        yield c
    finally:
        d2 = demo.DemoCluster.load(os.path.join(tmp, "demo"))
        demo.down(d2)


@pytest.fixture
def stacks(cluster):
    """Brings down every stack the test deployed (also on failure)."""
    cluster.stacks.clear()
    yield cluster
    for path in cluster.stacks:
        cluster.cli("down", "-v", "-f", path, check=False)


def test_spread_and_constraints_place_the_replicas_and_plan_explains_refusals(stacks):
    c = stacks
    path = c.write_stack("""services:
  web:
    image: stackctl/busybox
    command: ["sleep", "3600"]
    deploy:
      replicas: 4
      placement:
        preferences: [{spread: node.labels.zone}]
  pinned:
    image: stackctl/busybox
    command: ["sleep", "3600"]
    deploy:
      replicas: 2
      placement:
        constraints: ["node.labels.zone == b"]
""")
    c.cli("up", "-d", "--wait", "-f", path)
    rows = c.ps(path)
    nodes = {r["Service"] + "." + r["Slot"]: r["Node"] for r in rows}
    zone = {"n1": "a", "n2": "b", "n3": "b"}
    web = [zone[nodes[f"web.{i}"]] for i in range(1, 5)]
    assert sorted(web) == ["a", "a", "b", "b"], nodes  # spread evenly over the zones
    assert {nodes["pinned.1"], nodes["pinned.2"]} == {"n2", "n3"}, nodes
    table = c.cli("ps", "-f", path).stdout
    assert "NODE" in table.splitlines()[0]

    # an unchanged `up` moves nothing
    before = {r["Name"]: r["ID"] for r in rows}
    c.cli("up", "-d", "--wait", "-f", path)
    assert {r["Name"]: r["ID"] for r in c.ps(path)} == before

    # an impossible constraint: plan explains it per filter and per node; up --wait fails
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("node.labels.zone == b", "node.labels.zone == mars"))
    plan = c.cli("plan", "-f", path).stdout
    assert "no suitable node (scheduling constraints not satisfied on 3 nodes)" in plan, plan
    assert "n2:" in plan and "n3:" in plan
    p = c.cli("up", "-d", "--wait", "-f", path, check=False)
    assert p.returncode != 0
    assert "pinned.1: no suitable node" in p.stderr, p.stderr


ROLL = """services:
  web:
    image: stackctl/busybox
    command: ["sh", "-c", "echo v$${VERSION} > /tmp/index.html; test $${VERSION} = bad && exit 3; exec httpd -f -p 80 -h /tmp"]
    environment:
      VERSION: "${VERSION:-1}"
    ports: ["18080:80"]
    deploy:
      replicas: 3
      placement:
        max_replicas_per_node: 1
      update_config:
        parallelism: 1
        order: start-first
        monitor: 2s
        failure_action: rollback
"""


def test_a_start_first_update_across_three_nodes_loses_no_request_and_a_failing_one_rolls_back(stacks):
    c = stacks
    path = c.write_stack(ROLL)
    c.cli("up", "-d", "--wait", "-f", path)
    rows = c.ps(path)
    assert sorted(r["Node"] for r in rows) == ["n1", "n2", "n3"]
    ips = [c.address(n) for n in ("n1", "n2", "n3")]
    result: dict = {}
    # the loop runs for the whole update: start it, update, then let it finish
    seconds = 45.0
    loader = threading.Thread(target=_load, args=(ips, 18080, seconds, result))
    started = time.monotonic()
    loader.start()
    time.sleep(1.0)
    c.cli("up", "-d", "--wait", "-f", path, env={"VERSION": "2"})
    assert time.monotonic() - started < seconds - 2, "the update outlasted the request loop"
    loader.join()
    assert result["failed"] == 0, result["errors"][:5]
    assert result["bodies"].get("v2", 0) > 0
    for ip in ips:
        with urllib.request.urlopen(f"http://{ip}:18080/", timeout=3) as r:
            assert r.read().decode().strip() == "v2"

    # a failing update rolls back on every node; up --wait exits non-zero
    p = c.cli("up", "-d", "--wait", "-f", path, env={"VERSION": "bad"}, check=False)
    assert p.returncode == 1, p.stderr
    assert "rolled back" in p.stderr
    for ip in ips:
        with urllib.request.urlopen(f"http://{ip}:18080/", timeout=3) as r:
            assert r.read().decode().strip() == "v2"


def test_the_manager_replaces_a_replica_killed_on_a_worker_without_the_cli(stacks):
    c = stacks
    path = c.write_stack("""services:
  app:
    image: stackctl/busybox
    command: ["sleep", "3600"]
    deploy:
      replicas: 3
      placement:
        max_replicas_per_node: 1
""")
    c.cli("up", "-d", "--wait", "-f", path)
    victim = next(r for r in c.ps(path) if r["Node"] == "n3")
    c.ssh("n3", "stackctl", "kill", victim["ID"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = [r for r in c.ps(path) if r["State"] == "running"]
        if len(rows) == 3 and victim["ID"] not in {r["ID"] for r in rows}:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"not replaced: {c.ps(path)}")
    assert sorted(r["Slot"] for r in rows) == ["1", "2", "3"]


def test_an_unknown_host_key_is_refused_with_one_line(stacks):
    c = stacks
    empty = os.path.join(c.dir, "empty_known_hosts")
    open(empty, "w").close()
    inv = os.path.join(c.dir, "strangers.yml")
    n1 = c.demo.node("n1")
    with open(inv, "w") as f:
        f.write(f"nodes:\n  - name: n1\n    url: ssh://root@{n1.address}\n"
                f"    identity: {c.demo.client_key}\n    known_hosts: {empty}\n")
    path = c.write_stack("services:\n  a:\n    image: stackctl/busybox\n")
    p = c.cli("up", "-d", "-f", path, check=False, env={"STACKCTL_NODES": inv})
    assert p.returncode != 0
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "host key" in errors[0].lower(), p.stderr
    assert "SHA256:" in p.stderr
    c.stacks.remove(path)  # never deployed


def test_a_node_that_does_not_answer_is_named_and_nothing_is_deployed(make_cluster, tmp_path):
    """n2's agent and sshd are gone: `up` of a stack that needs n2 stops with one line naming
    it (and what to do) after a bounded wait; nothing is created on n1 either."""
    import signal

    d = make_cluster(2)
    c = Cluster(d, str(tmp_path))
    with open(c.inventory, "w") as f:
        f.write("nodes:\n")
        for node in d.nodes:
            f.write(f"  - name: {node.name}\n    url: ssh://root@{node.address}\n"
                    f"    identity: {d.client_key}\n    known_hosts: {d.known_hosts}\n")
    c.ssh("n2", "stackctl", "agent", "stop", check=False)
    with open(d.node("n2").pid_file) as f:
        os.kill(int(f.read().split()[0]), signal.SIGTERM)
    path = c.write_stack("""services:
  everywhere:
    image: stackctl/busybox
    command: ["sleep", "3600"]
    deploy:
      mode: global
""")
    started = time.monotonic()
    # n2 does not answer but is not declared down yet (down_after 60 s, not 5): the deploy
    # needs it. (A node already declared down is left out of placement, as in Swarm, and
    # the deploy goes on without it.) With the default 5 s, a loaded machine let the manager
    # declare n2 down before the deploy looked at it: a flaky test.
    p = c.cli("up", "-d", "-f", path, check=False, timeout=120,
              env={"STACKCTL_DOWN_AFTER": "60"})
    assert time.monotonic() - started < 90
    assert p.returncode != 0
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "n2" in errors[0], p.stderr
    assert "hint:" in p.stderr
    listed = c.ssh("n1", "stackctl", "ps", "-a", "-q").stdout.split()
    assert listed == [], listed
    c.stacks.remove(path)
