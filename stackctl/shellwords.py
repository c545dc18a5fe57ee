"""Split a string into words as a POSIX shell would, without any expansion: ``shlex.split``'s
result in linear time.

``shlex.split`` builds each word one character at a time (``token = token + char``), which is
quadratic in the word's length: a 1 MB word in a stack file's ``command:`` took minutes. This
splitter takes runs of ordinary characters at once with a regular expression, so its work is
proportional to the input. Same rules as ``shlex.split(s)`` (``posix=True``, no comments):

- unquoted whitespace separates words; a backslash keeps the next character (a trailing one is
  an error: "No escaped character");
- ``'...'`` keeps everything literally;
- ``"..."`` keeps everything but ``\\"``, ``\\\\`` (a backslash before any other character
  stays); an unclosed quote is an error: "No closing quotation".

Errors are ``ValueError`` with shlex's words, so callers written for shlex keep working.
tests/fuzz/test_fuzz_words.py checks the two agree on random input.
"""

from __future__ import annotations

import re

_WHITESPACE = " \t\r\n"
# one piece of a word: a run of plain characters, an escaped character, a quoted string
_PIECE = re.compile(
    r"""(?P<plain>[^ \t\r\n'"\\]+)"""
    r"""|\\(?P<escaped>[\s\S])"""
    r"""|'(?P<single>[^']*)'"""
    r'''|"(?P<double>(?:[^"\\]++|\\[\s\S])*+)"'''
)
_SPACE = re.compile(r"[ \t\r\n]+")
_DOUBLE_ESCAPE = re.compile(r'\\([\\"])')


def split(text: str) -> list[str]:
    """The words of ``text`` (see the module's doc); ``ValueError`` on an unclosed quote or a
    trailing backslash."""
    if not any(c in text for c in "'\"\\"):  # nothing but words and spaces
        return [w for w in _SPACE.split(text) if w]
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        m = _SPACE.match(text, i)
        if m:
            i = m.end()
            if i >= n:
                break
        parts: list[str] = []
        while i < n and text[i] not in _WHITESPACE:
            m = _PIECE.match(text, i)
            if m is None:
                raise ValueError(_unfinished(text, i))
            kind = m.lastgroup
            if kind == "plain":
                parts.append(m.group("plain"))
            elif kind == "escaped":
                parts.append(m.group("escaped"))
            elif kind == "single":
                parts.append(m.group("single"))
            else:
                parts.append(_DOUBLE_ESCAPE.sub(r"\1", m.group("double")))
            i = m.end()
        words.append("".join(parts))
    return words


def _unfinished(text: str, i: int) -> str:
    """shlex's words for the piece at ``i`` that does not end: a backslash at the very end
    (also inside double quotes), else a quote that is not closed."""
    if text[i] == "\\":
        return "No escaped character"
    if text[i] == '"':
        trailing = len(text) - len(text.rstrip("\\"))
        if trailing % 2 == 1 and len(text) - trailing > i:
            return "No escaped character"
    return "No closing quotation"
