"""The config hash of a service: when it changes, the service's containers are recreated.

The hash is a sha256 over the service's normalized spec — the form ``stackctl config`` prints
(:meth:`Service.dump`: long syntax, defaults filled, variables resolved) — as canonical JSON
(sorted keys, no spaces), minus the keys whose change needs no new container, plus the digests
of the secret and config *contents* the service mounts (so editing a secret file recreates the
services that use it) and, when the caller knows it, the image id the tag resolved to (so a
re-pulled ``:latest`` recreates, as Compose does).

Left out of the hash, and why:

=============================  ==============================================================
``build``, ``pull_policy``     how the image is obtained, not what runs (Compose leaves them
                               out too); a rebuilt image shows up through ``image_id``
``scale``, ``deploy.replicas`` how many; scaling adds or removes slots, it recreates nothing
``depends_on``, ``profiles``   start order and selection (Compose leaves them out too)
``deploy.update_config``,      how an update is rolled out, not what is rolled out (Swarm keeps
``deploy.rollback_config``     them outside the task spec)
``deploy.restart_policy``      carried out by the agent's supervisor from the desired state;
                               the container itself does not change
``deploy.labels``              labels of the service, not of its containers (Swarm's meaning)
``deploy.endpoint_mode``       how the name resolves (VIP or DNS round robin): the embedded DNS
``deploy.placement``           where: the scheduler moves a task only when its node no longer
                               fits (Swarm's rule), it does not recreate it in place
``x-*``                        extension fields are for other tools; stackctl never reads them
=============================  ==============================================================

Besides the whole hash, every top-level key (``deploy.*`` keys one by one) gets a *part*
digest. Containers carry both as labels, so the planner can say what changed —
``config changed: environment, image`` — from what the node reports alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stackctl.spec.models import Service, Stack

#: top-level service keys left out of the hash (see the module docstring)
EXCLUDED_KEYS = frozenset({"build", "pull_policy", "scale", "depends_on", "profiles"})
#: ``deploy`` keys left out of the hash
EXCLUDED_DEPLOY_KEYS = frozenset({"replicas", "update_config", "rollback_config",
                                  "restart_policy", "labels", "endpoint_mode", "placement"})
#: length of the abbreviated part digests carried in labels (48 bits: collisions between two
#: versions of one key are not a practical concern; the full hash decides)
PART_DIGEST_LENGTH = 12


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_digest(data: bytes | str) -> str:
    """The digest of a secret's or config's content (what :func:`service_hash` takes)."""
    return sha256_hex(data.encode("utf-8") if isinstance(data, str) else data)


@dataclass(frozen=True, slots=True)
class ConfigHash:
    """A service's hash and its parts (key -> full sha256 of that key's canonical JSON)."""

    value: str
    parts: Mapping[str, str] = field(default_factory=dict)

    def parts_label(self) -> str:
        """``key=digest12,...`` — the ``com.stackctl.config-parts`` label."""
        return ",".join(f"{key}={digest[:PART_DIGEST_LENGTH]}"
                        for key, digest in sorted(self.parts.items()))


def hashed_spec(service: Service) -> dict[str, Any]:
    """The part of the service's normalized spec that the hash covers."""
    data = {k: v for k, v in service.dump().items()
            if k not in EXCLUDED_KEYS and not k.startswith("x-")}
    deploy = data.pop("deploy", None) or {}
    for key, value in deploy.items():
        if key not in EXCLUDED_DEPLOY_KEYS and not key.startswith("x-"):
            data[f"deploy.{key}"] = value
    return data


def service_hash(service: Service, *, objects: Mapping[str, str] | None = None,
                 image_id: str | None = None) -> ConfigHash:
    """The config hash of ``service``.

    ``objects`` maps ``secret:<key>`` / ``config:<key>`` (the top-level key of the stack file)
    to the digest of its content (:func:`content_digest`, see :func:`object_digests`); a
    mounted object missing there is hashed by its name only. ``image_id`` is the image the
    reference resolved to, when known.
    """
    objects = objects or {}
    parts = {key: sha256_hex(canonical_json(value))
             for key, value in hashed_spec(service).items()}
    for kind, refs in (("secret", service.secrets), ("config", service.configs)):
        for ref in refs:
            name = f"{kind}:{ref.source}"
            parts[name] = objects.get(name) or sha256_hex(name.encode())
    if image_id:
        parts["image-id"] = sha256_hex(image_id.encode())
    lines = "\n".join(f"{key}={digest}" for key, digest in sorted(parts.items()))
    return ConfigHash(sha256_hex(lines.encode("utf-8")), parts)


def parse_parts_label(text: str) -> dict[str, str]:
    """The inverse of :meth:`ConfigHash.parts_label` (malformed items are skipped)."""
    out = {}
    for item in text.split(","):
        key, sep, digest = item.partition("=")
        if sep and key:
            out[key] = digest
    return out


def changed_parts(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The keys whose digest differs, as ``key``, ``key (added)`` or ``key (removed)``.

    Digests are compared on their common prefix, so full and abbreviated digests mix."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            out.append(f"{key} (added)")
        elif key not in new:
            out.append(f"{key} (removed)")
        else:
            size = min(len(old[key]), len(new[key]))
            if old[key][:size] != new[key][:size]:
                out.append(key)
    return out


# --------------------------------------------------------------------------------------------
# The one impure helper: reading the contents. Kept apart and injectable.


def object_digests(stack: Stack, environ: Mapping[str, str], *,
                   read: Callable[[str], bytes] | None = None) -> dict[str, str]:
    """Digests of every secret and config content of ``stack`` (``secret:<key>`` -> digest).

    ``read`` reads a file (default: the real file system); a file that cannot be read is left
    out (the loader or the agent reports it). External objects have no content here.
    """
    def default_read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    read = read or default_read
    out: dict[str, str] = {}
    for kind, objects in (("secret", stack.secrets), ("config", stack.configs)):
        for key, obj in objects.items():
            data: bytes | str | None = None
            if obj.file is not None:
                try:
                    data = read(obj.file)
                except OSError:
                    data = None
            elif obj.environment is not None:
                data = environ.get(obj.environment)
            elif getattr(obj, "content", None) is not None:
                content = obj.content
                data = content.get_secret_value() if hasattr(content, "get_secret_value") \
                    else content
            if data is not None:
                out[f"{kind}:{key}"] = content_digest(data)
    return out
