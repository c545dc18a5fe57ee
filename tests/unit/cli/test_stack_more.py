"""Pure parts of the stack verbs kill/rm/pause/port/images/wait (stackctl/cli/stack_more.py)."""

from __future__ import annotations

import pytest

from stackctl.cli.stack_more import published, split_ref
from stackctl.cli.stack_scoped import rewrite_file_flag
from stackctl.cli.stack_scoped_more import images, rm


@pytest.mark.parametrize("ports, target, proto, want", [
    ("127.0.0.1:8080->80/tcp", 80, "tcp", "127.0.0.1:8080"),
    ("0.0.0.0:8080->80/tcp, 0.0.0.0:5353->53/udp", 53, "udp", "0.0.0.0:5353"),
    ("[::]:8080->80/tcp", 80, "tcp", "[::]:8080"),
    ("0.0.0.0:8080->80/tcp", 80, "udp", None),
    ("53/udp", 53, "udp", None),  # exposed, not published
    ("", 80, "tcp", None),
    ([{"target": 80, "published": "9000", "protocol": "tcp"}], 80, "tcp", "0.0.0.0:9000"),
    ({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "81"}]}, 80, "tcp", "127.0.0.1:81"),
])
def test_published(ports, target, proto, want):
    assert published(ports, target, proto) == want


@pytest.mark.parametrize("ref, want", [
    ("busybox", ("busybox", "latest")),
    ("stackctl/busybox:1.36", ("stackctl/busybox", "1.36")),
    ("localhost:5000/app", ("localhost:5000/app", "latest")),
    ("localhost:5000/app:v2", ("localhost:5000/app", "v2")),
    ("app@sha256:abc", ("app", "<none>")),
])
def test_split_ref(ref, want):
    assert split_ref(ref) == want


def test_f_rule_keeps_dockers_force_and_filter():
    # rm -f web: --force of the container web; rm -f stack.yml web: the stack file
    assert rewrite_file_flag(["-f", "web"], rm.params) == ["-f", "web"]
    assert rewrite_file_flag(["-f", "stack.yml", "-f", "web"], rm.params) == \
        ["--file", "stack.yml", "-f", "web"]
    assert rewrite_file_flag(["-f", "dangling=true"], images.params) == ["-f", "dangling=true"]
