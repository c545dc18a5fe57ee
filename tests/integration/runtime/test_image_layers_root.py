"""Layers as root: ownership, xattrs, devices, overlay whiteouts, and upper dir -> layer tar."""

import io
import os
import stat
import subprocess
import tarfile

import pytest

from stackctl.runtime.images import mounts
from stackctl.runtime.images.layers import apply_layer, diff_to_tar

pytestmark = pytest.mark.root


def tar_of(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(name, type_=tarfile.REGTYPE, data=b"", **kw):
    info = tarfile.TarInfo(name)
    info.type = type_
    info.size = len(data) if type_ == tarfile.REGTYPE else 0
    for k, v in kw.items():
        setattr(info, k, v)
    return info, (data if type_ == tarfile.REGTYPE else None)


def test_ownership_xattrs_devices(tmp_path):
    f = entry("f", data=b"x", uid=1234, gid=5678, mode=0o2750)
    f[0].pax_headers = {"SCHILY.xattr.user.k": "v", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
                        "SCHILY.xattr.trusted.overlay.redirect": "/forged"}
    data = tar_of([
        entry("d", tarfile.DIRTYPE, uid=1, gid=2, mode=0o700), f,
        entry("null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        entry("l", tarfile.SYMTYPE, linkname="f", uid=7, gid=8),
    ])
    apply_layer(io.BytesIO(data), str(tmp_path))
    st = os.lstat(tmp_path / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o2750)
    assert os.getxattr(tmp_path / "f", "user.k") == b"v"
    assert len(os.getxattr(tmp_path / "f", "security.capability")) == 20
    assert "trusted.overlay.redirect" not in os.listxattr(tmp_path / "f")  # never forged
    d = os.lstat(tmp_path / "d")
    assert (d.st_uid, d.st_gid, stat.S_IMODE(d.st_mode)) == (1, 2, 0o700)
    n = os.lstat(tmp_path / "null")
    assert stat.S_ISCHR(n.st_mode) and os.major(n.st_rdev) == 1 and os.minor(n.st_rdev) == 3
    assert os.lstat(tmp_path / "l").st_uid == 7


def test_overlay_whiteouts_and_back(tmp_path):
    lower, layer, upper, scratch = (tmp_path / n for n in ("lower", "layer", "upper", "scratch"))
    for p in (lower, layer, upper, scratch):
        p.mkdir()
    (lower / "gone").write_text("old")
    (lower / "dir").mkdir()
    (lower / "dir" / "old").write_text("old")
    data = tar_of([entry(".wh.gone"), entry("dir", tarfile.DIRTYPE, mode=0o755),
                   entry("dir/.wh..wh..opq"), entry("dir/new", data=b"new")])
    apply_layer(io.BytesIO(data), str(layer))
    wh = os.lstat(layer / "gone")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(layer / "dir", "trusted.overlay.opaque") == b"y"
    with mounts.readonly_root([str(lower), str(layer)], str(scratch)) as root:
        assert sorted(os.listdir(root)) == ["dir"]
        assert os.listdir(os.path.join(root, "dir")) == ["new"]
    # changes made through an overlay come back out as OCI whiteouts
    with mounts.writable_root([str(lower)], str(upper), str(scratch)) as root:
        os.unlink(os.path.join(root, "gone"))
        subprocess.run(["rm", "-rf", os.path.join(root, "dir")], check=True)
        os.mkdir(os.path.join(root, "dir"))
        with open(os.path.join(root, "dir", "fresh"), "w") as f:
            f.write("fresh")
    buf = io.BytesIO()
    diff_to_tar(str(upper), buf)
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert ".wh.gone" in names and "dir/.wh..wh..opq" in names and "dir/fresh" in names
    assert not any("overlay" in n for n in names)
    assert os.listdir(scratch) == []
