"""The one-machine cluster harness for multi-node tests (stackctl/cluster/demo.py).

- ``make_cluster(n, **kw)`` makes an n-node cluster (network namespaces on a bridge, an sshd
  per node, per-node state/run/cgroup paths) and removes it after the test, also when the test
  fails; ``cluster`` is a 3-node one for a test, ``shared_cluster`` one 3-node cluster for a
  whole module (its nodes' agents keep running between the module's tests).
- Each cluster's ``ssh_config`` has Host aliases n1..nN: ``ssh -F c.ssh_config n1 ...`` and
  ``c.ssh_options()`` for asyncssh. Nodes run without the warm-run server (lighter).
- Tests here need root: mark them ``pytest.mark.root``.
- ``async def`` tests run under ``trio.run`` (tests/conftest.py).
"""

from __future__ import annotations

import uuid

import pytest

from stackctl.cluster import demo


class _Clusters:
    def __init__(self, tmp_path_factory) -> None:
        self.tmp = tmp_path_factory
        self.made: list[demo.DemoCluster] = []

    def __call__(self, n: int, **kw) -> demo.DemoCluster:
        name = f"t{uuid.uuid4().hex[:6]}"
        cdir = self.tmp.mktemp("cluster") / name
        kw.setdefault("warm", False)
        c = demo.up(n, name=name, cluster_dir=str(cdir), **kw)  # removes itself if it fails
        self.made.append(c)
        return c

    def down(self) -> list[str]:
        left = []
        for c in reversed(self.made):
            left += demo.down(c)
        self.made.clear()
        return left


@pytest.fixture
def make_cluster(tmp_path_factory):
    clusters = _Clusters(tmp_path_factory)
    yield clusters
    left = clusters.down()
    assert not left, f"the cluster harness left {left}"


@pytest.fixture
def cluster(make_cluster) -> demo.DemoCluster:
    return make_cluster(3)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    clusters = _Clusters(tmp_path_factory)
    try:
        yield clusters(3)
    finally:
        left = clusters.down()
        assert not left, f"the cluster harness left {left}"
