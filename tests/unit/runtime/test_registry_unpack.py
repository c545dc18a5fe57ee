"""A pulled layer's unpacking (no root, no registry): the spooled decompression of compressed
layers (TarSpool), the by-offset unpacking of an uncompressed tar (apply_plain_layer), and the
forked child that runs it (unpack_plain)."""

import bz2
import gzip
import hashlib
import io
import lzma
import os
import tarfile

import pytest
import zstandard

from stackctl.errors import StackctlError
from stackctl.runtime.images.layers import LayerError, apply_layer, apply_plain_layer
from stackctl.runtime.images.registry import unpack


def make_tar(entries) -> bytes:
    """entries: (name, kind, arg) with kind file/dir/sym/link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, arg in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "file":
                data = arg if isinstance(arg, bytes) else arg.encode()
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


ENTRIES = [("./", "dir", None), ("d/", "dir", None), ("d/f", "file", "hello"), ("s", "sym", "d/f"),
           ("h", "link", "d/f"), ("deep/er/x", "file", os.urandom(3 << 20)), ("empty", "file", b""),
           ("d/" + "long" * 40, "file", "a name longer than 100 bytes (a pax header)")]


def tree(root) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", oct(st.st_mode))  # (implicit parents get the time of unpacking)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", hashlib.sha256(f.read()).hexdigest(), oct(st.st_mode), st.st_mtime,
                                st.st_nlink)
    return out


def test_plain_layer_by_offset_equals_streamed(tmp_path):
    data = make_tar(ENTRIES)
    (tmp_path / "layer.tar").write_bytes(data)
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    streamed = apply_layer(io.BytesIO(data), str(a), overlay=False)
    by_offset = apply_plain_layer(str(tmp_path / "layer.tar"), str(b), diff_id, overlay=False)
    assert streamed == by_offset
    assert tree(a) == tree(b)
    assert (b / "deep" / "er" / "x").stat().st_size == 3 << 20


def test_plain_layer_cut_short_is_one_error(tmp_path):
    data = make_tar([("big", "file", os.urandom(100_000))])
    (tmp_path / "layer.tar").write_bytes(data[:50_000])
    (tmp_path / "out").mkdir()
    with pytest.raises(LayerError, match="unreadable layer tar"):
        apply_plain_layer(str(tmp_path / "layer.tar"), str(tmp_path / "out"), "sha256:x", overlay=False)


def test_plain_layer_refuses_compressed_input(tmp_path):
    (tmp_path / "layer.tar.gz").write_bytes(gzip.compress(make_tar(ENTRIES[:3])))
    (tmp_path / "out").mkdir()
    with pytest.raises(LayerError, match="compressed"):
        apply_plain_layer(str(tmp_path / "layer.tar.gz"), str(tmp_path / "out"), "sha256:x", overlay=False)


def compress(kind: str, data: bytes) -> bytes:
    return {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress,
            "zstd": zstandard.ZstdCompressor().compress}[kind](data)


def spool(tmp_path, kind: str, blob: bytes, chunk: int = 7919) -> unpack.TarSpool:
    s = unpack.TarSpool(str(tmp_path / "spool.tar"), kind)
    for i in range(0, len(blob), chunk):  # fed in odd-sized pieces, as a download gives them
        s.feed(blob[i:i + chunk])
    return s


@pytest.mark.parametrize("kind", ["gzip", "zstd", "bzip2", "xz"])
def test_spool_decompresses_and_hashes(tmp_path, kind):
    data = make_tar(ENTRIES)
    s = spool(tmp_path, kind, compress(kind, data))
    assert s.close() == ("sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    assert (tmp_path / "spool.tar").read_bytes() == data


def test_spool_gzip_members_and_padding(tmp_path):
    data = make_tar(ENTRIES)
    half = len(data) // 2
    blob = gzip.compress(data[:half]) + gzip.compress(data[half:]) + b"\0" * 1024  # as `cat a.gz b.gz`
    s = spool(tmp_path, "gzip", blob)
    assert s.close()[0] == "sha256:" + hashlib.sha256(data).hexdigest()


def test_spool_highly_compressed_chunk_is_bounded(tmp_path):
    data = make_tar([("zeros", "file", b"\0" * (40 << 20))])
    blob = gzip.compress(data)
    assert len(blob) < 100_000  # one feed() that expands 400x: written out 4 MiB at a time
    s = spool(tmp_path, "gzip", blob, chunk=len(blob))
    assert s.close() == ("sha256:" + hashlib.sha256(data).hexdigest(), len(data))


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_spool_truncated_or_corrupt_is_one_error(tmp_path, kind):
    blob = compress(kind, make_tar(ENTRIES))
    s = spool(tmp_path, kind, blob[: len(blob) // 2])
    with pytest.raises(LayerError, match=f"unreadable {kind} layer: the compressed stream ends early"):
        s.close()
    bad = bytearray(blob)
    # gzip checks a CRC of the content; zstd (without its optional checksum) only its framing
    at = len(bad) // 3 if kind == "gzip" else 4
    bad[at:at + 64] = b"\xff" * 64
    s = spool(tmp_path, kind, bytes(bad))  # no exception while feeding: the download goes on
    with pytest.raises(LayerError, match=f"unreadable {kind} layer"):
        s.close()
    s.discard()
    assert not (tmp_path / "spool.tar").exists()


def test_unpack_plain_in_a_child(tmp_path):
    data = make_tar(ENTRIES)
    (tmp_path / "layer.tar").write_bytes(data)
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    (tmp_path / "out").mkdir()
    r, w = os.pipe()  # a descriptor the child must not keep open (another layer's pipe)
    try:
        info = unpack.unpack_plain(str(tmp_path / "layer.tar"), str(tmp_path / "out"), diff_id)
    finally:
        os.close(w)
    assert os.read(r, 1) == b""  # EOF: the child had closed its copy of w (it has exited anyway)
    os.close(r)
    assert info.diff_id == diff_id and info.tar_size == len(data)
    assert (tmp_path / "out" / "d" / "f").read_text() == "hello"


def test_unpack_plain_error_is_one_line(tmp_path):
    (tmp_path / "layer.tar").write_bytes(make_tar([("../escape", "file", "x")]))
    (tmp_path / "out").mkdir()
    with pytest.raises(StackctlError, match=r"refusing tar entry '\.\./escape'"):
        unpack.unpack_plain(str(tmp_path / "layer.tar"), str(tmp_path / "out"), "sha256:x")
    assert not (tmp_path / "escape").exists()
