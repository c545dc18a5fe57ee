"""stackctl.shellwords.split is shlex.split, in linear time: the two agree on random input
(words, or shlex's ValueError message), and a long word costs linear time."""

from __future__ import annotations

import shlex

from hypothesis import given
from hypothesis import strategies as st

from fuzz_settings import FUZZ, bounded
from stackctl import shellwords


def _outcome(fn, text):
    try:
        return fn(text)
    except ValueError as exc:
        return str(exc)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list(" \t\n\r'\"\\ab$#;|\x0b\xa0é")), max_size=40))
def test_same_words_as_shlex(text):
    assert _outcome(shellwords.split, text) == _outcome(shlex.split, text)


@FUZZ
@given(text=st.text(max_size=60))
def test_same_words_as_shlex_any_text(text):
    assert _outcome(shellwords.split, text) == _outcome(shlex.split, text)


def test_long_words_are_linear():
    for text in ("a" * 5_000_000, '"' + "a\\\"" * 500_000 + '"', "'" + "b" * 5_000_000,
                 "x " * 1_000_000):
        with bounded(15):
            _outcome(shellwords.split, text)
