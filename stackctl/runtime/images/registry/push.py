"""``push``: only the blobs the registry lacks, then the manifest.

For each layer (several at a time) and the config blob:

1. ``HEAD /v2/<name>/blobs/<digest>``: present -> ``Layer already exists``, nothing sent;
2. a repository of the same registry known to hold the blob (from earlier pulls and pushes,
   see :mod:`.records`) -> ``POST .../blobs/uploads/?mount=<digest>&from=<repo>``: 201 means
   mounted (``Mounted from <repo>``), 202 falls back to an upload in the session it opened;
3. otherwise an upload session (``POST .../blobs/uploads/``), the content in ``PATCH`` chunks
   (``Content-Range``), closed by ``PUT <location>?digest=<digest>``; a failed transfer starts
   the blob over in a new session, a few times.

The manifest goes last (``PUT /v2/<name>/manifests/<tag>``), byte for byte as stored, so its
digest is the one ``image inspect`` shows locally.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from stackctl.runtime.images.registry._httpx import httpx

from stackctl.errors import UsageError
from stackctl.runtime.images import oci
from stackctl.runtime.images.refs import DEFAULT_TAG, short_id
from stackctl.runtime.images.registry.auth import CredentialStore, RegistryAuth
from stackctl.runtime.images.registry.client import RegistryClient, pull_scope, push_scope
from stackctl.runtime.images.registry.config import RegistryConfig
from stackctl.runtime.images.registry.errors import DigestMismatchError, RegistryError
from stackctl.runtime.images.registry.progress import NullProgress, Progress
from stackctl.runtime.images.registry.records import Records
from stackctl.runtime.images.registry.reference import RegistryRef, parse_ref
from stackctl.runtime.images.store import ImageStore

CHUNK = 16 << 20
CONCURRENT_UPLOADS = 5  # Docker's max-concurrent-uploads
BLOB_ATTEMPTS = 3


@dataclass
class PushResult:
    ref: RegistryRef
    digest: str
    size: int
    pushed: list[str] = field(default_factory=list)
    existed: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)


def push(store: ImageStore, ref: str, *, auth: RegistryAuth | None = None, progress: Progress | None = None,
         client: RegistryClient | None = None, config: RegistryConfig | None = None,
         credentials: CredentialStore | None = None) -> PushResult:
    """Push the local image ``ref`` (``host:5000/app:1``) to the registry its name says."""
    r = parse_ref(ref)
    if r.digest:
        raise UsageError(f"push {ref}: cannot push a digest reference; push a tag (name:tag)")
    img = store.resolve(r.local_tag)
    progress = progress or NullProgress()
    own = client is None
    c = client or RegistryClient(r.registry, auth=auth, credentials=credentials, config=config)
    try:
        c.subject = f"push {r}"
        return _push(store, c, r, img.manifest_digest, progress)
    finally:
        if own:
            c.close()


def _push(store: ImageStore, c: RegistryClient, r: RegistryRef, manifest_digest: str,
          progress: Progress) -> PushResult:
    progress.line(f"The push refers to repository [{r.full_name}]")
    with open(store.blob_path(manifest_digest), "rb") as f:
        manifest_bytes = f.read()
    manifest = store.read_json_blob(manifest_digest)
    layers = list(manifest.get("layers") or [])
    blobs = list(reversed(layers)) + [manifest["config"]]
    for d in layers[::-1]:
        progress.layer(short_id(d["digest"]), "Preparing")
    records = Records(store.root)
    result = PushResult(ref=r, digest=manifest_digest, size=len(manifest_bytes))
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=CONCURRENT_UPLOADS, thread_name_prefix="push") as pool:
        futures = {pool.submit(_push_blob, store, c, r, d, records, progress, d is manifest["config"], cancel): d
                   for d in blobs}
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # Ctrl-C: the uploads stop at their next chunk
            cancel.set()
            raise
        failed = [f.exception() for f in futures if f.done() and f.exception()]
        failed = [e for e in failed if not isinstance(e, _Cancelled)] or failed
        if failed:
            cancel.set()
            for g in futures:
                g.cancel()
            raise failed[0]  # type: ignore[misc]
    for f, d in futures.items():
        outcome = f.result()
        if d is manifest["config"]:
            continue
        {"pushed": result.pushed, "exists": result.existed, "mounted": result.mounted}[outcome].append(d["digest"])
    media = manifest.get("mediaType") or oci.MT_MANIFEST
    tag = r.tag or DEFAULT_TAG
    resp = c.request("PUT", f"/v2/{r.repository}/manifests/{tag}", [push_scope(r.repository)],
                     headers={"Content-Type": media}, content=manifest_bytes)
    if resp.status_code not in (200, 201):
        raise c.error_for(resp, what=c.subject, repository=r.repository, reference=tag)
    echoed = resp.headers.get("docker-content-digest", "")
    if echoed and echoed != manifest_digest:
        raise DigestMismatchError(f"{c.subject}: the registry stored the manifest as {echoed}, not "
                                  f"{manifest_digest}; it rewrote the manifest — check the registry")
    records.note_push(full_name=r.full_name, digest=manifest_digest, image_id=manifest["config"]["digest"],
                      blobs=[d["digest"] for d in blobs])
    progress.line(f"{tag}: digest: {manifest_digest} size: {len(manifest_bytes)}")
    return result


def _push_blob(store: ImageStore, c: RegistryClient, r: RegistryRef, desc: dict[str, Any], records: Records,
               progress: Progress, is_config: bool, cancel: threading.Event) -> str:
    digest = desc["digest"]
    key = short_id(digest)
    show = (lambda *a: None) if is_config else progress.layer  # noqa: E731 - Docker hides the config
    scopes = [push_scope(r.repository)]
    head = c.request("HEAD", f"/v2/{r.repository}/blobs/{digest}", scopes)
    if head.status_code == 200:
        show(key, "Layer already exists")
        return "exists"
    if head.status_code not in (404,):
        raise c.error_for(head, what=c.subject, repository=r.repository)
    path = store.blob_path(digest)
    size = os.path.getsize(path)
    location = ""
    for source in records.sources(digest):
        registry, _, repo = source.partition("/")
        if registry != r.registry or repo == r.repository:
            continue
        resp = c.request("POST", f"/v2/{r.repository}/blobs/uploads/?mount={digest}&from={quote(repo, safe='/')}",
                         scopes + [pull_scope(repo)], content=b"")
        if resp.status_code == 201:
            show(key, f"Mounted from {repo}")
            return "mounted"
        if resp.status_code == 202:
            location = resp.headers.get("location", "")
            break
        if resp.status_code not in (401, 403, 404):
            raise c.error_for(resp, what=c.subject, repository=r.repository)
    for attempt in range(BLOB_ATTEMPTS):
        try:
            _upload(c, r, digest, path, size, location, key, show, cancel)
            show(key, "Pushed")
            return "pushed"
        except (httpx.TransportError, _Retry) as exc:
            location = ""
            if attempt == BLOB_ATTEMPTS - 1:
                raise RegistryError(f"{c.subject}: uploading layer {key} kept failing ({exc}); retry later") from None
    raise AssertionError("unreachable")  # pragma: no cover


class _Retry(Exception):
    pass


class _Cancelled(Exception):
    """Another blob failed (or Ctrl-C): this upload stops between chunks."""


def _upload(c: RegistryClient, r: RegistryRef, digest: str, path: str, size: int, location: str, key: str,
            show, cancel: threading.Event) -> None:
    scopes = [push_scope(r.repository)]
    if not location:
        resp = c.request("POST", f"/v2/{r.repository}/blobs/uploads/", scopes, content=b"")
        if resp.status_code != 202:
            raise c.error_for(resp, what=c.subject, repository=r.repository)
        location = resp.headers.get("location", "")
    if not location:
        raise RegistryError(f"{c.subject}: the registry opened an upload without a Location")
    sent = 0
    with open(path, "rb") as f:
        while sent < size:
            if cancel.is_set():
                raise _Cancelled()
            chunk = f.read(CHUNK)
            end = sent + len(chunk) - 1
            resp = c.request("PATCH", location, scopes, retry=False, content=chunk,
                             headers={"Content-Type": "application/octet-stream",
                                      "Content-Range": f"{sent}-{end}", "Content-Length": str(len(chunk))})
            if resp.status_code in (500, 502, 503, 504):
                raise _Retry(f"PATCH answered {resp.status_code}")
            if resp.status_code != 202:
                raise c.error_for(resp, what=c.subject, repository=r.repository)
            location = resp.headers.get("location", location)
            sent += len(chunk)
            show(key, "Pushing", sent, size)
    sep = "&" if "?" in location else "?"
    resp = c.request("PUT", f"{location}{sep}digest={digest}", scopes, retry=False, content=b"",
                     headers={"Content-Type": "application/octet-stream"})
    if resp.status_code in (500, 502, 503, 504):
        raise _Retry(f"PUT answered {resp.status_code}")
    if resp.status_code not in (201, 204):
        codes = resp.text
        if "DIGEST_INVALID" in codes:
            raise DigestMismatchError(f"{c.subject}: the registry computed another digest for layer {key}; "
                                      "the local blob is damaged: remove the image and build or pull it again")
        raise c.error_for(resp, what=c.subject, repository=r.repository)


def local_tags_of(store: ImageStore, ref: str) -> list[str]:
    """Every local ``repo:tag`` of the repository ``ref`` names (``push --all-tags``)."""
    repo = parse_ref(ref).familiar_repository
    tags = sorted({t for img in store.list() for t in img.repo_tags if t.rsplit(":", 1)[0] == repo})
    if not tags:
        raise UsageError(f"push {ref}: no local tags of {repo}; tag an image first (stackctl image tag)")
    return tags
