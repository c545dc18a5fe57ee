"""Constraints and spread preferences: Swarm's grammar and matching (swarmkit constraint.go)."""

from __future__ import annotations

import pytest

from stackctl.errors import StackctlError
from stackctl.scheduler.constraints import (
    ConstraintError,
    check_spread,
    matches,
    matches_all,
    parse_constraint,
    parse_constraints,
    parse_preference,
)
from stackctl.scheduler.nodes import NodeSnapshot

NODE = NodeSnapshot(
    name="n1", id="abc123", hostname="host-1", role="manager", os="linux", arch="x86_64",
    ip="10.0.0.7", labels={"zone": "East", "Disk": "ssd"}, engine_labels={"kernel": "6.1"})


@pytest.mark.parametrize("text, key, op, value", [
    ("node.role==manager", "node.role", "==", "manager"),
    (" node.labels.zone  !=  east ", "node.labels.zone", "!=", "east"),
    ("NODE.Role==worker", "node.role", "==", "worker"),  # keys are case-insensitive
    ("Node.Labels.Disk==ssd", "node.labels.Disk", "==", "ssd"),  # the label's name keeps case
    ("engine.labels.kernel==6.1", "engine.labels.kernel", "==", "6.1"),
    ("node.labels.room==room 1", "node.labels.room", "==", "room 1"),  # space inside a value
    ("node.hostname==[a-b]+c*(n|b)/", "node.hostname", "==", "[a-b]+c*(n|b)/"),
    ("node.ip!=10.0.0.0/8", "node.ip", "!=", "10.0.0.0/8"),
    ("node.ip==2001:db8::2", "node.ip", "==", "2001:db8::2"),
    ("node.platform.arch==x86_64", "node.platform.arch", "==", "x86_64"),
    ("node.labels._x-y.z==1", "node.labels._x-y.z", "==", "1"),
])
def test_parse_accepts_swarm_forms(text, key, op, value):
    c = parse_constraint(text)
    assert (c.key, c.op, c.value) == (key, op, value)
    assert str(c) == text.strip()


@pytest.mark.parametrize("text, words", [
    ("", "expected one operator"),
    ("   ", "expected one operator"),
    ("node.role", "expected one operator"),
    ("node.role ~ manager", "expected one operator"),
    ("node=foo", "did you mean node.hostname==foo?"),
    ("node.labels.zone=east", "did you mean node.labels.zone==east?"),
    ("==manager", "the key before == is empty"),
    ("node.role==", "the value after == is empty"),
    ("node.role== ", "the value after == is empty"),
    ("no de.role==x", 'key "no de.role" is invalid'),
    ("1node==x", 'key "1node" is invalid'),
    ("no*de==x", 'key "no*de" is invalid'),
    ("node.labels.zone==a,b", 'value "a,b" is invalid'),
    ("node.labels.a==b==c", 'value "b==c" is invalid'),  # "==" is split on first
    ("node.labels.a!=b==c", 'key "node.labels.a!=b" is invalid'),  # "==" looked for first
    ("node.labels.a==<5", 'value "<5" is invalid'),
    ("node.name==x", 'unknown key "node.name"'),
    ("node.labels.==x", 'unknown key "node.labels."'),
    ("node.ip==banana", '"banana" is neither an IP address nor a subnet'),
])
def test_parse_refuses_with_a_clear_line(text, words):
    with pytest.raises(ConstraintError) as err:
        parse_constraint(text)
    assert words in str(err.value)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, StackctlError) and isinstance(err.value, ValueError)
    assert err.value.exit_code == 2


@pytest.mark.parametrize("text, expected", [
    ("node.id==abc123", True),
    ("node.id==ABC123", True),  # values compare case-insensitively
    ("node.id!=abc123", False),
    ("node.hostname==host-1", True),
    ("node.hostname!=host-2", True),
    ("node.role==manager", True),
    ("node.role==worker", False),
    ("node.platform.os==linux", True),
    ("node.platform.arch==x86_64", True),
    ("node.platform.arch==amd64", False),  # constraints see the node's own word, unnormalised
    ("node.labels.zone==east", True),
    ("node.labels.zone!=east", False),
    ("node.labels.Disk==SSD", True),
    ("node.labels.disk==ssd", False),  # the label's name is case-sensitive: no "disk" label
    ("node.labels.disk!=ssd", True),
    ("node.labels.rack==r1", False),  # a missing label reads as ""
    ("node.labels.rack!=r1", True),
    ("engine.labels.kernel==6.1", True),
    ("engine.labels.other!=x", True),
    ("node.ip==10.0.0.7", True),
    ("node.ip==10.0.0.8", False),
    ("node.ip==10.0.0.0/24", True),
    ("node.ip!=10.0.0.0/24", False),
    ("node.ip==192.168.0.0/16", False),
    ("node.ip==2001:db8::/32", False),
    ("node.hostname==h*", False),  # no globs: literal comparison
])
def test_matches(text, expected):
    c = parse_constraint(text)
    assert matches(c, NODE) is expected
    assert c.matches(NODE) is expected


def test_node_ip_unknown_matches_only_not_equal():
    node = NodeSnapshot(name="x", ip="")
    assert not matches(parse_constraint("node.ip==10.0.0.0/8"), node)
    assert matches(parse_constraint("node.ip!=10.0.0.0/8"), node)


def test_all_constraints_must_hold():
    cs = parse_constraints(["node.role==manager", "node.labels.zone==east"])
    assert matches_all(cs, NODE)
    cs = parse_constraints(["node.role==manager", "node.labels.zone==west"])
    assert not matches_all(cs, NODE)
    assert matches_all((), NODE)


def test_preferences():
    assert parse_preference("spread=node.labels.zone") == "node.labels.zone"
    assert check_spread("Engine.Labels.Rack") == "engine.labels.Rack"
    for bad, words in [("spread", "<strategy>=<arg>"), ("pack=node.labels.zone", "only spread"),
                       ("spread=a=b", "<strategy>=<arg>"), ("spread=node.hostname", "spread over"),
                       ("spread=node.labels.", "spread over")]:
        with pytest.raises(ConstraintError, match=words):
            parse_preference(bad)
