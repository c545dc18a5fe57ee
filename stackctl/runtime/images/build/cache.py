"""The build cache: step key -> the layer that step made (or, for the final image, its config).

A step's key is the sha256 of
- the *chain* key of the state it starts from (the base image ID for the first step, then the
  key of the previous layer-making step),
- the image config at that point (canonical JSON: ENV, WORKDIR, USER, SHELL... all count),
- the instruction after variable expansion, its flags, and
  - COPY/ADD: a digest of the source files' paths, types, modes and contents (not mtimes),
    or the source stage's chain key for ``--from``;
  - RUN: the build arguments in scope (they are in its environment).
An entry is only used if its blob and unpacked layer still exist. Entries live in
``<store>/cache/<key>.json``; their blobs and layers are kept by garbage collection until
``image prune --build-cache``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from stackctl.runtime.images import oci
from stackctl.runtime.images.store import ImageStore


def step_key(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else (p if isinstance(p, str) else json.dumps(p, sort_keys=True)).encode())
        h.update(b"\0")
    return h.hexdigest()


class BuildCache:
    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self.dir = os.path.join(store.root, "cache")

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self.dir, key + ".json")) as f:
                entry = json.load(f)
        except (OSError, ValueError):
            return None
        for lay in entry.get("layers", []):
            if not (self.store.has_blob(lay["digest"]) and self.store.has_layer(lay["diff_id"])):
                return None
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        os.makedirs(self.dir, exist_ok=True)
        self.store._atomic_write(os.path.join(self.dir, key + ".json"), oci.canonical_json(entry))
