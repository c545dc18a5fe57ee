"""Image archives: ``image load`` / ``image save`` / ``image import``.

``load`` reads both archive formats a user meets:

- ``docker save`` archives: ``manifest.json`` (``[{Config, RepoTags, Layers}]``) with layers as
  ``<id>/layer.tar`` (Docker < 25) or ``blobs/sha256/<hex>`` (Docker >= 25);
- OCI image archives: ``oci-layout`` + ``index.json`` (nested indexes are followed, picking
  this host's platform), blobs under ``blobs/sha256/``.

The archive itself may be gzip-compressed; layers may be plain, gzip or zstd.

``save`` writes one tar that is both (as Docker >= 25 does): ``oci-layout``, ``index.json``,
``blobs/sha256/...``, plus ``manifest.json`` and ``repositories`` pointing at the same blobs,
so ``docker load``, ``skopeo inspect oci-archive:FILE`` and umoci all read it.

``import`` makes a one-layer image from a root filesystem tar (or a directory), like
``docker import``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from typing import Any, BinaryIO, Iterator

from stackctl.errors import StackctlError, UsageError, is_disk_full
from stackctl.runtime.images import oci
from stackctl.runtime.images.layers import (
    HashingWriter,
    detect_compression,
    diff_to_tar,
    open_decompressed,
)
from stackctl.runtime.images.refs import parse, parse_lookup
from stackctl.runtime.images.store import Image, ImageStore


class ArchiveError(StackctlError):
    """An image archive is missing, unreadable or not an image archive."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # names and values in the message come from the archive: kept on one line
        super().__init__(message.replace("\n", "\\n").replace("\r", "\\r"), hint=hint)


# What an archive's JSON members (manifest.json, index.json, image configs, manifests) may
# weigh: real ones are kilobytes. Layers are streamed, never read whole.
MAX_JSON_BYTES = 16 * 1024 * 1024
# What a malformed archive raises on its way through tarfile, the decompressors, json and the
# structure walk below (a list where a mapping belongs, a missing key, a truncated member):
# each becomes one ArchiveError line. OSError is not here: a full disk stays a DiskFullError.
_MALFORMED = (KeyError, TypeError, AttributeError, IndexError, ValueError, RecursionError,
              tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing {exc}"
    if isinstance(exc, RecursionError):
        return "JSON nested too deep"
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 200 else text[:200] + "..."


# --- load -----------------------------------------------------------------------------------

def load(store: ImageStore, src: str | BinaryIO) -> list[str]:
    """Load every image of an archive (path, or a binary stream such as stdin).

    Returns the lines ``docker load`` prints (``Loaded image: name:tag`` /
    ``Loaded image ID: sha256:...``).
    """
    label = src if isinstance(src, str) else "stdin"
    with store.ingesting():
        try:
            return _load(store, src, label)
        except _MALFORMED as exc:
            raise ArchiveError(f"{label}: not a valid image archive: {_reason(exc)}",
                               hint="give a file written by `docker save`, `stackctl image save` or `skopeo copy ... oci-archive:`") from None


def _load(store: ImageStore, src: str | BinaryIO, label: str) -> list[str]:
    with _spooled(store, src) as path:
        try:
            tar = tarfile.open(path, "r:*")
        except (tarfile.TarError, EOFError):
            raise ArchiveError(f"{label}: not a tar archive",
                               hint="give a file written by `docker save`, `stackctl image save` or `skopeo copy ... oci-archive:`") from None
        with tar:
            members = {_norm(m.name): m for m in tar.getmembers()}
            reader = _TarReader(tar, members, label)
            if "manifest.json" in members:
                return _load_docker(store, reader)
            if "index.json" in members:
                return _load_oci(store, reader)
            raise ArchiveError(f"{label}: not an image archive (no manifest.json or index.json in it)",
                               hint="for a root filesystem tar use `stackctl image import`")


@contextlib.contextmanager
def _spooled(store: ImageStore, src: str | BinaryIO) -> Iterator[str]:
    """A seekable file holding the archive; gzip stays (tarfile reads it), zstd/xz/bz2 and
    streams are written out uncompressed to the store's tmp dir first."""
    close = False
    if isinstance(src, str):
        if not os.path.isfile(src):
            raise ArchiveError(f"{src}: no such file", hint="check the path given with -i")
        with open(src, "rb") as f:
            if detect_compression(f.read(6)) in ("", "gzip"):
                yield src
                return
        src, close = open(src, "rb"), True  # noqa: SIM115 - closed below
    os.makedirs(store.tmp_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=store.tmp_dir, prefix="load-")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                stream, _ = open_decompressed(src)
                shutil.copyfileobj(stream, out, 1 << 20)
            except Exception as exc:  # the decompressors' own errors (bz2's is a bare OSError)
                if is_disk_full(exc) or isinstance(exc, StackctlError):
                    raise
                label = src if isinstance(src, str) else getattr(src, "name", "stdin")
                raise ArchiveError(f"{label if isinstance(label, str) else 'stdin'}: cannot "
                                   f"decompress the archive: {_reason(exc)}") from None
        yield tmp
    finally:
        os.unlink(tmp)
        if close:
            src.close()


class _TarReader:
    def __init__(self, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], label: str) -> None:
        self.tar, self.members, self.label = tar, members, label

    def open(self, name: str) -> BinaryIO:
        m = self.members.get(_norm(name))
        while m is not None and (m.issym() or m.islnk()):  # Docker < 25 links shared layers
            target = m.linkname if m.islnk() else os.path.normpath(os.path.join(os.path.dirname(m.name), m.linkname))
            m = self.members.get(_norm(target))
        f = self.tar.extractfile(m) if m is not None else None
        if f is None:
            raise ArchiveError(f"{self.label}: {name} is missing from the archive", hint="the archive is incomplete")
        return f  # type: ignore[return-value]

    def read(self, name: str) -> bytes:
        """A small member (JSON), whole; refused past MAX_JSON_BYTES whatever it claims."""
        with self.open(name) as f:
            data = f.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise ArchiveError(f"{self.label}: {name} is larger than "
                               f"{MAX_JSON_BYTES // (1024 * 1024)} MiB; not an image's metadata")
        return data

    def json(self, name: str) -> Any:
        return _json(self.read(name), f"{self.label}: {name}")

    def has(self, name: str) -> bool:
        return _norm(name) in self.members


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ArchiveError(f"{what} is not valid JSON ({_reason(exc)})") from None


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + oci.hex_of(digest)


def _ingest_layer(store: ImageStore, reader: _TarReader, name: str, diff_id: str,
                  known_digest: str | None = None) -> dict[str, Any]:
    """Store one layer blob from the archive and unpack it; returns its descriptor."""
    if known_digest and store.has_blob(known_digest) and store.has_layer(diff_id):
        meta = store.layer_meta(diff_id)
        return {"mediaType": meta.get("media_type", oci.MT_LAYER), "digest": known_digest,
                "size": os.path.getsize(store.blob_path(known_digest))}
    with reader.open(name) as f:
        digest, size = store.write_blob_from(f, expected=known_digest)
    with open(store.blob_path(digest), "rb") as f:
        kind = detect_compression(f.read(6))
    media = oci.COMPRESSION_MEDIA_TYPE.get(kind, oci.MT_LAYER)
    store.unpack_layer(digest, media, expected_diff_id=diff_id)
    return {"mediaType": media, "digest": digest, "size": size}


def _load_docker(store: ImageStore, reader: _TarReader) -> list[str]:
    manifest = reader.json("manifest.json")
    if not isinstance(manifest, list):
        raise ArchiveError(f"{reader.label}: manifest.json is not a list of images")
    lines: list[str] = []
    for entry in manifest:
        config_bytes = reader.read(entry["Config"])
        config = _json(config_bytes, f"{reader.label}: {entry['Config']}")
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        layer_names = entry.get("Layers") or []
        if len(diff_ids) != len(layer_names):
            raise ArchiveError(f"{reader.label}: image config lists {len(diff_ids)} layers, manifest.json {len(layer_names)}")
        layers = []
        for name, diff_id in zip(layer_names, diff_ids):
            known = "sha256:" + name.rsplit("/", 1)[1] if _norm(name).startswith("blobs/sha256/") else None
            layers.append(_ingest_layer(store, reader, name, diff_id, known))
        tags = [parse(t).tagged for t in entry.get("RepoTags") or []]
        img = store.commit_image(config_bytes, layers, tags)
        lines += [f"Loaded image: {t}" for t in tags] if tags else [f"Loaded image ID: {img.id}"]
    return lines


def _load_oci(store: ImageStore, reader: _TarReader) -> list[str]:
    index = reader.json("index.json")
    lines: list[str] = []
    for desc in index.get("manifests", []):
        name = _name_from_annotations(desc.get("annotations") or {})
        manifest_desc = _pick_manifest(reader, desc)
        manifest_bytes = reader.read(_blob_name(manifest_desc["digest"]))
        if oci.digest_bytes(manifest_bytes) != manifest_desc["digest"]:
            raise ArchiveError(f"{reader.label}: manifest {manifest_desc['digest']} does not match its digest")
        manifest = _json(manifest_bytes, f"{reader.label}: manifest {manifest_desc['digest']}")
        config_bytes = reader.read(_blob_name(manifest["config"]["digest"]))
        config = _json(config_bytes, f"{reader.label}: config {manifest['config']['digest']}")
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(manifest.get("layers", [])):
            raise ArchiveError(f"{reader.label}: image config lists {len(diff_ids)} layers, its manifest {len(manifest.get('layers', []))}")
        for lay, diff_id in zip(manifest.get("layers", []), diff_ids):
            _ingest_layer(store, reader, _blob_name(lay["digest"]), diff_id, lay["digest"])
        tags = [name] if name else []
        img = store.commit_image(config_bytes, manifest["layers"], tags, manifest_bytes=manifest_bytes)
        lines += [f"Loaded image: {t}" for t in tags] if tags else [f"Loaded image ID: {img.id}"]
    if not lines:
        raise ArchiveError(f"{reader.label}: index.json lists no images")
    return lines


def _name_from_annotations(ann: dict[str, str]) -> str:
    for key in (oci.ANN_CONTAINERD_NAME, oci.ANN_REF_NAME):
        value = ann.get(key, "")
        if value and (":" in value or "/" in value):  # a bare "latest" names no repository
            with contextlib.suppress(UsageError):
                return parse(value).tagged
    return ""


def _pick_manifest(reader: _TarReader, desc: dict[str, Any]) -> dict[str, Any]:
    """Follow nested indexes down to one manifest, preferring this host's platform."""
    for _ in range(8):
        if desc.get("mediaType") not in oci.INDEX_TYPES:
            return desc
        inner = reader.json(_blob_name(desc["digest"]))
        host = oci.host_platform()
        choices = [m for m in inner.get("manifests", []) if m.get("mediaType") not in ("application/vnd.in-toto+json",)]
        choices = [m for m in choices if (m.get("platform") or {}).get("architecture") != "unknown"]
        match = [m for m in choices if (m.get("platform") or {}).get("architecture") == host["architecture"]]
        if not (match or choices):
            raise ArchiveError(f"{reader.label}: index {desc['digest']} lists no manifests")
        desc = (match or choices)[0]
    raise ArchiveError(f"{reader.label}: image indexes nested too deep")


# --- save -----------------------------------------------------------------------------------

def save(store: ImageStore, refs: list[str], out: BinaryIO, *,
         omit: set[str] | frozenset[str] = frozenset()) -> None:
    """Write the images to ``out`` as one docker-save + OCI-layout tar (streamed).

    ``omit``: layer blobs to leave out because the reader has them already (what stackctl
    sends a node: ``load`` takes a layer it has from its own store). Manifests and configs
    always go."""
    if not refs:
        raise UsageError("image save needs at least one image")
    chosen: list[tuple[Image, str]] = []  # (image, "name:tag" or "")
    for ref in refs:
        img = store.resolve(ref)
        lk = parse_lookup(ref)
        tag = lk.reference.tagged if lk.reference and lk.reference.tagged in img.repo_tags else ""
        if (img, tag) not in chosen:
            chosen.append((img, tag))
    blobs: list[str] = []
    index_entries: list[dict[str, Any]] = []
    docker_manifest: dict[str, dict[str, Any]] = {}
    repositories: dict[str, dict[str, str]] = {}
    for img, tag in chosen:
        manifest = store.read_json_blob(img.manifest_digest)
        for d in [img.manifest_digest, manifest["config"]["digest"]] + [lay["digest"] for lay in manifest["layers"]]:
            if d not in blobs:
                blobs.append(d)
        desc = oci.descriptor(manifest.get("mediaType", oci.MT_MANIFEST), img.manifest_digest,
                              os.path.getsize(store.blob_path(img.manifest_digest)))
        entry = docker_manifest.setdefault(img.id, {
            "Config": _blob_name(img.id), "RepoTags": [],
            "Layers": [_blob_name(lay["digest"]) for lay in manifest["layers"]]})
        if tag:
            r = parse(tag)
            desc["annotations"] = {oci.ANN_CONTAINERD_NAME: f"{r.full_name}:{r.tag}", oci.ANN_REF_NAME: r.tag}
            entry["RepoTags"].append(tag)
            if manifest["layers"]:
                repositories.setdefault(r.repository, {})[r.tag] = oci.hex_of(manifest["layers"][-1]["digest"])
        index_entries.append(desc)
    for entry in docker_manifest.values():
        entry["RepoTags"] = entry["RepoTags"] or None
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        layers_only = {lay for img, _ in chosen
                       for lay in (x["digest"] for x in store.read_json_blob(
                           img.manifest_digest)["layers"])}
        for d in blobs:
            if d in omit and d in layers_only:
                continue
            path = store.blob_path(d)
            info = tarfile.TarInfo(_blob_name(d))
            info.size, info.mode, info.mtime = os.path.getsize(path), 0o444, 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
        index = {"schemaVersion": 2, "mediaType": oci.MT_INDEX, "manifests": index_entries}
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        _add_bytes(tar, "manifest.json", json.dumps(list(docker_manifest.values())).encode())
        _add_bytes(tar, "oci-layout", oci.OCI_LAYOUT)
        if repositories:
            _add_bytes(tar, "repositories", json.dumps(repositories).encode())


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


# --- import ---------------------------------------------------------------------------------

def import_rootfs(store: ImageStore, src: str | BinaryIO, ref: str = "", *, changes: list[str] = (),  # type: ignore[assignment]
                  message: str = "") -> Image:
    """Make a one-layer image from a rootfs tar (path, stream, or a directory)."""
    from stackctl.runtime.images.build.metadata import apply_changes

    label = src if isinstance(src, str) else "-"
    tags = [parse(ref).tagged] if ref else []
    config_part = apply_changes({}, list(changes))
    with store.ingesting():
        os.makedirs(store.tmp_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=store.tmp_dir, prefix="import-")
        try:
            with os.fdopen(fd, "wb") as out:
                w = HashingWriter(out)  # type: ignore[arg-type]
                if isinstance(src, str) and os.path.isdir(src):
                    diff_to_tar(src, w, whiteouts=False)  # type: ignore[arg-type]
                else:
                    _copy_decompressed(src, w, label)
            digest = w.digest
            os.rename(tmp, store.blob_path(digest))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        diff_id = store.unpack_layer(digest, oci.MT_LAYER, expected_diff_id=digest)
        created = oci.now_rfc3339()
        history = [{"created": created, "created_by": "", "comment": message or f"Imported from {label}"}]
        config = oci.new_config(diff_ids=[diff_id], config=config_part, history=history, created=created)
        layer = {"mediaType": oci.MT_LAYER, "digest": digest, "size": os.path.getsize(store.blob_path(digest))}
        return store.commit_image(oci.canonical_json(config), [layer], tags)


def _copy_decompressed(src: str | BinaryIO, out: HashingWriter, label: str) -> None:
    if isinstance(src, str):
        if not os.path.exists(src):
            raise ArchiveError(f"{src}: no such file or directory", hint="give a rootfs tar, a directory, or - for stdin")
        if src.startswith(("http://", "https://")):
            raise ArchiveError(f"{src}: importing from a URL is not supported (no network access)",
                               hint="download the file first and import it from disk")
        f: BinaryIO = open(src, "rb")  # noqa: SIM115
    else:
        f = src
    try:
        stream, _ = open_decompressed(f)
        head = stream.read(512)
        if len(head) < 512 or head[257:262] != b"ustar" and not _looks_like_v7_tar(head):
            raise ArchiveError(f"{label}: not a tar archive", hint="make one with `tar -C ROOTFS -c .`")
        out.write(head)
        shutil.copyfileobj(stream, out, 1 << 20)  # type: ignore[misc]
    finally:
        if isinstance(src, str):
            f.close()


def _looks_like_v7_tar(head: bytes) -> bool:
    try:
        chksum = int(head[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return chksum == sum(head[:148]) + 256 + sum(head[156:512])
