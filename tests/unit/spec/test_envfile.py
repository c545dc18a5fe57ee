"""The .env / env_file format."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackctl.errors import SpecError
from stackctl.spec.envfile import parse_env_file, read_env_file


def parse(text: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    return parse_env_file(text, ".env", environ)


@pytest.mark.parametrize("line,value", [
    ("VAR=VAL", "VAL"),
    ("VAR=  spaced value  ", "spaced value"),
    ('VAR="VAL"', "VAL"),
    ("VAR='VAL'", "VAL"),
    ("VAR=VAL # comment", "VAL"),
    ("VAR=VAL\t# comment", "VAL"),
    ("VAR=VAL# not a comment", "VAL# not a comment"),
    ('VAR="VAL # not a comment"', "VAL # not a comment"),
    ('VAR="VAL" # comment', "VAL"),
    ("VAR='$OTHER'", "$OTHER"),
    ("VAR='${OTHER}'", "${OTHER}"),
    ("VAR='Let\\'s go!'", "Let's go!"),
    ('VAR="{\\"hello\\": \\"json\\"}"', '{"hello": "json"}'),
    ('VAR="some\\tvalue"', "some\tvalue"),
    ("VAR='some\\tvalue'", "some\\tvalue"),
    ("VAR=some\\tvalue", "some\\tvalue"),
    ('VAR="a\\nb\\\\c"', "a\nb\\c"),
    ('VAR="cost \\$5"', "cost $5"),
    ("VAR=", ""),
    ('VAR=""', ""),
    ("export VAR=exported", "exported"),
    ("VAR: yaml style", "yaml style"),
    ("VAR = around", "around"),
    ("VAR=a=b=c", "a=b=c"),
])
def test_values(line: str, value: str) -> None:
    assert parse(line + "\n") == {"VAR": value}


def test_comments_blank_lines_and_order() -> None:
    text = "# head\n\nB=2\n   # indented comment\nA=1\n\n"
    assert list(parse(text).items()) == [("B", "2"), ("A", "1")]


def test_multiline_quoted_values() -> None:
    text = 'KEY="-----BEGIN-----\nabc\n-----END-----"\nNEXT=1\nS=\'one\ntwo\'\n'
    assert parse(text) == {"KEY": "-----BEGIN-----\nabc\n-----END-----", "NEXT": "1",
                           "S": "one\ntwo"}


def test_interpolation_from_earlier_keys_and_environment() -> None:
    text = ("BASE=/srv\nDATA=${BASE}/data\nQ=\"$BASE/q\"\nLIT='$BASE'\n"
            "DEF=${MISSING:-fallback}\nHOME_DIR=${HOME}\n")
    result = parse(text, {"HOME": "/home/u"})
    assert result == {"BASE": "/srv", "DATA": "/srv/data", "Q": "/srv/q", "LIT": "$BASE",
                      "DEF": "fallback", "HOME_DIR": "/home/u"}


def test_environment_wins_over_earlier_keys_in_lookups() -> None:
    # Compose looks a name up in the environment first, then in the file.
    assert parse("A=file\nB=$A\n", {"A": "env"}) == {"A": "file", "B": "env"}


def test_name_alone_takes_the_environment_or_is_left_out() -> None:
    text = "FROM_ENV\nexport ALSO\nNOT_THERE\n"
    assert parse(text, {"FROM_ENV": "x", "ALSO": "y"}) == {"FROM_ENV": "x", "ALSO": "y"}
    assert parse(text) == {}


def test_crlf_and_bom() -> None:
    assert parse("\ufeffA=1\r\nB=2\r\n") == {"A": "1", "B": "2"}


def test_every_error_of_the_file_with_line_and_column() -> None:
    text = ("GOOD=1\n"
            "1BAD=x\n"
            "OK=${REQ:?set REQ}\n"
            "SPACE IN=x\n"
            "Q='closed' trailing\n"
            'OPEN="never closed\n')
    with pytest.raises(SpecError) as info:
        parse(text)
    assert [str(i) for i in info.value.issues] == [
        ".env:2:1: invalid line '1BAD=x': expected NAME=VALUE, where NAME starts with a letter "
        'or "_" and holds letters, digits, "_", "." or "-"',
        ".env:3:4: OK: required variable REQ is missing: set REQ",
        ".env:4:7: invalid line for SPACE: expected \"=\" after the name, got 'I'",
        ".env:5:12: Q: unexpected text after the closing quote (quote the whole value, or put "
        'a comment after a blank and a "#")',
        ".env:6:6: OPEN: the double quote opened here is never closed",
    ]


def test_read_env_file(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text("A=1\nB=${A}2\n")
    assert read_env_file(str(path)) == {"A": "1", "B": "12"}
    assert read_env_file(str(tmp_path / "nope.env"), required=False) == {}
    with pytest.raises(SpecError) as info:
        read_env_file(str(tmp_path / "nope.env"))
    assert str(info.value) == f"env file {tmp_path}/nope.env not found"
    with pytest.raises(SpecError) as info:
        read_env_file(str(tmp_path))
    assert "is a directory" in str(info.value)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("AB=#'\"\\$ {}:-\n\texport")), max_size=40))
def test_any_text_parses_or_raises_spec_error(text: str) -> None:
    try:
        result = parse(text, {"A": "1"})
    except SpecError as exc:
        assert all(i.pos is not None for i in exc.issues)
        return
    assert all(isinstance(v, str) for v in result.values())
