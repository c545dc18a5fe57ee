"""The registry client's logic on a fake transport (httpx.MockTransport): the bearer token
flow, retries, rate limits, the plain-HTTP rule; the credential files; ensure_image's
decisions on a real (layerless) image store."""

from __future__ import annotations

import base64
import json
import os
import stat

import httpx
import pytest

from stackctl.errors import NotFoundError
from stackctl.paths import NodePaths
from stackctl.runtime.images import oci
from stackctl.runtime.images.registry.auth import CredentialStore, RegistryAuth
from stackctl.runtime.images.registry.client import RegistryClient, check_login
from stackctl.runtime.images.registry.config import RegistryConfig
from stackctl.runtime.images.registry.errors import (
    RateLimitError,
    RegistryAuthError,
    RegistryConnectError,
)
from stackctl.runtime.images.registry.policy import ensure_image
from stackctl.runtime.images.registry.records import Records
from stackctl.runtime.images.store import ImageStore


def _client(handler, registry="reg.example.com", auth=None, insecure=()):
    return RegistryClient(registry, auth=auth, config=RegistryConfig(insecure=tuple(insecure)),
                          transport=httpx.MockTransport(handler), sleep=lambda s: None)


def test_bearer_flow_fetches_a_token_per_scope_and_caches_it():
    seen = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.method, str(req.url), req.headers.get("authorization", "")))
        if req.url.host == "auth.example.com":
            assert req.headers["authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
            scope = req.url.params.get_list("scope")
            return httpx.Response(200, json={"token": "T:" + ",".join(scope)})
        if req.headers.get("authorization", "").startswith("Bearer T:repository:app:pull"):
            return httpx.Response(200, json={"tags": ["1"]})
        return httpx.Response(401, headers={"WWW-Authenticate":
                                            'Bearer realm="https://auth.example.com/token",service="reg"'})

    c = _client(handler, auth=RegistryAuth("u", "p"))
    for _ in range(3):
        r = c.request("GET", "/v2/app/tags/list", ["repository:app:pull"])
        assert r.status_code == 200
    tokens = [s for s in seen if "auth.example.com" in s[1]]
    assert len(tokens) == 1 and "service=reg" in tokens[0][1]


def test_wrong_password_is_an_auth_error_naming_the_registry():
    def handler(req):
        if req.url.host == "auth.example.com":
            return httpx.Response(401, json={"details": "incorrect username or password"})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example.com/t"'})

    c = _client(handler, auth=RegistryAuth("bob", "bad"))
    c.subject = "login reg.example.com"
    with pytest.raises(RegistryAuthError, match=r"^login reg.example.com: reg.example.com refused the credentials "
                                                r"of 'bob' \(wrong username or password\?\)"):
        check_login(c)


def test_basic_auth_is_sent_after_the_challenge_and_refused_once():
    calls = []

    def handler(req):
        calls.append(req.headers.get("authorization", ""))
        if req.headers.get("authorization") == "Basic " + base64.b64encode(b"u:right").decode():
            return httpx.Response(200, json={})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})

    check_login(_client(handler, auth=RegistryAuth("u", "right")))
    calls.clear()
    with pytest.raises(RegistryAuthError, match="wrong username or password"):
        check_login(_client(handler, auth=RegistryAuth("u", "wrong")))
    assert len(calls) == 2  # the ping, then one try with the credentials: no loop


def test_transient_errors_are_retried_and_rate_limits_reported():
    answers = [httpx.Response(503), httpx.Response(502), httpx.Response(200, json={"ok": 1})]

    def handler(req):
        if req.url.path == "/v2/":
            return httpx.Response(200)
        return answers.pop(0)

    assert _client(handler).request("GET", "/v2/x/tags/list").status_code == 200

    waits = []
    limited = [httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, json={})]

    def handler2(req):
        return httpx.Response(200) if req.url.path == "/v2/" else limited.pop(0)

    c = RegistryClient("reg.example.com", config=RegistryConfig(), transport=httpx.MockTransport(handler2),
                       sleep=waits.append)
    assert c.request("GET", "/v2/x/tags/list").status_code == 200 and waits == [2.0]

    def handler3(req):
        return httpx.Response(200) if req.url.path == "/v2/" else httpx.Response(429, headers={"Retry-After": "120"})

    c = _client(handler3)
    c.subject = "pull reg.example.com/x:1"
    with pytest.raises(RateLimitError, match=r"^pull reg.example.com/x:1: .*429.*retry after 120 s") as info:
        c.request("GET", "/v2/x/manifests/1")
    assert info.value.retry_after == 120.0


def test_plain_http_only_for_loopback_and_insecure_registries():
    def handler(req):
        if req.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number")
        return httpx.Response(200, headers={"Docker-Distribution-Api-Version": "registry/2.0"})

    with pytest.raises(RegistryConnectError, match="STACKCTL_INSECURE_REGISTRIES"):
        _ = _client(handler, registry="10.0.0.5:5000").base
    assert _client(handler, registry="10.0.0.5:5000", insecure=["10.0.0.0/8"]).base == "http://10.0.0.5:5000"
    assert _client(handler, registry="127.0.0.1:5000").base == "http://127.0.0.1:5000"
    assert _client(handler, registry="localhost:5000").base == "http://localhost:5000"

    def verify_fails(req):
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed")

    with pytest.raises(RegistryConnectError, match=r"TLS failure .*ca.crt"):
        _ = _client(verify_fails).base

    def tls_only(req):  # a loopback registry with TLS: plain HTTP gets the 400 of an HTTPS port
        if req.url.scheme == "http":
            return httpx.Response(400, text="Client sent an HTTP request to an HTTPS server.")
        return httpx.Response(200, headers={"Docker-Distribution-Api-Version": "registry/2.0"})

    assert _client(tls_only, registry="127.0.0.1:5443").base == "https://127.0.0.1:5443"


# --- credentials -------------------------------------------------------------------------------

def test_login_file_is_0600_and_read_back(tmp_path):
    store = CredentialStore(path=str(tmp_path / "cfg" / "stackctl" / "auth.json"),
                            docker_config=str(tmp_path / "none.json"), environ={})
    store.save("https://localhost:5000", RegistryAuth("u", "p:with:colons"))
    st = os.stat(store.path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(store.path)).st_mode) == 0o700
    data = json.load(open(store.path))
    assert data == {"auths": {"localhost:5000": {"auth": base64.b64encode(b"u:p:with:colons").decode()}}}
    assert store.get("localhost:5000") == RegistryAuth("u", "p:with:colons")
    assert store.remove("localhost:5000") and not store.remove("localhost:5000")
    assert store.get("localhost:5000") is None
    assert "p:with" not in repr(RegistryAuth("u", "p:with:colons"))


def test_docker_config_auths_env_and_helpers(tmp_path, monkeypatch):
    docker = tmp_path / "config.json"
    docker.write_text(json.dumps({
        "auths": {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
                  "reg.lan:5000": {"identitytoken": "refresh-me"}},
        "credHelpers": {"helped.lan": "fake"},
        "credsStore": "missing-helper-binary",
    }))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-fake"
    helper.write_text('#!/bin/sh\nread s\necho "{\\"Username\\":\\"h\\",\\"Secret\\":\\"from-$s\\"}"\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    store = CredentialStore(path=str(tmp_path / "own.json"), docker_config=str(docker), environ={})
    assert store.get("docker.io") == RegistryAuth("hub", "pw")
    assert store.get("reg.lan:5000") == RegistryAuth(identity_token="refresh-me")
    assert store.get("helped.lan") == RegistryAuth("h", "from-helped.lan")
    assert store.get("other.lan") is None  # credsStore's binary is not installed: skipped
    env = {"DOCKER_AUTH_CONFIG": json.dumps({"auths": {"docker.io": {"auth": base64.b64encode(b"env:x").decode()}}})}
    assert CredentialStore(path=str(tmp_path / "own.json"), docker_config=str(docker), environ=env).get(
        "docker.io") == RegistryAuth("env", "x")
    store.save("docker.io", RegistryAuth("mine", "y"))  # stackctl's own file wins
    assert store.get("index.docker.io") == RegistryAuth("mine", "y")
    assert RegistryAuth.from_dict(RegistryAuth("a", "b").to_dict()) == RegistryAuth("a", "b")


# --- ensure_image ---------------------------------------------------------------------------------

class _FakePull:
    """Stands in for a pull: commits a layerless image under the reference's tag."""

    def __init__(self, created="2026-01-01T00:00:00Z"):
        self.calls = []
        self.created = created

    def __call__(self, store, r, **kw):
        from stackctl.runtime.images.registry.pull import PullResult

        self.calls.append((str(r), kw.get("auth")))
        cfg = oci.canonical_json(oci.new_config(created=self.created + str(len(self.calls))))
        img = store.commit_image(cfg, [], [r.local_tag] if r.local_tag else [])
        digest = r.digest or "sha256:" + f"{len(self.calls):064x}"
        Records(store.root).note_pull(local_tag=r.local_tag, full_name=r.full_name, digest=digest,
                                      image_id=img.id, when=1000.0 * len(self.calls), blobs=[])
        return PullResult(ref=r, image=img, digest=digest, manifest_digest=img.manifest_digest, platform="linux/amd64")


def test_ensure_image_follows_the_policy(tmp_path):
    paths = NodePaths(state=str(tmp_path), run=str(tmp_path / "run"), cgroup_parent="x")
    fake = _FakePull()
    ref = "reg.lan:5000/app:1"
    with pytest.raises(NotFoundError, match=r"not on this node and pull_policy is never"):
        ensure_image(paths, ref, "never", _pull=fake)
    first = ensure_image(paths, ref, "missing", _pull=fake)
    assert first.pulled and first.pinned == "reg.lan:5000/app@" + "sha256:" + f"{1:064x}"
    assert first.node_ref == "reg.lan:5000/app:1@sha256:" + f"{1:064x}"
    again = ensure_image(paths, ref, "missing", _pull=fake)
    assert not again.pulled and again.image_id == first.image_id and again.pinned == first.pinned
    assert not ensure_image(paths, ref, "daily", now=1000.0 + 3600, _pull=fake).pulled
    assert ensure_image(paths, ref, "daily", now=1000.0 + 86400, _pull=fake).pulled
    secret = RegistryAuth("ci", "token")
    assert ensure_image(paths, ref, "always", auth=secret, _pull=fake).pulled
    assert fake.calls[-1] == (ref, secret)
    # a pinned digest already here is never asked for again, whatever the policy
    n = len(fake.calls)
    pinned = ensure_image(paths, first.pinned, "always", _pull=fake)
    assert pinned.image_id == first.image_id and not pinned.pulled and len(fake.calls) == n
    with pytest.raises(NotFoundError, match="build it"):
        ensure_image(paths, "reg.lan:5000/other:1", "build", _pull=fake)
    assert "token" not in open(Records(ImageStore(paths.images).root).path).read()


def test_identity_token_is_exchanged_with_the_refresh_grant():
    posts = []

    def handler(req):
        if req.url.host == "auth.example.com":
            assert req.method == "POST"
            from urllib.parse import parse_qs

            form = {k: v[0] for k, v in parse_qs(req.content.decode()).items()}
            posts.append(form)
            return httpx.Response(200, json={"access_token": "AT", "expires_in": 300})
        if req.headers.get("authorization") == "Bearer AT":
            return httpx.Response(200, json={"tags": []})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example.com/t",service="s"'})

    c = _client(handler, auth=RegistryAuth(identity_token="refresh-me"))
    assert c.request("GET", "/v2/app/tags/list", ["repository:app:pull"]).status_code == 200
    assert posts == [{"grant_type": "refresh_token", "refresh_token": "refresh-me", "client_id": "stackctl",
                      "service": "s", "scope": "repository:app:pull"}]
