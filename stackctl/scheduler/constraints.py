"""Placement constraints and spread preferences, parsed and matched as Swarm does.

Swarm's grammar (swarmkit ``manager/constraint``; docker/cli and compose pass the strings
through unchanged, the daemon parses them when the service is created):

- ``KEY==VALUE`` or ``KEY!=VALUE``; the first operator found wins, ``==`` looked for before
  ``!=``. A single ``=`` is not an operator (``node=foo`` is refused, with a hint).
- Whitespace around the key and the value is ignored; a key has none inside it, a value may
  (``node.labels.room==room 1``).
- A key starts with a letter or ``_`` and holds letters, digits, ``-``, ``_`` and ``.``; it is
  matched case-insensitively (``NODE.ROLE==manager`` works). A label's own name, after
  ``node.labels.`` or ``engine.labels.``, is case-sensitive.
- A value holds letters, digits, whitespace and ``: - _ . * ( ) ? + [ ] \\ ^ $ | /`` — no
  ``=``, ``,``, ``<``, ``>`` or ``~`` (kept free for future operators). Values compare
  case-insensitively and literally (``f*o`` matches only ``f*o``: no globs).
- Keys: ``node.id``, ``node.hostname``, ``node.role`` (manager / worker), ``node.platform.os``,
  ``node.platform.arch``, ``node.ip`` (an address, or a CIDR subnet: ``node.ip!=10.0.0.0/8``),
  ``node.labels.KEY``, ``engine.labels.KEY``. A label a node lacks reads as ``""``, so
  ``node.labels.zone!=east`` matches a node without a zone, and ``==`` does not.

One deliberate difference: Swarm accepts any well-formed key and then never matches it (a
service with ``node.name==x`` stays pending for ever), and a malformed ``node.ip`` value
likewise. We refuse both when the constraint is parsed, with a message that says what is
allowed.

Preferences: ``spread: node.labels.KEY`` (or ``engine.labels.KEY``); docker/cli's
``--placement-pref spread=node.labels.zone`` form is read by :func:`parse_preference`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from stackctl.errors import StackctlError

NODE_LABELS = "node.labels."
ENGINE_LABELS = "engine.labels."
NODE_KEYS = ("node.id", "node.hostname", "node.role", "node.platform.os",
             "node.platform.arch", "node.ip")
OPERATORS = ("==", "!=")

_KEY = re.compile(r"^[a-z_][a-z0-9\-_.]+$", re.IGNORECASE)
_VALUE = re.compile(r"^[a-z0-9:\-_\s.*()?+\[\]\\^$|/]+$", re.IGNORECASE)


class ConstraintError(StackctlError, ValueError):
    """A placement constraint or preference that cannot be parsed (exit 2, like a bad
    stack file). Also a ValueError, so model validators may catch it as one."""

    exit_code = 2


class NodeFacts(Protocol):
    """What a constraint reads of a node (:class:`.nodes.NodeSnapshot` has all of it)."""

    id: str
    hostname: str
    role: str
    os: str
    arch: str
    ip: str
    labels: Mapping[str, str]
    engine_labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Constraint:
    """One parsed constraint: ``key`` lower-cased except a label's own name."""

    key: str  # node.id | node.hostname | node.role | node.platform.os | ... | node.labels.X
    op: str  # "==" or "!="
    value: str
    text: str = ""  # as written, for messages

    def __str__(self) -> str:
        return self.text or f"{self.key}{self.op}{self.value}"

    @property
    def label(self) -> str | None:
        """The label's name for ``node.labels.X`` / ``engine.labels.X``, else None."""
        for prefix in (NODE_LABELS, ENGINE_LABELS):
            if self.key.startswith(prefix):
                return self.key[len(prefix):]
        return None

    def matches(self, node: NodeFacts) -> bool:
        return matches(self, node)


def _show(text: str) -> str:
    """A value in a message, quoted as the stack-file errors quote: ``"node.role=x"``."""
    return json.dumps(text if len(text) <= 60 else text[:57] + "...", ensure_ascii=False)


def parse_constraint(text: str) -> Constraint:
    """Parse one constraint (``node.labels.zone == east``); :class:`ConstraintError` if not."""
    if not isinstance(text, str):
        raise ConstraintError(f"invalid constraint {text!r}: expected a string such as "
                              "node.labels.zone==east")
    for op in OPERATORS:
        if op not in text:
            continue
        raw_key, raw_value = text.split(op, 1)
        key, value = raw_key.strip(), raw_value.strip()
        if not key:
            raise ConstraintError(f"invalid constraint {_show(text)}: the key before {op} "
                                  "is empty")
        if not _KEY.match(key):
            raise ConstraintError(
                f"invalid constraint {_show(text)}: key {_show(key)} is invalid (a key is "
                "letters, digits, '-', '_' and '.', starting with a letter or '_', no spaces)")
        if not value:
            raise ConstraintError(f"invalid constraint {_show(text)}: the value after {op} "
                                  "is empty")
        if not _VALUE.match(value):
            raise ConstraintError(
                f"invalid constraint {_show(text)}: value {_show(value)} is invalid (a value "
                "is letters, digits, spaces and : - _ . * ( ) ? + [ ] \\ ^ $ | /; no '=', "
                "',', '<', '>' or '~')")
        key = _normal_key(key, text)
        if key == "node.ip":
            _check_ip(value, text)
        return Constraint(key, op, value, text.strip())
    hint = ""
    if "=" in text:
        left, right = (part.strip() for part in text.split("=", 1))
        if left.lower() == "node":  # classic Swarm's constraint:node==NAME
            left = "node.hostname"
        hint = f"; did you mean {left}=={right}?"
    raise ConstraintError(f"invalid constraint {_show(text)}: expected one operator from "
                          f"==, != (such as node.labels.zone==east){hint}")


def _normal_key(key: str, text: str) -> str:
    lower = key.lower()
    if lower in NODE_KEYS:
        return lower
    for prefix in (NODE_LABELS, ENGINE_LABELS):
        if lower.startswith(prefix) and len(key) > len(prefix):
            return prefix + key[len(prefix):]  # the label's own name keeps its case
    raise ConstraintError(
        f"invalid constraint {_show(text)}: unknown key {_show(key)}; the keys are "
        + ", ".join(NODE_KEYS) + ", node.labels.<label> and engine.labels.<label>")


def _check_ip(value: str, text: str) -> None:
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        raise ConstraintError(f"invalid constraint {_show(text)}: {_show(value)} is neither "
                              "an IP address nor a subnet (such as 10.0.0.0/24)") from None


def parse_constraints(texts: Iterable[str]) -> tuple[Constraint, ...]:
    """Parse a list of constraints; every one must hold (Swarm ANDs them)."""
    return tuple(parse_constraint(t) for t in texts)


def node_value(key: str, node: NodeFacts) -> str:
    """The value of ``key`` on ``node`` as a constraint or a spread descriptor reads it."""
    if key.startswith(NODE_LABELS):
        return node.labels.get(key[len(NODE_LABELS):], "")
    if key.startswith(ENGINE_LABELS):
        return node.engine_labels.get(key[len(ENGINE_LABELS):], "")
    if key == "node.id":
        return node.id
    if key == "node.hostname":
        return node.hostname
    if key == "node.role":
        return node.role
    if key == "node.platform.os":
        return node.os
    if key == "node.platform.arch":
        return node.arch
    if key == "node.ip":
        return node.ip
    return ""


def _ip_matches(value: str, node_ip: str) -> bool:
    try:
        ip = ipaddress.ip_address(node_ip)
    except ValueError:
        return False
    if "/" in value:
        return ip in ipaddress.ip_network(value, strict=False)
    return ip == ipaddress.ip_address(value)


def matches(constraint: Constraint, node: NodeFacts) -> bool:
    """Whether ``node`` satisfies ``constraint`` (values compare case-insensitively)."""
    if constraint.key == "node.ip":
        hit = _ip_matches(constraint.value, node.ip)
    else:
        hit = node_value(constraint.key, node).casefold() == constraint.value.casefold()
    return hit if constraint.op == "==" else not hit


def matches_all(constraints: Iterable[Constraint], node: NodeFacts) -> bool:
    return all(matches(c, node) for c in constraints)


# --------------------------------------------------------------------------------------------
# Preferences


def check_spread(descriptor: str) -> str:
    """Validate a ``spread`` descriptor: ``node.labels.X`` or ``engine.labels.X``.

    Swarm silently ignores any other descriptor (the preference adds no tree level); we refuse
    it, since it can only be a mistake. Returns the descriptor with its prefix lower-cased."""
    text = descriptor.strip() if isinstance(descriptor, str) else descriptor
    if isinstance(text, str):
        lower = text.lower()
        for prefix in (NODE_LABELS, ENGINE_LABELS):
            if lower.startswith(prefix) and len(text) > len(prefix):
                return prefix + text[len(prefix):]
    raise ConstraintError(f"invalid spread preference {_show(descriptor)}: spread over "
                          "node.labels.<label> or engine.labels.<label> (such as "
                          "node.labels.zone)")


def parse_preference(text: str) -> str:
    """docker/cli's ``--placement-pref`` form, ``spread=node.labels.zone`` -> the descriptor."""
    fields = text.split("=")
    if len(fields) != 2:
        raise ConstraintError(f"invalid placement preference {_show(text)}: expected "
                              "<strategy>=<arg>, such as spread=node.labels.zone")
    if fields[0] != "spread":
        raise ConstraintError(f"unsupported placement preference {_show(fields[0])} (only "
                              "spread is supported)")
    return check_spread(fields[1])
