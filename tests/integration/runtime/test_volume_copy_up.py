"""A named volume's first mount onto a non-empty image directory copies the content in with
owners, modes, symlinks, hard links and xattrs kept (as root)."""

from __future__ import annotations

import os
import stat

import pytest

from stackctl.runtime.containers.rootfs import copy_tree

pytestmark = pytest.mark.root

IMG = "bb:latest"


def _make_tree(root: str) -> None:
    os.makedirs(os.path.join(root, "sub"))
    f = os.path.join(root, "owned")
    with open(f, "w") as fh:
        fh.write("secret\n")
    os.chown(f, 1000, 1000)
    os.chmod(f, 0o640)
    os.chown(os.path.join(root, "sub"), 1000, 1001)
    os.chmod(os.path.join(root, "sub"), 0o2750)
    os.symlink("../owned", os.path.join(root, "sub", "link"))
    os.lchown(os.path.join(root, "sub", "link"), 1000, 1000)
    os.link(f, os.path.join(root, "hard"))
    suid = os.path.join(root, "suid")
    with open(suid, "w") as fh:
        fh.write("#!/bin/sh\n")
    os.chown(suid, 1000, 1000)
    os.chmod(suid, 0o4755)
    os.mkfifo(os.path.join(root, "fifo"), 0o600)
    try:
        os.setxattr(f, "user.note", b"kept")
    except OSError:
        pass  # the filesystem of tmp has no user xattrs: the rest is still checked
    os.chown(root, 1000, 1000)
    os.chmod(root, 0o750)


def test_copy_tree_keeps_metadata(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    os.mkdir(src)
    os.mkdir(dst)
    _make_tree(src)
    copy_tree(src, dst)

    def meta(p):
        st = os.lstat(p)
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), stat.S_IFMT(st.st_mode)

    for rel in ("", "owned", "sub", "sub/link", "suid", "fifo"):
        assert meta(os.path.join(dst, rel)) == meta(os.path.join(src, rel)), rel
    assert os.readlink(os.path.join(dst, "sub", "link")) == "../owned"
    assert os.stat(os.path.join(dst, "hard")).st_ino == os.stat(os.path.join(dst, "owned")).st_ino
    assert os.stat(os.path.join(dst, "owned")).st_mtime_ns == os.stat(os.path.join(src, "owned")).st_mtime_ns
    if "user.note" in os.listxattr(os.path.join(src, "owned")):
        assert os.getxattr(os.path.join(dst, "owned"), "user.note") == b"kept"


def test_named_volume_copy_up_keeps_owner_and_mode(node_cli, node_paths, busybox_rootfs):
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore

    data = os.path.join(busybox_rootfs, "data")
    os.mkdir(data)
    _make_tree(data)
    import_rootfs(ImageStore(node_paths.images), busybox_rootfs, IMG, changes=['CMD ["sh"]'])
    cli = node_cli
    try:
        p = cli("run", "--rm", "-v", "vol:/data", IMG, "stat", "-c", "%n %u:%g %a",
                "/data", "/data/owned", "/data/sub", "/data/suid")
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines() == ["/data 1000:1000 750", "/data/owned 1000:1000 640",
                                         "/data/sub 1000:1001 2750", "/data/suid 1000:1000 4755"]
        p = cli("run", "--rm", "-v", "vol:/data", IMG, "sh", "-c", "readlink /data/sub/link; cat /data/sub/link")
        assert p.stdout == "../owned\nsecret\n", p.stderr
    finally:
        cli("volume", "rm", "-f", "vol")
