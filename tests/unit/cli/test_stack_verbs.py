"""The container verbs with a stack scope: the -f rule, output shapes, and the verbs against
a fake agent client."""

from __future__ import annotations

import json

import pytest

from stackctl.cli import stack_scoped as S
from stackctl.cli import stack_verbs as V
from test_stack_cmd import WEBAPP, FakeClient, fake, run_main  # noqa: F401


def test_f_rule():
    assert S.names_stack_file("stack.yml") and S.names_stack_file("x/compose.yaml")
    assert not S.names_stack_file("web")
    assert not S.names_stack_file("status=exited")


def test_rewrite_only_stack_files():
    params = S.logs.params
    assert S.rewrite_file_flag(["-f", "web"], params) == ["-f", "web"]
    assert S.rewrite_file_flag(["-f", "stack.yml", "web"], params) == ["--file", "stack.yml", "web"]
    # after "--" and past positional arguments of a non-interspersed command, nothing changes
    assert S.rewrite_file_flag(["--", "-f", "a.yml"], params) == ["--", "-f", "a.yml"]
    assert S.rewrite_file_flag(["web", "cat", "-f", "a.yml"], S.exec_.params,
                               interspersed=False) == ["web", "cat", "-f", "a.yml"]
    # a value of another option is skipped
    assert S.rewrite_file_flag(["--tail", "-f", "x"], params) == ["--tail", "-f", "x"]


def test_parse_target():
    assert V.parse_target("web") == ("web", "1")
    assert V.parse_target("web.2") == ("web", "2")
    assert V.parse_target("my.svc.3") == ("my.svc", "3")


def container(service, slot, state="running", **kw):
    return {"id": f"{service}{slot}".ljust(64, "0"), "name": f"webapp-{service}-{slot}",
            "stack": "webapp", "service": service, "slot": slot, "image": "bb",
            "command": ["httpd", "-f"], "state": state, "health": kw.pop("health", ""),
            "exit_code": kw.pop("exit_code", None), "created": 1_700_000_000.0,
            "started_at": 1_700_000_000.0, "finished_at": None,
            "ports": [{"host_ip": "127.0.0.1", "published": 8080, "target": 80,
                       "protocol": "tcp"}], **kw}


def test_ps_row_and_table():
    now = int(1_700_000_010 * 1e9)
    row = V.ps_row(container("web", "1", health="healthy"), now)
    assert row["Status"] == "Up 10 seconds (healthy)"
    assert row["Ports"] == "127.0.0.1:8080->80/tcp"
    assert row["ID"] == "web1" + "0" * 8
    table = V.ps_table([row]).splitlines()
    assert table[0].split()[:4] == ["NAME", "IMAGE", "COMMAND", "SERVICE"]
    assert "web.1" in table[1]


def test_prefixes_pad_and_colour():
    cs = [container("web", "1"), container("cache", "10")]
    plain = V.prefixes(cs, colour=False)
    assert plain[cs[0]["id"]] == "web.1    | "
    assert plain[cs[1]["id"]] == "cache.10 | "
    assert V.prefixes(cs, colour=True)[cs[0]["id"]].startswith("\x1b[")


def test_log_line():
    ev = {"id": "x", "stream": "stdout", "time": 1_700_000_000_000_000_000, "line": "hi\n"}
    assert V.log_line(ev, "web.1 | ", timestamps=False) == "web.1 | hi"
    assert V.log_line(ev, "", timestamps=True).startswith("2023-11-14T22:13:20.000000000Z hi")


def test_ps_with_file(fake, capsys):  # noqa: F811
    fake.script["stack.ps"] = [container("web", "2"), container("web", "1")]
    code, out, err = run_main(["ps", "-f", WEBAPP, "--format", "json"], capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["Slot"] for r in rows] == ["1", "2"]
    assert fake.requests[0] == ("stack.ps", {"name": "webapp", "all": False, "services": []})


def test_logs_with_file_interleaves_with_prefixes(fake, capsys):  # noqa: F811
    fake.script["stack.ps"] = [container("web", "1"), container("db", "1")]
    fake.script["container.logs"] = [
        {"id": container("web", "1")["id"], "stream": "stdout", "time": 1, "line": "GET /\n"},
        {"id": container("db", "1")["id"], "stream": "stdout", "time": 2, "line": "ready\n"},
    ]
    code, out, _ = run_main(["logs", "-f", WEBAPP, "web", "db"], capsys)
    assert code == 0
    assert out.splitlines() == ["web.1 | GET /", "db.1  | ready"]
    method, params = fake.requests[1]
    assert method == "container.logs" and params["follow"] is False


def test_logs_follow_flag_keeps_docker_meaning(fake, capsys):  # noqa: F811
    fake.script["stack.ps"] = [container("web", "1")]
    fake.script["container.logs"] = []
    code, _, _ = run_main(["logs", "-f", WEBAPP, "--follow", "web"], capsys)
    assert code == 0
    assert fake.requests[1][1]["follow"] is True


def test_exec_resolves_slot(fake, capsys):  # noqa: F811
    fake.script["stack.ps"] = [container("web", "1"), container("web", "2", state="exited")]
    from stackctl.cli.stack_client import Agent

    with Agent() as client:
        assert V.resolve(client, "webapp", "web")["slot"] == "1"
        with pytest.raises(Exception, match="not running"):
            V.resolve(client, "webapp", "web.2")
        with pytest.raises(Exception, match="has no slot 3"):
            V.resolve(client, "webapp", "web.3")


def test_stop_with_project_name(fake, capsys):  # noqa: F811
    fake.script["stack.stop"] = []
    code, _, _ = run_main(["stop", "-p", "webapp", "web"], capsys)
    assert code == 0
    assert fake.requests[0] == ("stack.stop", {"name": "webapp", "services": ["web"],
                                               "timeout": None})


def test_docker_forms_still_need_their_container(capsys):
    code, _, err = run_main(["stop"], capsys)
    assert code == 2 and "requires at least 1 argument" in err
