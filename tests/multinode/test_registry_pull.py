"""`up` pulling from a registry across a 3-node demo cluster (issue 13's must-show).

Debian's docker-registry (htpasswd basic auth) listens on 127.0.0.1; the nodes reach it on
the harness bridge's address (``10.213.K.1:5000``) through a small forwarding proxy in this
test, which also *moves the tag* the moment the manager resolves it: it pushes another image
under the same tag to the registry before answering. The image is built by stackctl on this
machine (a private store), pushed, removed here; the stack names it by the bridge address,
which the nodes may speak plain HTTP to only because their environment lists it in
``STACKCTL_INSECURE_REGISTRIES`` (demo.up(env=...)). Every process, cluster and registry the
test starts is stopped in its teardown, also on failure.

A second test drains the node holding a replica: the other worker, which never pulled the
image, pulls the deployed digest before the moved task is created there."""

from __future__ import annotations

import base64
import contextlib
import http.client
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stackctl.cluster import demo

sys.path.insert(0, os.path.dirname(__file__))
from clusterenv import wait_for  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.multinode]

USER, PASSWORD = "alice", "pw-" + uuid.uuid4().hex[:12]


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _registry(base: str):
    """docker-registry with htpasswd auth on 127.0.0.1; yields its port."""
    if not shutil.which("docker-registry") or not shutil.which("htpasswd"):
        pytest.skip("docker-registry / htpasswd not installed (scripts/setup installs them)")
    os.makedirs(base, exist_ok=True)
    htpasswd = os.path.join(base, "htpasswd")
    subprocess.run(["htpasswd", "-Bbc", htpasswd, USER, PASSWORD], check=True,
                   capture_output=True)
    port = _free_port()
    config = {"version": 0.1, "log": {"level": "warn"},
              "storage": {"filesystem": {"rootdirectory": os.path.join(base, "storage")}},
              "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
              "auth": {"htpasswd": {"realm": "test", "path": htpasswd}}}
    cfg = os.path.join(base, "config.yml")
    with open(cfg, "w") as f:
        json.dump(config, f)
    with open(os.path.join(base, "registry.log"), "wb") as out:
        proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, "docker-registry exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "docker-registry does not listen"
                time.sleep(0.05)
        yield port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class Proxy:
    """Forwards GET/HEAD from ``host:port`` to the registry; logs (client, method, path,
    status); ``on_tag`` runs once, on the first GET of a manifest by tag, before that
    answer goes back (the answer itself was read before: the tag as it was)."""

    def __init__(self, host: str, backend: int, on_tag) -> None:
        self.log: list[tuple[str, str, str, int]] = []
        self.on_tag = on_tag
        self.moved = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _forward(self, method: str) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", backend, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection")}
                conn.request(method, self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                proxy.log.append((self.client_address[0], method, self.path, resp.status))
                last = self.path.split("?")[0].rsplit("/", 1)[-1]
                if method == "GET" and "/manifests/" in self.path and resp.status == 200 \
                        and not last.startswith("sha256:") and not proxy.moved.is_set():
                    proxy.moved.set()
                    proxy.on_tag()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method == "GET":
                    self.wfile.write(body)

            def do_GET(self):
                self._forward("GET")

            def do_HEAD(self):
                self._forward("HEAD")

        try:
            self.httpd = ThreadingHTTPServer((host, 5000), Handler)
        except OSError:  # 5000 taken on that address: any port
            self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.host = f"{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


STACK = """services:
  web:
    image: {ref}
    command: ["sh", "-c", "exec sleep 3600"]
    deploy:
      replicas: 2
      placement:
        constraints: ["node.labels.zone != c"]
        max_replicas_per_node: 1
"""


def test_up_pulls_one_digest_on_every_node_that_needs_it(make_cluster, node_paths, tmp_path):
    insecure = f"{demo.SUBNET_PREFIX}.0.0/16"
    c = make_cluster(3, env={"STACKCTL_INSECURE_REGISTRIES": insecure,
                             # the nodes have no credentials of their own
                             "STACKCTL_AUTH_FILE": str(tmp_path / "nodes-auth.json"),
                             "DOCKER_CONFIG": str(tmp_path / "nodes-docker")})
    home = tmp_path / "home"
    home.mkdir()
    local = dict(os.environ, STACKCTL_STATE_DIR=node_paths.state,
                 STACKCTL_RUN_DIR=node_paths.run, STACKCTL_CGROUP_PARENT=node_paths.cgroup_parent,
                 HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                 DOCKER_CONFIG=str(home / ".docker"), STACKCTL_INSECURE_REGISTRIES=insecure,
                 STACKCTL_REGISTRIES_CONFIG=str(tmp_path / "none.json"), STACKCTL_WARM="0")
    for k in ("STACKCTL_NODES", "STACKCTL_AUTH_FILE", "DOCKER_AUTH_CONFIG"):
        local.pop(k, None)
    on_cluster = {**local, **c.env()}

    def cli(*argv, env=local, check=0, input=None):
        p = subprocess.run([sys.executable, "-m", "stackctl", *argv], capture_output=True,
                           text=True, env=env, timeout=300, input=input, cwd=str(tmp_path))
        if check is not None:
            assert p.returncode == check, (argv, p.returncode, p.stdout, p.stderr)
        return p

    def on_node(node: str, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(c.ssh_command(node, *argv), capture_output=True, text=True,
                              timeout=120)

    stack = str(tmp_path / "pulled.yml")
    with _registry(str(tmp_path / "registry")) as port, contextlib.ExitStack() as cleanup:
        direct = f"127.0.0.1:{port}"
        cli("login", "-u", USER, "--password-stdin", direct, input=PASSWORD + "\n")
        cli("image", "build-busybox", "-q", "-t", f"{direct}/team/app:1")
        first = json.loads(cli("image", "inspect", f"{direct}/team/app:1").stdout)[0]["Id"]
        ctx = tmp_path / "next"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {direct}/team/app:1\nENV MARK=second\n")
        cli("image", "build", "-q", "-t", f"{direct}/team/next:1", str(ctx))
        second = json.loads(cli("image", "inspect", f"{direct}/team/next:1").stdout)[0]["Id"]
        assert second != first
        cli("push", f"{direct}/team/app:1")
        cli("image", "rm", f"{direct}/team/app:1")  # not on this machine any more

        def move_the_tag() -> None:  # someone pushes again while `up` runs
            cli("image", "tag", f"{direct}/team/next:1", f"{direct}/team/app:1")
            cli("push", f"{direct}/team/app:1")

        proxy = Proxy(c.gateway, port, move_the_tag)
        cleanup.callback(proxy.close)
        ref = f"{proxy.host}/team/app:1"
        cli("login", "-u", USER, "--password-stdin", proxy.host, input=PASSWORD + "\n")
        with open(stack, "w") as f:
            f.write(f"name: pulled\n{STACK.format(ref=ref)}")
        cleanup.callback(lambda: cli("down", "-v", "-f", stack, env=on_cluster, check=None))

        # without credentials the nodes cannot pull: one line naming the node and the image
        p = cli("up", "-d", "-f", stack, env=on_cluster, check=1)
        errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, p.stderr
        assert f"service web: node n1: pull {ref}: authentication required" in errors[0], \
            errors[0]
        assert not proxy.moved.is_set()

        # --with-registry-auth: this machine's credentials go with the deploy
        p = cli("up", "-d", "--wait", "--with-registry-auth", "-f", stack, env=on_cluster)
        assert proxy.moved.is_set()  # the tag moved right after the manager resolved it
        rows = [json.loads(line) for line in cli(
            "ps", "-f", stack, "--format", "json", env=on_cluster).stdout.splitlines()
            if line.startswith("{")]
        assert sorted(r["Node"] for r in rows) == ["n1", "n2"], rows
        assert all(r["State"] == "running" for r in rows), rows
        for node in ("n1", "n2"):  # the very same image everywhere: the one first resolved
            out = on_node(node, "stackctl", "image", "inspect", ref)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)[0]["Id"] == first, node
        assert on_node("n3", "stackctl", "image", "inspect", ref).returncode != 0  # no task
        cli("image", "rm", f"{direct}/team/app:1")
        cli("pull", "-q", f"{direct}/team/app:1")  # the tag itself did move
        assert json.loads(cli("image", "inspect", f"{direct}/team/app:1").stdout)[0]["Id"] \
            == second
        n = {x.name: x.address for x in c.nodes}
        by_tag = [(ip, path) for ip, m, path, st in proxy.log
                  if m == "GET" and path.endswith("/manifests/1") and st == 200]
        assert {ip for ip, _ in by_tag} == {n["n1"]}, proxy.log  # resolved once, by the manager
        digests = {path.rsplit("/", 1)[1] for ip, m, path, st in proxy.log
                   if ip == n["n2"] and "/manifests/" in path}
        assert len(digests) == 1 and next(iter(digests)).startswith("sha256:"), proxy.log
        # the credentials were used for that pull only: nothing of them is on the nodes
        found = subprocess.run(["grep", "-rlsF", PASSWORD, *(x.dir for x in c.nodes)],
                               capture_output=True, text=True)
        assert found.stdout == "", found.stdout
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        found = subprocess.run(["grep", "-rlsF", auth, *(x.dir for x in c.nodes)],
                               capture_output=True, text=True)
        assert found.stdout == "", found.stdout

        # a wrong password: one line naming the node and the reference; nothing redeployed
        before = {r["Name"]: r["ID"] for r in rows}
        wrong = base64.b64encode(f"{USER}:wrong-password".encode()).decode()
        auth_file = home / ".config" / "stackctl" / "auth.json"
        data = json.loads(auth_file.read_text())
        data["auths"][proxy.host] = {"auth": wrong}
        auth_file.write_text(json.dumps(data))
        p = cli("up", "-d", "--pull", "always", "--with-registry-auth", "-f", stack,
                env=on_cluster, check=1)
        errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, p.stderr
        assert f"service web: node n1: pull {ref}: " in errors[0], errors[0]
        assert f"refused the credentials of '{USER}'" in errors[0], errors[0]
        after = [json.loads(line) for line in cli(
            "ps", "-f", stack, "--format", "json", env=on_cluster).stdout.splitlines()
            if line.startswith("{")]
        assert {r["Name"]: r["ID"] for r in after} == before


MOVED_STACK = """services:
  web:
    image: {ref}
    command: ["sh", "-c", "exec sleep 3600"]
    deploy:
      replicas: 1
      placement:
        constraints: ["node.role == worker"]
"""


@pytest.mark.parametrize("how", ["drained", "lost"])
def test_a_task_moved_to_a_node_without_the_image_pulls_the_deployed_digest_there(
        make_cluster, node_paths, tmp_path, how):
    """The replica's node is drained (or lost: its agent and sshd stop): the manager places it
    on the other worker, which never pulled the image, and that node pulls the digest `up`
    resolved (not the tag, which moved since), with the credentials `up --with-registry-auth`
    forwarded (the nodes have none)."""
    insecure = f"{demo.SUBNET_PREFIX}.0.0/16"
    c = make_cluster(3, env={"STACKCTL_INSECURE_REGISTRIES": insecure,
                             "STACKCTL_AUTH_FILE": str(tmp_path / "nodes-auth.json"),
                             "DOCKER_CONFIG": str(tmp_path / "nodes-docker")})
    home = tmp_path / "home"
    home.mkdir()
    local = dict(os.environ, STACKCTL_STATE_DIR=node_paths.state,
                 STACKCTL_RUN_DIR=node_paths.run, STACKCTL_CGROUP_PARENT=node_paths.cgroup_parent,
                 HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                 DOCKER_CONFIG=str(home / ".docker"), STACKCTL_INSECURE_REGISTRIES=insecure,
                 STACKCTL_REGISTRIES_CONFIG=str(tmp_path / "none.json"), STACKCTL_WARM="0")
    for k in ("STACKCTL_NODES", "STACKCTL_AUTH_FILE", "DOCKER_AUTH_CONFIG"):
        local.pop(k, None)
    on_cluster = {**local, **c.env()}

    def cli(*argv, env=local, check=0, input=None):
        p = subprocess.run([sys.executable, "-m", "stackctl", *argv], capture_output=True,
                           text=True, env=env, timeout=300, input=input, cwd=str(tmp_path))
        if check is not None:
            assert p.returncode == check, (argv, p.returncode, p.stdout, p.stderr)
        return p

    def image_on(node: str, ref: str) -> str | None:
        out = subprocess.run(c.ssh_command(node, "stackctl", "image", "inspect", ref),
                             capture_output=True, text=True, timeout=120)
        return json.loads(out.stdout)[0]["Id"] if out.returncode == 0 else None

    def running(stack: str) -> list[dict]:
        rows = [json.loads(line) for line in cli("ps", "-f", stack, "--format", "json",
                                                 env=on_cluster).stdout.splitlines()
                if line.startswith("{")]
        return [r for r in rows if r["State"] == "running"]

    stack = str(tmp_path / "moved.yml")
    with _registry(str(tmp_path / "registry")) as port, contextlib.ExitStack() as cleanup:
        direct = f"127.0.0.1:{port}"
        cli("login", "-u", USER, "--password-stdin", direct, input=PASSWORD + "\n")
        cli("image", "build-busybox", "-q", "-t", f"{direct}/team/app:1")
        first = json.loads(cli("image", "inspect", f"{direct}/team/app:1").stdout)[0]["Id"]
        ctx = tmp_path / "next"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {direct}/team/app:1\nENV MARK=second\n")
        cli("image", "build", "-q", "-t", f"{direct}/team/next:1", str(ctx))
        cli("push", "-q", f"{direct}/team/app:1")
        cli("image", "rm", f"{direct}/team/app:1")

        def move_the_tag() -> None:  # pushed again right after the manager resolved it
            cli("image", "tag", f"{direct}/team/next:1", f"{direct}/team/app:1")
            cli("push", "-q", f"{direct}/team/app:1")

        proxy = Proxy(c.gateway, port, move_the_tag)
        cleanup.callback(proxy.close)
        ref = f"{proxy.host}/team/app:1"
        cli("login", "-u", USER, "--password-stdin", proxy.host, input=PASSWORD + "\n")
        with open(stack, "w") as f:
            f.write(f"name: moved\n{MOVED_STACK.format(ref=ref)}")
        cleanup.callback(lambda: cli("down", "-v", "-f", stack, env=on_cluster, check=None))

        cli("up", "-d", "--wait", "--with-registry-auth", "-f", stack, env=on_cluster)
        assert proxy.moved.is_set()
        [task] = running(stack)
        holder = task["Node"]
        assert holder in ("n2", "n3"), task
        other = "n3" if holder == "n2" else "n2"
        assert image_on(holder, ref) == first
        assert image_on(other, ref) is None  # it ran nothing of the service: it has nothing

        # the holder is drained or lost: the replica moves to the other worker, which pulls
        if how == "drained":
            cli("node", "update", holder, "--availability", "drain", env=on_cluster)
        else:
            subprocess.run(c.ssh_command(holder, "stackctl", "agent", "stop"),
                           capture_output=True, timeout=120)
            with open(c.node(holder).pid_file) as f:
                os.kill(int(f.read().split()[0]), signal.SIGTERM)  # its sshd: unreachable
        moved = wait_for(lambda: [r for r in running(stack) if r["Node"] == other], 120,
                         f"the replica running on {other}")
        assert len(moved) == 1 and not [r for r in running(stack) if r["Node"] == holder]
        assert image_on(other, ref) == first  # the deployed image, not the moved tag's
        n = {x.name: x.address for x in c.nodes}
        asked = [(m, path) for ip, m, path, st in proxy.log if ip == n[other]]
        assert asked and all("/manifests/" not in p or p.rsplit("/", 1)[1].startswith("sha256:")
                             for _, p in asked), asked  # by digest only, never by tag
        # the forwarded credentials were used for that pull only: nothing of them on the nodes
        for secret in (PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
            found = subprocess.run(["grep", "-rlsF", secret, *(x.dir for x in c.nodes)],
                                   capture_output=True, text=True)
            assert found.stdout == "", found.stdout
        if how == "lost":
            return

        # back to the first node, which no longer has the image, while the registry cannot be
        # reached: the task is not created there, and `plan` says why
        proxy.close()
        for argv in (("image", "rm", "-f", ref), ("image", "prune", "-af")):
            subprocess.run(c.ssh_command(holder, "stackctl", *argv), capture_output=True,
                           timeout=120)
        assert image_on(holder, ref) is None
        cli("node", "update", holder, "--availability", "active", env=on_cluster)
        cli("node", "update", other, "--availability", "drain", env=on_cluster)
        why = f"No such image: {ref} on node {holder}; pulling {ref}@sha256:"

        def plan_says() -> str:
            out = cli("plan", "-f", stack, env=on_cluster, check=None).stdout
            return out if why in out else ""

        out = wait_for(plan_says, 120, "plan naming the image its node cannot pull")
        assert "cannot connect to registry" in out, out
        assert not [r for r in running(stack) if r["Node"] == holder]
        # the registry is back: a later pass pulls there and the task runs
        proxy = Proxy(c.gateway, port, lambda: None)
        cleanup.callback(proxy.close)
        assert f"{proxy.host}/team/app:1" == ref  # the same address again
        wait_for(lambda: [r for r in running(stack) if r["Node"] == holder], 120,
                 f"the replica running on {holder} again")
        assert image_on(holder, ref) == first
        assert why not in cli("plan", "-f", stack, env=on_cluster, check=None).stdout
