"""One registry, spoken to over HTTP with httpx: scheme choice, auth, retries, errors.

- The first request pings ``/v2/``: HTTPS, verified; a loopback or insecure registry (see
  :mod:`.config`) is asked over plain HTTP first.
- A 401 carries a ``WWW-Authenticate`` challenge. ``Bearer``: a token is fetched from the
  realm for the request's scopes (``repository:NAME:pull[,push]``; a mount adds
  ``repository:FROM:pull``), with basic credentials if there are any, else anonymously, and is
  cached per scope set until it expires (60 s when the token server gives no ``expires_in``).
  ``Basic``: the credentials are sent with every request.
- Transient failures (connection reset, timeouts, 500/502/503/504, a 429 asking to wait at
  most a few seconds) are retried with a growing delay; streamed blob downloads resume with
  ``Range`` (see :mod:`.pull`).
- Every failure becomes one :mod:`.errors` line naming what was being done
  (``subject``: "pull 127.0.0.1:5000/app:1") and what to do about it.

Thread-safe: one client serves the parallel layer transfers of a pull or push.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urljoin

from stackctl.runtime.images.registry._httpx import httpx

from stackctl.runtime.images.registry.auth import (
    CredentialStore,
    RegistryAuth,
    basic_header,
    parse_challenge,
)
from stackctl.runtime.images.registry.config import RegistryConfig, cert_files, load_config
from stackctl.runtime.images.registry.errors import (
    RateLimitError,
    RegistryAuthError,
    RegistryConnectError,
    RegistryError,
    RegistryNotFound,
)
from stackctl.runtime.images.registry.reference import HUB_API_HOST

RETRY_STATUS = frozenset({500, 502, 503, 504})
ATTEMPTS = 4
BACKOFF = (0.2, 0.6, 1.5)
MAX_RETRY_AFTER = 5.0  # seconds a 429 may ask us to wait before we give up and say so
MIN_TOKEN_LIFETIME = 60.0


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


class RegistryClient:
    def __init__(self, registry: str, *, auth: RegistryAuth | None = None,
                 credentials: CredentialStore | None = None, config: RegistryConfig | None = None,
                 timeout: float = 60.0, sleep=time.sleep, transport: httpx.BaseTransport | None = None) -> None:
        self.registry = registry
        self.host = HUB_API_HOST if registry == "docker.io" else registry
        self.config = config or load_config()
        self._auth = auth
        self._credentials = credentials
        self._auth_looked_up = auth is not None
        self._sleep = sleep
        self.subject = registry
        self._base: str | None = None
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._ctx = self._ssl_context()
        self._http = httpx.Client(verify=self._ctx, timeout=httpx.Timeout(timeout, connect=15.0),
                                  follow_redirects=True, headers={"User-Agent": "stackctl"},
                                  limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- setup ----------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        """The client's TLS context, without certificates yet: loading the system's CAs costs
        ~30 ms (much more on a busy machine), which a plain-HTTP loopback registry never needs;
        :meth:`_load_certs` adds them before the first HTTPS connection."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies peer and host name
        self._certs_loaded = False
        return ctx

    def _load_certs(self) -> None:
        if self._certs_loaded:
            return
        ctx = self._ctx
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        ca, client = cert_files(self.registry)
        if ca:
            ctx.load_verify_locations(ca)
        if client:
            ctx.load_cert_chain(*client)
        if self.config.skip_verify(self.registry):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self._certs_loaded = True

    @property
    def auth(self) -> RegistryAuth | None:
        if not self._auth_looked_up:
            store = self._credentials or CredentialStore()
            self._auth = store.get(self.registry)
            self._auth_looked_up = True
        return self._auth

    @property
    def base(self) -> str:
        """``https://host`` or ``http://host``, found by pinging ``/v2/`` once."""
        with self._lock:
            if self._base is None:
                self._base = self._ping()
            return self._base

    def _ping(self) -> str:
        """HTTPS, verified. A registry allowed plain HTTP (loopback, insecure) is asked over
        plain HTTP first — one round trip, no TLS set-up; a TLS registry answers that with 400
        ("Client sent an HTTP request to an HTTPS server") and is then spoken to over HTTPS."""
        https, http = f"https://{self.host}", f"http://{self.host}"
        if self.config.plain_http_allowed(self.registry):
            try:
                r = self._http.get(http + "/v2/")
                if r.status_code in (200, 401) and _looks_like_registry(r):
                    self._note_challenge(r)
                    return http
            except httpx.TransportError:
                pass
        self._load_certs()
        try:
            r = self._http.get(https + "/v2/")
        except httpx.TransportError as exc:
            raise self._connect_error(exc, https=True) from None
        self._note_challenge(r)
        return https

    def _note_challenge(self, r: httpx.Response) -> None:
        if r.status_code == 401:
            scheme, params = parse_challenge(r.headers.get("www-authenticate", ""))
            if scheme in ("bearer", "basic"):
                self._challenge = (scheme, params)

    # --- requests -------------------------------------------------------------------------
    def url(self, path_or_url: str) -> str:
        return urljoin(self.base + "/", path_or_url)

    def request(self, method: str, path_or_url: str, scopes: Iterable[str] = (), *,
                headers: dict[str, str] | None = None, content: Any = None,
                stream: bool = False, retry: bool = True) -> httpx.Response:
        """Send with auth and retries. ``content`` must be bytes when ``retry`` is on; a
        streamed response must be closed by the caller."""
        scopes = tuple(scopes)
        url = self.url(path_or_url)
        attempts = ATTEMPTS if retry else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                r = self._send_authed(method, url, scopes, headers or {}, content, stream)
            except httpx.TransportError as exc:
                if last or isinstance(exc, httpx.ConnectError) and _is_dns(exc):
                    raise self._connect_error(exc, https=url.startswith("https")) from None
                self._sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
                continue
            if r.status_code in RETRY_STATUS and not last:
                r.close()
                self._sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
                continue
            if r.status_code == 429:
                wait = _retry_after(r)
                if not last and wait is not None and wait <= MAX_RETRY_AFTER:
                    r.close()
                    self._sleep(max(wait, 0.1))
                    continue
                r.close()
                when = f"retry after {wait:.0f} s" if wait is not None else "retry later"
                raise RateLimitError(f"{self.subject}: the registry {self.registry} is rate-limiting "
                                     f"requests (429 Too Many Requests); {when}, or log in to get a "
                                     "higher limit (stackctl login)", retry_after=wait)
            return r
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_authed(self, method: str, url: str, scopes: tuple[str, ...], headers: dict[str, str],
                     content: Any, stream: bool) -> httpx.Response:
        h = dict(headers)
        authz = self._authorization(scopes)
        if authz:
            h["Authorization"] = authz
        r = self._http.send(self._http.build_request(method, url, headers=h, content=content), stream=stream)
        if r.status_code != 401:
            return r
        if not stream:
            r.read()
        r.close()
        scheme, params = parse_challenge(r.headers.get("www-authenticate", ""))
        if scheme not in ("bearer", "basic"):
            raise RegistryAuthError(f"{self.subject}: the registry {self.registry} refused the request "
                                    f"(401) without a usable challenge; log in (stackctl login {self.registry})")
        had = self._challenge
        self._challenge = (scheme, params)
        if scheme == "bearer":
            self._tokens.pop(_scope_key(scopes, params), None)
        elif had and had[0] == "basic" and authz:
            raise self._denied()
        authz2 = self._authorization(scopes)
        if not authz2 or (authz2 == authz and scheme == "basic"):
            raise self._denied()
        h["Authorization"] = authz2
        if hasattr(content, "seek"):
            content.seek(0)
        r = self._http.send(self._http.build_request(method, url, headers=h, content=content), stream=stream)
        if r.status_code == 401:
            r.close()
            raise self._denied()
        return r

    def _denied(self) -> RegistryAuthError:
        if self.auth is None:
            return RegistryAuthError(f"{self.subject}: authentication required by {self.registry}; "
                                     f"log in first (stackctl login {self.registry})")
        if self._challenge and self._challenge[0] == "bearer":  # the token was issued, but without access
            return RegistryAuthError(f"{self.subject}: access denied to {self.auth.username or 'the saved token'!r} "
                                     f"by {self.registry}; check the repository name and the account's rights")
        return self._wrong_password()

    def _wrong_password(self) -> RegistryAuthError:
        who = self.auth.username if self.auth and self.auth.username else "the saved token"
        todo = ("check the username and password" if self.subject.startswith("login")
                else f"log in again (stackctl login {self.registry})")
        return RegistryAuthError(f"{self.subject}: {self.registry} refused the credentials of {who!r} "
                                 f"(wrong username or password?); {todo}")

    def _authorization(self, scopes: tuple[str, ...]) -> str:
        if self._challenge is None:
            return ""
        scheme, params = self._challenge
        auth = self.auth
        if scheme == "basic":
            return basic_header(auth) if auth and auth.has_basic else ""
        if auth and auth.registry_token:
            return f"Bearer {auth.registry_token}"
        key = _scope_key(scopes, params)
        with self._lock:
            cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic():
                return f"Bearer {cached[0]}"
        token, lifetime = self._fetch_token(params, scopes)
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + max(lifetime, MIN_TOKEN_LIFETIME) - 10)
        return f"Bearer {token}"

    def _fetch_token(self, params: dict[str, str], scopes: tuple[str, ...]) -> tuple[str, float]:
        realm = params.get("realm", "")
        if not realm:
            raise RegistryAuthError(f"{self.subject}: {self.registry} sent a bearer challenge without a realm")
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        wanted = list(scopes) or ([params["scope"]] if params.get("scope") else [])
        query += [("scope", s) for s in wanted]
        auth = self.auth
        try:
            if auth and auth.identity_token:  # OAuth2 refresh-token grant (Docker's identitytoken)
                form = {"grant_type": "refresh_token", "refresh_token": auth.identity_token,
                        "client_id": "stackctl", "service": params.get("service", ""), "scope": " ".join(wanted)}
                r = self._http.post(realm, data={k: v for k, v in form.items() if v})
            else:
                h = {"Authorization": basic_header(auth)} if auth and auth.has_basic else {}
                r = self._http.get(realm, params=query, headers=h)
        except httpx.TransportError as exc:
            raise self._connect_error(exc, https=realm.startswith("https"), what=f"token server {realm}") from None
        if r.status_code in (401, 403):
            if auth is not None:
                raise self._wrong_password()
            raise RegistryAuthError(f"{self.subject}: {self.registry} needs credentials; "
                                    f"log in first (stackctl login {self.registry})")
        if r.status_code != 200:
            raise RegistryError(f"{self.subject}: the token server {realm} answered {r.status_code}; retry later")
        try:
            body = r.json()
        except ValueError:
            raise RegistryError(f"{self.subject}: the token server {realm} sent no JSON") from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"{self.subject}: the token server {realm} sent no token")
        return str(token), float(body.get("expires_in") or MIN_TOKEN_LIFETIME)

    # --- errors ---------------------------------------------------------------------------
    def _connect_error(self, exc: Exception, *, https: bool, what: str = "") -> RegistryConnectError:
        where = what or f"registry {self.registry}"
        text = f"{exc}"
        cause = exc.__cause__ or exc.__context__
        chain = f"{text} {cause!r}"
        if _is_dns(exc):
            host = self.host.rsplit(":", 1)[0] if not what else where
            return RegistryConnectError(f"{self.subject}: no such host {host!r}; check the registry name "
                                        "in the reference, or the network/DNS of this node")
        if "CERTIFICATE_VERIFY_FAILED" in chain or "certificate verify failed" in chain.lower():
            return RegistryConnectError(
                f"{self.subject}: TLS failure talking to {where}: its certificate is not trusted ({_short(text)}); "
                f"put its CA in /etc/stackctl/certs.d/{self.registry}/ca.crt, or, for a test registry, "
                "list it in STACKCTL_INSECURE_REGISTRIES")
        if https and ("SSL" in chain or "TLS" in chain or "WRONG_VERSION" in chain):
            return RegistryConnectError(
                f"{self.subject}: TLS failure talking to {where} ({_short(text)}); if it serves plain HTTP, "
                "list it in STACKCTL_INSECURE_REGISTRIES (or /etc/stackctl/registries.json)")
        if isinstance(exc, httpx.TimeoutException):
            return RegistryConnectError(f"{self.subject}: {where} did not answer in time; check that it is "
                                        "up and reachable, then retry")
        if "refused" in chain.lower():
            return RegistryConnectError(f"{self.subject}: cannot connect to {where} (connection refused); "
                                        "is the registry running on that address and port?")
        return RegistryConnectError(f"{self.subject}: cannot reach {where} ({_short(text)}); check the "
                                    "address and the network, then retry")

    def error_for(self, r: httpx.Response, *, what: str, repository: str, reference: str = "") -> RegistryError:
        """The error a non-success answer means, for a request about ``repository``."""
        codes, message = _error_codes(r)
        repo = self.registry + "/" + repository
        if r.status_code in (401, 403) or "DENIED" in codes or "UNAUTHORIZED" in codes:
            if self.auth is None:
                return RegistryAuthError(f"{what}: access to {repo} denied: the repository does not exist "
                                         f"or needs `stackctl login {self.registry}`")
            return RegistryAuthError(f"{what}: access to {repo} denied for {self.auth.username!r}; check the "
                                     "name, and that this account may use the repository")
        if "MANIFEST_UNKNOWN" in codes or (r.status_code == 404 and reference and "NAME_UNKNOWN" not in codes):
            kind = "digest" if reference.startswith("sha256:") else "tag"
            return RegistryNotFound(f"{what}: {kind} {reference} not found in {repo}; check the {kind} "
                                    "(the repository exists)" if codes else
                                    f"{what}: {reference} not found in {repo}; check the name and tag")
        if "NAME_UNKNOWN" in codes or r.status_code == 404:
            return RegistryNotFound(f"{what}: repository {repo} not found; check the name (stackctl search "
                                    f"{self.registry}/ lists the repositories)")
        if "BLOB_UNKNOWN" in codes:
            return RegistryNotFound(f"{what}: a blob of {repo} is missing on the registry; push the image again")
        detail = message or r.reason_phrase
        return RegistryError(f"{what}: {self.registry} answered {r.status_code} ({_short(detail)})")


def _looks_like_registry(r: httpx.Response) -> bool:
    """An answer to ``GET /v2/`` from a distribution registry (not an HTTPS server's 400)."""
    return bool(r.headers.get("docker-distribution-api-version")) or r.status_code == 401 or \
        r.headers.get("content-type", "").startswith("application/json")


def _scope_key(scopes: tuple[str, ...], params: dict[str, str]) -> str:
    return " ".join(sorted(scopes)) or params.get("scope", "")


def _is_dns(exc: Exception) -> bool:
    s = f"{exc} {exc.__cause__!r} {exc.__context__!r}"
    return any(m in s for m in ("Name or service not known", "nodename nor servname", "Errno -2",
                                "Errno -3", "Errno -5", "No address associated", "Temporary failure in name resolution"))


def _retry_after(r: httpx.Response) -> float | None:
    value = r.headers.get("retry-after", "")
    try:
        return float(value)
    except ValueError:
        pass
    if value:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return None


def _error_codes(r: httpx.Response) -> tuple[set[str], str]:
    try:
        if not r.is_stream_consumed:
            r.read()
        body = json.loads(r.content or b"{}")
    except (ValueError, httpx.StreamError):
        return set(), ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return set(), ""
    codes = {str(e.get("code", "")) for e in errors if isinstance(e, dict)}
    msg = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict) and e.get("message"))
    return codes, msg


def _short(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def check_login(client: RegistryClient) -> None:
    """Prove the client's credentials against the registry (``login``): the challenge of
    ``/v2/`` says how; a refused password raises :class:`RegistryAuthError`."""
    _ = client.base  # pings, learns the challenge
    if client._challenge is None:
        return  # the registry needs no credentials at all
    scheme, params = client._challenge
    if scheme == "bearer":
        client._fetch_token(params, ())
        return
    r = client.request("GET", "/v2/")
    if r.status_code != 200:
        raise client.error_for(r, what=client.subject, repository="")


def catalog(client: RegistryClient, limit: int = 0) -> list[str]:
    """Repositories of the registry (``/v2/_catalog``, following ``Link`` pagination)."""
    names: list[str] = []
    url = "/v2/_catalog?n=1000"
    for _ in range(1000):
        r = client.request("GET", url, ["registry:catalog:*"])
        if r.status_code != 200:
            if r.status_code in (401, 403):
                raise RegistryAuthError(f"{client.subject}: {client.registry} does not let this account list "
                                        f"its repositories (/v2/_catalog); log in (stackctl login {client.registry}) "
                                        "with an account allowed to")
            raise RegistryError(f"{client.subject}: {client.registry} does not offer a repository catalog "
                                f"(/v2/_catalog answered {r.status_code})")
        names += list(r.json().get("repositories") or [])
        if limit and len(names) >= limit:
            break
        link = r.headers.get("link", "")
        if 'rel="next"' not in link:
            break
        url = link.split(";", 1)[0].strip().strip("<>")
    return names
