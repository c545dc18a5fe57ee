"""Dockerfiles (stackctl/runtime/images/build/dockerfile.py) and the shell-word expansion of
their arguments (words.py): random instructions, flags, continuations, directives, quotes
and ``${...}`` forms. Only a DockerfileError/ExpandError (StackctlError, one line) comes out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fuzz_settings import FUZZ, bounded
from stackctl.runtime.images.build import dockerfile, words

INSTRUCTIONS = ["FROM", "RUN", "CMD", "ENTRYPOINT", "ENV", "ARG", "COPY", "ADD", "WORKDIR",
                "USER", "LABEL", "EXPOSE", "VOLUME", "SHELL", "HEALTHCHECK", "ONBUILD",
                "STOPSIGNAL", "MAINTAINER", "from", "BOGUS", "#", "# syntax=x", "# escape=`",
                "# escape=\\", "# escape=x"]
pieces = st.one_of(
    st.sampled_from(["a", "b=c", "--from=x", "--chown=1:1", "--interval=5s", "--x", "AS", "s1",
                     "[", "]", '["sh", "-c"]', '["a"', "NONE", "CMD", "$X", "${X}", "${X:-d}",
                     "${X:+a}", "${X?err}", "${", "${X", "${X:", "'q", '"q', "\\", "`", "=",
                     "\\\n", "`\n", "\n", "\t", " "]),
    st.text(max_size=8))
lines = st.lists(st.tuples(st.sampled_from(INSTRUCTIONS), st.lists(pieces, max_size=6)),
                 max_size=8).map(lambda ls: "\n".join(i + " " + " ".join(p) for i, p in ls))
env = st.dictionaries(st.sampled_from(["X", "Y", "HOME"]), st.text(max_size=5), max_size=3)


def _walk(df) -> None:
    """What the builder does with each instruction's arguments."""
    for ins in df.instructions:
        ins.words  # noqa: B018 - a property that splits
        if ins.cmd in ("ENV", "LABEL"):
            dockerfile.key_values(ins)
        elif ins.cmd == "ARG":
            dockerfile.arg_defs(ins)
        elif ins.cmd == "FROM":
            dockerfile.from_parts(ins)


@FUZZ
@given(text=lines)
def test_random_dockerfiles(text):
    with bounded():
        _walk(dockerfile.parse(text))


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text(text):
    with bounded():
        _walk(dockerfile.parse(text))


@FUZZ
@given(word=st.lists(pieces, max_size=10).map("".join), environ=env,
       escape=st.sampled_from(["\\", "`"]))
def test_word_expansion(word, environ, escape):
    with bounded():
        words.expand(word, environ, escape)
    with bounded():
        words.expand_fields(word, environ, escape)
    with bounded():
        words.split_words(word, escape)


def test_deep_substitution_is_bounded():
    with bounded():
        words.expand("${X:-" * 5000 + "x" + "}" * 5000, {})
    with bounded():
        dockerfile.parse("FROM a\nRUN " + "\\\n" * 100_000 + "x\n")
