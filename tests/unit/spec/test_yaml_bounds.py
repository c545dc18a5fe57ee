"""Bounds of the stack-file loader: alias bombs, recursive aliases, deep nesting and deep
interpolation end in one located SpecError, fast and in little memory (issue 9, item 5/6;
issue 14, bounded work). The whole-pipeline runs with a memory limit are in
tests/fuzz/test_large_inputs.py."""

from __future__ import annotations

import time

import pytest

from stackctl.errors import SpecError
from stackctl.spec.interpolate import MAX_NESTING, interpolate_tree, substitute, TemplateError
from stackctl.spec.yamlpos import MAX_DEPTH, allowed_alias_ratio, load_yaml

BILLION_LAUGHS = "".join(
    f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9 if prev else ['"lol"'] * 9) + "]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi")
)


def _merge_bomb(levels: int = 30) -> str:
    lines = ["x-a0: &a0 {k0: 1, k1: 2}"]
    lines += [f"x-a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], n{i}: {i}}}" for i in range(1, levels)]
    lines += ["services:", "  web:", "    image: busybox", f"    labels: {{<<: *a{levels - 1}}}"]
    return "\n".join(lines) + "\n"


def _refused(text: str) -> SpecError:
    start = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_yaml(text, "stack.yml")
    assert time.monotonic() - start < 5
    assert len(info.value.issues) == 1
    return info.value


def test_billion_laughs_is_refused_with_its_place():
    assert len(BILLION_LAUGHS) < 450
    err = _refused(BILLION_LAUGHS)
    (issue,) = err.issues
    assert "excessive aliasing" in issue.message
    assert issue.pos.file == "stack.yml" and issue.pos.line in range(2, 10)


def test_merge_key_bomb_is_refused():
    err = _refused(_merge_bomb())
    assert "excessive aliasing" in err.issues[0].message


def test_recursive_alias_is_refused():
    err = _refused("x-a: &a [1, *a]\n")
    assert "recursive alias" in err.issues[0].message
    assert (err.issues[0].pos.line, err.issues[0].pos.col) == (1, 13)


def test_ordinary_anchors_still_load():
    text = "x-common: &common {image: busybox, environment: {A: '1'}}\nservices:\n" + "".join(
        f"  s{i}:\n    <<: *common\n    command: [x]\n" for i in range(200))
    data = load_yaml(text, "stack.yml")
    assert data["services"]["s199"]["image"] == "busybox"


def test_alias_ratio_is_go_yamls():
    assert allowed_alias_ratio(1000) == 0.99
    assert allowed_alias_ratio(4_000_000) == 0.10
    assert 0.10 < allowed_alias_ratio(2_000_000) < 0.99


@pytest.mark.parametrize("text", [
    "x: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "x: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n",
    "".join(" " * i + f"k{i}:\n" for i in range(300)),
    "- " * 100_000 + "x\n",
], ids=["flow-lists", "flow-maps", "block-maps", "block-lists"])
def test_deep_nesting_is_one_located_error(text):
    err = _refused(text)
    assert f"nested deeper than {MAX_DEPTH} levels" in err.issues[0].message
    assert err.issues[0].pos is not None


def test_nesting_up_to_the_limit_loads():
    depth = MAX_DEPTH - 1
    data = load_yaml("x: " + "[" * depth + "]" * depth + "\n", "stack.yml")
    for _ in range(depth):
        data = data["x"] if isinstance(data, dict) else data[0] if data else None
    # reached the innermost (empty) list without error


def test_deep_interpolation_is_an_error_not_a_recursion_error():
    text = "${X:-" * 5000 + "x" + "}" * 5000
    with pytest.raises(TemplateError) as info:
        substitute(text, {})
    assert f"nested deeper than {MAX_NESTING}" in info.value.message
    result = interpolate_tree(load_yaml(f"services:\n  web:\n    image: '{text}'\n", "s.yml"), {})
    assert len(result.errors) == 1 and result.errors[0].pos.line == 3


def test_interpolation_nesting_up_to_the_limit_works():
    depth = MAX_NESTING
    assert substitute("${X:-" * depth + "x" + "}" * depth, {}).value == "x"
