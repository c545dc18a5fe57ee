"""What the registry code remembers next to the image store, in ``<store>/registry.json``:

- ``pulls``: per local tag (``host:5000/app:1``) the digest the tag resolved to, the image ID
  and when it was pulled — ``pull_policy: daily/weekly/every_<d>`` ask "when was it pulled?";
- ``digests``: ``registry/repository@digest`` -> image ID, so a reference pinned by digest
  (which never changes content) is found locally without asking the registry;
- ``sources``: blob digest -> repositories (``registry/repository``) known to hold it, so a
  push to another repository of the same registry can mount the blob instead of uploading it.

The file is small; it is rewritten atomically under an exclusive flock. It is not part of the
OCI layout (skopeo and umoci ignore it) and garbage collection leaves it alone: an entry whose
image is gone is simply not used (``ensure_image`` checks the store).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

FILE = "registry.json"
MAX_SOURCES = 8


class Records:
    def __init__(self, store_root: str) -> None:
        self.root = store_root
        self.path = os.path.join(store_root, FILE)

    def read(self) -> dict[str, Any]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except (FileNotFoundError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        for k in ("pulls", "digests", "sources"):
            if not isinstance(data.get(k), dict):
                data[k] = {}
        return data

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self.read()
            yield data
            tmp_fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".registry-")
            try:
                with os.fdopen(tmp_fd, "w") as f:
                    json.dump(data, f, indent=1, sort_keys=True)
                os.rename(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        finally:
            os.close(fd)

    # --- queries ------------------------------------------------------------------------------
    def last_pull(self, local_tag: str) -> dict[str, Any] | None:
        entry = self.read()["pulls"].get(local_tag)
        return entry if isinstance(entry, dict) else None

    def image_for_digest(self, full_name: str, digest: str) -> str | None:
        value = self.read()["digests"].get(f"{full_name}@{digest}")
        return value if isinstance(value, str) else None

    def sources(self, digest: str) -> list[str]:
        value = self.read()["sources"].get(digest)
        return list(value) if isinstance(value, list) else []

    # --- changes ------------------------------------------------------------------------------
    def note_pull(self, *, local_tag: str, full_name: str, digest: str, image_id: str, when: float,
                  blobs: list[str]) -> None:
        with self.update() as data:
            if local_tag:
                data["pulls"][local_tag] = {"digest": digest, "image_id": image_id, "pulled_at": when}
            data["digests"][f"{full_name}@{digest}"] = image_id
            _add_sources(data, full_name, blobs)

    def note_push(self, *, full_name: str, digest: str, image_id: str, blobs: list[str]) -> None:
        with self.update() as data:
            data["digests"][f"{full_name}@{digest}"] = image_id
            _add_sources(data, full_name, blobs)


def _add_sources(data: dict[str, Any], full_name: str, blobs: list[str]) -> None:
    for b in blobs:
        known = [s for s in data["sources"].get(b, []) if s != full_name]
        data["sources"][b] = ([full_name] + known)[:MAX_SOURCES]
