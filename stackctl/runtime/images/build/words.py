"""Word processing for Dockerfiles, as BuildKit's shell lexer does it (pure).

- :func:`split_words` splits on whitespace outside quotes and keeps quotes and escapes (the
  raw words of ``ENV a="x y" b=2``);
- :func:`expand` removes quotes, honours the escape character and substitutes ``$VAR``,
  ``${VAR}``, ``${VAR:-word}``, ``${VAR-word}``, ``${VAR:+word}``, ``${VAR+word}``,
  ``${VAR:?msg}`` and ``${VAR?msg}``; the result is one string (no field splitting);
- :func:`expand_fields` does the same and then splits on unquoted whitespace (EXPOSE, VOLUME).

Inside single quotes nothing is special; inside double quotes only ``$`` and the escaped
characters ``"``, ``$`` and the escape character itself are. Unset variables expand to "".
"""

from __future__ import annotations

from typing import Mapping

from stackctl.errors import StackctlError


class ExpandError(StackctlError):
    """A variable substitution failed (bad syntax or a ``${VAR?message}`` that fired)."""


def split_words(text: str, escape: str = "\\") -> list[str]:
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if not quote and ch.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        in_word = True
        if ch == escape and i + 1 < len(text) and quote != "'":
            cur.append(ch + text[i + 1])
            i += 2
            continue
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in ("'", '"'):
            quote = ch
        cur.append(ch)
        i += 1
    if in_word:
        words.append("".join(cur))
    return words


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    fields = _Lexer(word, env, escape).run(split=False)
    return fields[0] if fields else ""


def expand_fields(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    return _Lexer(text, env, escape).run(split=True)


MAX_NESTING = 50


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.s, self.env, self.esc = text, env, escape
        self.i = 0
        self.depth = 0  # ${A:-${B:-...}} nesting: each level is a Python call

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1
        return ch

    def run(self, split: bool) -> list[str]:
        fields: list[str] = []
        cur: list[str] = []
        started = False
        while self.i < len(self.s):
            ch = self.peek()
            if split and ch.isspace():
                self.i += 1
                if started:
                    fields.append("".join(cur))
                    cur, started = [], False
                continue
            started = True
            cur.append(self.unit(stop=""))
        if started or not split:
            fields.append("".join(cur))
        return fields

    def unit(self, stop: str) -> str:
        """One piece of a word: a quoted string, an escape, a substitution or a character."""
        ch = self.next()
        if ch == self.esc:
            nxt = self.next()
            return nxt  # at the end of the text the escape character is dropped
        if ch == "'":
            end = self.s.find("'", self.i)
            if end < 0:
                raise ExpandError(f"unexpected end of text while looking for matching ' in {self.s!r}")
            out, self.i = self.s[self.i:end], end + 1
            return out
        if ch == '"':
            return self.double_quoted()
        if ch == "$":
            return self.dollar()
        return ch

    def double_quoted(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise ExpandError(f'unexpected end of text while looking for matching " in {self.s!r}')
            ch = self.next()
            if ch == '"':
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
            elif ch == self.esc:
                nxt = self.peek()
                if nxt in ('"', "$", self.esc) and nxt:
                    out.append(self.next())
                elif nxt:
                    out.append(ch)
            else:
                out.append(ch)

    def name(self) -> str:
        start = self.i
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.i += 1
        return self.s[start:self.i]

    def dollar(self) -> str:
        if self.depth >= MAX_NESTING:
            raise ExpandError(f"substitutions nested deeper than {MAX_NESTING} levels")
        self.depth += 1
        try:
            return self._dollar()
        finally:
            self.depth -= 1

    def _dollar(self) -> str:
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            return self.env.get(name, "")
        self.i += 1
        name = self.name()
        if not name:
            raise ExpandError(f"bad substitution in {self.s!r}: missing variable name after '${{'")
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.next()
        if ch not in ("-", "+", "?"):
            raise ExpandError(f"unsupported modifier {(':' if colon else '') + ch!r} in substitution in {self.s!r}")
        word = self.until_brace()
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if ch == "-":
            return value if is_set else word  # type: ignore[return-value]
        if ch == "+":
            return word if is_set else ""
        if not is_set:
            raise ExpandError(f"{name}: {word or 'is not allowed to be unset'}")
        return value  # type: ignore[return-value]

    def until_brace(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise ExpandError(f"bad substitution in {self.s!r}: missing '}}'")
            if self.peek() == "}":
                self.i += 1
                return "".join(out)
            out.append(self.unit(stop="}"))
