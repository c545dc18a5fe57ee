"""Choosing one manifest from an image index or manifest list (pure)."""

from __future__ import annotations

from typing import Any

from stackctl.errors import UsageError
from stackctl.runtime.images import oci
from stackctl.runtime.images.registry.errors import PlatformError

_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


def parse_platform(text: str) -> dict[str, str]:
    """``linux/arm64/v8`` -> {"os": "linux", "architecture": "arm64", "variant": "v8"}."""
    parts = [p for p in (text or "").strip().lower().split("/")]
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64")
    if len(parts) == 1:  # "arm64" alone: Docker takes it as the architecture on linux
        parts = ["linux", parts[0]]
    out = {"os": parts[0], "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(parts[1], parts[1])}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


def host_platform() -> dict[str, str]:
    return dict(oci.host_platform())


def format_platform(p: dict[str, Any]) -> str:
    out = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return out + (f"/{p['variant']}" if p.get("variant") else "")


def choose_manifest(index: dict[str, Any], want: dict[str, str]) -> dict[str, Any]:
    """The descriptor in ``index`` for platform ``want``: os and architecture must match; a
    wanted variant must match, else an entry without variant or with the architecture's usual
    variant (arm64/v8) is preferred. Attestation entries (``unknown/unknown``) are skipped."""
    entries = [m for m in index.get("manifests", []) if isinstance(m, dict) and m.get("digest")]
    usable = [m for m in entries if (m.get("platform") or {}).get("architecture") != "unknown"]
    if not usable:
        raise PlatformError("the image index lists no manifests")
    if all(not m.get("platform") for m in usable):
        return usable[0]  # an index without platforms: take the first, as containerd does
    candidates = []
    for m in usable:
        p = m.get("platform") or {}
        if p.get("os") != want.get("os", "linux") or p.get("architecture") != want["architecture"]:
            continue
        variant = p.get("variant", "")
        if want.get("variant"):
            if variant != want["variant"]:
                continue
            rank = 0
        else:
            rank = 0 if variant in ("", _DEFAULT_VARIANT.get(want["architecture"], "")) else 1
        candidates.append((rank, m))
    if not candidates:
        have = ", ".join(sorted({format_platform(m.get("platform") or {}) for m in usable}))
        raise PlatformError(f"no manifest for {format_platform(want)} in the image index (it has {have})")
    candidates.sort(key=lambda c: c[0])
    return candidates[0][1]
