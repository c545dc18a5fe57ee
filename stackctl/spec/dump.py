"""The normalized stack as plain data, as ``docker compose config`` prints it.

Long syntax everywhere, defaults filled, variables resolved, services sorted by name,
durations as Go prints them (``1m30s``), sizes as byte counts, secret contents redacted.
The result loads again into the same model (see ``tests/unit/spec/test_dump_roundtrip.py``).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from stackctl.spec.models import Stack

_TOP_ORDER = ("name", "services", "networks", "volumes", "secrets", "configs")


def stack_data(stack: Stack) -> dict[str, Any]:
    """Plain data (dicts, lists, str, int, float, bool, None)."""
    data = stack.dump()
    data["services"] = {name: data.get("services", {}).get(name)
                        for name in sorted(stack.services)}
    for section in ("networks", "volumes", "secrets", "configs"):
        if section in data:
            data[section] = {k: data[section][k] for k in sorted(data[section])}
    ordered = {k: data[k] for k in _TOP_ORDER if k in data}
    ordered.update((k, v) for k, v in data.items() if k not in ordered)
    return ordered


class _Dumper(yaml.SafeDumper):
    """Block style; keys in model order; strings that YAML 1.1 would read as booleans quoted."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    if value.lower() in ("y", "n", "yes", "no", "on", "off"):
        style = '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def to_yaml(data: Any) -> str:
    from stackctl.spec.yamlout import emit

    text = emit(data, _Dumper)  # the same text, written directly (None: a case it leaves)
    if text is not None:
        return text
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render(stack: Stack, fmt: str = "yaml") -> str:
    """The normalized stack as YAML or JSON text."""
    data = stack_data(stack)
    return to_json(data) if fmt == "json" else to_yaml(data)
