"""A real registry for the registry tests: Debian's ``docker-registry`` (the CNCF distribution
registry) on 127.0.0.1 with a free port and a temporary storage directory; without auth, with
htpasswd basic auth, or with token auth served by a small token server in this process.

Each registry is stopped by its PID (SIGTERM, then SIGKILL) in teardown, also on failure.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from registry_support import PASSWORD, USER, free_port  # noqa: E402


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    storage: str
    proc: subprocess.Popen
    log: str
    token_server: TokenServer | None = None
    users: dict[str, str] = field(default_factory=dict)

    def blob_data(self, digest: str) -> str:
        hexd = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data")

    def requests(self, method: str, fragment: str) -> int:
        """How many requests the registry logged with ``method`` and ``fragment`` in the URL."""
        with open(self.log, errors="replace") as f:
            return sum(1 for line in f if f'"{method} ' in line and fragment in line)


def _wait_port(port: int, proc: subprocess.Popen, log: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log, errors="replace") as f:
                raise RuntimeError(f"docker-registry exited {proc.returncode}: {f.read()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.02)
    raise RuntimeError(f"docker-registry did not listen on {port} within {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def run_registry(base: str, auth: dict | None = None, token_server=None, tls: tuple[str, str] | None = None):
    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry is not installed (scripts/setup installs it)")
    port = free_port()
    storage = os.path.join(base, "storage")
    os.makedirs(storage, exist_ok=True)
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": storage}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
    }
    if auth:
        config["auth"] = auth
    if tls:
        config["http"]["tls"] = {"certificate": tls[0], "key": tls[1]}
    cfg = os.path.join(base, "config.yml")
    with open(cfg, "w") as f:
        json.dump(config, f)  # JSON is YAML
    log = os.path.join(base, "registry.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_port(port, proc, log)
        yield Registry(host=f"127.0.0.1:{port}", storage=storage, proc=proc, log=log, token_server=token_server,
                       users={USER: PASSWORD} if auth else {})
    finally:
        _stop(proc)


@pytest.fixture
def registry(tmp_path):
    """A registry without auth."""
    with run_registry(str(tmp_path / "registry")) as reg:
        yield reg


@pytest.fixture
def registry_basic(tmp_path):
    """A registry with htpasswd basic auth: user ``alice``, password ``s3cret-pw``."""
    if not shutil.which("htpasswd"):
        pytest.skip("htpasswd is not installed (apache2-utils; scripts/setup installs it)")
    base = tmp_path / "registry-basic"
    base.mkdir()
    htpasswd = base / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD], check=True, capture_output=True)
    with run_registry(str(base), {"htpasswd": {"realm": "test", "path": str(htpasswd)}}) as reg:
        yield reg


# --- token auth -------------------------------------------------------------------------------

class TokenServer:
    """Issues registry JWTs (RS256, x5c header with a self-signed certificate the registry
    trusts), after checking basic credentials; anonymous requests get a token without any
    access. Records each request's scopes."""

    def __init__(self, base: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stackctl test token issuer")])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = os.path.join(base, "token.crt")
        with open(self.cert_path, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))
        self.x5c = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()
        self.scopes: list[list[str]] = []
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                q = parse_qs(urlparse(self.path).query)
                scopes = q.get("scope", [])
                server.scopes.append(scopes)
                user = ""
                authz = self.headers.get("Authorization", "")
                if authz.startswith("Basic "):
                    u, _, p = base64.b64decode(authz[6:]).decode().partition(":")
                    if (u, p) != (USER, PASSWORD):
                        self.send_response(401)
                        self.send_header("Content-Type", "application/json")
                        self.end_headers()
                        self.wfile.write(b'{"details":"incorrect username or password"}')
                        return
                    user = u
                body = json.dumps({"token": server.issue(user, scopes), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def issue(self, user: str, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        if user:
            for scope in scopes:
                for part in scope.split(" "):
                    kind, _, rest = part.partition(":")
                    name, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": "stackctl-test", "sub": user, "aud": "stackctl-test-registry", "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}

        def b64(d: bytes) -> str:
            return base64.urlsafe_b64encode(d).rstrip(b"=").decode()

        signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{b64(sig)}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def registry_token(tmp_path):
    """A registry with token auth; the token server grants alice/s3cret-pw what she asks for."""
    pytest.importorskip("cryptography")
    base = tmp_path / "registry-token"
    base.mkdir()
    ts = TokenServer(str(base))
    try:
        auth = {"token": {"realm": ts.realm, "service": "stackctl-test-registry", "issuer": "stackctl-test",
                          "rootcertbundle": ts.cert_path}}
        with run_registry(str(base), auth, token_server=ts) as reg:
            yield reg
    finally:
        ts.close()


# --- a private node and credentials -----------------------------------------------------------

@pytest.fixture
def reg_env(node_paths, tmp_path):
    """Environment for ``stackctl`` subprocesses: the test's node and private credential files
    (an empty HOME, so neither the user's auth.json nor ~/.docker is read)."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, STACKCTL_STATE_DIR=node_paths.state, STACKCTL_RUN_DIR=node_paths.run,
               STACKCTL_CGROUP_PARENT=node_paths.cgroup_parent, HOME=str(home),
               XDG_CONFIG_HOME=str(home / ".config"), DOCKER_CONFIG=str(home / ".docker"))
    for k in ("STACKCTL_AUTH_FILE", "DOCKER_AUTH_CONFIG", "STACKCTL_INSECURE_REGISTRIES"):
        env.pop(k, None)
    env["STACKCTL_REGISTRIES_CONFIG"] = str(tmp_path / "no-registries.json")
    return env


@pytest.fixture
def cli(reg_env, node_paths):
    """``cli(*args, input=None, check=None)``: stackctl as a subprocess on the test node; the
    containers it leaves are removed in teardown."""
    def run(*args, input=None, check=None, env=None, timeout=120):
        p = subprocess.run([sys.executable, "-m", "stackctl", *args], capture_output=True, text=True,
                           input=input, env=env or reg_env, timeout=timeout)
        if check is not None:
            assert p.returncode == check, (args, p.returncode, p.stdout, p.stderr)
        return p

    run.env = reg_env
    yield run
    ids = run("ps", "-aq", "--no-trunc").stdout.split()
    if ids:
        run("rm", "-f", "-v", *ids)


@pytest.fixture
def creds(tmp_path):
    """A CredentialStore on private files (never the user's)."""
    from stackctl.runtime.images.registry.auth import CredentialStore

    return CredentialStore(path=str(tmp_path / "auth.json"), docker_config=str(tmp_path / "docker-config.json"),
                           environ={})


@pytest.fixture
def registry_tls(tmp_path):
    """A registry serving HTTPS on 127.0.0.1 with a certificate of a private CA; yields
    (registry, certs_dir) where certs_dir/<host>/ca.crt holds that CA (for STACKCTL_CERTS_DIR)."""
    pytest.importorskip("cryptography")
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    base = tmp_path / "registry-tls"
    base.mkdir()
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stackctl test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (base / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (base / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                                        serialization.NoEncryption()))
    with run_registry(str(base), None, tls=(str(base / "server.crt"), str(base / "server.key"))) as reg:
        certs = tmp_path / "certs.d"
        (certs / reg.host).mkdir(parents=True)
        (certs / reg.host / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        yield reg, str(certs)
