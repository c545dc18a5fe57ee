"""The must-shows of issue 5, end to end through the CLI and the agent it starts.

Each test has its own node (state dir, run dir, cgroup parent); the `node` fixture brings its
stacks down with `down -v`, stops the agent by PID and fails on anything left behind.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from stackenv import (
    ROOT,
    check_update_loses_no_request,
    events_of,
    http_get,
    ids,
    wait_for,
)

pytestmark = pytest.mark.root

WEBAPP = os.path.join(ROOT, "examples", "stacks", "webapp", "stack.yml")


# --- 1. webapp: up -d --wait, answers, down -v leaves nothing -----------------------------

def test_webapp_up_wait_answers_and_down_leaves_nothing(node):
    p = node.up(WEBAPP, "-d", "--wait", timeout=120)
    assert p.returncode == 0
    node.remember_bridges()
    cs = node.ps("webapp", all_=False)
    assert sorted(c["Service"] for c in cs) == ["cache", "db", "web"]
    assert all(c["State"] == "running" and c["Health"] == "healthy" for c in cs), cs
    # web's 8080:80 is a service port (DNAT over its replicas): PORTS shows it as Compose does
    assert {c["Service"]: c["Ports"] for c in cs} == {"cache": "", "db": "", "web": "0.0.0.0:8080->80/tcp"}
    table = node.cli("ps", "-f", WEBAPP).stdout
    assert "0.0.0.0:8080->80/tcp" in next(line for line in table.splitlines() if "webapp-web-1" in line)
    assert http_get(8080).strip() == "hello from stackctl"
    # a second up changes nothing
    again = node.cli("up", "-d", "-f", WEBAPP, "--format", "json")
    assert not [e for e in events_of(again.stdout)
                if e["action"] in ("create", "recreate", "remove")], again.stdout
    node.cli("down", "-v", "-f", WEBAPP, timeout=90)
    assert node.ps("webapp") == []
    left = node.leftovers()
    assert left == {}, left


# --- 2. one service's environment changed: only it is recreated, in waves -----------------

TWO_SERVICES = """\
name: waves
services:
  web:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "exec sleep 1000"]
    environment:
      VERSION: ${VERSION:-1}
    stop_grace_period: 1s
    deploy:
      replicas: 4
      update_config: {parallelism: 2, order: stop-first, monitor: 1s, delay: 0s}
  other:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "exec sleep 1000"]
    stop_grace_period: 1s
"""


def test_env_change_recreates_only_that_service_in_waves(node):
    stack = node.deploy(TWO_SERVICES)
    before = ids(node.ps("waves", all_=False))
    assert len(before) == 5
    p = node.up(stack, "-d", "--wait", "--format", "json", env={"VERSION": "2"})
    evs = events_of(p.stdout)
    touched = {e["service"] for e in evs if e["action"] in ("create", "recreate", "remove",
                                                             "stop", "start")}
    assert touched == {"web"}, p.stdout
    after = ids(node.ps("waves", all_=False))
    assert after["waves-other-1"] == before["waves-other-1"]
    assert all(after[n] != before[n] for n in before if n.startswith("waves-web-"))
    # waves of parallelism 2: the slots of wave k+1 begin only after those of wave k ended
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, e in enumerate(evs):
        if e["service"] != "web" or not e.get("slot"):
            continue
        first.setdefault(e["slot"], i)
        last[e["slot"]] = i
    order = sorted(first, key=first.get)
    assert len(order) == 4, evs
    waves = [order[0:2], order[2:4]]
    assert min(first[s] for s in waves[1]) > max(last[s] for s in waves[0]) or \
        all(first[s] > max(last[x] for x in waves[0]) for s in waves[1]), \
        [(e["slot"], e["action"], e["status"]) for e in evs if e.get("slot")]


# --- 3. start-first rolling update behind a published port loses no request ---------------

ROLLING = """\
name: roll
services:
  web:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo v$$VERSION > /www/index.html && exec httpd -f -p 80 -h /www"]
    environment:
      VERSION: ${VERSION:-1}
    ports: ["127.0.0.1:PORT:80"]
    stop_grace_period: 2s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      timeout: 1s
      retries: 3
      start_period: 1s
      start_interval: 200ms
    deploy:
      replicas: 3
      update_config: {parallelism: 1, order: start-first, monitor: 1s, delay: 0s,
                      failure_action: rollback}
"""


def test_start_first_rolling_update_loses_no_request(node):
    check_update_loses_no_request(node, ROLLING)


# --- 4. an update to an image whose health check fails rolls back; up --wait exits 1 ------

HEALTHY_OR_NOT = """\
name: rb
services:
  web:
    image: ${IMAGE:-stackctl/busybox:latest}
    command: ["sh", "-c", "exec sleep 1000"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD-SHELL", "test ! -f /broken"]
      interval: 500ms
      timeout: 1s
      retries: 2
    deploy:
      replicas: 2
      update_config: {parallelism: 1, order: start-first, monitor: 1s,
                      failure_action: rollback}
"""


def test_failing_health_check_rolls_back_and_up_wait_fails(node, tmp_path):
    ctx = tmp_path / "broken"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM stackctl/busybox:latest\nRUN touch /broken\n")
    node.cli("image", "build", "-q", "-t", "test/broken:1", str(ctx), timeout=120)
    stack = node.deploy(HEALTHY_OR_NOT)
    before = ids(node.running("rb"))
    p = node.up(stack, "-d", "--wait", env={"IMAGE": "test/broken:1"}, check=False,
                timeout=120)
    assert p.returncode == 1, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "web" in p.stderr and "error:" in p.stderr, p.stderr
    now = node.running("rb")
    assert len(now) == 2
    assert all(c["Image"] == "stackctl/busybox:latest" for c in now), now
    assert all(c["Health"] == "healthy" for c in wait_for(
        lambda: [c for c in node.running("rb")] if all(
            c["Health"] == "healthy" for c in node.running("rb")) else None,
        20, "healthy after rollback"))
    # start-first: the old tasks were never stopped
    assert ids(now) == before


# --- 5. kill -9 of the agent: containers keep running, the new agent heals -----------------

HEALING = """\
name: heal
services:
  web:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "exec sleep 1000"]
    stop_grace_period: 1s
    deploy:
      replicas: 2
      restart_policy: {condition: any, delay: 0s}
"""


def test_agent_sigkill_keeps_containers_and_restarted_agent_heals(node):
    node.deploy(HEALING)
    before = ids(node.running("heal"))
    assert len(before) == 2
    old_pid = node.agent_pid()
    node.stop_agent(signal.SIGKILL)
    # the containers do not depend on the agent: the runtime still sees them running
    listed = node.cli("ps", "--format", "json").stdout
    names = {json.loads(x)["Names"] for x in listed.splitlines() if x.strip()}
    assert set(before) <= names
    # any stack verb starts a new agent, which reports the same containers
    again = ids(node.running("heal"))
    assert again == before
    assert node.agent_pid() not in (None, old_pid)
    # kill one replica: the restarted agent replaces it
    node.cli("kill", before["heal-web-1"])
    healed = wait_for(lambda: (lambda cs: cs if len(cs) == 2 and cs.get("heal-web-1") not in
                               (None, before["heal-web-1"]) else None)(
        ids(node.running("heal"))), 30, "web.1 replaced")
    assert healed["heal-web-2"] == before["heal-web-2"]


# --- 6. plan, ls and a one-off `run` of a service through the agent -----------------------

ONEOFF = """\
name: oneoff
services:
  web:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "exec sleep 1000"]
    environment:
      GREETING: hello
    stop_grace_period: 1s
"""


def test_plan_ls_and_oneoff_run(node):
    stack = node.write_stack(ONEOFF)
    plan = json.loads(node.cli("plan", "-f", stack, "--format", "json").stdout)
    assert plan["summary"]["create"] == 1, plan
    assert "web.1" in node.cli("plan", "-f", stack).stdout
    node.up(stack, "-d", "--wait")
    rows = json.loads(node.cli("ls", "--format", "json").stdout)
    assert [r["ConfigFiles"] for r in rows if r["Name"] == "oneoff"] == [stack], rows
    p = node.cli("run", "-f", stack, "--rm", "-e", "WHO=run", "web", "sh", "-c",
                 "echo $GREETING from $WHO")
    assert p.stdout.strip() == "hello from run", p
    # detached with --rm: gone once it exited, its network endpoint too (down -v works)
    node.cli("run", "-f", stack, "-d", "--rm", "web", "true")
    wait_for(lambda: [c["Name"] for c in node.ps("oneoff")] == ["oneoff-web-1"], 10,
             "only the service's task left")


# --- 7. Ctrl-C during `up`: stops cleanly and stays stopped --------------------------------

GATED = """\
name: intr
services:
  db:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "sleep 8; touch /tmp/ready; exec sleep 1000"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 500ms
      timeout: 1s
      retries: 30
    volumes: ["data:/data"]
  api:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "exec sleep 1000"]
    stop_grace_period: 1s
    depends_on: {db: {condition: service_healthy}}
  web:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "exec sleep 1000"]
    stop_grace_period: 1s
    depends_on: {db: {condition: service_healthy}}
    volumes: ["webdata:/srv"]
    networks: [default, back]
networks:
  back:
volumes:
  data:
  webdata:
"""


def test_ctrl_c_during_up_stops_cleanly_and_stays_stopped(node, tmp_path):
    import subprocess
    import sys

    from stackctl.net import store as netstore

    stack = node.write_stack(GATED)
    node.projects.add("intr")
    p = subprocess.Popen([sys.executable, "-m", "stackctl", "up", "-f", stack, "--wait"],
                         cwd=str(tmp_path), env=node.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        # db runs (its health check needs ~8 s, slack for a loaded machine): web is waiting on
        # its service_healthy gate
        wait_for(lambda: node.running("intr", "db"), 60, "db running")
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, (p.returncode, out[-2000:], err[-2000:])
    assert "interrupted; left running: db.1" in err, err
    db = ids(node.running("intr", "db"))
    assert list(db) == ["intr-db-1"]
    assert [c["Name"] for c in node.ps("intr") if c["Service"] != "db"] == []
    # what only web would have used was made by this deploy and is gone again
    node.remember_bridges()
    assert sorted(n.name for n in netstore.load(node.paths).networks.values()) == \
        ["intr_default"]
    assert sorted(os.listdir(os.path.join(node.paths.state, "volumes"))) == ["intr_data"]
    # db becomes healthy, the reconcile loop runs its passes: api and web are still never
    # created (until the next `up`)
    wait_for(lambda: [c for c in node.running("intr", "db") if c["Health"] == "healthy"],
             30, "db healthy")
    time.sleep(3)
    assert [c["Name"] for c in node.ps("intr") if c["Service"] != "db"] == []
    assert ids(node.running("intr", "db")) == db
    rows = json.loads(node.cli("ls", "-a", "--format", "json").stdout)
    assert [r["Name"] for r in rows] == ["intr"]
    node.cli("down", "-v", "-p", "intr", timeout=90)
    assert node.ps("intr") == []
    left = node.leftovers()
    assert left == {}, left
