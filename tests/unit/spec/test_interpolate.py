"""Interpolation: every operator Compose has, errors located, the input never changed."""

from __future__ import annotations

import pytest

from stackctl.errors import Pos
from stackctl.spec.interpolate import TemplateError, interpolate_tree, substitute
from stackctl.spec.yamlpos import load_yaml, strip_positions

ENV = {"SET": "value", "EMPTY": "", "NAME": "web", "INNER": "in", "MSG": "from MSG"}


@pytest.mark.parametrize("template,expected", [
    ("plain", "plain"),
    ("$SET", "value"),
    ("${SET}", "value"),
    ("a-${SET}-b", "a-value-b"),
    ("$SET$NAME", "valueweb"),
    ("${SET:-d}", "value"),
    ("${EMPTY:-d}", "d"),
    ("${UNSET:-d}", "d"),
    ("${SET-d}", "value"),
    ("${EMPTY-d}", ""),
    ("${UNSET-d}", "d"),
    ("${SET:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${UNSET:+alt}", ""),
    ("${SET+alt}", "alt"),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${SET:?err}", "value"),
    ("${EMPTY?err}", ""),
    ("$$", "$"),
    ("$$SET", "$SET"),
    ("$${SET}", "${SET}"),
    ("cost: 5$", "cost: 5$"),
    ("$1 and $-", "$1 and $-"),
    ("${UNSET:-${INNER}}", "in"),
    ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
    ("${UNSET:-pre-${NAME}-post}", "pre-web-post"),
    ("${UNSET:-a}b}", "ab}"),
    ("${SET:-${UNSET:?never evaluated}}", "value"),
    ("${UNSET:-a:b-c}", "a:b-c"),
    ("${UNSET:-}", ""),
    ("${UNSET:-$$literal}", "$literal"),
])
def test_substitute(template: str, expected: str) -> None:
    assert substitute(template, ENV).value == expected


def test_unset_without_default_is_blank_and_reported() -> None:
    result = substitute("${A}-$B-${C:-x}", {})
    assert result.value == "--x"
    assert result.unset == ["A", "B"]


@pytest.mark.parametrize("template,message", [
    ("${UNSET:?need it}", "required variable UNSET is missing: need it"),
    ("${UNSET?need it}", "required variable UNSET is missing: need it"),
    ("${EMPTY:?need it}", "required variable EMPTY is empty: need it"),
    ("${UNSET:?}", "required variable UNSET is missing"),
    ("${UNSET?$MSG}", "required variable UNSET is missing: from MSG"),
    ("${UNSET:-${INNER2:?nested}}", "required variable INNER2 is missing: nested"),
])
def test_required(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        substitute(template, ENV)
    assert info.value.message == message


@pytest.mark.parametrize("template,fragment", [
    ("${}", 'invalid interpolation "${}"'),
    ("${ SET}", 'invalid interpolation "${ SET}"'),
    ("${1ABC}", 'invalid interpolation "${1ABC}"'),
    ("${SET", 'invalid interpolation "${SET": missing the closing "}"'),
    ("${SET/a/b}", 'after the name SET expected "}"'),
    ("${SET:-${X}", "missing the closing"),
])
def test_malformed(template: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        substitute(template, ENV)
    assert fragment in info.value.message


STACK = """\
services:
  web:
    image: "nginx:${TAG:?need TAG}"
    environment:
      A: ${SET}
      B: $UNSET_B
      C: ${UNSET_B}
    command: [echo, "${BAD"]
    ports:
      - 80
x-top: &anchor ${SET}
x-alias: *anchor
"""


def test_tree_collects_every_error_with_position_and_path() -> None:
    tree = load_yaml(STACK, "stack.yml")
    result = interpolate_tree(tree, ENV)
    assert [str(e) for e in result.errors] == [
        "stack.yml:3:12: services.web.image: required variable TAG is missing: need TAG",
        'stack.yml:8:21: services.web.command[1]: invalid interpolation "${BAD": '
        'missing the closing "}"',
    ]


def test_tree_warns_once_per_unset_variable_at_first_use() -> None:
    tree = load_yaml(STACK.replace(":?need TAG", ":-1").replace("${BAD", "$SET"), "stack.yml")
    result = interpolate_tree(tree, ENV)
    assert not result.errors
    assert [str(w) for w in result.warnings] == [
        'stack.yml:6:10: services.web.environment.B: the "UNSET_B" variable is not set, '
        "defaulting to a blank string",
    ]
    env = result.tree["services"]["web"]["environment"]
    assert env == {"A": "value", "B": "", "C": ""}
    assert result.tree["services"]["web"]["ports"] == [80]  # non-strings untouched


def test_tree_is_new_and_keeps_positions() -> None:
    tree = load_yaml("a:\n  b: ${SET}\n  c: [$SET]\n${SET}: k\n", "f.yml")
    before = strip_positions(tree)
    result = interpolate_tree(tree, ENV)
    assert strip_positions(tree) == before  # the input is unchanged
    assert result.tree["a"]["b"] == "value"
    assert result.tree["a"]["c"] == ["value"]
    assert "${SET}" in result.tree  # keys are not interpolated
    assert result.tree["a"].val_pos["b"] == Pos("f.yml", 2, 6)
    assert result.tree["a"]["c"].item_pos[0] == Pos("f.yml", 3, 7)
    assert result.tree["a"] is not tree["a"]


def test_aliases_are_unshared_in_the_result() -> None:
    tree = load_yaml("x: &a {v: $SET}\ny: *a\n", "f.yml")
    assert tree["x"] is tree["y"]
    result = interpolate_tree(tree, ENV)
    assert result.tree["x"] == result.tree["y"] == {"v": "value"}
    assert result.tree["x"] is not result.tree["y"]


from hypothesis import given, settings, strategies as st  # noqa: E402

_TEXT = st.text(alphabet=st.sampled_from(list("${}:-+?_aZ9 $$")), max_size=30)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_any_text_interpolates_or_raises_template_error(text: str) -> None:
    try:
        result = substitute(text, ENV)
    except TemplateError:
        return
    assert isinstance(result.value, str)
    if "$" not in text:
        assert result.value == text
