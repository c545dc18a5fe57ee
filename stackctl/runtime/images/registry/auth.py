"""Registry credentials: the challenge a registry sends, the credential files, the helpers.

Where ``credentials_for(registry)`` looks, first match wins:

1. stackctl's own file, ``~/.config/stackctl/auth.json`` (``$XDG_CONFIG_HOME``, or
   ``STACKCTL_AUTH_FILE``), written by ``stackctl login`` with mode 0600, in the format of
   Docker's ``auths`` section: ``{"auths": {"host:5000": {"auth": base64("user:pass")}}}``;
2. ``DOCKER_AUTH_CONFIG`` (the same JSON in the environment, as Docker's CLI reads it);
3. Docker's ``~/.docker/config.json`` (``$DOCKER_CONFIG``): a credential helper named for the
   registry in ``credHelpers``, else the default ``credsStore`` — each only when its
   ``docker-credential-<name>`` binary is on ``PATH`` — else the ``auths`` entry (``auth``,
   ``identitytoken``, ``registrytoken``).

Docker Hub is ``https://index.docker.io/v1/`` in Docker's files and ``docker.io`` in ours; any
spelling is accepted on reading. Credentials forwarded for one pull (a :class:`RegistryAuth`
passed to pull/push/ensure_image) are used for that call only and never written anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stackctl.errors import StackctlError
from stackctl.runtime.images.refs import DEFAULT_DOMAIN
from stackctl.runtime.images.registry.reference import HUB_AUTH_KEY, registry_key


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry. ``identity_token`` is an OAuth refresh token (Docker's
    ``identitytoken``); ``registry_token`` a bearer token to send as is."""

    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""

    def __repr__(self) -> str:  # never print secrets
        return f"RegistryAuth(username={self.username!r}, password={'***' if self.password else ''!r})"

    @property
    def has_basic(self) -> bool:
        return bool(self.username and self.password)

    def to_dict(self) -> dict[str, str]:
        """A plain dict for the wire (the manager forwards it to a node for one pull)."""
        return {k: v for k, v in (("username", self.username), ("password", self.password),
                                  ("identity_token", self.identity_token),
                                  ("registry_token", self.registry_token)) if v}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> RegistryAuth:
        return cls(**{k: str(data.get(k, "")) for k in ("username", "password", "identity_token", "registry_token")})


# --- challenges (pure) ------------------------------------------------------------------------

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"`` ->
    ("bearer", {"realm": ..., "service": ..., "scope": ...}). The scheme is lowercased; an
    empty or unknown header gives ("", {})."""
    header = (header or "").strip()
    if not header:
        return "", {}
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return scheme.lower(), params


def basic_header(auth: RegistryAuth) -> str:
    return "Basic " + base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()


# --- files ------------------------------------------------------------------------------------

def auth_file(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if env.get("STACKCTL_AUTH_FILE"):
        return env["STACKCTL_AUTH_FILE"]
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(base, "stackctl", "auth.json")


def docker_config_file(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    base = env.get("DOCKER_CONFIG") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StackctlError(f"cannot read the credentials file {path}: {exc}; fix or remove it "
                            "and log in again (stackctl login)") from None
    return data if isinstance(data, dict) else {}


def _find_entry(auths: Any, registry: str) -> dict[str, Any] | None:
    """The ``auths`` entry for ``registry`` under any of its spellings."""
    if not isinstance(auths, dict):
        return None
    for key, value in auths.items():
        if isinstance(value, dict) and registry_key(key) == registry:
            return value
    return None


def _decode_entry(entry: dict[str, Any]) -> RegistryAuth | None:
    user = entry.get("username", "") or ""
    password = entry.get("password", "") or ""
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
    auth = RegistryAuth(username=user, password=password,
                        identity_token=entry.get("identitytoken", "") or "",
                        registry_token=entry.get("registrytoken", "") or "")
    return auth if (auth.username or auth.identity_token or auth.registry_token) else None


def _helper_get(helper: str, registry: str) -> RegistryAuth | None:
    binary = shutil.which(f"docker-credential-{helper}")
    if not binary:
        return None
    server = HUB_AUTH_KEY if registry == DEFAULT_DOMAIN else registry
    try:
        p = subprocess.run([binary, "get"], input=server, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None  # "credentials not found in native keychain"
    try:
        data = json.loads(p.stdout)
    except ValueError:
        return None
    user, secret = data.get("Username", ""), data.get("Secret", "")
    if user == "<token>":
        return RegistryAuth(identity_token=secret)
    return RegistryAuth(username=user, password=secret) if secret else None


class CredentialStore:
    """stackctl's auth.json (read and written) over Docker's config.json (read only)."""

    def __init__(self, path: str | None = None, docker_config: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.path = path or auth_file(env)
        self.docker_config = docker_config or docker_config_file(env)
        self.env_config = env.get("DOCKER_AUTH_CONFIG", "")

    def get(self, registry: str) -> RegistryAuth | None:
        registry = registry_key(registry)
        entry = _find_entry(_read_json(self.path).get("auths"), registry)
        if entry and (auth := _decode_entry(entry)):
            return auth
        if self.env_config:
            with contextlib.suppress(ValueError):
                entry = _find_entry(json.loads(self.env_config).get("auths"), registry)
                if entry and (auth := _decode_entry(entry)):
                    return auth
        docker = _read_json(self.docker_config)
        helpers = docker.get("credHelpers") or {}
        helper = next((v for k, v in helpers.items() if registry_key(k) == registry), None) \
            if isinstance(helpers, dict) else None
        for name in (helper, docker.get("credsStore")):
            if name and (auth := _helper_get(str(name), registry)):
                return auth
        entry = _find_entry(docker.get("auths"), registry)
        return _decode_entry(entry) if entry else None

    def save(self, registry: str, auth: RegistryAuth) -> None:
        registry = registry_key(registry)
        data = _read_json(self.path)
        auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
        auths = {k: v for k, v in auths.items() if registry_key(k) != registry}
        entry: dict[str, str] = {"auth": base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()}
        if auth.identity_token:
            entry = {"identitytoken": auth.identity_token}
        auths[registry] = entry
        data["auths"] = auths
        self._write(data)

    def remove(self, registry: str) -> bool:
        """Forget ``registry``; False if stackctl's file held nothing for it."""
        registry = registry_key(registry)
        data = _read_json(self.path)
        auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
        kept = {k: v for k, v in auths.items() if registry_key(k) != registry}
        if len(kept) == len(auths):
            return False
        data["auths"] = kept
        self._write(data)
        return True

    def _write(self, data: dict[str, Any]) -> None:
        d = os.path.dirname(self.path)
        os.makedirs(d, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".auth-")  # mkstemp makes it 0600
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
            os.chmod(tmp, 0o600)
            os.rename(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
