"""``pull``: a manifest (or an index and then this node's manifest), the config, and the layers.

The order of things, so that a failed pull leaves nothing half-stored:

1. The manifest is fetched by tag or digest and checked against the digest asked for (or the
   ``Docker-Content-Digest`` the registry sent); an index or manifest list is resolved to the
   wanted platform's manifest, fetched by its digest and checked.
2. The config blob is fetched and checked.
3. Layers the store lacks are fetched several at a time into a staging directory under the
   store's ``tmp/``, each in one pass: streamed to disk while hashed, and a compressed layer
   decompressed on the way into a spooled tar whose sha256 is hashed too (:mod:`.unpack`); a
   broken connection resumes with ``Range`` from the bytes already received. When the stream
   ends, its sha256 must equal the layer's digest and the tar's the config's diff ID — only
   then is the tar unpacked (in the staging directory, in a child, while other layers are
   still downloading). Otherwise the pull fails with :class:`DigestMismatchError` and the
   staging directory is removed. (Unpacking the tar itself while the bytes arrive, through a
   queue to another thread, was tried: with the GIL it was slower, and it would unpack bytes
   not yet verified.)
4. Only when every layer is verified are blobs and unpacked layers renamed into the store and
   the image committed (tag, manifest exactly as received, so the digest stays the registry's).

The store's shared "ingesting" lock is held throughout, so ``image rm``/``prune`` cannot
collect what is being pulled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from stackctl.runtime.images.registry._httpx import httpx

from stackctl.errors import StackctlError
from stackctl.runtime.images import oci
from stackctl.runtime.images.layers import detect_compression
from stackctl.runtime.images.refs import short_id
from stackctl.runtime.images.registry.auth import CredentialStore, RegistryAuth
from stackctl.runtime.images.registry.client import RegistryClient, pull_scope
from stackctl.runtime.images.registry.config import RegistryConfig
from stackctl.runtime.images.registry.errors import (
    DigestMismatchError,
    PlatformError,
    RegistryError,
)
from stackctl.runtime.images.registry.platforms import choose_manifest, format_platform, host_platform, parse_platform
from stackctl.runtime.images.registry.progress import NullProgress, Progress
from stackctl.runtime.images.registry import unpack
from stackctl.runtime.images.registry.records import Records
from stackctl.runtime.images.registry.reference import RegistryRef, parse_ref
from stackctl.runtime.images.store import Image, ImageStore

ACCEPT = ", ".join((oci.MT_MANIFEST, oci.MT_INDEX, oci.MT_DOCKER_MANIFEST, oci.MT_DOCKER_LIST))
MAX_MANIFEST = 4 << 20
CONCURRENT_DOWNLOADS = 3  # Docker's max-concurrent-downloads
RESUME_ATTEMPTS = 5


@dataclass
class PullResult:
    ref: RegistryRef
    image: Image
    digest: str  # what the reference resolved to on the registry (an index's digest for a multi-arch tag)
    manifest_digest: str  # the platform manifest stored
    platform: str
    downloaded: list[str] = field(default_factory=list)  # layer digests fetched
    existing: list[str] = field(default_factory=list)  # layer digests the store had
    image_was_present: bool = False

    @property
    def up_to_date(self) -> bool:
        return not self.downloaded and self.image_was_present

    @property
    def pinned(self) -> str:
        """``registry/repository@digest``: the same image on every node, even if the tag moves."""
        return f"{self.ref.full_name}@{self.digest}"


class _Cancelled(Exception):
    pass


def pull(store: ImageStore, ref: str | RegistryRef, *, platform: str | dict | None = None,
         auth: RegistryAuth | None = None, progress: Progress | None = None,
         client: RegistryClient | None = None, config: RegistryConfig | None = None,
         credentials: CredentialStore | None = None) -> PullResult:
    """Pull one image into ``store`` (blocking). ``auth`` overrides stored credentials for
    this call only. Raises :mod:`.errors` subclasses, each one line."""
    r = parse_ref(ref) if isinstance(ref, str) else ref
    want = parse_platform(platform) if isinstance(platform, str) else dict(platform or host_platform())
    progress = progress or NullProgress()
    own = client is None
    c = client or RegistryClient(r.registry, auth=auth, credentials=credentials, config=config)
    try:
        c.subject = f"pull {r}"
        with store.ingesting():
            return _pull(store, c, r, want, progress)
    finally:
        if own:
            c.close()


def list_tags(client: RegistryClient, repository: str) -> list[str]:
    """Every tag of ``repository`` (following ``Link`` pagination)."""
    tags: list[str] = []
    url = f"/v2/{repository}/tags/list?n=1000"
    for _ in range(1000):
        resp = client.request("GET", url, [pull_scope(repository)])
        if resp.status_code != 200:
            raise client.error_for(resp, what=client.subject, repository=repository)
        tags += list(resp.json().get("tags") or [])
        link = resp.headers.get("link", "")
        if not link or "rel=\"next\"" not in link:
            break
        url = link.split(";", 1)[0].strip().strip("<>")
    return tags


def fetch_manifest(client: RegistryClient, r: RegistryRef, reference: str) -> tuple[bytes, str, str]:
    """(bytes, media type, digest) of a manifest or index, its digest verified."""
    resp = client.request("GET", f"/v2/{r.repository}/manifests/{reference}", [pull_scope(r.repository)],
                          headers={"Accept": ACCEPT})
    if resp.status_code != 200:
        err = client.error_for(resp, what=client.subject, repository=r.repository, reference=reference)
        if resp.status_code == 404 and not reference.startswith("sha256:"):
            # a registry says MANIFEST_UNKNOWN for a missing repository too: ask the tags list
            tags = client.request("GET", f"/v2/{r.repository}/tags/list?n=1", [pull_scope(r.repository)])
            if tags.status_code == 404:
                err = client.error_for(tags, what=client.subject, repository=r.repository)
        raise err
    data = resp.content
    if len(data) > MAX_MANIFEST:
        raise RegistryError(f"{client.subject}: the manifest is {len(data)} bytes, more than 4 MiB; refusing it")
    digest = oci.digest_bytes(data)
    expected = reference if reference.startswith("sha256:") else resp.headers.get("docker-content-digest", "")
    if expected.startswith("sha256:") and expected != digest:
        raise DigestMismatchError(f"{client.subject}: manifest digest mismatch: asked for {expected}, "
                                  f"received content with {digest}; nothing was stored — retry, and if it "
                                  "persists the registry's copy is corrupt: push the image again")
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"{client.subject}: the registry sent a manifest that is not JSON") from None
    media = doc.get("mediaType") or resp.headers.get("content-type", "").split(";")[0].strip()
    if doc.get("schemaVersion") == 1 or media.startswith("application/vnd.docker.distribution.manifest.v1"):
        raise RegistryError(f"{client.subject}: Docker schema 1 manifests are not supported; push the "
                            "image again with a current tool (schema 2 / OCI)")
    if not media:
        media = oci.MT_INDEX if "manifests" in doc else oci.MT_MANIFEST
    return data, media, digest


def fetch_blob_bytes(client: RegistryClient, repository: str, desc: dict[str, Any], limit: int = 32 << 20) -> bytes:
    resp = client.request("GET", f"/v2/{repository}/blobs/{desc['digest']}", [pull_scope(repository)])
    if resp.status_code != 200:
        raise client.error_for(resp, what=client.subject, repository=repository)
    data = resp.content
    if len(data) > limit:
        raise RegistryError(f"{client.subject}: blob {desc['digest']} is larger than {limit} bytes")
    if oci.digest_bytes(data) != desc["digest"]:
        raise DigestMismatchError(f"{client.subject}: digest mismatch for blob {desc['digest']}: the registry "
                                  f"sent other content ({oci.digest_bytes(data)}); nothing was stored — the "
                                  "registry's copy is corrupt: push the image again")
    return data


def _pull(store: ImageStore, c: RegistryClient, r: RegistryRef, want: dict[str, str],
          progress: Progress) -> PullResult:
    if not r.tag and not r.digest:
        progress.line("Using default tag: latest")
    progress.line(f"{r.digest or r.tag or 'latest'}: Pulling from {r.repository}")
    data, media, digest = fetch_manifest(c, r, r.reference)
    top_digest = digest
    if media in oci.INDEX_TYPES:
        try:
            desc = choose_manifest(json.loads(data), want)
        except PlatformError as exc:
            raise PlatformError(f"{c.subject}: {exc.message}; pick one with --platform") from None
        data, media, digest = fetch_manifest(c, r, desc["digest"])
        if media in oci.INDEX_TYPES:
            raise RegistryError(f"{c.subject}: nested image indexes are not supported")
    if media not in oci.MANIFEST_TYPES:
        raise RegistryError(f"{c.subject}: unsupported manifest type {media!r} (not an image?)")
    manifest = json.loads(data)
    config_bytes = fetch_blob_bytes(c, r.repository, manifest["config"])
    config = json.loads(config_bytes)
    got = {"os": config.get("os", "linux"), "architecture": config.get("architecture", "")}
    if got["architecture"] and got["architecture"] != want["architecture"]:
        progress.line(f"WARNING: the image's platform ({format_platform(got)}) does not match the wanted "
                      f"platform ({format_platform(want)})")
    layers = list(manifest.get("layers") or [])
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(layers):
        raise RegistryError(f"{c.subject}: the image config lists {len(diff_ids)} layers, its manifest "
                            f"{len(layers)}; the image is malformed")
    image_id = manifest["config"]["digest"]
    was_present = any(i.id == image_id for i in store.list())
    todo, existing = [], []
    for desc, diff_id in zip(layers, diff_ids):
        oci.hex_of(desc["digest"])  # refuses other algorithms early
        if store.has_blob(desc["digest"]) and store.has_layer(diff_id):
            existing.append(desc["digest"])
            progress.layer(short_id(desc["digest"]), "Already exists")
        else:
            todo.append((desc, diff_id))
            progress.layer(short_id(desc["digest"]), "Pulling fs layer")
    os.makedirs(store.tmp_dir, exist_ok=True)
    stage = tempfile.mkdtemp(dir=store.tmp_dir, prefix="pull-")
    try:
        staged = _fetch_layers(store, c, r.repository, todo, stage, progress)
        for desc, diff_id in todo:  # everything verified: move into the store
            blob_tmp, layer_tmp, size = staged[desc["digest"]]
            if blob_tmp and not store.has_blob(desc["digest"]):
                os.rename(blob_tmp, store.blob_path(desc["digest"]))
            if layer_tmp:
                store.add_unpacked_layer(layer_tmp, desc["digest"], desc.get("mediaType", oci.MT_LAYER), diff_id, size)
            elif not store.has_layer(diff_id):
                store.unpack_layer(desc["digest"], desc.get("mediaType", oci.MT_LAYER), expected_diff_id=diff_id)
        tag = r.local_tag
        image = store.commit_image(config_bytes, layers, [tag] if tag else [], manifest_bytes=data)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    Records(store.root).note_pull(local_tag=tag, full_name=r.full_name, digest=top_digest, image_id=image.id,
                                  when=time.time(), blobs=[d["digest"] for d in layers] + [image_id])
    for desc, _ in todo:
        progress.layer(short_id(desc["digest"]), "Pull complete")
    return PullResult(ref=r, image=image, digest=top_digest, manifest_digest=digest,
                      platform=format_platform(got), downloaded=[d["digest"] for d, _ in todo],
                      existing=existing, image_was_present=was_present)


def _fetch_layers(store: ImageStore, c: RegistryClient, repository: str, todo: list[tuple[dict, str]],
                  stage: str, progress: Progress) -> dict[str, tuple[str, str, int]]:
    """Fetch (and unpack) ``todo`` in parallel; {digest: (blob path, layer dir, size)}."""
    out: dict[str, tuple[str, str, int]] = {}
    if not todo:
        return out
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=min(CONCURRENT_DOWNLOADS, len(todo)), thread_name_prefix="pull") as pool:
        futures = {pool.submit(_fetch_layer, store, c, repository, desc, diff_id, stage, progress, cancel): desc
                   for desc, diff_id in todo}
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.exception() for f in done):
                cancel.set()  # the other downloads stop at their next chunk
            wait(futures)
        except BaseException:  # Ctrl-C: stop the workers instead of waiting for their downloads
            cancel.set()
            raise
    errors = [f.exception() for f in futures if f.exception() and not isinstance(f.exception(), _Cancelled)]
    if errors:
        # a digest mismatch says the most; otherwise the first failure
        errors.sort(key=lambda e: not isinstance(e, DigestMismatchError))
        raise errors[0]
    for f, desc in futures.items():
        out[desc["digest"]] = f.result()
    return out


def _fetch_layer(store: ImageStore, c: RegistryClient, repository: str, desc: dict[str, Any], diff_id: str,
                 stage: str, progress: Progress, cancel: threading.Event) -> tuple[str, str, int]:
    """Download one layer blob into ``stage`` (resuming with Range), verify it, unpack it.

    A compressed layer is decompressed into a spooled tar as its bytes arrive (one pass, its
    diff ID hashed on the way); an uncompressed one is its own tar. Once the digest and the
    diff ID are checked, the tar is unpacked in a child (:mod:`.unpack`) while other layers
    download (other workers)."""
    digest, size = desc["digest"], int(desc.get("size") or 0)
    key = short_id(digest)
    hexd = oci.hex_of(digest)
    if store.has_blob(digest):  # blob here, layer not unpacked: unpack from the store's verified blob
        return "", "", 0
    blob_tmp = os.path.join(stage, hexd + ".blob")
    layer_root = os.path.join(stage, hexd + ".layer")
    want_layer = not store.has_layer(diff_id)
    sha = hashlib.sha256()
    got = [0]  # bytes kept so far, updated as they arrive (a broken stream resumes from there)
    sink = _Sink(os.path.join(stage, hexd + ".tar") if want_layer else "")
    try:
        with open(blob_tmp, "wb", buffering=1 << 20) as f:  # 64 KiB reads, 1 MiB writes
            sink.file = f
            for attempt in range(RESUME_ATTEMPTS):
                try:
                    _stream(c, repository, digest, size, got, sink, sha, progress, key, cancel)
                    break
                except (httpx.TransportError, httpx.StreamError) as exc:
                    if attempt == RESUME_ATTEMPTS - 1:
                        raise RegistryError(f"{c.subject}: the download of layer {key} kept failing "
                                            f"({exc.__class__.__name__}: {exc}); retry later") from None
                    time.sleep(0.2 * (attempt + 1))
        progress.layer(key, "Verifying Checksum")
        actual = "sha256:" + sha.hexdigest()
        if actual != digest or (size and got[0] != size):
            raise DigestMismatchError(
                f"{c.subject}: digest mismatch for layer {digest}: received {got[0]} bytes hashing to {actual}; "
                "nothing was stored — the registry's copy is corrupt or was tampered with: push the image again")
        progress.layer(key, "Download complete")
        if not want_layer or cancel.is_set():
            return blob_tmp, "", 0
        tar, tar_diff_id = blob_tmp, digest  # uncompressed: the verified blob is the tar
        if sink.spool is not None:
            tar = sink.spool.path
            tar_diff_id, _ = sink.spool.close()
        if tar_diff_id != diff_id:
            raise DigestMismatchError(f"{c.subject}: layer {digest} unpacks to {tar_diff_id}, but the image "
                                      f"config says {diff_id}; nothing was stored — the image is corrupt: push it again")
        progress.layer(key, "Extracting")  # in a child process: no byte count to show
        os.mkdir(layer_root, 0o755)
        info = unpack.unpack_plain(tar, layer_root, diff_id)
    except StackctlError as exc:
        if isinstance(exc, RegistryError):
            raise
        raise StackctlError(f"{c.subject}: layer {key}: {exc.message}") from None
    finally:
        sink.discard()  # the spooled tar: unpacked, or not wanted
    return blob_tmp, layer_root, info.size


class _Sink:
    """Where a layer's bytes go as they arrive: the blob file, and — for a compressed layer
    that is to be unpacked — a :class:`~.unpack.TarSpool` decompressing them into ``spool``,
    made on the first bytes (they say the compression)."""

    def __init__(self, spool: str) -> None:
        self.file: Any = None
        self.spool_path = spool
        self.spool: unpack.TarSpool | None = None
        self.head = b""

    def write(self, data: bytes) -> None:
        self.file.write(data)
        if self.spool is not None:
            self.spool.feed(data)
        elif self.spool_path:  # not decided yet
            self.head += data
            if len(self.head) < 6:
                return
            kind = detect_compression(self.head)
            if kind:
                self.spool = unpack.TarSpool(self.spool_path, kind)
                self.spool.feed(self.head)
            self.spool_path, self.head = "", b""  # uncompressed: the blob is the tar

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.discard()
            self.spool = None


def _stream(c: RegistryClient, repository: str, digest: str, size: int, got: list[int], sink, sha,
            progress: Progress, key: str, cancel: threading.Event) -> None:
    """Append the blob from byte ``got[0]`` on to ``sink`` and ``sha``; ``got[0]`` follows."""
    headers = {"Range": f"bytes={got[0]}-"} if got[0] else {}
    resp = c.request("GET", f"/v2/{repository}/blobs/{digest}", [pull_scope(repository)], headers=headers, stream=True)
    try:
        if resp.status_code not in (200, 206):
            resp.read()
            raise c.error_for(resp, what=c.subject, repository=repository)
        skip = got[0] if resp.status_code == 200 else 0  # the server ignored Range: drop what we have
        last = 0.0
        for chunk in resp.iter_raw():
            if cancel.is_set():
                raise _Cancelled()
            if skip:
                if len(chunk) <= skip:
                    skip -= len(chunk)
                    continue
                chunk, skip = chunk[skip:], 0
            sink.write(chunk)
            sha.update(chunk)
            got[0] += len(chunk)
            if size and got[0] > size:
                break  # more than the descriptor says: the digest check fails
            now = time.monotonic()
            if now - last > 0.1:
                last = now
                progress.layer(key, "Downloading", got[0], size)
        progress.layer(key, "Downloading", got[0], size)
    finally:
        resp.close()

