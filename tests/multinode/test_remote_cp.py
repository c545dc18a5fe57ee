"""``stackctl cp -f STACK`` with a container on another node of the cluster (issue 14): the
CLI runs here, the container on n2; the copy is a tar over the ssh channel to n2's stackctl
(stackctl/cli/remote.py), with ``docker cp``'s rules on both sides.

The stack is brought down at the end of the module and the cluster removed (also on
failure)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from clusterenv import IMAGE, make  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.multinode]

STACK = """services:
  box:
    image: stackctl/busybox:latest
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    deploy:
      placement:
        constraints: ["node.hostname == n2"]
"""


@pytest.fixture(scope="module")
def deployed(shared_cluster, tmp_path_factory):
    c = make(shared_cluster, str(tmp_path_factory.mktemp("cp")))
    # `up` sends this machine's image (if it has one) to the nodes that may run the service;
    # every node must then hold that same image, the manager's own build included
    here = subprocess.run([sys.executable, "-m", "stackctl", "image", "save", IMAGE],
                          capture_output=True, env={**os.environ, "STACKCTL_WARM": "0"})
    if here.returncode == 0:
        for node in shared_cluster.nodes:
            c.ssh(node.name, "stackctl", "image", "load", "-q", input=here.stdout)
    path = c.write_stack(STACK)
    try:
        c.cli("up", "-d", "--wait", "--wait-timeout", "120", "-f", path)
        (row,) = c.ps(path)
        assert (row["Service"], row["Node"]) == ("box", "n2"), row  # not the CLI's machine
        yield c, path
    finally:
        c.cli("down", "-v", "-f", path, check=False)


def _in_box(c, path: str, script: str) -> str:
    return c.cli("exec", "-f", path, "box", "sh", "-c", script, timeout=60).stdout


def test_a_file_copied_into_and_out_of_a_container_on_another_node(deployed, tmp_path):
    c, path = deployed
    local = tmp_path / "greeting.txt"
    local.write_bytes(b"hello from the CLI's machine\n" * 1000)
    into = c.cli("cp", "-f", path, str(local), "box:/tmp/greeting.txt")
    assert "Successfully copied" in into.stderr and "box" in into.stderr
    assert _in_box(c, path, "md5sum /tmp/greeting.txt").split()[0] == \
        hashlib.md5(local.read_bytes()).hexdigest()

    _in_box(c, path, "mkdir -p /tmp/made && echo made on n2 > /tmp/made/a && echo b > /tmp/made/b")
    out = c.cli("cp", "-f", path, "box:/tmp/made/a", str(tmp_path / "a.txt"))
    assert (tmp_path / "a.txt").read_text() == "made on n2\n"
    assert out.stderr.startswith("Successfully copied")
    # a directory, into a local directory that exists (it lands inside, as docker cp puts it)
    (tmp_path / "into").mkdir()
    c.cli("cp", "-f", path, "box:/tmp/made", str(tmp_path / "into"))
    assert (tmp_path / "into" / "made" / "b").read_text() == "b\n"
    # a symlink there: copied as a link, or with -L as the file it points to
    _in_box(c, path, "ln -s /tmp/made/a /tmp/link")
    c.cli("cp", "-f", path, "box:/tmp/link", str(tmp_path / "link"))
    assert os.readlink(tmp_path / "link") == "/tmp/made/a"
    c.cli("cp", "-f", path, "-L", "box:/tmp/link", str(tmp_path / "followed"))
    assert (tmp_path / "followed").read_text() == "made on n2\n"


def test_a_directory_placed_by_docker_cp_rules_on_the_other_node(deployed, tmp_path):
    c, path = deployed
    src = tmp_path / "conf"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "x.conf").write_text("x = 1\n")
    # DEST does not exist: the directory is copied as DEST; it exists: into it
    c.cli("cp", "-f", path, str(src), "box:/tmp/conf-new")
    c.cli("cp", "-f", path, str(src), "box:/tmp")
    assert _in_box(c, path, "cat /tmp/conf-new/sub/x.conf /tmp/conf/sub/x.conf") == "x = 1\n" * 2


def test_tar_on_stdout_and_stdin_across_nodes(deployed, tmp_path):
    c, path = deployed
    _in_box(c, path, "echo streamed > /tmp/s.txt")
    env = {**os.environ, "STACKCTL_WARM": "0", "STACKCTL_NODES": c.inventory}
    out = subprocess.run([sys.executable, "-m", "stackctl", "cp", "-f", path, "box:/tmp/s.txt", "-"],
                         capture_output=True, env=env, cwd=c.dir, timeout=120)
    assert out.returncode == 0, out.stderr
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        assert tar.extractfile("s.txt").read() == b"streamed\n"

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"from stdin\n"
        info = tarfile.TarInfo("in.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    put = subprocess.run([sys.executable, "-m", "stackctl", "cp", "-f", path, "-", "box:/tmp"],
                         input=buf.getvalue(), capture_output=True, env=env, cwd=c.dir,
                         timeout=120)
    assert put.returncode == 0, put.stderr
    assert _in_box(c, path, "cat /tmp/in.txt") == "from stdin\n"


def test_a_missing_path_on_the_other_node_is_one_clear_line(deployed, tmp_path):
    c, path = deployed
    out = c.cli("cp", "-f", path, "box:/tmp/no-such-file", str(tmp_path / "x"), check=False)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "on node n2" in lines[0] and "/tmp/no-such-file" in lines[0], lines
    assert not (tmp_path / "x").exists()
    # into a directory that does not exist there
    (tmp_path / "f").write_text("f\n")
    out = c.cli("cp", "-f", path, str(tmp_path / "f"), "box:/no/such/dir/f", check=False)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "on node n2" in lines[0] and "/no/such/dir" in lines[0], lines


def test_all_copies_into_every_replica_on_their_nodes(deployed, tmp_path):
    c, _ = deployed
    path = c.write_stack("""services:
  pair:
    image: stackctl/busybox:latest
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    deploy:
      replicas: 2
      placement:
        constraints: ["node.hostname != n1"]
        max_replicas_per_node: 1
""")
    try:
        c.cli("up", "-d", "--wait", "--wait-timeout", "120", "-f", path)
        assert sorted(r["Node"] for r in c.ps(path)) == ["n2", "n3"]
        (tmp_path / "both.txt").write_text("to every replica\n")
        out = c.cli("cp", "-f", path, "--all", str(tmp_path / "both.txt"), "pair:/tmp/both.txt")
        assert out.stderr.count("Successfully copied") == 2, out.stderr
        for slot in ("pair.1", "pair.2"):
            got = c.cli("exec", "-f", path, slot, "cat", "/tmp/both.txt", timeout=60).stdout
            assert got == "to every replica\n", slot
    finally:
        c.cli("down", "-v", "-f", path, check=False)
