"""The image store with one-layer images imported from directories (no root needed)."""

import json
import multiprocessing
import os

import pytest

from stackctl.errors import ConflictError, NotFoundError
from stackctl.runtime.images import archive
from stackctl.runtime.images.store import ImageStore


def rootfs(tmp_path, name, content):
    d = tmp_path / name
    d.mkdir()
    (d / "file").write_text(content)
    return str(d)


@pytest.fixture
def store(node_paths):
    return ImageStore(node_paths.images)


def test_import_resolve_list(store, tmp_path):
    img = archive.import_rootfs(store, rootfs(tmp_path, "r", "a"), "app:1", changes=['CMD ["sh"]'])
    assert img.id.startswith("sha256:") and img.repo_tags == ["app:1"] and img.size == 1
    assert img.config["config"]["Cmd"] == ["sh"]
    assert img.config["rootfs"]["diff_ids"] == [img.layers[0]["digest"]]
    [layer] = img.layer_dirs()
    assert os.path.isfile(os.path.join(layer, "file"))
    for ref in ("app:1", img.id, img.id[7:19], img.id[7:], f"app@{img.manifest_digest}"):
        assert store.resolve(ref).id == img.id
    with pytest.raises(NotFoundError, match="image 'app' not found locally; build it"):
        store.resolve("app")
    # the store root is an OCI layout
    with open(os.path.join(store.root, "oci-layout")) as f:
        assert json.load(f) == {"imageLayoutVersion": "1.0.0"}


def test_layers_shared(store, tmp_path):
    src = rootfs(tmp_path, "r", "same")
    a = archive.import_rootfs(store, src, "a")
    b = archive.import_rootfs(store, src, "b")
    assert a.layer_dirs() == b.layer_dirs()
    assert len([n for n in os.listdir(os.path.join(store.root, "layers")) if not n.endswith(".json")]) == 1


def test_tag_retag_and_dangling(store, tmp_path):
    one = archive.import_rootfs(store, rootfs(tmp_path, "r1", "1"), "app")
    store.tag("app", "other:v")
    assert sorted(store.resolve("app").repo_tags) == ["app:latest", "other:v"]
    two = archive.import_rootfs(store, rootfs(tmp_path, "r2", "2"), "app")
    assert store.resolve("app").id == two.id
    assert store.resolve(one.id).repo_tags == ["other:v"]
    assert store.remove("other:v") == ["Untagged: other:v", f"Deleted: {one.id}"]
    with pytest.raises(NotFoundError):
        store.resolve(one.id)
    three = archive.import_rootfs(store, rootfs(tmp_path, "r3", "3"), "app")
    assert store.resolve(two.id).repo_tags == []  # dangling: <none>
    lines, reclaimed = store.prune()
    assert f"deleted: {two.id}" in lines and reclaimed > 0
    assert [i.id for i in store.list()] == [three.id]


def test_remove_rules(store, tmp_path):
    img = archive.import_rootfs(store, rootfs(tmp_path, "r", "x"), "a:1")
    store.tag("a:1", "b:1")
    with pytest.raises(ConflictError, match="referenced in multiple repositories"):
        store.remove(img.id)
    assert store.remove("b:1") == ["Untagged: b:1"]
    with pytest.raises(ConflictError, match="a container is using image"):
        store.remove("a:1", in_use={img.id})
    assert store.remove("a:1", force=True, in_use=lambda: [img.id]) == ["Untagged: a:1"]
    assert store.resolve(img.id).repo_tags == []  # kept, dangling, while in use
    assert store.prune(in_use={img.id})[0] == []
    store.tag(img.id, "c")
    assert store.remove("c", force=True) == ["Untagged: c:latest", f"Deleted: {img.id}"]
    assert os.listdir(os.path.join(store.root, "layers")) == []
    assert os.listdir(os.path.join(store.root, "blobs", "sha256")) == []


def test_prune_all(store, tmp_path):
    a = archive.import_rootfs(store, rootfs(tmp_path, "r1", "1"), "a")
    archive.import_rootfs(store, rootfs(tmp_path, "r2", "2"), "b")
    lines, _ = store.prune(all=True, in_use={a.id})
    assert "untagged: b:latest" in lines
    assert [i.repo_tags for i in store.list()] == [["a:latest"]]


def _import_many(root, base, n):
    store = ImageStore(root)
    for i in range(n):
        d = os.path.join(base, f"r{i}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f"), "w") as f:
            f.write(f"{base}{i}")
        archive.import_rootfs(store, d, f"{os.path.basename(base)}:{i}")


def test_concurrent_writers(store, tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_import_many, args=(store.root, str(tmp_path / f"p{k}"), 6)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    tags = sorted(t for i in store.list() for t in i.repo_tags)
    assert tags == sorted(f"p{k}:{i}" for k in range(3) for i in range(6))
