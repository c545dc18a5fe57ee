"""Variable interpolation, as Compose does it: ``$VAR``, ``${VAR}`` and the shell-like operators.

Supported, with the meaning Compose gives them:

===================  ==========================================================================
``$VAR``, ``${VAR}``  the value; unset gives "" and a warning
``${VAR:-d}``         ``d`` when VAR is unset or empty
``${VAR-d}``          ``d`` when VAR is unset
``${VAR:?msg}``       an error when VAR is unset or empty
``${VAR?msg}``        an error when VAR is unset
``${VAR:+alt}``       ``alt`` when VAR is set and not empty, else ""
``${VAR+alt}``        ``alt`` when VAR is set, else ""
``$$``                a literal ``$``
===================  ==========================================================================

Defaults, alternatives and messages are themselves interpolated (``${A:-${B:-x}}``,
``${A?$MSG}``), but only when they are used. A ``$`` that does not start a variable name
(``$1``, ``$ ``, a trailing ``$``) is kept as it is; a malformed ``${...}`` is an error.

Interpolation applies to every string value of the tree, never to keys. The input is never
changed: :func:`interpolate_tree` builds a new tree (YAML aliases share objects, so changing one
place in place would change the others).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from stackctl.errors import Issue, Pos
from stackctl.spec.record import Record
from stackctl.spec.yamlpos import PDict, PList, format_path

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
# ``${A:-${B:-...}}`` nests; each level is a Python call. Compose files nest two or three
# levels; deeper is refused with a clear error instead of exhausting the stack.
MAX_NESTING = 50


def _shown(text: str, limit: int = 80) -> str:
    """A piece of the text for an error message: on one line, and not too long."""
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[:limit] + "..."


class TemplateError(Exception):
    """A string could not be interpolated. Internal: callers turn it into a located Issue."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.variable = variable


class Substitution(Record):
    """The result of interpolating one string; ``unset``: the variables used without a value
    or default."""

    __slots__ = ("value", "unset")

    def __init__(self, value: str, unset: list[str] | None = None) -> None:
        self.value = value
        self.unset = [] if unset is None else unset


def substitute(text: str, environ: Mapping[str, str]) -> Substitution:
    """Interpolate one string. Raises :class:`TemplateError` (malformed, or a required
    variable missing)."""
    unset: list[str] = []
    value = _expand(text, environ, unset, 0)
    return Substitution(value, unset)


def _expand(text: str, env: Mapping[str, str], unset: list[str], depth: int) -> str:
    if "$" not in text:
        return text
    if depth > MAX_NESTING:
        raise TemplateError(f"invalid interpolation: variables are nested deeper than "
                            f"{MAX_NESTING} levels (${{A:-${{B:-...}}}})")
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        nxt = text[j + 1] if j + 1 < n else ""
        if nxt == "$":
            out.append("$")
            i = j + 2
        elif nxt == "{":
            end, deepest = _closing_brace(text, j + 2)
            if depth + deepest > MAX_NESTING:
                raise TemplateError(f"invalid interpolation: variables are nested deeper than "
                                    f"{MAX_NESTING} levels (${{A:-${{B:-...}}}})")
            if end < 0:
                raise TemplateError(
                    f'invalid interpolation "{_shown(text[j:])}": missing the closing "}}"')
            out.append(_braced(text[j + 2:end], text[j:end + 1], env, unset, depth))
            i = end + 1
        else:
            m = _NAME.match(text, j + 1)
            if m:
                out.append(_lookup(m.group(), env, unset))
                i = m.end()
            else:  # not a variable: keep the "$" as written
                out.append("$")
                i = j + 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> tuple[int, int]:
    """Index of the "}" closing a "${" whose body starts at ``start`` (-1 if there is none),
    and how deep "${" nest inside it."""
    depth = deepest = 0
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c == "$" and i + 1 < n and text[i + 1] == "$":
            i += 2
            continue
        if c == "$" and i + 1 < n and text[i + 1] == "{":
            depth += 1
            deepest = max(deepest, depth)
            i += 2
            continue
        if c == "}":
            if depth == 0:
                return i, deepest
            depth -= 1
        i += 1
    return -1, deepest


def _lookup(name: str, env: Mapping[str, str], unset: list[str]) -> str:
    value = env.get(name)
    if value is None:
        unset.append(name)
        return ""
    return value


def _braced(body: str, whole: str, env: Mapping[str, str], unset: list[str], depth: int) -> str:
    m = _NAME.match(body)
    if not m:
        raise TemplateError(
            f'invalid interpolation "{_shown(whole)}": a variable name must start with a letter or "_" '
            "and hold only letters, digits and \"_\" (write $$ for a literal $)")
    name = body[:m.end()]
    rest = body[m.end():]
    if not rest:
        return _lookup(name, env, unset)
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise TemplateError(
            f'invalid interpolation "{_shown(whole)}": after the name {name} expected "}}" or one of '
            ":-  -  :?  ?  :+  +")
    word = rest[len(op):]
    value = env.get(name)
    is_set = value is not None
    nonempty = bool(value)
    present = nonempty if op.startswith(":") else is_set
    kind = op[-1]
    if kind == "-":
        return value if present else _expand(word, env, unset, depth + 1)  # type: ignore[return-value]
    if kind == "+":
        return _expand(word, env, unset, depth + 1) if present else ""
    # "?": required
    if present:
        return value  # type: ignore[return-value]
    message = _expand(word, env, unset, depth + 1)
    state = "empty" if is_set else "missing"
    text = f"required variable {name} is {state}"
    if message:
        text += f": {_shown(message, 200)}"
    raise TemplateError(text, variable=name)


# --------------------------------------------------------------------------------------------
# Trees


class Interpolated(Record):
    """A new tree with every string interpolated, and what was found on the way (``unset``:
    the first use of each unset variable)."""

    __slots__ = ("tree", "errors", "warnings", "unset")

    def __init__(self, tree: Any, errors: list[Issue] | None = None,
                 warnings: list[Issue] | None = None,
                 unset: dict[str, Issue] | None = None) -> None:
        self.tree = tree
        self.errors = [] if errors is None else errors
        self.warnings = [] if warnings is None else warnings
        self.unset = {} if unset is None else unset


def unset_warning(name: str, path: str = "", pos: Pos | None = None) -> Issue:
    """The warning for a variable that is used but not set (as Compose words it)."""
    return Issue(f'the "{name}" variable is not set, defaulting to a blank string', path, pos)


def interpolate_tree(tree: Any, environ: Mapping[str, str]) -> Interpolated:
    """Interpolate every string value of ``tree`` (not keys). Pure; never changes ``tree``.

    Every error of the tree is collected (each with its position and key path); one warning is
    made per unset variable, at its first use.
    """
    result = Interpolated(None)
    result.tree = _walk(tree, environ, [], tree_pos(tree), result)
    result.warnings = list(result.unset.values())
    return result


def tree_pos(node: Any) -> Pos | None:
    return getattr(node, "pos", None)


def _walk(node: Any, env: Mapping[str, str], path: list[Any], pos: Pos | None,
          result: Interpolated) -> Any:
    if isinstance(node, str):
        try:
            sub = substitute(node, env)
        except TemplateError as exc:
            result.errors.append(Issue(exc.message, format_path(path), pos))
            return node
        for name in sub.unset:
            if name not in result.unset:
                result.unset[name] = unset_warning(name, format_path(path), pos)
        return sub.value
    if isinstance(node, dict):
        new = type(node)(pos=getattr(node, "pos", None)) if isinstance(node, PDict) else {}
        for key, value in node.items():
            vpos = node.val_pos.get(key, pos) if isinstance(node, PDict) else pos
            path.append(key)
            new[key] = _walk(value, env, path, vpos, result)
            path.pop()
        if isinstance(node, PDict):
            new.key_pos = dict(node.key_pos)
            new.val_pos = dict(node.val_pos)
        return new
    if isinstance(node, list):
        new = type(node)(pos=node.pos) if isinstance(node, PList) else []
        for i, value in enumerate(node):
            ipos = pos
            if isinstance(node, PList) and i < len(node.item_pos):
                ipos = node.item_pos[i] or pos
            path.append(i)
            new.append(_walk(value, env, path, ipos, result))
            path.pop()
        if isinstance(node, PList):
            new.item_pos = list(node.item_pos)
        return new
    return node
