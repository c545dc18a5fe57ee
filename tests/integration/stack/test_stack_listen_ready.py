"""A replica without a health check joins its published port only once it listens.

The service's server starts 1 s after the container (``sleep 1``): before the listen check, a
new replica was put into the service port as soon as it ran, so during a start-first update a
looping client's connections were refused (reset) by it for that second.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from stackenv import free_port, http_get

pytestmark = pytest.mark.root

SLOW_START = """\
name: listen
services:
  web:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo v$$VERSION > /www/index.html && sleep 1 && exec httpd -f -p 80 -h /www"]
    environment:
      VERSION: ${VERSION:-1}
    ports: ["127.0.0.1:PORT:80"]
    stop_grace_period: 2s
    deploy:
      replicas: 3
      update_config: {parallelism: 1, order: start-first, monitor: 1s, delay: 0s,
                      failure_action: rollback}
"""


def test_start_first_update_without_health_check_loses_no_request(node, tmp_path):
    port = free_port()
    stack = tmp_path / "stack.yml"
    stack.write_text(SLOW_START.replace("PORT", str(port)))
    node.up(str(stack), "-d", "--wait")
    # --wait returned: every replica listens already (no sleep needed)
    assert http_get(port).strip() == "v1"
    stop = threading.Event()
    results = {"ok": 0, "failed": 0, "errors": [], "versions": set()}

    def client() -> None:
        while not stop.is_set():
            try:
                results["versions"].add(http_get(port, timeout=3).strip())
                results["ok"] += 1
            except Exception as exc:  # noqa: BLE001 - every failure counts
                results["failed"] += 1
                results["errors"].append(repr(exc))
            time.sleep(0.01)

    t = threading.Thread(target=client, daemon=True)
    t.start()
    try:
        p = node.up(str(stack), "-d", "--wait", "--format", "json", env={"VERSION": "2"},
                    timeout=120)
        time.sleep(0.5)
    finally:
        stop.set()
        t.join(10)
    assert results["failed"] == 0, (results["failed"], results["errors"][:5])
    assert results["ok"] > 50
    assert "v2" in results["versions"]
    assert http_get(port).strip() == "v2"
    events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert {e["slot"] for e in events if e["action"] == "recreate"} == {"1", "2", "3"}
