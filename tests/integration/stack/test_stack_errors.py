"""Bad input to the stack verbs, end to end: one clear line, the right exit status, and
nothing made or broken — an unknown image, a published port another process holds, and the
container verbs on a stack that was never deployed."""

from __future__ import annotations

import socket

import pytest
from stackenv import free_port, wait_for

pytestmark = pytest.mark.root


def error_lines(p) -> list[str]:
    return [line for line in p.stderr.splitlines() if line.startswith(("error:", "Error:"))]


def nothing_left(node) -> None:
    # a process of the agent's own (its launcher, a helper) may still be on its way out
    wait_for(lambda: node.leftovers() == {}, 5, "nothing of the stack left")
    assert node.leftovers() == {}


NO_IMAGE = """\
name: noimg
services:
  db:
    image: stackctl/busybox:latest
    command: ["sleep", "1000"]
    volumes: ["data:/data"]
  web:
    image: nosuch/image:1.0
    networks: [default, back]
networks:
  back:
volumes:
  data:
"""


def test_up_with_an_unknown_image_names_it_and_makes_nothing(node):
    stack = node.write_stack(NO_IMAGE)
    p = node.up(stack, "-d", check=False)
    assert p.returncode == 1, (p.stdout, p.stderr)
    errors = error_lines(p)
    assert len(errors) == 1 and "web" in errors[0] and "nosuch/image:1.0" in errors[0], p.stderr
    assert "Traceback" not in p.stderr
    assert node.ps("noimg") == []
    nothing_left(node)


PORTS = """\
name: portx
services:
  db:
    image: stackctl/busybox:latest
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    volumes: ["data:/data"]
  web:
    image: stackctl/busybox:latest
    command: ["httpd", "-f", "-p", "80"]
    ports: ["{port}:80"]
    {extra}
volumes:
  data:
"""


def test_up_with_a_published_port_in_use_refuses_before_starting_anything(node):
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port))
        taken.listen(1)
        # first up: nothing of the stack is made
        stack = node.write_stack(PORTS.format(port=port, extra=""))
        p = node.up(stack, "-d", check=False)
        assert p.returncode == 1, (p.stdout, p.stderr)
        errors = error_lines(p)
        assert len(errors) == 1 and str(port) in errors[0] and "in use" in errors[0], p.stderr
        assert "Traceback" not in p.stderr
        assert node.ps("portx") == []
        nothing_left(node)
        # a stack that runs: db keeps running, web is not started
        node.up(node.write_stack(PORTS.format(port=port, extra="").split("  web:")[0]
                                 + "volumes:\n  data:\n", "db.yml"), "-d")
        db = [c["ID"] for c in node.ps("portx", all_=False)]
        assert len(db) == 1
        p = node.up(stack, "-d", check=False)
        assert p.returncode == 1, (p.stdout, p.stderr)
        errors = error_lines(p)
        assert len(errors) == 1 and str(port) in errors[0] and "in use" in errors[0], p.stderr
        cs = node.ps("portx")
        assert [(c["Service"], c["ID"], c["State"]) for c in cs] == [("db", db[0], "running")], cs


def test_container_verbs_on_a_stack_never_deployed(node):
    stack = node.write_stack(PORTS.format(port=free_port(), extra=""))
    for args in (["logs", "-f", stack], ["logs", "-f", stack, "web"], ["exec", "-f", stack, "web", "true"],
                 ["ps", "-f", stack], ["logs", "-p", "portx"], ["exec", "-p", "portx", "web", "true"],
                 ["ps", "-p", "portx"]):
        p = node.cli(*args, check=False, timeout=30)
        assert "Traceback" not in p.stderr, (args, p.stderr)
        if args[0] == "ps":
            # as `docker compose ps`: an empty table, exit 0, and a note that nothing is deployed
            assert p.returncode == 0 and p.stdout.splitlines()[0].startswith("NAME"), (args, p)
            assert len(p.stdout.splitlines()) == 1 and "is not deployed" in p.stderr, (args, p)
        else:
            assert p.returncode == 1, (args, p.returncode, p.stdout, p.stderr)
            errors = error_lines(p)
            assert len(errors) == 1 and "portx" in errors[0] and "not deployed" in errors[0], (args, p.stderr)
