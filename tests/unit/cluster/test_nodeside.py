"""The node side of `node bootstrap` (stackctl/cluster/nodeside.py), its pure parts: the
manager's authorized_keys entry (forced command, restrict, one per key), merging host keys
into the manager's known_hosts, paths from the node's environment; and bootstrap's plan and
source hash (stackctl/cluster/bootstrap.py)."""

from __future__ import annotations

import os

from stackctl.cluster import bootstrap as B
from stackctl.cluster import inventory as I
from stackctl.cluster import nodeside as N

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHbl+aL+ThF+xHxUEmksNmdR+BOEq3C4dSwad5qHHfob stackctl-manager"
CMD = "/opt/stackctl/bin/stackctl agent dial-stdio"


def test_forced_command_line():
    assert N.forced_command_line(PUB, CMD) == (
        f'command="{CMD}",restrict ssh-ed25519 '
        "AAAAC3NzaC1lZDI1NTE5AAAAIHbl+aL+ThF+xHxUEmksNmdR+BOEq3C4dSwad5qHHfob stackctl-manager")


def test_authorized_keys_added_once_and_others_kept():
    user = "ssh-rsa AAAAB3Nza user@laptop"
    text = f"# keys\n{user}\n"
    once = N.authorized_keys_text(text, PUB, CMD)
    assert once == f"# keys\n{user}\n{N.forced_command_line(PUB, CMD)}\n"
    assert N.authorized_keys_text(once, PUB, CMD) == once  # idempotent
    assert N.authorized_keys_text("", PUB, CMD) == N.forced_command_line(PUB, CMD) + "\n"


def test_an_older_entry_for_the_key_is_replaced_in_place():
    blob = PUB.split()[1]
    text = f"ssh-ed25519 {blob} stackctl-manager\nssh-rsa AAAA other\n" \
           f'command="/old/bin/stackctl agent dial-stdio" ssh-ed25519 {blob} x\n'
    new = N.authorized_keys_text(text, PUB, CMD).splitlines()
    assert new == [N.forced_command_line(PUB, CMD), "ssh-rsa AAAA other"]


def test_merge_known_hosts():
    text = "10.0.0.2 ssh-ed25519 AAAAold\n# c\n"
    out = N.merge_known_hosts(text, ["10.0.0.2 ssh-ed25519 AAAAnew", "[10.0.0.3]:2222 ssh-rsa BBBB"])
    assert out == "10.0.0.2 ssh-ed25519 AAAAnew\n# c\n[10.0.0.3]:2222 ssh-rsa BBBB\n"
    assert N.merge_known_hosts(out, ["[10.0.0.3]:2222 ssh-rsa BBBB"]) == out


def test_update_file_writes_only_a_change(tmp_path):
    p = tmp_path / "authorized_keys"
    assert N.update_file(str(p), lambda t: N.authorized_keys_text(t, PUB, CMD), mode=0o600) == 1
    assert oct(os.stat(p).st_mode & 0o777) == "0o600"
    mtime = os.stat(p).st_mtime_ns
    assert N.update_file(str(p), lambda t: N.authorized_keys_text(t, PUB, CMD)) == 0
    assert os.stat(p).st_mtime_ns == mtime


def test_env_paths():
    assert N.env_paths({"HOME": "/home/u"}) == {
        "prefix": "/opt/stackctl", "state": "/var/lib/stackctl", "run": "/run/stackctl",
        "authorized_keys": "/home/u/.ssh/authorized_keys"}
    got = N.env_paths({"HOME": "/h", "STACKCTL_PREFIX": "/p", "STACKCTL_AUTHORIZED_KEYS": "/k"})
    assert got["prefix"] == "/p" and got["authorized_keys"] == "/k"


def test_manager_key_made_once_locally(tmp_path, monkeypatch):
    monkeypatch.setenv("STACKCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STACKCTL_PREFIX", str(tmp_path / "noprefix"))
    first = N.manager_key({"known_hosts": ["10.0.0.2 ssh-ed25519 AAAA"]})
    assert first["made"] and first["public_key"].startswith("ssh-ed25519 ")
    assert oct(os.stat(first["key"]).st_mode & 0o777) == "0o600"
    again = N.manager_key({"known_hosts": ["10.0.0.2 ssh-ed25519 AAAA"]})
    assert not again["made"] and again["public_key"] == first["public_key"]
    assert again["known_hosts_added"] == 0
    assert (tmp_path / "state" / "known_hosts").read_text() == "10.0.0.2 ssh-ed25519 AAAA\n"


def test_source_hash_follows_the_sources(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    pkg = tmp_path / "stackctl"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "9.9"\n')
    (pkg / "__pycache__" / "x.pyc").write_bytes(b"junk")
    h = B.source_hash(str(tmp_path))
    assert B._source_files(str(tmp_path)) == ["pyproject.toml", "stackctl/__init__.py"]
    (pkg / "__pycache__" / "y.pyc").write_bytes(b"more junk")
    assert B.source_hash(str(tmp_path)) == h  # caches do not count
    (pkg / "__init__.py").write_text('__version__ = "9.10"\n')
    assert B.source_hash(str(tmp_path)) != h
    assert B._version_of(str(tmp_path)) == "9.10"


def test_plan_for_the_manager_and_for_a_worker(tmp_path):
    inv = I.Inventory(path=None)
    m = inv.add(I.Node("m", "ssh://root@10.0.0.1"))
    w = inv.add(I.Node("w", "ssh://root@10.0.0.2"))
    root = B.project_root()
    for_manager = B.plan(inv, m, root=root, cache=str(tmp_path))
    for_worker = B.plan(inv, w, root=root, cache=str(tmp_path))
    assert len(for_manager) == 6 and "make the manager's key" in for_manager[-1]
    assert len(for_worker) == 8 and "authorize it on w" in for_worker[6]
    assert f"into {tmp_path}" in for_worker[0]  # nothing cached there


def test_link_on_path_only_at_the_default_prefix_and_never_over_another(tmp_path):
    link = str(tmp_path / "stackctl")
    exe = "/opt/stackctl/bin/stackctl"
    assert N._link_on_path("/elsewhere", exe, link) is None and not os.path.lexists(link)
    assert N._link_on_path(N.DEFAULT_PREFIX, exe, link) == link and os.readlink(link) == exe
    assert N._link_on_path(N.DEFAULT_PREFIX, exe, link) == link  # again: kept
    other = tmp_path / "other"
    other.write_text("#!/bin/sh\n")
    assert N._link_on_path(N.DEFAULT_PREFIX, exe, str(other)) is None
    assert other.read_text() == "#!/bin/sh\n"


def test_bootstrap_of_the_local_manager_only_makes_its_key(tmp_path, monkeypatch):
    monkeypatch.setenv("STACKCTL_STATE_DIR", str(tmp_path / "state"))
    inv = I.Inventory(path=None)
    here = inv.add(I.Node("here", "local"))
    lines: list[str] = []
    out = B.bootstrap_node(inv, here, echo=lines.append, cache=str(tmp_path / "cache"))
    assert out["manager_key"]["made"] and lines[0].startswith("here: this machine")
    assert os.path.exists(tmp_path / "state" / N.MANAGER_KEY_NAME)
    assert not (tmp_path / "cache").exists()  # nothing built


def test_missing_packages_asks_dpkg():
    import shutil

    import pytest

    if shutil.which("dpkg-query") is None:
        pytest.skip("no dpkg here")
    assert N._missing_packages(["procps", "stackctl-no-such-package"]) == ["stackctl-no-such-package"]
