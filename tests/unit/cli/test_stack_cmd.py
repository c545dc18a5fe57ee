"""The stack verbs against a fake agent client: what is sent, what is printed, exit codes."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from stackctl.agent import client as agent_client
from stackctl.cli import stack_cmd
from stackctl.cli.main import cli

WEBAPP = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "stacks", "webapp",
                      "stack.yml")


class FakeClient:
    """Stands in for AgentClient: answers from ``script``, records requests."""

    script: dict = {}
    requests: list = []

    def __init__(self, paths, timeout=None):
        self.paths = paths

    def call(self, method, params=None):
        FakeClient.requests.append((method, params))
        answer = FakeClient.script.get(method)
        if isinstance(answer, Exception):
            raise answer
        return answer() if callable(answer) else answer

    def stream(self, method, params=None):
        FakeClient.requests.append((method, params))
        answer = FakeClient.script.get(method, [])
        for item in answer:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        pass


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setattr(agent_client, "AgentClient", FakeClient)
    monkeypatch.setattr(agent_client, "ensure_agent", lambda paths, **kw: {})
    monkeypatch.setenv("STACKCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STACKCTL_RUN_DIR", str(tmp_path / "run"))
    FakeClient.script = {}
    FakeClient.requests = []
    return FakeClient


def ev(action, status="done", service="web", slot="1", message=""):
    return {"time": 1.0, "stack": "webapp", "service": service, "slot": slot, "action": action,
            "status": status, "message": message}


def invoke(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False, standalone_mode=False)


def run_main(args, capsys):
    from stackctl.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_up_sends_normalized_stack_and_prints_plain_lines(fake, capsys):
    fake.script["stack.deploy"] = [ev("create", "started"), ev("create"), ev("healthy")]
    code, out, err = run_main(["up", "-d", "--wait", "-f", WEBAPP], capsys)
    assert code == 0, err
    method, params = fake.requests[0]
    assert method == "stack.deploy"
    assert params["stack"]["name"] == "webapp"
    assert set(params["stack"]["services"]) == {"web", "db", "cache"}
    assert params["options"]["wait"] is True
    assert params["project_dir"].endswith("webapp")
    assert out.splitlines() == ["[+] web.1 create: started", "[+] web.1 create: done",
                                "[+] web.1 healthy"]


def test_up_json_format(fake, capsys):
    fake.script["stack.deploy"] = [ev("create", "started")]
    code, out, _ = run_main(["up", "-d", "--format", "json", "-f", WEBAPP], capsys)
    assert code == 0
    assert json.loads(out.splitlines()[0])["action"] == "create"


def test_up_failed_update_exits_1_naming_the_service(fake, capsys):
    fake.script["stack.deploy"] = [
        ev("unhealthy", "done", slot="2", message="health check failed 3 times"),
        ev("rollback", "started", slot=None),
        agent_client.AgentError("failed", "update failed"),
    ]
    code, _, err = run_main(["up", "-d", "--wait", "-f", WEBAPP], capsys)
    assert code == 1
    assert "web.2" in err and "health check failed" in err and "rolled back: web" in err


def test_up_invalid_file_exits_2_before_sending(fake, tmp_path, capsys):
    bad = tmp_path / "stack.yml"
    bad.write_text("services:\n  web:\n    image: x\n    ports: [\"nope\"]\n")
    code, _, err = run_main(["up", "-d", "-f", str(bad)], capsys)
    assert code == 2
    assert "stack.yml:4" in err
    assert fake.requests == []


def test_up_unknown_service_is_usage_error(fake, capsys):
    code, _, err = run_main(["up", "-d", "-f", WEBAPP, "nosuch"], capsys)
    assert code == 2 and "no such service: nosuch" in err


def test_up_ctrl_c_reports_what_is_left_running(fake, capsys):
    fake.script["stack.deploy"] = [ev("create", "started"), KeyboardInterrupt()]
    fake.script["stack.ps"] = [{"service": "db", "slot": "1"}]
    code, _, err = run_main(["up", "-d", "-f", WEBAPP], capsys)
    assert code == 130
    assert "left running: db.1" in err


def test_up_discovers_the_file_in_the_working_directory(fake, capsys, monkeypatch):
    monkeypatch.chdir(os.path.dirname(WEBAPP))
    code, _, err = run_main(["up", "-d"], capsys)
    assert code == 0, err
    assert fake.requests[0][1]["stack"]["name"] == "webapp"


def test_down_by_project_name(fake, capsys):
    fake.script["stack.remove"] = [ev("remove", slot="1")]
    code, out, _ = run_main(["down", "-v", "-p", "webapp"], capsys)
    assert code == 0
    assert fake.requests == [("stack.remove", {"name": "webapp", "volumes": True,
                                               "remove_orphans": False, "timeout": None})]


def test_down_of_an_unknown_stack_is_a_warning(fake, capsys):
    fake.script["stack.remove"] = [agent_client.AgentNotFound("not_found", "no stack nosuch")]
    code, _, err = run_main(["down", "-p", "nosuch"], capsys)
    assert code == 0 and "no resource found" in err


def test_plan_prints_text_and_json(fake, capsys):
    fake.script["stack.plan"] = {"plan": {"stack": "webapp"}, "text": "stack webapp: nothing\n"}
    code, out, _ = run_main(["plan", "-f", WEBAPP], capsys)
    assert (code, out) == (0, "stack webapp: nothing\n")
    code, out, _ = run_main(["plan", "--format", "json", "-f", WEBAPP], capsys)
    assert json.loads(out) == {"stack": "webapp"}


def test_ls_table_and_json(fake, capsys):
    fake.script["stack.list"] = [
        {"name": "webapp", "status": "running(3)", "files": ["/x/stack.yml"]},
        {"name": "old", "status": "exited(1)", "files": []},
    ]
    code, out, _ = run_main(["ls"], capsys)
    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "CONFIG", "FILES"]
    assert "webapp" in out and "old" not in out
    code, out, _ = run_main(["ls", "-a", "--format", "json"], capsys)
    assert [r["Name"] for r in json.loads(out)] == ["old", "webapp"]


def test_scale_parses_and_sends(fake, capsys):
    fake.script["stack.scale"] = []
    code, _, _ = run_main(["scale", "-p", "webapp", "web=3", "db=1"], capsys)
    assert code == 0
    assert fake.requests[0] == ("stack.scale", {"name": "webapp", "scales": {"web": 3, "db": 1}})
    code, _, err = run_main(["scale", "-p", "webapp", "web"], capsys)
    assert code == 2


def test_rollback_sends_services(fake, capsys):
    fake.script["stack.rollback"] = []
    code, _, _ = run_main(["rollback", "-p", "webapp", "web"], capsys)
    assert code == 0
    assert fake.requests[0] == ("stack.rollback", {"name": "webapp", "services": ["web"]})


def test_agent_bad_request_exits_2(fake, capsys):
    fake.script["stack.rollback"] = [agent_client.AgentError("bad_request", "no previous version")]
    code, _, err = run_main(["rollback", "-p", "webapp", "web"], capsys)
    assert code == 2 and "no previous version" in err


def test_ls_rows_filter():
    rows = stack_cmd.ls_rows([{"name": "a", "status": "running(1)"},
                              {"name": "b", "status": "running(2)"}], filters=("name=b",))
    assert [r["Name"] for r in rows] == ["b"]
