"""An update stopped midway (Ctrl-C, a cancelled CI job) and run again: when the second run
fails and rolls back, the slots the first run had already moved go back too — the whole
service ends on the previous version, as with Swarm's rollback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from stackenv import ids, wait_for

pytestmark = pytest.mark.root

# a version-2 task exits at once while /ctl/fail exists: the second run's new tasks fail, the
# first run's (started before the file existed) keep running, version 1 never fails
RESUME = """\
name: resume
services:
  web:
    image: stackctl/busybox:latest
    command: ["sh", "-c", "test ${VERSION:-1} = 2 && test -e /ctl/fail && exit 1; exec sleep 1000"]
    environment:
      VERSION: ${VERSION:-1}
    volumes: ["CTL:/ctl"]
    stop_grace_period: 1s
    deploy:
      replicas: 3
      update_config: {parallelism: 1, order: stop-first, monitor: 1s, delay: 20s,
                      failure_action: rollback}
      rollback_config: {parallelism: 0, order: stop-first, monitor: 1s}
"""


def _versions(node, stack: str) -> dict[str, str]:
    out = {}
    for slot in ("1", "2", "3"):
        p = node.cli("exec", "-f", stack, f"web.{slot}", "sh", "-c", "echo $VERSION")
        out[slot] = p.stdout.strip()
    return out


def test_a_resumed_update_that_fails_rolls_back_every_slot(node, tmp_path):
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    stack = node.deploy(RESUME.replace("CTL", str(ctl)))
    before = ids(node.running("resume", "web"))
    assert _versions(node, stack) == {"1": "1", "2": "1", "3": "1"}

    # the first run of the update to version 2, stopped once slot 1 runs the new version
    # (within the 20 s delay before the next wave)
    p = subprocess.Popen([sys.executable, "-m", "stackctl", "up", "-f", stack, "--wait"],
                         cwd=str(tmp_path), env={**node.env, "VERSION": "2"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (ids(node.running("resume", "web")).get("resume-web-1")
                          not in (None, before["resume-web-1"])), 60, "slot 1 updated")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, (out[-2000:], err[-2000:])
    versions = _versions(node, stack)
    assert versions["1"] == "2" and "1" in (versions["2"], versions["3"]), versions

    # the second run: its new tasks fail, the update rolls back — slot 1 included
    (ctl / "fail").write_text("")
    p = node.up(stack, "-d", "--wait", check=False, env={"VERSION": "2"}, timeout=180)
    assert p.returncode != 0 and "rolled back" in (p.stdout + p.stderr), p.stdout[-3000:]
    os.unlink(ctl / "fail")
    assert _versions(node, stack) == {"1": "1", "2": "1", "3": "1"}
