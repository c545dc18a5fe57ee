"""config's YAML written directly (stackctl/spec/yamlout.py) is exactly PyYAML's text, or
None (PyYAML prints it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stackctl.spec.dump import _Dumper, stack_data
from stackctl.spec.load import LoadOptions, load_project
from stackctl.spec.yamlout import emit

ROOT = Path(__file__).resolve().parents[3]


def pyyaml(data):
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)


def same_or_none(data):
    got = emit(data, _Dumper)
    if got is not None:
        assert got == pyyaml(data)
    return got


# strings that exercise PyYAML's decisions: implicit types, indicators, quotes, spaces,
# unicode, YAML 1.1 words, lengths around the 100-column fold and the 128-character key
_WORDS = st.sampled_from([
    "", " ", "a b", "yes", "No", "ON", "off", "y", "true", "False", "null", "~", "123", "0x1F",
    "1.5", "1e3", ".inf", "1:30", "2001-12-14", "-", "- a", "a: b", "a:b", "a #b", "#a", "@x",
    "`x", "'q'", '"q"', "it's", "a\tb", "é", "日本", "\u00a0x", "x\x07", "a\nb", "<<", "=", "!x",
    "&a", "*a", "%x", "|", ">", "?", "? x", "[a]", "{a}", "a,b", "sh -c 'exit 1'", "x" * 99,
    ("word " * 30).strip(), "k" * 122, "k" * 123,
    "a\nb\n", "a\n\nb", " a\nb", "\na", "a\n", "a\n\n", "\n", "a \nb", "a\n b\n  c",
    "set -e\necho 'x' | nc -l -p 1\n", "a\x85b", "a\u2028b", "#!/bin/sh\nexec x\n",
])
_TEXT = st.one_of(_WORDS, st.text(max_size=12), st.text(alphabet="ab :-'#", max_size=130),
                  st.text(alphabet="ab \n", max_size=20))
_SCALAR = st.one_of(_TEXT, st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True))
_TREE = st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_TEXT, _TREE, min_size=1, max_size=5))
def test_random_trees_print_as_pyyaml_prints_them(data):
    same_or_none(data)


def test_a_shared_container_is_left_to_pyyaml():
    shared = {"a": 1}
    assert emit({"x": shared, "y": shared}, _Dumper) is None
    assert "&id001" in pyyaml({"x": shared, "y": shared})


@pytest.mark.parametrize("stack", sorted((ROOT / "examples" / "stacks").glob("*/*.yml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_examples_print_as_before_and_directly(stack):
    try:
        project = load_project(LoadOptions(files=[str(stack)], environ={}, cwd=str(stack.parent)))
    except Exception:  # noqa: BLE001 - a partial example (an override file alone)
        pytest.skip("not a whole stack")
    data = stack_data(project.stack)
    assert same_or_none(data) is not None  # the direct writer takes real stacks


# trees shaped as config's output (identifier keys, lists of scalars or mappings): the direct
# writer must take nearly all of them, and write exactly PyYAML's text
_KEY = st.from_regex(r"\A[a-z_][a-z0-9_.-]{0,14}\Z")
_VALUE_TEXT = st.one_of(st.text(alphabet="abc -:/.'0123yesnotrul#", max_size=40),
                        st.text(alphabet="ab c\n", min_size=1, max_size=30), _WORDS)
_LEAF = st.one_of(_VALUE_TEXT, st.none(), st.booleans(), st.integers(-10**6, 10**12),
                  st.floats(allow_nan=False, allow_infinity=False, width=32))
_SHAPED = st.recursive(_LEAF, lambda inner: st.one_of(
    st.lists(st.one_of(_LEAF, st.dictionaries(_KEY, inner, max_size=3)), max_size=3),
    st.dictionaries(_KEY, inner, max_size=4)), max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEY, _SHAPED, min_size=1, max_size=6))
def test_config_shaped_trees_are_written_directly(data):
    same_or_none(data)


def test_most_config_shaped_trees_take_the_direct_path():
    taken = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(st.dictionaries(_KEY, _SHAPED, min_size=1, max_size=6))
    def count(data):
        taken.append(emit(data, _Dumper) is not None)

    count()
    assert sum(taken) > 0.5 * len(taken), f"{sum(taken)} of {len(taken)}"
