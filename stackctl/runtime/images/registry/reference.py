"""References as a registry sees them (pure).

:mod:`stackctl.runtime.images.refs` keeps names in Docker's familiar form (``busybox``); a
registry needs the host to connect to and the repository path on it. Docker's rules:

- no host part (the first component has no ``.`` or ``:`` and is not ``localhost``) means
  Docker Hub, ``docker.io``, whose API lives at ``registry-1.docker.io``;
- a one-component name on Docker Hub is an official image: ``busybox`` is ``library/busybox``;
- no tag and no digest means ``:latest``; ``name:tag@sha256:...`` names the digest (the tag is
  kept only to tag the pulled image locally);
- a port is part of the host: ``localhost:5000/app``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from stackctl.runtime.images.refs import DEFAULT_DOMAIN, DEFAULT_TAG, Reference, parse

HUB_API_HOST = "registry-1.docker.io"
HUB_AUTH_KEY = "https://index.docker.io/v1/"  # Docker's key for Docker Hub in config.json


@dataclass(frozen=True, slots=True)
class RegistryRef:
    registry: str  # "docker.io", "127.0.0.1:5000", "ghcr.io"
    repository: str  # path on the registry: "library/busybox", "team/app"
    tag: str = ""
    digest: str = ""

    @property
    def api_host(self) -> str:
        """Where the API is: Docker Hub's differs from its name."""
        return HUB_API_HOST if self.registry == DEFAULT_DOMAIN else self.registry

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if given, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def familiar_repository(self) -> str:
        """The repository as the local store names it (``busybox``, ``host:5000/app``)."""
        return _familiar(self.registry, self.repository)

    @property
    def local_tag(self) -> str:
        """``repo:tag`` under which a pull stores the image; "" for a digest-only pull."""
        if self.digest and not self.tag:
            return ""
        return f"{self.familiar_repository}:{self.tag or DEFAULT_TAG}"

    @property
    def full_name(self) -> str:
        """``docker.io/library/busybox``: what ``docker pull -q`` prints."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        """The familiar form with tag/digest as given (for messages)."""
        out = self.familiar_repository
        if self.tag or not self.digest:
            out += f":{self.tag or DEFAULT_TAG}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def full(self) -> str:
        out = self.full_name
        if self.tag or not self.digest:
            out += f":{self.tag or DEFAULT_TAG}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_tag(self, tag: str) -> RegistryRef:
        return replace(self, tag=tag, digest="")

    def with_digest(self, digest: str) -> RegistryRef:
        return replace(self, digest=digest)


def _familiar(registry: str, repository: str) -> str:
    if registry != DEFAULT_DOMAIN:
        return f"{registry}/{repository}"
    if repository.startswith("library/") and repository.count("/") == 1:
        return repository[len("library/"):]
    return repository


def from_reference(r: Reference) -> RegistryRef:
    if r.domain:
        return RegistryRef(registry=r.domain, repository=r.path, tag=r.tag, digest=r.digest)
    path = r.path if "/" in r.path else f"library/{r.path}"
    return RegistryRef(registry=DEFAULT_DOMAIN, repository=path, tag=r.tag, digest=r.digest)


def parse_ref(text: str) -> RegistryRef:
    """``busybox`` -> docker.io/library/busybox:latest; ``localhost:5000/app@sha256:...``.
    Raises :class:`~stackctl.errors.UsageError` for a malformed reference."""
    return from_reference(parse(text))


def registry_key(text: str) -> str:
    """The registry a ``login``/``logout`` argument names: ``docker.io`` for none or for any
    of Docker Hub's spellings; ``http(s)://`` and a trailing path are dropped."""
    s = (text or "").strip()
    for prefix in ("https://", "http://"):
        if s.startswith(prefix):
            s = s[len(prefix):]
    s = s.split("/", 1)[0]
    if s in ("", "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        return DEFAULT_DOMAIN
    return s
