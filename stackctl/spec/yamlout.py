"""``config``'s YAML, written directly: the text PyYAML's emitter writes for the normalized
stack (:func:`stackctl.spec.dump.to_yaml`), ~20x faster.

PyYAML's pure-Python serializer and emitter took ~1.7 s (CPU) to print the 400-service bench
file (27,000 lines), for a layout that is simple: block mappings and sequences (sequences
indented under their key, as Compose prints them), scalars on one line. libyaml's emitter
cannot indent sequences that way, so :func:`emit` writes the layout itself and asks PyYAML
only what PyYAML decides per scalar, with PyYAML's own code: the scalar analysis
(``Emitter.analyze_scalar``) and the implicit resolution (``Resolver.resolve``), cached per
distinct string. The style then follows PyYAML's ``choose_scalar_style`` for block context.

Anything outside that well-trodden subset returns None, and the caller lets PyYAML print the
whole document as before: a string with a line break, special characters (double quotes
with escapes), a long key (``? key``), a plain or quoted string with spaces that could reach
the 100-column fold, a sequence directly inside a sequence, a non-string key, a shared
container (PyYAML would print an anchor), a type that is not plain data.
``tests/unit/spec/test_yamlout.py`` compares the two on random trees.
"""

from __future__ import annotations

import io
from typing import Any

WIDTH = 100  # to_yaml's width
_STR = "tag:yaml.org,2002:str"
_BREAKS = ("\n", "\x85", "\u2028", "\u2029")
_QUOTED_WORDS = frozenset(("y", "n", "yes", "no", "on", "off"))  # dump._str_representer


class _Unsupported(Exception):
    """This document goes to PyYAML."""


class _Scalars:
    """PyYAML's decisions about scalars, asked of one dumper of ``to_yaml``'s class."""

    def __init__(self, dumper_class: type) -> None:
        self.dumper = dumper_class(io.StringIO(), allow_unicode=True, width=WIDTH)
        self.cache: dict[tuple[str, bool], str] = {}

    def string(self, value: str, key: bool) -> str:
        """The written form of the string ``value`` (a key when ``key``); a string with line
        breaks comes back as ``"|"``: :func:`_literal` writes it (its lines depend on the
        indentation)."""
        got = self.cache.get((value, key))
        if got is not None:
            return got
        if "\n" in value and not key and not any(b in value for b in _BREAKS[1:]):
            # dump's representer asks for a literal block; PyYAML takes it where it can
            if not self.dumper.analyze_scalar(value).allow_block or value.endswith("\n\n") \
                    or value == "\n":
                raise _Unsupported  # double quotes, or `|+` (and a `...` after it)
            self.cache[(value, key)] = "|"
            return "|"
        if any(b in value for b in _BREAKS):
            raise _Unsupported  # a key over several lines, or other line breaks
        analysis = self.dumper.analyze_scalar(value)
        if key and (analysis.empty or len(analysis.scalar) + len("!!str") >= 128):
            raise _Unsupported  # not a simple key (its tag counts too): `? key`
        if value.lower() in _QUOTED_WORDS:  # dump's representer asks for double quotes
            if not value.isalpha():
                raise _Unsupported
            out = f'"{value}"'
        elif (self.dumper.resolve(_ScalarNode, value, (True, False)) == _STR
              and analysis.allow_block_plain and not analysis.empty):
            out = value
        elif analysis.allow_single_quoted:
            out = "'" + value.replace("'", "''") + "'"
        else:
            raise _Unsupported  # double quotes with escapes
        self.cache[(value, key)] = out
        return out

    def other(self, value: Any) -> str:
        """A non-string scalar, as SafeRepresenter represents it (checked to read back plain)."""
        if value is None:
            text, tag = "null", "tag:yaml.org,2002:null"
        elif value is True or value is False:
            text, tag = ("true" if value else "false"), "tag:yaml.org,2002:bool"
        elif type(value) is int:
            text, tag = str(value), "tag:yaml.org,2002:int"
        elif type(value) is float:
            if value != value:
                text = ".nan"
            elif value in (float("inf"), float("-inf")):
                text = ".inf" if value > 0 else "-.inf"
            else:
                text = repr(value).lower()
                if "." not in text and "e" in text:
                    text = text.replace("e", ".0e", 1)
            tag = "tag:yaml.org,2002:float"
        else:
            raise _Unsupported
        if self.dumper.resolve(_ScalarNode, text, (True, False)) != tag:
            raise _Unsupported
        return text


_ScalarNode: Any = None  # yaml.ScalarNode, set on first use


def emit(data: Any, dumper_class: type) -> str | None:
    """``yaml.dump(data, Dumper=dumper_class, sort_keys=False, default_flow_style=False,
    allow_unicode=True, width=100)`` for ``to_yaml``'s dumper (block sequences indented), or
    None where :func:`emit` leaves it to PyYAML (see the module's doc)."""
    global _ScalarNode
    if _ScalarNode is None:
        import yaml

        _ScalarNode = yaml.ScalarNode
    if not isinstance(data, dict) or not data:
        return None
    out: list[str] = []
    try:
        _Writer(_Scalars(dumper_class), out).mapping(data, 0, first_col=None)
    except _Unsupported:
        return None
    return "".join(out)


class _Writer:
    def __init__(self, scalars: _Scalars, out: list[str]) -> None:
        self.s = scalars
        self.out = out
        self.seen: set[int] = set()

    def _once(self, container: Any) -> None:
        if id(container) in self.seen:
            raise _Unsupported  # PyYAML would write an anchor and an alias
        self.seen.add(id(container))

    def value(self, value: Any, col: int, indent: int) -> str:
        """A scalar (or empty collection) written at column ``col`` (after its ``key: `` or
        ``- ``), in a block whose lines go at ``indent``: its text, or raises for a
        plain/quoted string that might fold."""
        if isinstance(value, str):
            text = self.s.string(value, key=False)
            if text == "|":
                return _literal(value, indent)
            if " " in text and col + len(text) > WIDTH:
                raise _Unsupported  # PyYAML may fold it at a space
            return text
        if isinstance(value, dict):
            self._once(value)
            return "{}"
        if isinstance(value, list):
            self._once(value)
            return "[]"
        return self.s.other(value)

    def mapping(self, data: dict, indent: int, first_col: int | None) -> None:
        """A non-empty mapping whose keys go at ``indent``; the first key continues the
        current line (after ``- ``) when ``first_col`` is given."""
        self._once(data)
        out = self.out
        first = True
        for key, value in data.items():
            if not isinstance(key, str):
                raise _Unsupported
            k = self.s.string(key, key=True)
            if not (first and first_col is not None):
                out.append(" " * indent)
            first = False
            col = indent + len(k) + 2
            if isinstance(value, dict) and value:
                out.append(k + ":\n")
                self.mapping(value, indent + 2, None)
            elif isinstance(value, list) and value:
                out.append(k + ":\n")
                self.sequence(value, indent + 2)
            else:
                out.append(f"{k}: {self.value(value, col, indent + 2)}\n")

    def sequence(self, data: list, indent: int) -> None:
        self._once(data)
        out = self.out
        pad = " " * indent
        for item in data:
            if isinstance(item, dict) and item:
                out.append(pad + "- ")
                self.mapping(item, indent + 2, first_col=indent + 2)
            elif isinstance(item, list) and item:
                raise _Unsupported  # a sequence in a sequence: PyYAML's own layout
            else:
                out.append(f"{pad}- {self.value(item, indent + 2, indent + 2)}\n")


def _literal(text: str, indent: int) -> str:
    """PyYAML's ``write_literal`` for ``text`` (only ``\\n`` breaks; not ending in two), the
    content at ``indent``, without the final line break (the caller adds it)."""
    hints = "2" if text[0] in " \n" else ""  # the content's indentation, when it must say
    if text[-1] != "\n":
        hints += "-"
    out = ["|" + hints, "\n"]
    pad = " " * indent
    breaks = True
    start = end = 0
    while end <= len(text):
        ch = text[end] if end < len(text) else None
        if breaks:
            if ch is None or ch != "\n":
                out.append("\n" * (end - start))
                if ch is not None:
                    out.append(pad)
                start = end
        elif ch is None or ch == "\n":
            out.append(text[start:end])
            start = end
        if ch is not None:
            breaks = ch == "\n"
        end += 1
    text_out = "".join(out)
    return text_out[:-1] if text_out.endswith("\n") else text_out
