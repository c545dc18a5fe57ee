"""`stackctl node ...` against a temporary inventory (no root, no SSH: `node add` of an
ssh:// node has its host-key check replaced by a recorder; the manager is this machine's
agent, which does not run here, so STATUS is Unknown with one warning line)."""

from __future__ import annotations

import json
import re

import pytest

from stackctl.cluster import connect
from stackctl.cluster import inventory as I
from stackctl.transport.errors import NodeUnreachable


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A private node (no agent, no warm server); the inventory is tmp_path/nodes.yml."""
    monkeypatch.setenv("STACKCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STACKCTL_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("STACKCTL_NODES", raising=False)
    monkeypatch.chdir(tmp_path)  # nodes.yml in the current folder, as without -f
    monkeypatch.setenv("STACKCTL_WARM", "0")
    checked: list[tuple[str, bool]] = []

    def fake_check(inv, node, *, accept, echo=print):
        checked.append((node.name, accept))
        return "/dev/null"

    monkeypatch.setattr(connect, "check_host_key", fake_check)
    real_call = connect.manager_call

    def no_network(inv, method, params=None, **kw):
        if connect.manager_is_local(inv):
            return real_call(inv, method, params, **kw)  # no agent runs: AgentUnavailable
        raise NodeUnreachable(inv.manager.name, "no network in unit tests")

    monkeypatch.setattr(connect, "manager_call", no_network)
    return tmp_path, checked


def run(args, capsys):
    from stackctl.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["node", *args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_no_inventory_lists_this_machine(env, capsys):
    code, out, err = run(["ls"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "ID                            HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION"
    assert re.match(r"^[a-z0-9]{25} \*   \S+ +Unknown +Active +Leader", lines[1])
    assert err.count("\n") == 1 and err.startswith("warning: this machine's agent is not running")


def test_add_ls_label_update_promote_rm(env, capsys):
    tmp, checked = env
    code, out, err = run(["add", "local", "--name", "m0"], capsys)
    assert code == 0 and re.fullmatch(r"[a-z0-9]{25}\n", out)
    m0_id = out.strip()
    code, out, _ = run(["add", "ssh://root@10.0.0.2:2222", "--name", "n1", "--label", "zone=a",
                        "--identity", "keys/id", "--accept-host-key"], capsys)
    assert code == 0 and checked == [("n1", True)]
    code, out, _ = run(["add", "ssh://root@10.0.0.3", "--label", "zone=b"], capsys)
    assert code == 0 and checked[-1] == ("10-0-0-3", False)  # default name from the address

    inv = I.load_inventory(str(tmp / "nodes.yml"))
    assert [n.name for n in inv.nodes] == ["m0", "n1", "10-0-0-3"]
    assert inv.manager.name == "m0" and inv.manager.role == "manager" and inv.manager.id == m0_id
    assert inv.get("n1").labels == {"zone": "a"} and inv.get("n1").identity == "keys/id"

    code, out, err = run(["ls"], capsys)
    rows = out.splitlines()[1:]
    assert [r.split()[1 if "*" not in r else 2] for r in rows] == ["10-0-0-3", "m0", "n1"]  # natural order
    assert rows[1].startswith(f"{m0_id} *") and "Leader" in rows[1]
    assert "Leader" not in rows[2] and rows[2].split()[2:4] == ["Unknown", "Active"]

    code, out, _ = run(["ls", "-q"], capsys)
    assert out.split() == [inv.get("10-0-0-3").id, m0_id, inv.get("n1").id]
    code, out, _ = run(["ls", "--format", "json"], capsys)
    objs = [json.loads(line) for line in out.splitlines()]
    assert objs[1] == {"ID": m0_id, "Hostname": "m0", "Status": "Unknown", "Availability": "Active",
                       "ManagerStatus": "Leader", "EngineVersion": "", "Self": True, "URL": "local",
                       "Labels": {}, "LastHeartbeat": None}

    assert run(["label", "n1", "--add", "ssd=yes", "--rm", "zone"], capsys)[:2] == (0, "n1\n")
    assert I.load_inventory(str(tmp / "nodes.yml")).get("n1").labels == {"ssd": "yes"}
    code, _, err = run(["label", "n1", "--rm", "nope"], capsys)
    assert code == 1 and err == 'error: node n1 has no label "nope"\n'

    assert run(["update", "n1", "--availability", "drain", "--label-add", "r=1"], capsys)[:2] == (0, "n1\n")
    n1 = I.load_inventory(str(tmp / "nodes.yml")).get("n1")
    assert n1.availability == "drain" and n1.labels == {"ssd": "yes", "r": "1"}
    code, out, _ = run(["ls"], capsys)
    assert "Drain" in [line for line in out.splitlines() if " n1 " in line][0]

    code, out, err = run(["promote", "n1"], capsys)
    assert err == "warning: the manager (n1) was not told: node n1 is unreachable: no network in unit tests\n"
    assert out == ("Node n1 promoted to a manager in the swarm.\n"
                   "Manager m0 demoted in the swarm (one manager for now).\n")
    inv = I.load_inventory(str(tmp / "nodes.yml"))
    assert inv.manager.name == "n1" and inv.get("m0").role == "worker"
    assert run(["promote", "n1"], capsys)[1] == "Node n1 is already a manager.\n"
    assert run(["demote", "m0"], capsys)[1] == "Node m0 is already a worker.\n"
    code, _, err = run(["demote", "n1"], capsys)
    assert code == 1 and err.startswith("error: n1 is the only manager")

    code, out, err = run(["rm", "10-0-0-3", "nosuch"], capsys)
    assert code == 1 and out == "10-0-0-3\n" and 'no node "nosuch"' in err
    assert [n.name for n in I.load_inventory(str(tmp / "nodes.yml")).nodes] == ["m0", "n1"]


def test_add_refusals(env, capsys):
    tmp, checked = env
    assert run(["add", "local", "--name", "m0"], capsys)[0] == 0
    code, _, err = run(["add", "root@10.0.0.2"], capsys)
    assert code == 2 and err == ('error: invalid URL "root@10.0.0.2": expected ssh://[user@]host[:port] '
                                 'or `local` (write "ssh://root@10.0.0.2")\n')
    code, _, err = run(["add", "ssh://h", "--name", "m0"], capsys)
    assert code == 1 and err.startswith('error: a node named "m0" is already in the inventory')
    code, _, err = run(["add", "ssh://h", "--role", "manager"], capsys)
    assert code == 1 and err.startswith('error: "m0" is the manager already')
    code, _, err = run(["add", "ssh://h", "--label", "=x"], capsys)
    assert code == 2
    assert checked == []  # refused before any network


def test_host_key_refusal_leaves_the_inventory_unchanged(env, capsys, monkeypatch):
    from stackctl.transport.errors import HostKeyUnknown

    tmp, _ = env

    def refuse(inv, node, *, accept, echo=print):
        raise HostKeyUnknown("10.0.0.9", 22, "SHA256:abc", "/root/.ssh/known_hosts")

    monkeypatch.setattr(connect, "check_host_key", refuse)
    code, out, err = run(["add", "ssh://root@10.0.0.9", "--name", "n9"], capsys)
    assert code == 1 and out == ""
    assert err.startswith("error: host key of 10.0.0.9:22 is unknown (fingerprint SHA256:abc)")
    assert "--accept-host-key" in err
    assert not (tmp / "nodes.yml").exists()


def test_inspect(env, capsys):
    assert run(["add", "local", "--name", "m0"], capsys)[0] == 0
    assert run(["add", "ssh://root@10.0.0.2", "--name", "n1", "--label", "zone=a"], capsys)[0] == 0
    code, out, _ = run(["inspect", "n1", "self"], capsys)
    objs = json.loads(out)
    assert code == 0 and [o["Spec"]["Name"] for o in objs] == ["n1", "m0"]
    assert objs[0]["Spec"] == {"Name": "n1", "Labels": {"zone": "a"}, "Role": "worker",
                               "Availability": "active"}
    assert objs[0]["Status"]["Addr"] == "10.0.0.2" and "ManagerStatus" not in objs[0]
    assert objs[1]["ManagerStatus"]["Leader"] is True
    code, out, _ = run(["inspect", "--pretty", "n1"], capsys)
    assert re.search(r"^Hostname:\s+n1$", out, re.M) and " - zone=a" in out
    assert re.search(r"^ Availability:\s+Active$", out, re.M)
    code, out, err = run(["inspect", "n1", "zz"], capsys)
    assert code == 1 and json.loads(out)[0]["Spec"]["Name"] == "n1" and 'no node "zz"' in err


def test_invalid_inventory_is_located(env, capsys):
    tmp, _ = env
    (tmp / "nodes.yml").write_text("nodes:\n  - name: a\n    url: ssh://a\n  - name: a\n    url: ssh://b\n")
    code, out, err = run(["ls"], capsys)
    assert code == 2 and err == f'error: {tmp}/nodes.yml:4:11: nodes[1].name: duplicate node name "a" (first at line 2)\n'


def test_missing_inventory_named_by_flag(env, capsys, tmp_path):
    code, _, err = run(["ls", "--nodes", str(tmp_path / "none.yml")], capsys)
    assert code == 1 and err.startswith(f"error: no inventory file {tmp_path}/none.yml (named by --nodes)")


def test_write_commands_need_an_inventory(env, capsys):
    code, _, err = run(["label", "x", "--add", "a=b"], capsys)
    assert code == 1 and "no inventory" in err


def test_bootstrap_dry_run_prints_the_steps(env, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert run(["add", "local", "--name", "m0"], capsys)[0] == 0
    assert run(["add", "ssh://root@10.0.0.2", "--name", "n1"], capsys)[0] == 0
    code, out, _ = run(["bootstrap", "--dry-run", "n1"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "bootstrap n1 (dry run, nothing changes):"
    assert [line.split(".")[0].strip() for line in lines[1:]] == [str(i) for i in range(1, 9)]
    assert "restart n1's agent" in out and "containers keep running" in out
    assert "agent dial-stdio` only" in out and "m0's <state>/known_hosts" in out
    assert not (tmp_path / "cache").exists()  # a dry run builds nothing


def test_ls_shows_the_managers_answer(env, capsys, monkeypatch):
    tmp, _ = env
    assert run(["add", "ssh://root@10.0.0.1", "--name", "m"], capsys)[0] == 0
    assert run(["add", "ssh://root@10.0.0.2", "--name", "w"], capsys)[0] == 0
    rows = [{"name": "m-host", "status": "ready", "engine_version": "9.9", "manager": True,
             "last_heartbeat": None},  # the manager under its own name: still its row
            {"name": "w", "status": "down", "engine_version": "9.8", "last_heartbeat": 1.5}]
    calls = []

    def manager(inv, method, params=None, **kw):
        calls.append(method)
        return rows

    monkeypatch.setattr(connect, "manager_call", manager)
    code, out, err = run(["ls"], capsys)
    assert code == 0 and err == "" and calls == ["cluster.nodes"]
    lines = out.splitlines()
    assert lines[1].split()[1:] == ["*", "m", "Ready", "Active", "Leader", "9.9"]
    assert lines[2].split()[1:] == ["w", "Down", "Active", "9.8"]


def test_ls_when_the_manager_serves_no_cluster_nodes(env, capsys, monkeypatch):
    from stackctl.agent.client import AgentError

    assert run(["add", "ssh://root@10.0.0.1", "--name", "m"], capsys)[0] == 0

    def old_manager(inv, method, params=None, **kw):
        if method == "agent.info":
            return {"version": "0.0.9"}
        raise AgentError("bad_request", f"unknown method {method!r}")

    monkeypatch.setattr(connect, "manager_call", old_manager)
    code, out, err = run(["ls"], capsys)
    assert code == 0 and out.splitlines()[1].split()[1:] == ["*", "m", "Ready", "Active", "Leader", "0.0.9"]
    assert err == "warning: the manager (m) does not serve cluster.nodes; only its own status is known\n"
