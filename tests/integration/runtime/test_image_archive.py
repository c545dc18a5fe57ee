"""load / save / import against real archives, skopeo and umoci."""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from stackctl.errors import StackctlError
from stackctl.runtime.images import archive, oci
from stackctl.runtime.images.busybox import make_busybox_image
from stackctl.runtime.images.store import ImageStore

pytestmark = pytest.mark.root


@pytest.fixture
def store(node_paths):
    return ImageStore(node_paths.images)


@pytest.fixture
def busybox(node_paths, store, busybox_rootfs):
    return make_busybox_image(node_paths, store, tag="bb:1", log=lambda _l: None)


def test_save_load_round_trip(tmp_path, store, busybox):
    out = tmp_path / "bb.tar"
    with open(out, "wb") as f:
        archive.save(store, ["bb:1"], f)
    names = tarfile.open(out).getnames()
    for n in ("oci-layout", "index.json", "manifest.json", "repositories"):
        assert n in names
    manifest = json.loads(tarfile.open(out).extractfile("manifest.json").read())
    assert manifest[0]["RepoTags"] == ["bb:1"] and manifest[0]["Config"] == "blobs/sha256/" + busybox.id[7:]
    other = ImageStore(str(tmp_path / "other"))
    assert archive.load(other, str(out)) == ["Loaded image: bb:1"]
    again = other.resolve("bb:1")
    assert again.id == busybox.id and again.size == busybox.size
    assert os.path.isfile(os.path.join(again.layer_dirs()[0], "bin", "busybox"))
    # gzip-compressed archive on a stream (like `docker load < x.tar.gz`)
    third = ImageStore(str(tmp_path / "third"))
    assert archive.load(third, io.BytesIO(gzip.compress(out.read_bytes()))) == ["Loaded image: bb:1"]


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")
def test_skopeo_reads_saved_archive_and_store(tmp_path, store, busybox):
    out = tmp_path / "bb.tar"
    with open(out, "wb") as f:
        archive.save(store, ["bb:1"], f)
    info = json.loads(subprocess.run(["skopeo", "inspect", f"oci-archive:{out}"], check=True,
                                     capture_output=True, text=True).stdout)
    assert info["Layers"] == [lay["digest"] for lay in busybox.layers]
    cfg = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci-archive:{out}"], check=True,
                                    capture_output=True, text=True).stdout)
    assert cfg["config"]["Cmd"] == ["sh"]
    # skopeo copies out of the store (an OCI layout) into an archive that loads back
    copied = tmp_path / "copied.tar"
    subprocess.run(["skopeo", "copy", "-q", f"oci:{store.root}:bb:1", f"oci-archive:{copied}:bb:copied"],
                   check=True, capture_output=True)
    fresh = ImageStore(str(tmp_path / "fresh"))
    lines = archive.load(fresh, str(copied))
    assert lines == ["Loaded image: bb:copied"]
    assert fresh.resolve("bb:copied").diff_ids == busybox.diff_ids


@pytest.mark.skipif(not shutil.which("umoci"), reason="umoci not installed")
def test_umoci_image_loads_and_runs(tmp_path, node_paths, store, busybox_rootfs):
    layout = tmp_path / "layout"
    run = lambda *a: subprocess.run(list(a), check=True, capture_output=True)  # noqa: E731
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:t")
    run("umoci", "insert", "--image", f"{layout}:t", busybox_rootfs, "/")
    run("umoci", "config", "--image", f"{layout}:t", "--config.cmd", "/bin/sh")
    tar_path = tmp_path / "umoci.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name in os.listdir(layout):
            tar.add(layout / name, arcname=name)
    lines = archive.load(store, str(tar_path))
    assert lines[0].startswith("Loaded image ID: sha256:")  # ref.name "t" names no repository
    img = store.resolve(lines[0].split(": ")[1])
    assert img.layers[0]["mediaType"] == oci.MT_LAYER_GZIP
    store.tag(img.id, "umoci:t")
    oneshot = pytest.importorskip("stackctl.runtime.containers.oneshot")
    upper = tmp_path / "upper"
    r, w = os.pipe()
    code = oneshot.run_oneshot(node_paths, lower_dirs=store.resolve("umoci:t").layer_dirs(), upper_dir=str(upper),
                               argv=["/bin/sh", "-c", "echo from-umoci; ls /bin/busybox"], env=["PATH=/bin"],
                               network="none", stdout=w, stderr=w)
    os.close(w)
    out = os.read(r, 65536).decode()
    os.close(r)
    assert code == 0, out
    assert "from-umoci" in out


def _oci_archive(tmp_path, layer_blob: bytes, diff_id: str, name: str) -> str:
    """A hand-made OCI archive with a nested index and one layer blob."""
    blobs = {}

    def put(data: bytes) -> str:
        d = oci.digest_bytes(data)
        blobs[d] = data
        return d

    config = oci.canonical_json(oci.new_config(diff_ids=[diff_id], config={"Cmd": ["x"]}))
    lay_digest = put(layer_blob)
    mt = {b"\x1f\x8b": oci.MT_LAYER_GZIP}.get(layer_blob[:2], oci.MT_LAYER_ZSTD)
    manifest = json.dumps(oci.new_manifest(put(config), len(config), [{"mediaType": mt, "digest": lay_digest, "size": len(layer_blob)}])).encode()
    m_digest = put(manifest)
    inner = json.dumps({"schemaVersion": 2, "mediaType": oci.MT_INDEX, "manifests": [
        {"mediaType": oci.MT_MANIFEST, "digest": m_digest, "size": len(manifest),
         "platform": {"architecture": oci.host_platform()["architecture"], "os": "linux"}}]}).encode()
    i_digest = put(inner)
    index = {"schemaVersion": 2, "manifests": [{"mediaType": oci.MT_INDEX, "digest": i_digest, "size": len(inner),
                                                "annotations": {oci.ANN_REF_NAME: name}}]}
    path = str(tmp_path / "oci.tar")
    with tarfile.open(path, "w") as tar:
        for n, data in [("oci-layout", oci.OCI_LAYOUT), ("index.json", json.dumps(index).encode())] + \
                       [(f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items()]:
            info = tarfile.TarInfo(n)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_load_oci_archive_compressed_layers(tmp_path, store, compression):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"world"))
    layer = buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    if compression == "gzip":
        blob = gzip.compress(layer)
    else:
        import zstandard

        blob = zstandard.ZstdCompressor().compress(layer)
    path = _oci_archive(tmp_path, blob, diff_id, "example.com/x:1")
    assert archive.load(store, path) == ["Loaded image: example.com/x:1"]
    img = store.resolve("example.com/x:1")
    with open(os.path.join(img.layer_dirs()[0], "hello")) as f:
        assert f.read() == "world"


def test_load_legacy_docker_save(tmp_path, store):
    """Docker < 25: <id>/layer.tar, the second image's layer a symlink to the first's."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("f")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"1"))
    layer = buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    cfg_a = oci.canonical_json(oci.new_config(diff_ids=[diff_id], config={"Cmd": ["a"]}))
    cfg_b = oci.canonical_json(oci.new_config(diff_ids=[diff_id], config={"Cmd": ["b"]}))
    manifest = [{"Config": "a.json", "RepoTags": ["a:1"], "Layers": ["l1/layer.tar"]},
                {"Config": "b.json", "RepoTags": None, "Layers": ["l2/layer.tar"]}]
    path = tmp_path / "legacy.tar"
    with tarfile.open(path, "w") as tar:
        for n, data in [("a.json", cfg_a), ("b.json", cfg_b), ("l1/layer.tar", layer),
                        ("manifest.json", json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(n)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("l2/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../l1/layer.tar"
        tar.addfile(link)
    lines = archive.load(store, str(path))
    assert lines[0] == "Loaded image: a:1" and lines[1].startswith("Loaded image ID: sha256:")
    assert store.resolve("a:1").layer_dirs() == store.resolve(lines[1].split(": ")[1]).layer_dirs()


def test_load_errors_leave_nothing(tmp_path, store):
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        info = tarfile.TarInfo("hello")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(StackctlError, match="not an image archive"):
        archive.load(store, str(bad))
    with pytest.raises(StackctlError, match="no such file"):
        archive.load(store, str(tmp_path / "missing.tar"))
    (tmp_path / "junk").write_bytes(b"junk" * 300)
    with pytest.raises(StackctlError, match="not a tar archive"):
        archive.load(store, str(tmp_path / "junk"))
    assert store.list() == []
    assert os.listdir(store.tmp_dir) == []


def test_import_tar_stdin_and_changes(tmp_path, store, busybox_rootfs):
    tar_path = tmp_path / "rootfs.tar.gz"
    subprocess.run(["tar", "-C", busybox_rootfs, "-czf", str(tar_path), "."], check=True)
    img = archive.import_rootfs(store, str(tar_path), "imp:1", changes=['CMD ["sh"]', "ENV A=b"])
    assert img.config["config"] == {"Cmd": ["sh"], "Env": ["A=b"]}
    assert img.config["history"][0]["comment"] == f"Imported from {tar_path}"
    with open(tar_path, "rb") as f:
        img2 = archive.import_rootfs(store, f, "imp:2")
    assert img2.diff_ids == img.diff_ids
    with pytest.raises(StackctlError, match="not a tar archive"):
        archive.import_rootfs(store, io.BytesIO(b"not a tar" * 100), "imp:3")
    assert not store.exists("imp:3")
