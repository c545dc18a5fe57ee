"""A replica without a health check joins its published port only once it listens.

The service's server starts 1 s after the container (``sleep 1``): before the listen check, a
new replica was put into the service port as soon as it ran, so during a start-first update a
looping client's connections were refused (reset) by it for that second.
"""

from __future__ import annotations

import pytest
from stackenv import check_update_loses_no_request

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


def test_start_first_update_without_health_check_loses_no_request(node):
    check_update_loses_no_request(node, SLOW_START)
