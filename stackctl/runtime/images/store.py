"""The local image store: an OCI image layout plus unpacked layers.

Layout under the store root (``NodePaths.images``)::

    oci-layout                  {"imageLayoutVersion": "1.0.0"}
    index.json                  OCI index: one manifest descriptor per tag (annotation
                                org.opencontainers.image.ref.name = "name:tag"), or one without
                                the annotation for an untagged (dangling) image
    blobs/sha256/<hex>          manifests, configs, layer tars (as received or built)
    layers/<diffid-hex>/        each layer unpacked once, overlay-ready (overlay whiteouts)
    layers/<diffid-hex>.json    {"diff_id", "size", "blob", "media_type"}
    cache/<key-hex>.json        build cache entries (see build/cache.py)
    tmp/                        work space: downloads, unpacking, build steps (same filesystem,
                                so results are renamed into place)
    lock, index.lock            flock files

The store root is therefore itself a valid OCI layout (``skopeo inspect oci:ROOT:name:tag``).
An image is identified by the digest of its config (Docker's image ID).

Concurrency: every file is written to ``tmp/`` and renamed into place, so readers never see a
half-written file and need no lock. ``index.json`` changes under an exclusive flock on
``index.lock``. Operations that add content (load, import, build) hold a *shared* flock on
``lock`` for their whole run; operations that delete content (rm, prune) hold it *exclusive*,
so garbage collection never removes a blob or layer that a concurrent load is about to use.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from stackctl.errors import ConflictError, NotFoundError, StackctlError, writing
from stackctl.runtime.images import oci
from stackctl.runtime.images.refs import normalize_tagged, parse_lookup, short_id

InUse = Callable[[], Iterable[str]] | Iterable[str] | None

_NOT_FOUND_HINT = ("build it (stackctl image build), load it (stackctl image load) "
                   "or import it (stackctl image import)")


@dataclass
class Image:
    id: str  # "sha256:<hex>" of the config blob
    repo_tags: list[str]
    config: dict[str, Any]  # the OCI image config JSON
    created: str
    size: int  # bytes, uncompressed layer content
    manifest_digest: str = ""
    layers: list[dict[str, Any]] = field(default_factory=list)  # manifest layer descriptors
    store_root: str = field(default="", repr=False)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    def layer_dirs(self) -> list[str]:
        """The unpacked layers, bottom -> top, ready as overlay lowerdirs."""
        return [os.path.join(self.store_root, "layers", oci.hex_of(d)) for d in self.diff_ids]


class ImageStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self._json_cache: dict[str, Any] = {}

    # --- paths ---------------------------------------------------------------------------
    def blob_path(self, digest: str) -> str:
        return os.path.join(self.root, "blobs", "sha256", oci.hex_of(digest))

    def layer_dir(self, diff_id: str) -> str:
        return os.path.join(self.root, "layers", oci.hex_of(diff_id))

    @property
    def tmp_dir(self) -> str:
        return os.path.join(self.root, "tmp")

    def _init(self) -> None:
        for d in ("blobs/sha256", "layers", "tmp", "cache"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        layout = os.path.join(self.root, "oci-layout")
        if not os.path.exists(layout):
            self._atomic_write(layout, oci.OCI_LAYOUT)

    # --- locks ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _flock(self, name: str, mode: int) -> Iterator[None]:
        self._init()
        fd = os.open(os.path.join(self.root, name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def ingesting(self) -> Iterator[None]:
        """Held (shared) while adding content; excludes garbage collection, not other adders.
        A full disk while adding is one :class:`DiskFullError`, raised after the adder's own
        cleanup removed what it half-wrote (temporary files, unpacked layers)."""
        with writing(self.root), self._flock("lock", fcntl.LOCK_SH):
            yield

    def _collecting(self) -> contextlib.AbstractContextManager[None]:
        return self._flock("lock", fcntl.LOCK_EX)

    def _index_locked(self) -> contextlib.AbstractContextManager[None]:
        return self._flock("index.lock", fcntl.LOCK_EX)

    # --- files ---------------------------------------------------------------------------
    def _atomic_write(self, path: str, data: bytes) -> None:
        tmpdir = os.path.join(self.root, "tmp")
        os.makedirs(tmpdir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmpdir, prefix="w-")
        try:
            with writing(path), os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def write_blob(self, data: bytes) -> str:
        digest = oci.digest_bytes(data)
        path = self.blob_path(digest)
        if not os.path.exists(path):
            self._init()
            self._atomic_write(path, data)
        return digest

    def write_blob_from(self, src: BinaryIO, expected: str | None = None) -> tuple[str, int]:
        """Copy a stream into the blob store; returns (digest, size). Checks ``expected``."""
        from stackctl.runtime.images.layers import HashingWriter

        self._init()
        fd, tmp = tempfile.mkstemp(dir=self.tmp_dir, prefix="blob-")
        try:
            with os.fdopen(fd, "wb") as f:
                w = HashingWriter(f)  # type: ignore[arg-type]
                shutil.copyfileobj(src, w, 1 << 20)  # type: ignore[misc]
            if expected and w.digest != expected:
                raise StackctlError(f"blob digest mismatch: expected {expected}, got {w.digest}",
                                    hint="the archive is corrupt or was modified")
            os.rename(tmp, self.blob_path(w.digest))
            return w.digest, w.count
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def read_json_blob(self, digest: str) -> Any:
        if digest not in self._json_cache:
            try:
                with open(self.blob_path(digest), "rb") as f:
                    self._json_cache[digest] = json.loads(f.read())
            except FileNotFoundError:
                raise StackctlError(f"image store is damaged: blob {digest} is missing",
                                    hint=f"remove and re-create the image; store at {self.root}") from None
            except ValueError as exc:
                raise StackctlError(f"image store is damaged: blob {self.blob_path(digest)} is not valid "
                                    f"JSON ({exc})",
                                    hint="remove the image (image rm -f) and load or build it again") from None
        return self._json_cache[digest]

    # --- layers --------------------------------------------------------------------------
    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(self.layer_dir(diff_id)) and os.path.exists(self.layer_dir(diff_id) + ".json")

    def layer_meta(self, diff_id: str) -> dict[str, Any]:
        try:
            with open(self.layer_dir(diff_id) + ".json") as f:
                return json.load(f)
        except FileNotFoundError:
            return {"diff_id": diff_id, "size": 0}

    def unpack_layer(self, blob_digest: str, media_type: str, expected_diff_id: str | None = None) -> str:
        """Unpack a stored layer blob into ``layers/<diffid>/`` once; returns the diff ID."""
        from stackctl.runtime.images.layers import LayerError, apply_layer

        if expected_diff_id and self.has_layer(expected_diff_id):
            return expected_diff_id
        self._init()
        work = tempfile.mkdtemp(dir=self.tmp_dir, prefix="layer-")
        try:
            dest = os.path.join(work, "root")
            os.mkdir(dest, 0o755)
            with open(self.blob_path(blob_digest), "rb") as f:
                try:
                    info = apply_layer(f, dest, overlay=True)
                except LayerError as exc:
                    raise LayerError(f"layer {short_id(blob_digest)}: {exc.message}") from None
            if expected_diff_id and info.diff_id != expected_diff_id:
                raise StackctlError(
                    f"layer {blob_digest} unpacks to {info.diff_id}, but the image config says {expected_diff_id}",
                    hint="the archive is corrupt or was modified")
            final = self.layer_dir(info.diff_id)
            if not self.has_layer(info.diff_id):
                meta = {"diff_id": info.diff_id, "size": info.size, "blob": blob_digest, "media_type": media_type}
                self._atomic_write(final + ".json", oci.canonical_json(meta))
                try:
                    os.rename(dest, final)
                except OSError:
                    if not os.path.isdir(final):  # not a lost race with another process
                        raise
            return info.diff_id
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def add_unpacked_layer(self, dir_path: str, blob_digest: str, media_type: str, diff_id: str, size: int) -> None:
        """Adopt an already unpacked, overlay-ready directory (same filesystem) as a layer."""
        final = self.layer_dir(diff_id)
        if self.has_layer(diff_id):
            shutil.rmtree(dir_path, ignore_errors=True)
            return
        meta = {"diff_id": diff_id, "size": size, "blob": blob_digest, "media_type": media_type}
        self._atomic_write(final + ".json", oci.canonical_json(meta))
        try:
            os.rename(dir_path, final)
        except OSError:
            if not os.path.isdir(final):
                raise
            shutil.rmtree(dir_path, ignore_errors=True)

    # --- index ---------------------------------------------------------------------------
    def _read_index(self) -> dict[str, Any]:
        path = os.path.join(self.root, "index.json")
        try:
            with open(path, "rb") as f:
                index = json.loads(f.read())
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": oci.MT_INDEX, "manifests": []}
        except ValueError as exc:
            raise _corrupt_index(path, str(exc)) from None
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
            raise _corrupt_index(path, "not an OCI index with a list of manifests")
        return index

    def _write_index(self, index: dict[str, Any]) -> None:
        self._atomic_write(os.path.join(self.root, "index.json"), json.dumps(index, indent=2).encode())

    def commit_image(self, config_bytes: bytes, layers: list[dict[str, Any]], tags: Iterable[str] = (),
                     manifest_bytes: bytes | None = None) -> Image:
        """Record an image whose layer blobs are stored and unpacked; tag it.

        ``layers`` are manifest layer descriptors (mediaType, digest, size), bottom -> top.
        A tag that pointed at another image moves; that image keeps its other tags or
        becomes dangling (``<none>``), as in Docker.
        """
        config_digest = self.write_blob(config_bytes)
        if manifest_bytes is None:
            manifest = oci.new_manifest(config_digest, len(config_bytes), layers)
            manifest_bytes = json.dumps(manifest, indent=2).encode()
        manifest_digest = self.write_blob(manifest_bytes)
        desc = oci.descriptor(oci.MT_MANIFEST, manifest_digest, len(manifest_bytes))
        media = json.loads(manifest_bytes).get("mediaType")
        if media:
            desc["mediaType"] = media
        tags = [normalize_tagged(t) for t in tags]
        with self._index_locked():
            index = self._read_index()
            entries = [e for e in index["manifests"] if _ref_name(e) not in tags]
            same = [e for e in entries if self._config_of(e) == config_digest]
            if tags:
                entries = [e for e in entries if not (self._config_of(e) == config_digest and not _ref_name(e))]
                mdesc = dict(same[0]) if same else desc
                for t in tags:
                    entries.append({**{k: v for k, v in mdesc.items() if k != "annotations"},
                                    "annotations": {oci.ANN_REF_NAME: t}})
            elif not same:
                entries.append(desc)
            entries = self._keep_dangling(index["manifests"], entries)
            index["manifests"] = entries
            self._write_index(index)
        return self._get_by_id(config_digest)

    def _keep_dangling(self, before: list[dict], after: list[dict]) -> list[dict]:
        """Images that lost their last tag stay as untagged entries."""
        ids_after = {self._config_of(e) for e in after}
        for e in before:
            cfg = self._config_of(e)
            if cfg not in ids_after:
                after.append({k: v for k, v in e.items() if k != "annotations"})
                ids_after.add(cfg)
        return after

    def _config_of(self, entry: dict[str, Any]) -> str:
        return self.read_json_blob(entry["digest"])["config"]["digest"]

    # --- queries -------------------------------------------------------------------------
    def list(self) -> list[Image]:
        """All images, newest first."""
        try:
            return self._list()
        except StackctlError:
            # an index read just before a concurrent `rm` collected its blobs: read it again
            self._json_cache.clear()
            return self._list()

    def _list(self) -> list[Image]:
        by_id: dict[str, Image] = {}
        for e in self._read_index().get("manifests", []):
            manifest = self.read_json_blob(e["digest"])
            cid = manifest["config"]["digest"]
            img = by_id.get(cid)
            if img is None:
                config = self.read_json_blob(cid)
                size = sum(int(self.layer_meta(d).get("size", 0)) for d in config.get("rootfs", {}).get("diff_ids", []))
                img = Image(id=cid, repo_tags=[], config=config, created=config.get("created", ""),
                            size=size, manifest_digest=e["digest"], layers=list(manifest.get("layers", [])),
                            store_root=self.root)
                by_id[cid] = img
            name = _ref_name(e)
            if name and name not in img.repo_tags:
                img.repo_tags.append(name)
        return sorted(by_id.values(), key=lambda i: i.created, reverse=True)

    def _get_by_id(self, image_id: str) -> Image:
        for img in self.list():
            if img.id == image_id:
                return img
        raise NotFoundError(f"image {image_id} not found locally")

    def resolve(self, ref: str) -> Image:
        """The image a user-given name, name:tag, digest or (short) ID denotes."""
        lookup = parse_lookup(ref)
        images = self.list()
        r = lookup.reference
        if r is not None:
            for img in images:
                if r.digest:
                    if r.digest in (img.id, img.manifest_digest):
                        return img
                elif r.tagged in img.repo_tags:
                    return img
        if lookup.id_prefix:
            found = [i for i in images if oci.hex_of(i.id).startswith(lookup.id_prefix)]
            if len(found) > 1:
                raise ConflictError(f"image ID prefix {ref!r} is ambiguous: it matches {len(found)} images",
                                    hint="give more digits")
            if found:
                return found[0]
        raise NotFoundError(f"image '{ref}' not found locally; {_NOT_FOUND_HINT}")

    def exists(self, ref: str) -> bool:
        try:
            self.resolve(ref)
            return True
        except NotFoundError:
            return False

    # --- changes -------------------------------------------------------------------------
    def tag(self, src: str, dst: str) -> Image:
        img = self.resolve(src)
        name = normalize_tagged(dst)
        with self._index_locked():
            index = self._read_index()
            before = list(index["manifests"])
            entries = [e for e in before if _ref_name(e) != name
                       and not (self._config_of(e) == img.id and not _ref_name(e))]
            entries.append({"mediaType": oci.MT_MANIFEST, "digest": img.manifest_digest,
                            "size": os.path.getsize(self.blob_path(img.manifest_digest)),
                            "annotations": {oci.ANN_REF_NAME: name}})
            entries[-1]["mediaType"] = self.read_json_blob(img.manifest_digest).get("mediaType", oci.MT_MANIFEST)
            index["manifests"] = self._keep_dangling(before, entries)
            self._write_index(index)
        return self._get_by_id(img.id)

    def remove(self, ref: str, force: bool = False, in_use: InUse = None) -> list[str]:
        """Untag and/or delete an image, as ``docker rmi`` does; returns the lines to print.

        ``in_use`` is the set of image IDs containers use (or a callable returning it); the
        container manager supplies it. An image in use is refused; with ``force`` it is only
        untagged (it stays, dangling, until its containers are gone and it is pruned).
        """
        with self._collecting():
            img = self.resolve(ref)
            used = img.id in _in_use_set(in_use)
            lookup = parse_lookup(ref)
            by_name = lookup.reference is not None and lookup.reference.tagged in img.repo_tags
            out: list[str] = []
            if by_name and len(img.repo_tags) > 1:
                return self._untag([lookup.reference.tagged])  # type: ignore[union-attr]
            if not by_name and len(img.repo_tags) > 1 and not force:
                raise ConflictError(
                    f"conflict: unable to delete {short_id(img.id)} (must be forced) - image is referenced "
                    f"in multiple repositories ({', '.join(img.repo_tags)})",
                    hint="remove it by name, or use --force to remove every tag")
            if used and not force:
                what = f"repository reference {ref!r}" if by_name else short_id(img.id)
                raise ConflictError(f"conflict: unable to remove {what} - a container is using image {short_id(img.id)}",
                                    hint="remove the container first, or use --force to only untag the image")
            out += self._untag(img.repo_tags)
            if used:
                return out
            out += self._delete_ids({img.id})
            return out

    def _untag(self, names: list[str]) -> list[str]:
        with self._index_locked():
            index = self._read_index()
            before = list(index["manifests"])
            entries = [e for e in before if _ref_name(e) not in names]
            index["manifests"] = self._keep_dangling(before, entries)
            self._write_index(index)
        return [f"Untagged: {n}" for n in names]

    def _delete_ids(self, ids: set[str]) -> list[str]:
        with self._index_locked():
            index = self._read_index()
            index["manifests"] = [e for e in index["manifests"] if self._config_of(e) not in ids]
            self._write_index(index)
        self._gc()
        return [f"Deleted: {i}" for i in sorted(ids)]

    def prune(self, all: bool = False, in_use: InUse = None, build_cache: bool = False) -> tuple[list[str], int]:
        """Delete dangling images (``all``: every image no container uses); returns the lines
        to print and the bytes reclaimed. ``build_cache`` also drops the build cache."""
        with self._collecting():
            used = _in_use_set(in_use)
            victims = [i for i in self.list() if i.id not in used and (all or not i.repo_tags)]
            before = self._disk_usage()
            out: list[str] = []
            for img in victims:
                out += [f"untagged: {t}" for t in img.repo_tags]
            if victims:
                self._untag([t for i in victims for t in i.repo_tags])
                with self._index_locked():
                    index = self._read_index()
                    ids = {i.id for i in victims}
                    index["manifests"] = [e for e in index["manifests"] if self._config_of(e) not in ids]
                    self._write_index(index)
                out += [f"deleted: {i.id}" for i in victims]
            if build_cache:
                shutil.rmtree(os.path.join(self.root, "cache"), ignore_errors=True)
                os.makedirs(os.path.join(self.root, "cache"), exist_ok=True)
            self._gc()
            return out, max(0, before - self._disk_usage())

    # --- garbage collection (caller holds the exclusive lock) ---------------------------------
    def _referenced(self) -> tuple[set[str], set[str]]:
        blobs: set[str] = set()
        diff_ids: set[str] = set()
        for e in self._read_index().get("manifests", []):
            blobs.add(e["digest"])
            manifest = self.read_json_blob(e["digest"])
            blobs.add(manifest["config"]["digest"])
            blobs.update(lay["digest"] for lay in manifest.get("layers", []))
            diff_ids.update(self.read_json_blob(manifest["config"]["digest"]).get("rootfs", {}).get("diff_ids", []))
        cache_dir = os.path.join(self.root, "cache")
        for name in os.listdir(cache_dir) if os.path.isdir(cache_dir) else []:
            try:
                with open(os.path.join(cache_dir, name)) as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue
            for lay in entry.get("layers", []):
                blobs.add(lay["digest"])
                diff_ids.add(lay["diff_id"])
        return blobs, diff_ids

    def _gc(self) -> None:
        blobs, diff_ids = self._referenced()
        bdir = os.path.join(self.root, "blobs", "sha256")
        for name in os.listdir(bdir):
            if "sha256:" + name not in blobs:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(bdir, name))
        ldir = os.path.join(self.root, "layers")
        keep = {oci.hex_of(d) for d in diff_ids}
        for name in os.listdir(ldir):
            hexpart = name[:-5] if name.endswith(".json") else name
            if hexpart not in keep:
                path = os.path.join(ldir, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
        # nothing is being added (we hold the exclusive lock): leftovers in tmp/ are garbage
        from stackctl.runtime.images.mounts import remove_unless_mounted

        for name in os.listdir(self.tmp_dir):
            remove_unless_mounted(os.path.join(self.tmp_dir, name))
        self._json_cache.clear()

    def _disk_usage(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, f)).st_size
        return total


def _ref_name(entry: dict[str, Any]) -> str:
    return entry.get("annotations", {}).get(oci.ANN_REF_NAME, "")


def _in_use_set(in_use: InUse) -> set[str]:
    if in_use is None:
        return set()
    if callable(in_use):
        in_use = in_use()
    return set(in_use)


def _corrupt_index(path: str, why: str) -> StackctlError:
    """The image index cannot be read (garbage left by a disk error: it is written by rename)."""
    return StackctlError(
        f"the image index {path} is corrupt ({why})",
        hint=f"move it away (mv {path} {path}.bad) to start with an empty image list, then load or "
             "build the images again; running containers are not affected")
