"""Pull, push, login and search against a real registry (Debian's docker-registry), and
interoperability with skopeo both ways."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import httpx
import pytest

from stackctl.runtime.images import oci
from stackctl.runtime.images.busybox import make_busybox_image
from stackctl.runtime.images.registry.auth import RegistryAuth
from stackctl.runtime.images.registry.config import RegistryConfig
from stackctl.runtime.images.registry.errors import DigestMismatchError, PlatformError, RegistryAuthError
from stackctl.runtime.images.registry.pull import pull
from stackctl.runtime.images.registry.push import push
from stackctl.runtime.images.store import ImageStore

from registry_support import PASSWORD, USER, free_port

pytestmark = pytest.mark.root

needs_skopeo = pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")


@pytest.fixture
def store(node_paths):
    return ImageStore(node_paths.images)


def _busybox(node_paths, store, tag):
    return make_busybox_image(node_paths, store, tag=tag, log=lambda _l: None)


def _store_is_clean(store: ImageStore) -> None:
    """Nothing of a failed pull: no image, no blob, no layer, an empty tmp/."""
    assert store.list() == []
    assert os.listdir(os.path.join(store.root, "blobs", "sha256")) == []
    assert [n for n in os.listdir(os.path.join(store.root, "layers"))] == []
    assert os.listdir(store.tmp_dir) == []


def test_built_image_pushed_removed_pulled_and_run(registry, cli, node_paths, busybox_rootfs):
    ref = f"{registry.host}/team/bb:1"
    cli("image", "build-busybox", "-q", "-t", ref, check=0)
    p = cli("push", ref, check=0)
    assert f"The push refers to repository [{registry.host}/team/bb]" in p.stdout
    assert ": Pushed" in p.stdout and "1: digest: sha256:" in p.stdout
    pushed_digest = p.stdout.split("digest: ")[1].split()[0]
    # a second push sends no layer again: every blob is found by HEAD
    patches = registry.requests("PATCH", "/blobs/uploads/")
    assert patches >= 2  # the layer and the config were uploaded (the log shows uploads)
    p = cli("push", ref, check=0)
    assert "Layer already exists" in p.stdout and ": Pushed" not in p.stdout
    assert registry.requests("PATCH", "/blobs/uploads/") == patches
    # removed locally (the build cache too, so the layer must come over the wire), pulled back, run
    cli("image", "rm", ref, check=0)
    cli("image", "prune", "-a", "-f", "--build-cache", check=0)
    p = cli("pull", ref, check=0)
    assert ": Pull complete" in p.stdout
    assert f"Digest: {pushed_digest}" in p.stdout
    assert f"Status: Downloaded newer image for {ref}" in p.stdout
    assert p.stdout.strip().splitlines()[-1] == ref
    p = cli("run", "--rm", ref, "sh", "-c", "echo pulled-and-running", check=0)
    assert p.stdout.strip() == "pulled-and-running"
    p = cli("pull", ref, check=0)
    assert f"Status: Image is up to date for {ref}" in p.stdout
    assert cli("pull", "-q", ref, check=0).stdout.strip() == ref
    # image inspect shows the registry's manifest digest
    inspected = json.loads(cli("image", "inspect", ref, check=0).stdout)[0]
    assert pushed_digest in json.dumps(inspected) or \
        ImageStore(node_paths.images).resolve(ref).manifest_digest == pushed_digest


def _umoci_layout(tmp_path, rootfs) -> str:
    layout = tmp_path / "layout"
    run = lambda *a: subprocess.run(list(a), check=True, capture_output=True)  # noqa: E731
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:t")
    run("umoci", "insert", "--image", f"{layout}:t", rootfs, "/")
    run("umoci", "config", "--image", f"{layout}:t", "--config.cmd", "/bin/sh")
    return str(layout)


@needs_skopeo
@pytest.mark.skipif(not shutil.which("umoci"), reason="umoci not installed")
@pytest.mark.parametrize("fmt", ["oci", "v2s2", "oci-zstd"])
def test_skopeo_pushed_image_pulls_and_runs(registry, cli, tmp_path, busybox_rootfs, fmt):
    layout = _umoci_layout(tmp_path, busybox_rootfs)  # gzip layers, made by umoci
    ref = f"{registry.host}/sk/{fmt}:1"
    extra = ["--dest-compress", "--dest-compress-format", "zstd"] if fmt == "oci-zstd" else []
    subprocess.run(["skopeo", "copy", "-q", "--format", fmt.split("-")[0], *extra, "--dest-tls-verify=false",
                    f"oci:{layout}:t", f"docker://{ref}"], check=True, capture_output=True)
    cli("pull", ref, check=0)
    info = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                                     check=True, capture_output=True, text=True).stdout)
    img = ImageStore(os.path.join(cli.env["STACKCTL_STATE_DIR"], "images")).resolve(ref)
    assert img.manifest_digest == info["Digest"]
    manifest = json.loads(open(os.path.join(img.store_root, "blobs/sha256", img.manifest_digest[7:])).read())
    if fmt == "v2s2":
        assert manifest["mediaType"] == oci.MT_DOCKER_MANIFEST
    if fmt == "oci-zstd":
        assert manifest["layers"][0]["mediaType"] == oci.MT_LAYER_ZSTD
    p = cli("run", "--rm", ref, "/bin/sh", "-c", "echo skopeo-image-runs", check=0)
    assert p.stdout.strip() == "skopeo-image-runs"


@needs_skopeo
def test_stackctl_pushed_image_copied_by_skopeo(registry, store, node_paths, tmp_path, busybox_rootfs, creds,
                                                monkeypatch):
    import stackctl.runtime.images.registry.push as push_module

    img = _busybox(node_paths, store, f"{registry.host}/bb:copyme")
    monkeypatch.setattr(push_module, "CHUNK", 256 * 1024)  # the ~2 MB layer goes in several PATCHes
    res = push(store, f"{registry.host}/bb:copyme", credentials=creds, config=RegistryConfig())
    assert registry.requests("PATCH", "/v2/bb/blobs/uploads/") >= img.layers[0]["size"] // (256 * 1024)
    out = tmp_path / "copied"
    subprocess.run(["skopeo", "copy", "-q", "--preserve-digests", "--src-tls-verify=false",
                    f"docker://{registry.host}/bb:copyme",
                    f"oci:{out}:x"], check=True, capture_output=True)
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == res.digest
    manifest = json.loads((out / "blobs/sha256" / res.digest[7:]).read_text())
    assert manifest["config"]["digest"] == img.id
    assert [lay["digest"] for lay in manifest["layers"]] == [lay["digest"] for lay in img.layers]


def _put(registry, path, data, media):
    r = httpx.put(f"http://{registry.host}{path}", content=data, headers={"Content-Type": media})
    assert r.status_code == 201, r.text


def _upload_blob(registry, repo, data):
    digest = oci.digest_bytes(data)
    r = httpx.post(f"http://{registry.host}/v2/{repo}/blobs/uploads/")
    loc = r.headers["location"]
    loc = loc if loc.startswith("http") else f"http://{registry.host}{loc}"
    r = httpx.put(loc + ("&" if "?" in loc else "?") + f"digest={digest}", content=data,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def test_multi_arch_index_pulls_the_node_platform(registry, store, node_paths, tmp_path, busybox_rootfs, creds):
    img = _busybox(node_paths, store, f"{registry.host}/multi:amd")
    host_arch = oci.host_platform()["architecture"]
    push(store, f"{registry.host}/multi:amd", credentials=creds, config=RegistryConfig())
    # a second platform: the same layer, a config that says arm64 (s390x on an arm64 host)
    other_arch = "s390x" if host_arch == "arm64" else "arm64"
    config = dict(img.config, architecture=other_arch, variant="v8") if other_arch == "arm64" else \
        dict(img.config, architecture=other_arch)
    config_bytes = oci.canonical_json(config)
    other_cfg = _upload_blob(registry, "multi", config_bytes)
    other_manifest = json.dumps(oci.new_manifest(other_cfg, len(config_bytes), img.layers)).encode()
    _put(registry, "/v2/multi/manifests/other", other_manifest, oci.MT_MANIFEST)
    host_manifest = open(store.blob_path(img.manifest_digest), "rb").read()
    index = {"schemaVersion": 2, "mediaType": oci.MT_INDEX, "manifests": [
        oci.descriptor(oci.MT_MANIFEST, oci.digest_bytes(other_manifest), len(other_manifest))
        | {"platform": {"os": "linux", "architecture": other_arch}},
        oci.descriptor(oci.MT_MANIFEST, img.manifest_digest, len(host_manifest))
        | {"platform": {"os": "linux", "architecture": host_arch}},
        # an attestation entry, as BuildKit adds: never chosen
        oci.descriptor(oci.MT_MANIFEST, oci.digest_bytes(other_manifest), len(other_manifest))
        | {"platform": {"os": "unknown", "architecture": "unknown"}},
    ]}
    index_bytes = json.dumps(index).encode()
    _put(registry, "/v2/multi/manifests/1", index_bytes, oci.MT_INDEX)
    fresh = ImageStore(str(tmp_path / "fresh"))
    res = pull(fresh, f"{registry.host}/multi:1", credentials=creds, config=RegistryConfig())
    assert res.image.id == img.id and res.manifest_digest == img.manifest_digest
    assert res.digest == oci.digest_bytes(index_bytes)  # the tag's digest: the index, same for every node
    res2 = pull(fresh, f"{registry.host}/multi:1", platform=f"linux/{other_arch}", credentials=creds,
                config=RegistryConfig())
    assert res2.image.id == other_cfg and res2.existing == [lay["digest"] for lay in img.layers]
    with pytest.raises(PlatformError, match=r"no manifest for linux/ppc64le .*it has linux/"):
        pull(fresh, f"{registry.host}/multi:1", platform="linux/ppc64le", credentials=creds, config=RegistryConfig())


def test_tampered_blob_is_refused_and_nothing_is_stored(registry, store, node_paths, tmp_path, busybox_rootfs,
                                                         creds, cli):
    img = _busybox(node_paths, store, f"{registry.host}/tamper:1")
    push(store, f"{registry.host}/tamper:1", credentials=creds, config=RegistryConfig())
    data = registry.blob_data(img.layers[0]["digest"])
    with open(data, "r+b") as f:  # same size, other bytes inside a file's content
        f.seek(os.path.getsize(data) // 2)
        f.write(b"tampered!")
    fresh = ImageStore(str(tmp_path / "fresh"))
    with pytest.raises(DigestMismatchError, match=r"digest mismatch for layer sha256:"):
        pull(fresh, f"{registry.host}/tamper:1", credentials=creds, config=RegistryConfig())
    _store_is_clean(fresh)
    # and on the command line: one line naming the reference, exit 1, nothing stored
    cli("image", "rm", f"{registry.host}/tamper:1", check=0)
    cli("image", "prune", "-a", "-f", "--build-cache", check=0)
    p = cli("pull", f"{registry.host}/tamper:1", check=1)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"pull {registry.host}/tamper:1" in errors[0] and "digest mismatch" in errors[0]
    _store_is_clean(ImageStore(node_paths.images))


def test_wrong_password_is_one_clear_line(registry_basic, cli):
    host = registry_basic.host
    p = cli("login", host, "-u", USER, "--password-stdin", input="wrong\n", check=1)
    assert p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"error: login {host}: ") and "wrong username or password" in p.stderr
    auth_file = os.path.join(cli.env["XDG_CONFIG_HOME"], "stackctl", "auth.json")
    assert not os.path.exists(auth_file)
    # not logged in: a push says to log in
    cli("image", "build-busybox", "-q", "-t", f"{host}/private:1", check=0)
    p = cli("push", f"{host}/private:1", check=1)
    assert p.stderr.count("\n") == 1 and f"stackctl login {host}" in p.stderr, p.stderr
    p = cli("login", host, "-u", USER, "--password-stdin", input=PASSWORD + "\n", check=0)
    assert p.stdout.strip() == "Login Succeeded"
    assert oct(os.stat(auth_file).st_mode & 0o777) == "0o600"
    cli("push", f"{host}/private:1", check=0)
    cli("image", "rm", f"{host}/private:1", check=0)
    cli("pull", f"{host}/private:1", check=0)
    assert cli("logout", host, check=0).stdout.strip() == f"Removing login credentials for {host}"
    assert cli("logout", host, check=0).stdout.strip() == f"Not logged in to {host}"
    # a saved wrong password: the pull is one line too
    from stackctl.runtime.images.registry.auth import CredentialStore

    CredentialStore(path=auth_file).save(host, RegistryAuth(USER, "not-it"))
    p = cli("pull", f"{host}/private:1", check=1)
    assert p.stderr.count("\n") == 1 and "wrong username or password" in p.stderr, p.stderr


def test_docker_config_and_credential_helper(registry_basic, store, node_paths, tmp_path, busybox_rootfs):
    from stackctl.runtime.images.registry.auth import CredentialStore

    host = registry_basic.host
    _busybox(node_paths, store, f"{host}/dc:1")
    docker_config = tmp_path / "docker" / "config.json"
    docker_config.parent.mkdir()
    import base64

    docker_config.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
    creds = CredentialStore(path=str(tmp_path / "none.json"), docker_config=str(docker_config), environ={})
    push(store, f"{host}/dc:1", credentials=creds, config=RegistryConfig())
    # credsStore: docker-credential-<name> on PATH answers `get`
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-stackctltest"
    helper.write_text(f"#!/bin/sh\nread server\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n")
    helper.chmod(0o755)
    docker_config.write_text(json.dumps({"credsStore": "stackctltest"}))
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{bindir}:{old}"
    try:
        assert creds.get(host) == RegistryAuth(USER, PASSWORD)
        res = pull(ImageStore(str(tmp_path / "fresh")), f"{host}/dc:1", credentials=creds, config=RegistryConfig())
        assert res.downloaded
    finally:
        os.environ["PATH"] = old
    # without credentials: one auth error naming the registry
    with pytest.raises(RegistryAuthError, match=f"stackctl login {host}"):
        pull(ImageStore(str(tmp_path / "fresh2")), f"{host}/dc:1",
             credentials=CredentialStore(path=str(tmp_path / "n1"), docker_config=str(tmp_path / "n2"), environ={}),
             config=RegistryConfig())


def test_token_auth_mount_and_forwarded_credentials(registry_token, store, node_paths, tmp_path, busybox_rootfs):
    from stackctl.runtime.images.registry.auth import CredentialStore

    host = registry_token.host
    nobody = CredentialStore(path=str(tmp_path / "n1"), docker_config=str(tmp_path / "n2"), environ={})
    img = _busybox(node_paths, store, f"{host}/a/app:1")
    alice = RegistryAuth(USER, PASSWORD)
    # forwarded credentials for one push: used, never written
    first = push(store, f"{host}/a/app:1", auth=alice, credentials=nobody, config=RegistryConfig())
    assert first.pushed == [lay["digest"] for lay in img.layers]
    assert not os.path.exists(tmp_path / "n1")
    # the same image in another repository: its layer is mounted, not uploaded
    store.tag(f"{host}/a/app:1", f"{host}/b/app:1")
    second = push(store, f"{host}/b/app:1", auth=alice, credentials=nobody, config=RegistryConfig())
    assert second.mounted == first.pushed and not second.pushed
    assert any("repository:a/app:pull" in s for s in registry_token.token_server.scopes[-1] +
               sum(registry_token.token_server.scopes, [])), registry_token.token_server.scopes
    res = pull(ImageStore(str(tmp_path / "fresh")), f"{host}/b/app:1", auth=alice, credentials=nobody,
               config=RegistryConfig())
    assert res.image.id == img.id
    # anonymous: the token has no access
    with pytest.raises(RegistryAuthError, match=rf"authentication required by {host}; log in first"):
        pull(ImageStore(str(tmp_path / "fresh2")), f"{host}/b/app:1", credentials=nobody, config=RegistryConfig())
    with pytest.raises(RegistryAuthError, match=r"wrong username or password"):
        pull(ImageStore(str(tmp_path / "fresh3")), f"{host}/b/app:1", auth=RegistryAuth(USER, "bad"),
             credentials=nobody, config=RegistryConfig())


def test_all_tags_and_search(registry, cli):
    host = registry.host
    cli("image", "build-busybox", "-q", "-t", f"{host}/tags/bb:1", check=0)
    cli("image", "tag", f"{host}/tags/bb:1", f"{host}/tags/bb:2", check=0)
    cli("push", "-a", f"{host}/tags/bb", check=0)
    cli("image", "rm", f"{host}/tags/bb:1", f"{host}/tags/bb:2", check=0)
    p = cli("pull", "-a", f"{host}/tags/bb", check=0)
    assert p.stdout.strip().splitlines()[-1] == f"{host}/tags/bb"
    ls = cli("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", check=0).stdout.split()
    assert {f"{host}/tags/bb:1", f"{host}/tags/bb:2"} <= set(ls)
    p = cli("pull", "-a", f"{host}/tags/bb:1", check=2)
    assert "can't be used with --all-tags" in p.stderr
    p = cli("search", f"{host}/tag", check=0)
    assert p.stdout.split() == ["NAME", f"{host}/tags/bb"]
    p = cli("search", "busybox", check=1)
    assert "Docker Hub's search API is not available" in p.stderr


def test_actionable_errors(registry, cli):
    host = registry.host
    cli("image", "build-busybox", "-q", "-t", f"{host}/err/bb:1", check=0)
    cli("push", f"{host}/err/bb:1", check=0)
    cases = {
        f"{host}/err/bb:nope": "tag nope not found",
        f"{host}/err/none:1": f"repository {host}/err/none not found",
        "no-such-host.invalid/x:1": "no such host",
        f"127.0.0.1:{_closed_port()}/x:1": "connection refused",
    }
    for ref, text in cases.items():
        p = cli("pull", ref, check=1)
        errors = [line for line in p.stderr.splitlines() if line]
        assert len(errors) == 1 and errors[0].startswith(f"error: pull {ref}: ") and text in errors[0], p.stderr


def _closed_port() -> int:
    return free_port()



class _SlowProxy:
    """A reverse proxy that sends blob bodies slowly (64 KiB every 200 ms: a 2 MB layer takes 6 s)."""

    def __init__(self, upstream: str) -> None:
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.port = free_port()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
                r = httpx.get(f"http://{upstream}{self.path}", headers=headers)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                step = 65536 if "/blobs/" in self.path else len(r.content) or 1
                try:
                    for i in range(0, len(r.content), step):
                        self.wfile.write(r.content[i:i + step])
                        self.wfile.flush()
                        if step == 65536:
                            time.sleep(0.2)
                except OSError:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _CuttingProxy:
    """A reverse proxy in front of a registry that cuts the first response of every blob GET
    in the middle (headers promise the whole body, half of it is sent, the connection closes),
    and records the Range headers it forwards."""

    def __init__(self, upstream: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.port = free_port()
        self.ranges: list[str] = []
        self.cut: set[str] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self, method):
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range", "authorization")}
                if "Range" in self.headers:
                    proxy.ranges.append(self.headers["Range"])
                with httpx.stream(method, f"http://{upstream}{self.path}", headers=headers) as r:
                    body = r.read()
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                cut = method == "GET" and "/blobs/" in self.path and r.status_code == 200 \
                    and len(body) > 100_000 and self.path not in proxy.cut
                if cut:
                    proxy.cut.add(self.path)
                    self.send_header("Connection", "close")
                self.end_headers()
                if method == "GET":
                    self.wfile.write(body[: len(body) // 2] if cut else body)
                if cut:
                    self.wfile.flush()
                    self.close_connection = True

            def do_GET(self):
                self._forward("GET")

            def do_HEAD(self):
                self._forward("HEAD")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_broken_download_resumes_with_range(registry, store, node_paths, tmp_path, busybox_rootfs, creds):
    img = _busybox(node_paths, store, f"{registry.host}/resume:1")
    push(store, f"{registry.host}/resume:1", credentials=creds, config=RegistryConfig())
    proxy = _CuttingProxy(registry.host)
    try:
        fresh = ImageStore(str(tmp_path / "fresh"))
        res = pull(fresh, f"127.0.0.1:{proxy.port}/resume:1", credentials=creds, config=RegistryConfig())
    finally:
        proxy.close()
    assert res.image.id == img.id and res.downloaded == [lay["digest"] for lay in img.layers]
    half = img.layers[0]["size"] // 2
    assert proxy.cut and proxy.ranges == [f"bytes={half}-"], proxy.ranges


def test_ensure_image_resolves_once_and_pins_every_node(registry, store, node_paths, tmp_path, busybox_rootfs,
                                                       monkeypatch):
    from stackctl.paths import NodePaths
    from stackctl.runtime.images.registry.policy import ensure_image

    monkeypatch.setenv("STACKCTL_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    ref = f"{registry.host}/moving:1"
    first = _busybox(node_paths, store, ref)
    push(store, ref, credentials=None, config=RegistryConfig())
    manager = NodePaths(state=str(tmp_path / "manager"), run=str(tmp_path / "mrun"), cgroup_parent="x")
    e = ensure_image(manager, ref, "always")
    assert e.pulled and e.image_id == first.id and e.node_ref.startswith(f"{ref}@sha256:")
    # the tag moves during the rollout: a node given node_ref still gets the first image, tagged
    store.tag(ref, f"{registry.host}/keep:1")
    from stackctl.runtime.images import archive

    second = archive.import_rootfs(store, busybox_rootfs, ref, changes=["CMD [\"true\"]"])
    assert second.id != first.id
    push(store, ref, credentials=None, config=RegistryConfig())
    worker = NodePaths(state=str(tmp_path / "worker"), run=str(tmp_path / "wrun"), cgroup_parent="y")
    w = ensure_image(worker, e.node_ref, "missing")
    assert w.pulled and w.image_id == first.id
    assert ImageStore(worker.images).resolve(ref).id == first.id
    again = ensure_image(worker, e.node_ref, "always")  # a digest already here is not asked again
    assert not again.pulled and again.image_id == first.id
    assert ensure_image(worker, ref, "always").image_id == second.id  # the tag itself has moved


def test_tls_is_verified(registry_tls, store, node_paths, tmp_path, busybox_rootfs, creds, monkeypatch):
    """A TLS registry on loopback: an untrusted certificate is one TLS line naming where the
    CA goes; with its CA in the certs directory, push and pull work over verified HTTPS."""
    from stackctl.runtime.images.registry.errors import RegistryConnectError

    reg, certs = registry_tls
    ref = f"{reg.host}/tls/bb:1"
    img = _busybox(node_paths, store, ref)
    monkeypatch.setenv("STACKCTL_CERTS_DIR", str(tmp_path / "no-certs"))
    with pytest.raises(RegistryConnectError, match=rf"^push {ref}: TLS failure .*certs.d/{reg.host}/ca.crt"):
        push(store, ref, credentials=creds, config=RegistryConfig())
    monkeypatch.setenv("STACKCTL_CERTS_DIR", certs)
    push(store, ref, credentials=creds, config=RegistryConfig())
    res = pull(ImageStore(str(tmp_path / "fresh")), ref, credentials=creds, config=RegistryConfig())
    assert res.image.id == img.id


def test_interrupted_pull_leaves_nothing(registry, cli, node_paths):
    """Ctrl-C in the middle of a download: the command ends promptly (130) and the store holds
    nothing of the pull."""
    import signal
    import sys
    import time

    ref = f"{registry.host}/slow/bb:1"
    cli("image", "build-busybox", "-q", "-t", ref, check=0)
    cli("push", ref, check=0)
    cli("image", "rm", ref, check=0)
    cli("image", "prune", "-a", "-f", "--build-cache", check=0)
    proxy = _SlowProxy(registry.host)
    store = ImageStore(node_paths.images)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "stackctl", "pull", f"127.0.0.1:{proxy.port}/slow/bb:1"],
                                env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        partial = []
        while not partial:  # wait until a blob's download has begun (its 6 s have just started)
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            partial = [f for d, _, files in os.walk(store.tmp_dir) for f in files if f.endswith(".blob")]
            time.sleep(0.02)
        time.sleep(0.5)  # a few chunks in
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert time.monotonic() - t0 < 3.5, "the pull went on downloading after Ctrl-C"
        assert proc.returncode == 130, (out, err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.close()
    _store_is_clean(store)


def test_login_and_pull_with_token_auth_on_the_command_line(registry_token, cli):
    """Docker Hub's flow: bearer tokens from a token server; `login` checks the password there."""
    host = registry_token.host
    p = cli("login", host, "-u", USER, "--password-stdin", input="nope\n", check=1)
    assert p.stderr.count("\n") == 1 and "wrong username or password" in p.stderr, p.stderr
    assert cli("login", host, "-u", USER, "--password-stdin", input=PASSWORD + "\n", check=0).stdout.strip() == \
        "Login Succeeded"
    ref = f"{host}/team/app:1"
    cli("image", "build-busybox", "-q", "-t", ref, check=0)
    cli("push", ref, check=0)
    cli("image", "rm", ref, check=0)
    cli("image", "prune", "-a", "-f", "--build-cache", check=0)
    cli("pull", ref, check=0)
    assert cli("run", "--rm", ref, "echo", "token-ok", check=0).stdout.strip() == "token-ok"
    cli("logout", host, check=0)
    p = cli("pull", ref, check=1)
    assert p.stderr.count("\n") == 1 and f"log in first (stackctl login {host})" in p.stderr, p.stderr
