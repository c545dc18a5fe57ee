"""`stackctl node add / ls / update` against the one-machine cluster: an unknown host key is
refused with its fingerprint and nothing is written; `--accept-host-key` writes it to the
node's known_hosts file; `node ls` gets STATUS and ENGINE VERSION from the manager (n1's
agent, reached over SSH)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from stackctl.cluster import inventory as I

pytestmark = pytest.mark.root


def stackctl(cwd, *args, env=None, timeout=120):
    e = dict(os.environ, STACKCTL_WARM="0", **(env or {}))
    e.pop("STACKCTL_NODES", None)
    return subprocess.run([sys.executable, "-m", "stackctl", "node", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


def fingerprint(pub_file: str) -> str:
    return subprocess.run(["ssh-keygen", "-lf", pub_file], capture_output=True, text=True,
                          check=True).stdout.split()[1]


def test_unknown_host_key_refused_then_accepted(shared_cluster, tmp_path):
    c = shared_cluster
    n1 = c.node("n1")
    kh = tmp_path / "kh"  # a known_hosts file that does not know n1 yet
    args = ["add", n1.url, "--name", "n1", "--identity", c.client_key, "--known-hosts", str(kh)]
    fp = fingerprint(os.path.join(n1.ssh_dir, "host_key.pub"))

    r = stackctl(tmp_path, *args)
    assert r.returncode == 1 and r.stdout == ""
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"error: host key of {n1.address}:22 is unknown (fingerprint {fp})"), r.stderr
    assert not (tmp_path / "nodes.yml").exists() and not kh.exists()

    r = stackctl(tmp_path, *args, "--accept-host-key")
    assert r.returncode == 0, r.stderr
    assert f"{fp}; accepted (--accept-host-key), written to {kh}" in r.stderr
    line = kh.read_text().split()
    with open(os.path.join(n1.ssh_dir, "host_key.pub")) as f:
        assert line[0] == n1.address and line[1:3] == f.read().split()[:2]
    inv = I.load_inventory(str(tmp_path / "nodes.yml"))
    assert inv.manager.name == "n1" and inv.manager.id == r.stdout.strip()

    # accepted once: another inventory using that known_hosts file needs no flag now
    other = tmp_path / "other"
    other.mkdir()
    r = stackctl(other, *args)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert kh.read_text().count("\n") == 1


def test_a_changed_host_key_is_refused_even_with_accept(shared_cluster, tmp_path):
    c = shared_cluster
    n2 = c.node("n2")
    kh = tmp_path / "kh"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    alg, b64 = (tmp_path / "k.pub").read_text().split()[:2]
    kh.write_text(f"{n2.address} {alg} {b64}\n")
    r = stackctl(tmp_path, "add", n2.url, "--name", "n2", "--identity", c.client_key,
                 "--known-hosts", str(kh), "--accept-host-key")
    assert r.returncode == 1 and "has CHANGED" in r.stderr.splitlines()[0]
    assert not (tmp_path / "nodes.yml").exists()
    assert kh.read_text() == f"{n2.address} {alg} {b64}\n"


def test_ls_shows_the_managers_view(shared_cluster, tmp_path):
    c = shared_cluster
    for name in ("n1", "n2"):
        r = stackctl(tmp_path, "add", c.node(name).url, "--name", name, "--identity", c.client_key,
                     "--known-hosts", c.known_hosts, "--label", f"zone={name}")
        assert r.returncode == 0, r.stderr
    r = stackctl(tmp_path, "update", "n2", "--availability", "pause")
    assert (r.returncode, r.stdout) == (0, "n2\n"), r.stderr
    deadline = time.monotonic() + 60
    while True:  # the manager connects to n2 after it was told the inventory
        r = stackctl(tmp_path, "ls")
        assert r.returncode == 0, r.stderr
        rows = {line.split()[2 if " * " in line else 1]: line for line in r.stdout.splitlines()[1:]}
        if "Ready" in rows["n2"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # polling another process's view: nothing to wait on here
    assert r.stderr == ""
    inv = I.load_inventory(str(tmp_path / "nodes.yml"))
    from stackctl import __version__

    assert rows["n1"].split() == [inv.get("n1").id, "*", "n1", "Ready", "Active", "Leader", __version__]
    assert rows["n2"].split() == [inv.get("n2").id, "n2", "Ready", "Pause", __version__]
