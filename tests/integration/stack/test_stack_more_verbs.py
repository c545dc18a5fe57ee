"""The stack counterparts of `kill`, `rm`, `pause`/`unpause`, `port`, `images` and `wait`
(stackctl/cli/stack_more.py), on one node, as `docker compose` has them: same flags, output
shapes and exit codes; and a killed or removed service is not healed back by the agent."""

from __future__ import annotations

import json
import time

import pytest

from stackenv import free_port, http_get, wait_for

pytestmark = pytest.mark.root

STACK = """\
name: more
services:
  web:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:PORT:80"]
    restart: always
  worker:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.2; done"]
    restart: always
  job:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "sleep 1; exit 7"]
    restart: "no"
"""


def _deploy(node) -> tuple[str, int]:
    port = free_port()
    stack = node.deploy(STACK.replace("PORT", str(port)))
    return stack, port


def _state(node, service: str) -> list[str]:
    return [c["State"] for c in node.ps("more") if c["Service"] == service]


def test_port_images_pause_unpause_cp(node):
    stack, port = _deploy(node)
    # port: Compose prints HOST_IP:PORT
    out = node.cli("port", "-f", stack, "web", "80").stdout
    assert out.strip() == f"127.0.0.1:{port}"
    assert node.cli("port", "-f", stack, "web", "80/udp", check=False).returncode == 1
    bad = node.cli("port", "-f", stack, "nope", "80", check=False)
    assert bad.returncode == 1 and "nope" in bad.stderr
    # images: CONTAINER REPOSITORY TAG IMAGE ID SIZE, one row per container
    table = node.cli("images", "-p", "more").stdout.splitlines()
    assert table[0].split()[:3] == ["CONTAINER", "REPOSITORY", "TAG"]
    assert any(line.startswith("more-web-1") and "stackctl/busybox" in line
               and " latest " in line for line in table[1:])
    rows = json.loads(node.cli("images", "-p", "more", "--format", "json").stdout)
    assert {r["ContainerName"] for r in rows} >= {"more-web-1", "more-worker-1"}
    ids = node.cli("images", "-p", "more", "-q").stdout.split()
    assert len(ids) == 1 and ids[0].startswith("sha256:")
    # pause: the server stops answering until unpause; the agent does not replace it
    assert http_get(port).strip() == "hello"
    p = node.cli("pause", "-p", "more", "web")
    assert "more-web-1  Paused" in p.stderr
    with pytest.raises(OSError):
        http_get(port, timeout=1.0)
    node.cli("unpause", "-p", "more", "web")
    assert wait_for(lambda: http_get(port).strip() == "hello", 10, "web answers again")
    assert [c["Name"] for c in node.ps("more") if c["Service"] == "web"] == ["more-web-1"]
    # cp: into the service's container (the server serves it), and back out
    src = node.tmp / "page.html"
    src.write_text("copied in\n")
    node.cli("cp", "-f", stack, str(src), "web:/www/page.html")
    assert http_get(port, "/page.html") == "copied in\n"
    node.cli("cp", "-p", "more", "web:/www/index.html", str(node.tmp / "out.html"))
    assert (node.tmp / "out.html").read_text() == "hello\n"
    assert node.cli("cp", "-p", "more", "--all", "web:/x", "/tmp/x", check=False).returncode == 2
    missing = node.cli("cp", "-p", "more", "--index", "3", "web:/x", "y", check=False)
    assert missing.returncode == 1 and "no slot 3" in missing.stderr


def test_kill_is_not_healed_and_start_brings_it_back(node):
    stack, _ = _deploy(node)
    before = {c["Name"]: c["ID"] for c in node.ps("more")}
    node.cli("kill", "-f", stack, "worker")
    wait_for(lambda: _state(node, "worker") == ["exited"], 20, "worker killed")
    # restart: always, yet not restarted or replaced behind the user's back
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert _state(node, "worker") == ["exited"]
        time.sleep(0.3)
    assert _state(node, "web") == ["running"]  # the other services are left alone
    node.cli("start", "-f", stack, "worker")
    wait_for(lambda: _state(node, "worker") == ["running"], 20, "worker started")
    after = {c["Name"]: c["ID"] for c in node.ps("more")}
    assert after["more-worker-1"] == before["more-worker-1"]
    # a signal that does not end the process: sent, service still healed (and running)
    node.cli("kill", "-p", "more", "-s", "WINCH", "worker")
    assert _state(node, "worker") == ["running"]
    # SIGTERM by name without SIG: the trap exits 3
    node.cli("kill", "-p", "more", "-s", "TERM", "worker")
    wait_for(lambda: _state(node, "worker") == ["exited"], 20, "worker exited on TERM")
    worker = [c for c in node.ps("more") if c["Service"] == "worker"][0]
    assert worker["ExitCode"] == 3


def test_wait_prints_exit_codes_and_rm_removes_stopped(node):
    stack, _ = _deploy(node)
    # wait: Compose's line per container, and the exit status of the last one to stop
    p = node.cli("wait", "-f", stack, "job", timeout=60, check=False)
    job = [c for c in node.ps("more") if c["Service"] == "job"][0]
    assert p.returncode == 7
    assert p.stdout.strip().startswith('container "') and \
        p.stdout.strip().endswith('" exited with status code 7')
    assert job["ID"] in p.stdout
    none = node.cli("wait", "-p", "nosuch", "x", check=False)
    assert none.returncode == 1 and 'no containers for project "nosuch"' in none.stderr
    # rm without -f asks; "n" keeps the container
    p = node.cli("rm", "-p", "more", "job", check=False, env={})
    assert "Going to remove more-job-1" in p.stderr
    assert [c["Name"] for c in node.ps("more") if c["Service"] == "job"] == ["more-job-1"]
    p = node.cli("rm", "-p", "more", "-f", "job")
    assert p.stdout.startswith("Going to remove more-job-1\n")
    assert [c for c in node.ps("more") if c["Service"] == "job"] == []
    none = node.cli("rm", "-p", "more", "-f", "job")
    assert "No stopped containers" in none.stderr
    # rm -s: stops first, then removes; not created again by the agent
    node.cli("rm", "-p", "more", "-f", "-s", "worker")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert [c for c in node.ps("more") if c["Service"] == "worker"] == []
        time.sleep(0.3)
    assert _state(node, "web") == ["running"]
    # `up` creates them again
    node.up(stack, "-d", "--wait")
    assert _state(node, "worker") == ["running"]


def test_docker_forms_unchanged_and_bad_usage(node):
    _deploy(node)
    assert node.cli("kill", check=False).returncode == 2
    bad = node.cli("rm", "--stop", "x", check=False)
    assert bad.returncode == 2 and "needs a stack" in bad.stderr
    assert node.cli("port", "--index", "2", "x", check=False).returncode == 2
    assert node.cli("wait", "-p", "more", check=False).returncode == 2
    gone = node.cli("pause", "-p", "nosuch", "web", check=False)
    assert gone.returncode == 1 and "not deployed" in gone.stderr
