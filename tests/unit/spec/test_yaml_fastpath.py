"""The YAML loader's fast path (stackctl/spec/yamlpos.py: ``_compose_fast`` and
``_build_document``) gives exactly what PyYAML's composer and constructor give — the same
data, types, positions and alias sharing — and hands every error and bound back to them, so
what the loader accepts and reports does not change."""

from __future__ import annotations

import pytest

from stackctl.errors import SpecError
from stackctl.spec import yamlpos

CASES = {
    "plain": "services:\n  web:\n    image: nginx\n    ports: ['80:80', 443]\n",
    "scalars": "a: {b: true, c: null, d: 1.5, e: 0o17, f: 0440, g: yes, h: 0x1F, i: ~, "
               "j: .inf, k: 2001-12-14, l: '5', m: 56:56, n: -3, o: ''}\n",
    "anchors": "x: &b {image: busybox, env: [A, B]}\ns:\n  a: *b\n  c: {<<: *b, image: x}\n"
               "  d: {<<: [*b], '=': 3}\n",
    "tags": "s:\n  a: !reset null\n  b: !override {x: 1}\n  c: !override [1]\n  d: !override 5\n"
            "  e: !!str 12\n  f: !!binary aGVsbG8=\n",
    "flow and block": "a:\n- - 1\n  - [2, {b: c}]\n- ? complex\n  : key\n",
    "multi": "a: 1\n---\nb: 2\n---\n",
    "empty": "",
    "comment only": "# nothing\n",
    "scalar root": "just a string\n",
    "dup key": "a: 1\nb: 2\na: 3\n",
    "bad key": "? [1, 2]\n: x\n",
    "undefined alias": "a: *nope\n",
    "duplicate anchor": "a: &x 1\nb: &x 2\n",
    "recursive alias": "a: &x [1, *x]\n",
    "syntax": "a: [1, 2\nb: 3\n",
    "tab": "a:\n\tb: 1\n",
    "too deep": "a: " + "[" * 150 + "]" * 150 + "\n",
    "much too deep": "[" * 100_000 + "]" * 100_000,
    "alias bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n"
        for i in range(6)),
}


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return (a.pos, a.key_pos, a.val_pos, list(a)) == (b.pos, b.key_pos, b.val_pos, list(b)) \
            and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return (a.pos, a.item_pos, len(a)) == (b.pos, b.item_pos, len(b)) and \
            all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _outcome(fn, text):
    try:
        return "ok", fn(text, "s.yml")
    except SpecError as exc:
        return "error", [str(i) for i in exc.issues] if hasattr(exc, "issues") else str(exc)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("fn", ["load_yaml", "load_yaml_documents"])
def test_fast_path_matches_pyyaml(monkeypatch, name, fn):
    text = CASES[name]
    fast = _outcome(getattr(yamlpos, fn), text)
    monkeypatch.setattr(yamlpos, "_construct_all", lambda *a: None)  # PyYAML's way only
    slow = _outcome(getattr(yamlpos, fn), text)
    assert fast[0] == slow[0]
    if fast[0] == "error":
        assert fast[1] == slow[1]
    elif fn == "load_yaml":
        assert _same(fast[1], slow[1])
    else:
        assert len(fast[1]) == len(slow[1]) and all(_same(a, b) for a, b in zip(fast[1], slow[1]))


def test_aliases_share_one_object_as_pyyaml_gives_them():
    data = yamlpos.load_yaml(CASES["anchors"], "s.yml")
    assert data["s"]["a"] is data["x"]


@pytest.mark.parametrize("name", ["too deep", "much too deep", "undefined alias", "multi",
                                  "recursive alias", "alias bomb"])
def test_errors_and_bounds_go_to_the_slow_path(name):
    loader = yamlpos._Loader(CASES[name], "s.yml")
    try:
        if name == "multi":
            assert len(yamlpos._compose_fast(loader)) == 3
            return
        with pytest.raises(yamlpos._Fallback):
            yamlpos._compose_fast(loader)
    finally:
        loader.dispose()
