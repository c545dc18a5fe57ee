"""Layer tars without root: flat application, whiteouts, escapes, compression, round trips."""

import gzip
import hashlib
import io
import os
import tarfile

import pytest

from stackctl.runtime.images.layers import LayerError, apply_layer, detect_compression, diff_to_tar


def make_tar(entries) -> bytes:
    """entries: (name, kind, arg) with kind file/dir/sym/link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, arg in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "file":
                data = arg.encode()
                info.size, info.mode = len(data), 0o640
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, arg
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, arg
            tar.addfile(info)
    return buf.getvalue()


def test_apply_basic(tmp_path):
    data = make_tar([("./", "dir", None), ("d/", "dir", None), ("d/f", "file", "hello"), ("s", "sym", "d/f"),
                     ("h", "link", "d/f"), ("deep/er/x", "file", "implicit parents")])
    info = apply_layer(io.BytesIO(data), str(tmp_path), overlay=False)
    assert info.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert info.size == len("hello") + len("implicit parents") and info.tar_size == len(data)
    assert (tmp_path / "d" / "f").read_text() == "hello"
    assert os.readlink(tmp_path / "s") == "d/f"
    assert os.stat(tmp_path / "h").st_ino == os.stat(tmp_path / "d" / "f").st_ino
    assert oct(os.stat(tmp_path / "d").st_mode & 0o777) == oct(0o750)
    assert os.stat(tmp_path / "d" / "f").st_mtime == 1_600_000_000
    assert os.stat(tmp_path / "d").st_mtime == 1_600_000_000  # dir times set after children
    assert (tmp_path / "deep" / "er" / "x").exists()


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_compressed(tmp_path, compress):
    data = make_tar([("a", "file", "x" * 1000)])
    if compress == "gzip":
        blob = gzip.compress(data)
    else:
        import zstandard

        blob = zstandard.ZstdCompressor().compress(data)
    assert detect_compression(blob[:6]) == compress
    info = apply_layer(io.BytesIO(blob), str(tmp_path), overlay=False)
    assert info.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (tmp_path / "a").read_text() == "x" * 1000


def test_flat_whiteouts(tmp_path):
    (tmp_path / "gone").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "old").write_text("x")
    (tmp_path / "keep").write_text("x")
    data = make_tar([(".wh.gone", "file", ""), ("dir/", "dir", None), ("dir/new", "file", "n"),
                     ("dir/.wh..wh..opq", "file", "")])
    apply_layer(io.BytesIO(data), str(tmp_path), overlay=False)
    assert not (tmp_path / "gone").exists()
    assert sorted(os.listdir(tmp_path / "dir")) == ["new"]
    assert (tmp_path / "keep").exists()


@pytest.mark.parametrize("entries,msg", [
    ([("../evil", "file", "x")], "'..' would escape"),
    ([("a/../../evil", "file", "x")], "'..' would escape"),
    ([("/etc/evil", "file", "x")], "absolute path"),
    ([("up", "sym", "../../.."), ("up/evil", "file", "x")], "points outside the root"),
    ([("h", "link", "../outside")], "'..' would escape"),
    ([("f", "file", "x"), ("f/g", "file", "y")], "is not a directory"),
])
def test_escapes_refused(tmp_path, entries, msg):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(LayerError, match=msg):
        apply_layer(io.BytesIO(make_tar(entries)), str(root), overlay=False)
    assert sorted(os.listdir(tmp_path)) == ["root"]  # nothing written outside


def test_absolute_symlink_resolved_inside_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    data = make_tar([("etc/", "dir", None), ("link", "sym", "/etc"), ("link/passwd", "file", "inside")])
    apply_layer(io.BytesIO(data), str(root), overlay=False)
    assert (root / "etc" / "passwd").read_text() == "inside"
    assert os.readlink(root / "link") == "/etc"


def test_symlink_replaced_not_followed(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.write_text("host file")
    os.symlink(str(outside), root / "f")
    apply_layer(io.BytesIO(make_tar([("f", "file", "new")])), str(root), overlay=False)
    assert outside.read_text() == "host file"
    assert not os.path.islink(root / "f") and (root / "f").read_text() == "new"


def test_not_a_tar(tmp_path):
    with pytest.raises(LayerError, match="unreadable layer tar"):
        apply_layer(io.BytesIO(gzip.compress(b"garbage" * 100)), str(tmp_path), overlay=False)


def test_diff_to_tar_round_trip(tmp_path):
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "f").write_text("content")
    os.chmod(src / "d" / "f", 0o4755)
    os.link(src / "d" / "f", src / "hard")
    os.symlink("d/f", src / "sym")
    os.mkfifo(src / "fifo")
    try:
        os.setxattr(src / "d" / "f", "user.test", b"v\xff")
    except OSError:
        pass
    buf = io.BytesIO()
    info = diff_to_tar(str(src), buf, whiteouts=False)
    data = buf.getvalue()
    assert info.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert names == ["d", "d/e", "d/f", "fifo", "hard", "sym"]
    dst = tmp_path / "dst"
    dst.mkdir()
    again = apply_layer(io.BytesIO(data), str(dst), overlay=False)
    assert again.diff_id == info.diff_id
    assert (dst / "d" / "f").read_text() == "content"
    assert os.stat(dst / "d" / "f").st_mode & 0o7777 == 0o4755
    assert os.stat(dst / "hard").st_ino == os.stat(dst / "d" / "f").st_ino
    assert os.readlink(dst / "sym") == "d/f"
    if "user.test" in os.listxattr(src / "d" / "f"):
        assert os.getxattr(dst / "d" / "f", "user.test") == b"v\xff"
    # equal trees give equal tars
    buf2 = io.BytesIO()
    assert diff_to_tar(str(src), buf2, whiteouts=False).diff_id == info.diff_id
