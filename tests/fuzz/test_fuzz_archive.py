"""Image archives (``image load``): garbage bytes, tars with random members, manifests and
indexes of every wrong shape, members whose header claims a huge size, truncated archives.
Only an ArchiveError (a StackctlError, one line) ever comes out.

Layers are not fed here beyond garbage: what a layer's paths may do (``..``, links out of the
root) is the attack suite's (tests/security)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz_settings import FUZZ, bounded
from stackctl.runtime.images import archive
from stackctl.runtime.images.store import ImageStore

HEX = "a" * 64
NAMES = ["manifest.json", "index.json", "oci-layout", "repositories", f"blobs/sha256/{HEX}",
         f"{HEX}/layer.tar", "config.json", "./manifest.json", "/index.json", "x", "blobs/sha256/"]
DIGESTS = st.one_of(st.just(f"sha256:{HEX}"), st.text(max_size=80),
                    st.sampled_from(["sha256:", "sha512:" + HEX, "sha256:../../etc", "", "md5:1"]))

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=20), DIGESTS),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(
                                ["Config", "RepoTags", "Layers", "manifests", "mediaType",
                                 "digest", "size", "config", "layers", "rootfs", "diff_ids",
                                 "annotations", "platform", "architecture", "schemaVersion",
                                 "org.opencontainers.image.ref.name"]), inner, max_size=5)),
    max_leaves=20,
)
descriptor = st.fixed_dictionaries(
    {"mediaType": st.sampled_from(["application/vnd.oci.image.manifest.v1+json",
                                   "application/vnd.oci.image.index.v1+json", "x", ""]),
     "digest": DIGESTS},
    optional={"size": st.integers(-5, 2**70), "annotations": json_values,
              "platform": json_values})
docker_manifest = st.lists(st.fixed_dictionaries(
    {"Config": st.one_of(st.sampled_from(NAMES), st.text(max_size=20), json_values)},
    optional={"RepoTags": st.one_of(st.lists(st.text(max_size=30), max_size=3), json_values),
              "Layers": st.one_of(st.lists(st.sampled_from(NAMES), max_size=3), json_values)}),
    max_size=3)
oci_index = st.fixed_dictionaries({"manifests": st.one_of(st.lists(descriptor, max_size=3),
                                                          json_values)})
image_config = st.fixed_dictionaries({"rootfs": st.one_of(
    st.fixed_dictionaries({"diff_ids": st.one_of(st.lists(DIGESTS, max_size=3), json_values)}),
    json_values)})
contents = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    docker_manifest.map(lambda v: json.dumps(v).encode()),
    oci_index.map(lambda v: json.dumps(v).encode()),
    image_config.map(lambda v: json.dumps(v).encode()),
    st.just(b'{"imageLayoutVersion": "1.0.0"}'),
    st.just(b"[" * 100_000),  # JSON nested past the parser's recursion limit
)
members = st.lists(st.tuples(st.sampled_from(NAMES), contents,
                             st.sampled_from(["file", "symlink", "hardlink", "dir"])),
                   max_size=6)


def _tar(entries, *, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                             "dir": tarfile.DIRTYPE}[kind]
                info.linkname = data[:50].decode("latin-1")
                tar.addfile(info)
    raw = buf.getvalue()
    return gzip.compress(raw) if compress else raw


@pytest.fixture
def store(tmp_path):
    return ImageStore(str(tmp_path / "store"))


def _load(store, data: bytes) -> None:
    with bounded():
        archive.load(store, io.BytesIO(data))


@FUZZ
@given(data=st.binary(max_size=2000))
def test_garbage_bytes(store, data):
    _load(store, data)


@FUZZ
@given(entries=members, compress=st.booleans(), cut=st.integers(0, 4000))
def test_random_members(store, entries, compress, cut):
    raw = _tar(entries, compress=compress)
    _load(store, raw)
    _load(store, raw[:cut])  # truncated anywhere


@FUZZ
@given(manifest=docker_manifest, config=image_config)
def test_docker_manifests_of_every_shape(store, manifest, config):
    _load(store, _tar([("manifest.json", json.dumps(manifest).encode(), "file"),
                       ("config.json", json.dumps(config).encode(), "file"),
                       (f"{HEX}/layer.tar", b"garbage", "file")]))


@FUZZ
@given(index=oci_index, blob=contents)
def test_oci_indexes_of_every_shape(store, index, blob):
    _load(store, _tar([("oci-layout", b'{"imageLayoutVersion": "1.0.0"}', "file"),
                       ("index.json", json.dumps(index).encode(), "file"),
                       (f"blobs/sha256/{HEX}", blob, "file")]))


@pytest.mark.parametrize("size", [2**33, 8**11 - 1])
def test_member_claiming_a_huge_size(store, size):
    """A header that says 8 GiB, followed by a few bytes: the read ends, in little memory."""
    info = tarfile.TarInfo("manifest.json")
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    _load(store, header + b"[" + b" " * 1000)


def test_huge_manifest_is_refused_not_read(store):
    big = b"[" + b" " * (64 * 1024 * 1024) + b"]"
    _load(store, _tar([("manifest.json", big, "file")]))


MAGIC = [b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"BZh9", b"\x1f\x8b\x08\x00"]


@FUZZ
@given(magic=st.sampled_from(MAGIC), rest=st.binary(max_size=500))
def test_compressed_garbage(store, magic, rest):
    _load(store, magic + rest)


@FUZZ
@given(layer=st.one_of(st.binary(max_size=300), st.sampled_from(MAGIC).map(lambda m: m + b"x" * 40)),
       diff_id=DIGESTS)
def test_garbage_layer(store, layer, diff_id):
    config = {"rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    manifest = [{"Config": "config.json", "RepoTags": ["x:1"], "Layers": [f"{HEX}/layer.tar"]}]
    _load(store, _tar([("manifest.json", json.dumps(manifest).encode(), "file"),
                       ("config.json", json.dumps(config).encode(), "file"),
                       (f"{HEX}/layer.tar", layer, "file")]))
