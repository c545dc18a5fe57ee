"""Image references, parsed without I/O.

The grammar is Docker's (distribution/reference): ``[host[:port]/]path[:tag][@sha256:hex]``.
Names are kept in Docker's *familiar* form: ``docker.io/library/busybox`` and ``busybox`` are
the same repository and are shown as ``busybox``. A reference without tag or digest means
``:latest``.

A string given to ``image rm``/``inspect``/``run`` may also be an image ID: ``sha256:<64 hex>``,
64 hex digits, or a prefix of them (Docker's short IDs); :func:`parse_lookup` says which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stackctl.errors import UsageError

DEFAULT_TAG = "latest"
DEFAULT_DOMAIN = "docker.io"
_OFFICIAL = "library/"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}"

_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")
_HEX_RE = re.compile(r"^[0-9a-f]{1,64}$")
_ID_RE = re.compile(r"^(?:sha256:)?([0-9a-f]{1,64})$")


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference. ``domain`` is "" for Docker Hub (the familiar form)."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        """The familiar repository name: ``busybox``, ``user/app``, ``host:5000/app``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def tagged(self) -> str:
        """``repository:tag`` with the default tag filled in (what the tag table stores)."""
        return f"{self.repository}:{self.tag or DEFAULT_TAG}"

    @property
    def full_name(self) -> str:
        """The fully qualified name Docker writes into archives (``docker.io/library/x``)."""
        if self.domain:
            return self.repository
        path = self.path if "/" in self.path else _OFFICIAL + self.path
        return f"{DEFAULT_DOMAIN}/{path}"

    def __str__(self) -> str:
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse(ref: str) -> Reference:
    """Parse a reference such as ``busybox``, ``host:5000/a/b:1.0`` or ``x@sha256:...``.

    Raises :class:`UsageError` naming the reference and what is wrong with it.
    """
    if not ref:
        raise UsageError("invalid reference format: empty image name")
    rest, digest = ref, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise UsageError(f"invalid reference format: {ref!r}: digest must be sha256:<64 hex digits>")
    name, tag = rest, ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise UsageError(f"invalid reference format: {ref!r}: bad tag {tag!r}")
    domain, path = _split_domain(name)
    if domain and not _DOMAIN_RE.match(domain):
        raise UsageError(f"invalid reference format: {ref!r}: bad registry host {domain!r}")
    if not path or not _PATH_RE.match(path):
        hint = " (repository names must be lowercase)" if path.lower() != path else ""
        raise UsageError(f"invalid reference format: {ref!r}{hint}")
    if len(name) > 255:
        raise UsageError(f"invalid reference format: {ref!r}: name longer than 255 characters")
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, path = first, remainder
    else:
        domain, path = "", name
    # familiarize: docker.io/library/x -> x, docker.io/u/x -> u/x
    if domain in (DEFAULT_DOMAIN, "index.docker.io", "registry-1.docker.io"):
        domain = ""
        if path.startswith(_OFFICIAL) and path.count("/") == 1:
            path = path[len(_OFFICIAL) :]
    return domain, path


def normalize_tagged(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; the key of the tag table. Refuses digests."""
    r = parse(ref)
    if r.digest:
        raise UsageError(f"refusing to tag with a digest reference: {ref!r}")
    return r.tagged


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a user-given string may denote: a reference, an image ID (prefix), or both."""

    reference: Reference | None
    id_prefix: str  # hex digits without "sha256:", "" if the string cannot be an ID


def parse_lookup(text: str) -> Lookup:
    """Interpret ``text`` as Docker does for ``image inspect``/``rm``.

    ``sha256:<hex>`` and 64 hex digits are IDs only. Other hex strings are first a name,
    then an ID prefix (``abc123`` may be a repository named abc123).
    """
    m = _ID_RE.match(text)
    if m and (text.startswith("sha256:") or len(m.group(1)) == 64):
        return Lookup(reference=None, id_prefix=m.group(1))
    try:
        ref = parse(text)
    except UsageError:
        if m:
            return Lookup(reference=None, id_prefix=m.group(1))
        raise
    prefix = text if _HEX_RE.match(text) else ""
    return Lookup(reference=ref, id_prefix=prefix)


def short_id(image_id: str) -> str:
    """``sha256:abcdef...`` -> ``abcdef012345`` (12 hex digits, as Docker shows)."""
    return image_id.split(":", 1)[-1][:12]
