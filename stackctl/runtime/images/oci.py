"""OCI image format constants and pure helpers (no I/O).

Facts from the OCI image spec (image-spec v1.1): an image is a manifest that points to a
config blob and an ordered list of layer blobs; everything is addressed by
``sha256:<hex of the exact bytes>``. ``config.rootfs.diff_ids`` are the digests of the
*uncompressed* layer tars; Docker's image ID is the digest of the config blob.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_TYPES = (MT_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_MANIFEST, MT_DOCKER_MANIFEST)

ANN_REF_NAME = "org.opencontainers.image.ref.name"
ANN_CONTAINERD_NAME = "io.containerd.image.name"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'

COMPRESSION_MEDIA_TYPE = {"": MT_LAYER, "gzip": MT_LAYER_GZIP, "zstd": MT_LAYER_ZSTD}


def digest_bytes(data: bytes) -> str:
    import hashlib  # not at module level: loading OpenSSL costs `stackctl run` ~2 ms

    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        from stackctl.errors import StackctlError

        raise StackctlError(f"unsupported or malformed digest {digest!r} (only sha256 is supported)")
    return hexpart


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys: stable bytes, hence stable digests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def host_platform() -> dict[str, str]:
    machine = os.uname().machine.lower()  # as platform.machine(), without importing platform
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
    return {"architecture": arch, "os": "linux"}


def new_config(*, diff_ids: list[str] | None = None, config: dict | None = None,
               history: list[dict] | None = None, created: str | None = None) -> dict:
    """An OCI image config for this host's platform."""
    out: dict[str, Any] = dict(host_platform())
    out["created"] = created or now_rfc3339()
    out["config"] = dict(config or {})
    out["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids or [])}
    out["history"] = list(history or [])
    return out


def descriptor(media_type: str, digest: str, size: int, annotations: dict | None = None) -> dict:
    d: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        d["annotations"] = dict(annotations)
    return d


def new_manifest(config_digest: str, config_size: int, layers: list[dict]) -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": descriptor(MT_CONFIG, config_digest, config_size),
        "layers": [descriptor(lay["mediaType"], lay["digest"], lay["size"]) for lay in layers],
    }
