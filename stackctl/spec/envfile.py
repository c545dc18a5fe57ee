"""The ``.env`` / ``env_file`` format, read as Compose reads it.

One variable a line::

    # a comment line; blank lines are ignored
    PLAIN=value with spaces   # an inline comment needs a blank before the "#"
    export EXPORTED=1          # "export " in front is allowed (the file can be sourced)
    SINGLE='taken $literally, \\' is a quote'
    DOUBLE="escapes \\n \\t \\" \\\\ \\$, ${INTERPOLATED}, and
    several lines"
    YAML_STYLE: also accepted
    FROM_ENV                   # a name alone: the value comes from the environment

- Unquoted and double-quoted values are interpolated with the operators of
  :mod:`stackctl.spec.interpolate`; names are looked up in ``environ`` first, then among the
  variables defined earlier in the same file (Compose's order). An unset name gives "".
- Single-quoted values are literal; ``\\'`` is a quote.
- Double-quoted values understand ``\\n \\r \\t \\a \\b \\f \\v \\\\ \\" \\'`` and ``\\$`` (a
  literal ``$``); a backslash before any other character is dropped.
- Quoted values may span lines. Text after the closing quote must be a comment.
- A name alone (``FROM_ENV``, or ``export FROM_ENV``) takes its value from ``environ``; when
  ``environ`` does not have it, the name is left out of the result (Compose does the same).
- Names: a letter or ``_`` first, then letters, digits, ``_``, ``.`` and ``-``.

Every error of a file is reported at once, each as ``file:line:col: message``.
:func:`parse_env_file` is pure; :func:`read_env_file` is the thin wrapper that reads a file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from stackctl.errors import Issue, Pos, SpecError
from stackctl.spec.interpolate import TemplateError, substitute

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


class _Lookup(Mapping[str, str]):
    """``environ`` first, then the variables defined so far in the file."""

    def __init__(self, environ: Mapping[str, str], defined: dict[str, str]) -> None:
        self.environ = environ
        self.defined = defined

    def __getitem__(self, key: str) -> str:
        if key in self.environ:
            return self.environ[key]
        return self.defined[key]

    def __iter__(self):  # pragma: no cover - not used by substitute
        return iter({**self.defined, **self.environ})

    def __len__(self) -> int:  # pragma: no cover
        return len({**self.defined, **self.environ})


def parse_env_file(text: str, filename: str,
                   environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Parse an env file's text; return its variables in file order.

    ``environ`` serves interpolation and names written alone. Raises :class:`SpecError` with
    every problem found (``filename:line:col: ...``).
    """
    env = environ or {}
    parser = _Parser(text, filename)
    result: dict[str, str] = {}
    lookup = _Lookup(env, result)
    for entry in parser.entries():
        key, raw, quote, pos = entry
        if raw is None:
            if key in env:
                result[key] = env[key]
            continue
        if quote == "'":
            result[key] = raw
            continue
        try:
            result[key] = substitute(raw, lookup).value
        except TemplateError as exc:
            parser.issues.append(Issue(f"{key}: {exc.message}", pos=pos))
    if parser.issues:
        raise SpecError(sorted(parser.issues, key=lambda i: (i.pos.line, i.pos.col)))
    return result


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.text = text.replace("\r\n", "\n")
        if self.text.startswith("\ufeff"):
            self.text = self.text[1:]
        self.filename = filename
        self.i = 0
        self.line = 1
        self.line_start = 0
        self.issues: list[Issue] = []
        self._counted_to, self._counted_line = 0, 1

    def pos(self, i: int | None = None) -> Pos:
        i = self.i if i is None else i
        # lines counted on from the last position asked for (positions come in file order):
        # counting from the start each time made a file of many lines quadratic
        if i >= self._counted_to:
            self._counted_line += self.text.count("\n", self._counted_to, i)
        else:
            self._counted_line = self.text.count("\n", 0, i) + 1
        self._counted_to = i
        line_start = self.text.rfind("\n", 0, i) + 1
        return Pos(self.filename, self._counted_line, i - line_start + 1)

    def _skip_blanks(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self.i += 1

    def _skip_line(self) -> None:
        j = self.text.find("\n", self.i)
        self.i = len(self.text) if j < 0 else j + 1

    def _at_line_end(self) -> bool:
        return self.i >= len(self.text) or self.text[self.i] == "\n"

    def entries(self):
        """Yield (key, raw value or None, quote char or "", value position)."""
        text = self.text
        while self.i < len(text):
            self._skip_blanks()
            if self._at_line_end():
                self.i += 1
                continue
            if text[self.i] == "#":
                self._skip_line()
                continue
            if text.startswith("export", self.i) and self.i + 6 < len(text) \
                    and text[self.i + 6] in " \t":
                self.i += 6
                self._skip_blanks()
            start = self.i
            m = _KEY.match(text, self.i)
            if not m:
                end = text.find("\n", self.i)
                bad = text[self.i:end if end >= 0 else len(text)][:80]  # not a copy of the rest
                self.issues.append(Issue(
                    f"invalid line {bad!r}: expected NAME=VALUE, where NAME starts with a "
                    "letter or \"_\" and holds letters, digits, \"_\", \".\" or \"-\"",
                    pos=self.pos(start)))
                self._skip_line()
                continue
            key = m.group()
            self.i = m.end()
            self._skip_blanks()
            if self._at_line_end() or text[self.i] == "#":
                self._skip_line()
                yield key, None, "", self.pos(start)
                continue
            sep = text[self.i]
            if sep not in "=:" or (sep == ":" and not (self.i + 1 >= len(text)
                                                       or text[self.i + 1] in " \t\n")):
                self.issues.append(Issue(
                    f"invalid line for {key}: expected \"=\" after the name, got {sep!r}",
                    pos=self.pos()))
                self._skip_line()
                continue
            self.i += 1
            self._skip_blanks()
            vpos = self.pos()
            entry = self._value(key, vpos)
            if entry is not None:
                yield key, entry[0], entry[1], vpos

    def _value(self, key: str, vpos: Pos) -> tuple[str, str] | None:
        text = self.text
        if self.i < len(text) and text[self.i] in "'\"":
            quote = text[self.i]
            body, end = _quoted(text, self.i + 1, quote)
            if end < 0:
                self.issues.append(Issue(
                    f"{key}: the {'single' if quote == chr(39) else 'double'} quote opened "
                    "here is never closed", pos=vpos))
                self.i = len(text)
                return None
            self.i = end + 1
            self._skip_blanks()
            if not self._at_line_end() and text[self.i] != "#":
                self.issues.append(Issue(
                    f"{key}: unexpected text after the closing quote (quote the whole value, "
                    "or put a comment after a blank and a \"#\")", pos=self.pos()))
            self._skip_line()
            if quote == "'":
                return body.replace("\\'", "'"), quote
            return _unescape_double(body), quote
        j = text.find("\n", self.i)
        line = text[self.i:] if j < 0 else text[self.i:j]
        self.i = len(text) if j < 0 else j + 1
        m = re.search(r"[ \t]#", line)
        if m:
            line = line[:m.start()]
        return line.strip(), ""


def _quoted(text: str, start: int, quote: str) -> tuple[str, int]:
    """The body of a quoted value and the index of its closing quote (-1 if unclosed)."""
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            i += 2
            continue
        if c == quote:
            return text[start:i], i
        i += 1
    return text[start:], -1


def _unescape_double(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            elif nxt == "$":
                out.append("$$")  # stays a literal "$" through interpolation
            else:
                out.append(nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


MAX_ENV_FILE_CHARS = 64 * 1024 * 1024  # a bound on what is read (docs/security.md)


def read_env_file(path: str, environ: Mapping[str, str] | None = None, *,
                  required: bool = True, where: Pos | None = None,
                  key_path: str = "") -> dict[str, str]:
    """Read and parse the env file at ``path`` (the one I/O wrapper of this module).

    A missing file is an error unless ``required`` is false (then it gives ``{}``). ``where``
    and ``key_path`` say where the file was named, for the error message.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(MAX_ENV_FILE_CHARS + 1)
        if len(text) > MAX_ENV_FILE_CHARS:
            raise SpecError(Issue(f"env file {path} is larger than "
                                  f"{MAX_ENV_FILE_CHARS // (1024 * 1024)} MiB", key_path, where))
    except FileNotFoundError:
        if not required:
            return {}
        raise SpecError(Issue(f"env file {path} not found", key_path, where),
                        hint="create it, or fix the path") from None
    except IsADirectoryError:
        raise SpecError(Issue(f"env file {path} is a directory, not a file", key_path,
                              where)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(Issue(f"cannot read env file {path}: {reason}", key_path,
                              where)) from None
    return parse_env_file(text, path, environ)
