"""YAML with positions: every mapping, sequence and value remembers where it was written.

The loader builds plain Python data — ``dict``/``list`` subclasses and scalars — so the rest of
the spec code treats it as ordinary data, while error messages can still say
``stack.yml:14:9``. Positions of scalars are kept by their parent container:

- ``PDict.pos``            where the mapping starts
- ``PDict.key_pos[k]``     where key ``k`` is written
- ``PDict.val_pos[k]``     where the value of ``k`` starts
- ``PList.pos``            where the sequence starts
- ``PList.item_pos[i]``    where item ``i`` starts

YAML anchors, aliases and merge keys (``<<``) work as usual. The Compose merge tags are kept as
markers for the override merge (``stackctl.spec.merge``): ``!reset`` (any value) loads as a
:class:`Reset`; ``!override`` on a mapping or sequence loads as :class:`OverrideDict` /
:class:`OverrideList` (a PDict/PList that says "replace, don't merge"); on a scalar it is the
plain scalar (scalars are replaced anyway). Dates stay strings, and only
``true``/``false`` are booleans (YAML 1.2, as Compose reads files): ``yes``, ``no``, ``on`` and
``off`` are strings.

Pure: :func:`load_yaml` takes text; reading the file is the caller's business.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from stackctl.errors import Issue, Pos, SpecError
from stackctl.spec.yamlimport import compiled, import_yaml

yaml = import_yaml()  # (its unused regular expressions are not compiled: yamlimport.py)


class PDict(dict):
    """A dict that knows where it and its keys and values were written."""

    __slots__ = ("pos", "key_pos", "val_pos")

    def __init__(self, *args: Any, pos: Pos | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pos = pos
        self.key_pos: dict[Any, Pos] = {}
        self.val_pos: dict[Any, Pos] = {}

    def copy_positions_from(self, other: dict, keys: Iterable[Any] | None = None) -> None:
        """Take the positions of ``keys`` (default: all) from ``other`` if it has any."""
        if not isinstance(other, PDict):
            return
        for k in other.keys() if keys is None else keys:
            if k in other.key_pos:
                self.key_pos[k] = other.key_pos[k]
            if k in other.val_pos:
                self.val_pos[k] = other.val_pos[k]
        if self.pos is None:
            self.pos = other.pos


class PList(list):
    """A list that knows where it and its items were written."""

    __slots__ = ("pos", "item_pos")

    def __init__(self, *args: Any, pos: Pos | None = None) -> None:
        super().__init__(*args)
        self.pos = pos
        self.item_pos: list[Pos | None] = []


class OverrideDict(PDict):
    """A mapping tagged ``!override``: it replaces what earlier files said instead of merging."""

    __slots__ = ()


class OverrideList(PList):
    """A sequence tagged ``!override``: it replaces what earlier files said instead of merging."""

    __slots__ = ()


class Reset:
    """The value of a key tagged ``!reset``: the merge removes the key (and what it held)."""

    __slots__ = ("pos",)

    def __init__(self, pos: Pos | None = None) -> None:
        self.pos = pos

    def __repr__(self) -> str:
        return "Reset()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reset)

    def __hash__(self) -> int:
        return hash(Reset)


def pos_of(node: Any) -> Pos | None:
    """The position of a container node, or None for scalars and plain containers."""
    return getattr(node, "pos", None)


def locate(root: Any, path: Iterable[Any], *, key: bool = False) -> Pos | None:
    """The position of the value at ``path`` under ``root``, as deep as the data goes.

    ``path`` holds dict keys and list indexes (as in a validation error's ``loc``). Where the path
    leaves the data (a key that was added by normalization, say), the deepest position found
    on the way is returned. With ``key=True`` the position of the last key itself is preferred
    (useful for "unknown key" errors).
    """
    node = root
    best = pos_of(root)
    parts = list(path)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, dict):
            if part not in node:
                # int-like keys may be reported as strings, and vice versa
                alt = _alt_key(node, part)
                if alt is None:
                    return best
                part = alt
            if isinstance(node, PDict):
                if last and key and part in node.key_pos:
                    return node.key_pos[part]
                best = node.val_pos.get(part) or node.key_pos.get(part) or best
            node = node[part]
        elif isinstance(node, list):
            if not isinstance(part, int) or not -len(node) <= part < len(node):
                return best
            if isinstance(node, PList) and part < len(node.item_pos):
                best = node.item_pos[part] or best
            node = node[part]
        else:
            return best
        best = pos_of(node) or best
    return best


def _alt_key(node: dict, part: Any) -> Any:
    if isinstance(part, str):
        for k in node:
            if str(k) == part:
                return k
    elif isinstance(part, int) and str(part) in node:
        return str(part)
    return None


def format_path(path: Iterable[Any]) -> str:
    """``("services", "web", "ports", 0)`` -> ``services.web.ports[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if not re.fullmatch(r"[A-Za-z0-9_\-]+", text):
                text = f'"{text}"'
            out += f".{text}" if out else text
    return out


def strip_positions(node: Any) -> Any:
    """A deep copy as plain dicts and lists (for output and for comparing data)."""
    if isinstance(node, dict):
        return {k: strip_positions(v) for k, v in node.items()}
    if isinstance(node, list):
        return [strip_positions(v) for v in node]
    return node


# --------------------------------------------------------------------------------------------
# The loader


# Bounds (docs/security.md, "Parsers and bounds"). go-yaml, which Compose reads files with,
# refuses documents nested deeper than 10,000 levels and documents whose aliases expand them
# too much ("document contains excessive aliasing"); stackctl applies the same aliasing rule,
# and a depth limit that keeps every recursive pass over the tree far inside Python's stack
# (a stack file needs about 6 levels; extension fields a few more).
MAX_DEPTH = 100
# go-yaml's rule: once more than 100 of more than 1,000 values come from aliases, the share of
# values that come from aliases may be at most 99% (documents up to 400,000 values), falling
# linearly to 10% (4,000,000 values and more). So an alias bomb stops at ~400,000 values.
_ALIAS_RATIO_LOW, _ALIAS_RATIO_HIGH = 400_000, 4_000_000


def allowed_alias_ratio(values: int) -> float:
    """The share of a document's values that may come from aliases (go-yaml's rule)."""
    if values <= _ALIAS_RATIO_LOW:
        return 0.99
    if values >= _ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (values - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW)


class _Budget:
    """Counts the parser's events as the composer takes them: nesting depth, and how many
    values the document has once every alias (and merge key) is expanded. Refuses, with the
    place, before the composer recurses too deep or anything is expanded (pure bookkeeping:
    O(1) per event, whatever the aliases would expand to)."""

    __slots__ = ("filename", "values", "aliased", "open", "sizes")

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.values = 0  # values of the expanded document so far
        self.aliased = 0  # of them, values that come from aliases
        self.open: list[tuple[str | None, int]] = []  # (anchor, values at its start) per open collection
        self.sizes: dict[str, int] = {}  # anchor -> values of its expanded subtree

    def refuse(self, event: yaml.Event, message: str) -> None:
        mark = event.start_mark
        raise SpecError(Issue(message, pos=Pos(self.filename, mark.line + 1, mark.column + 1)))

    def event(self, event: yaml.Event) -> None:
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(self.open) >= MAX_DEPTH:
                self.refuse(event, f"the document is nested deeper than {MAX_DEPTH} levels")
            self.values += 1
            self.open.append((event.anchor, self.values - 1))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, start = self.open.pop()
            if anchor is not None:
                self.sizes[anchor] = self.values - start
        elif isinstance(event, yaml.ScalarEvent):
            self.values += 1
            if event.anchor is not None:
                self.sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            size = self.sizes.get(event.anchor)
            if size is None:
                if any(anchor == event.anchor for anchor, _ in self.open):
                    self.refuse(event, f"the alias *{event.anchor} is inside the value it "
                                       "refers to (a recursive alias)")
                return  # undefined: the composer says so
            self.values += size
            self.aliased += size
            if (self.aliased > 100 and self.values > 1000
                    and self.aliased / self.values > allowed_alias_ratio(self.values)):
                self.refuse(event, f"excessive aliasing: the aliases (here *{event.anchor}) "
                                   f"expand the document to more than {self.values:,} values, "
                                   f"{self.aliased:,} of them copies (refused, as Compose "
                                   "refuses it)")


if yaml.__with_libyaml__:  # libyaml scans and parses; composing stays here (positions, bounds)
    from yaml.cyaml import CParser as _Parser

    class _ParserBase(_Parser, yaml.composer.Composer):
        def __init__(self, text: str) -> None:
            _Parser.__init__(self, text)
            yaml.composer.Composer.__init__(self)

        check_node = yaml.composer.Composer.check_node
        get_node = yaml.composer.Composer.get_node
        get_single_node = yaml.composer.Composer.get_single_node
else:  # pragma: no cover - PyYAML without libyaml: the pure-Python parser
    class _ParserBase(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                      yaml.composer.Composer):
        def __init__(self, text: str) -> None:
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)


class _Loader(_ParserBase, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """A safe loader building PDict/PList, with YAML 1.2 booleans and no timestamps, whose
    composer is watched by a :class:`_Budget` (depth and aliasing bounds)."""

    filename = "<string>"

    def __init__(self, text: str, filename: str = "<string>") -> None:
        _ParserBase.__init__(self, text)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self.filename = filename
        self.budget = _Budget(filename)
        self.issues: list[Issue] = []

    def get_event(self) -> yaml.Event:
        event = super().get_event()
        self.budget.event(event)
        return event


# YAML 1.2 core schema, as Compose reads files: only true/false are booleans (yes/no/on/off
# stay strings), no sexagesimal numbers (an unquoted port `56:56` stays a string), no
# timestamps; 0o17 / 0x1F for octal and hex, and 0440 still octal as Compose reads it.
_DROPPED = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp",
            "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, compiled(rx)) for tag, rx in resolvers if tag not in _DROPPED]
    for ch, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def _construct_int(loader: "_Loader", node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if len(text) > 40:  # past int64 by far (and Python refuses int() of 4,300+ digits)
        loader.issues.append(Issue(f"the number {text[:20]}... has {len(text)} digits: too large",
                                   pos=_mark_pos(loader, node.start_mark)))
        return 0
    if text.startswith("0o"):
        return int(text[2:], 8)
    if len(text) > 1 and text[0] == "0" and text.isdigit() and "8" not in text and "9" not in text:
        return int(text, 8)  # 0440: octal, as go-yaml (and so Compose) still reads it
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _mark_pos(loader: _Loader, mark: yaml.Mark) -> Pos:
    return Pos(loader.filename, mark.line + 1, mark.column + 1)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, cls: type = PDict):
    data = cls(pos=_mark_pos(loader, node.start_mark))
    yield data
    loader.flatten_mapping(node)  # resolves merge keys (<<) into node.value
    seen: dict[Any, Pos] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        kpos = _mark_pos(loader, key_node.start_mark)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            loader.issues.append(Issue("a mapping key must be a plain scalar", pos=kpos))
            continue
        if not getattr(key_node, "_from_merge", False):
            if key in seen:
                loader.issues.append(Issue(
                    f"duplicate key {key!r} (first defined at line {seen[key].line})", pos=kpos))
            seen[key] = kpos
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_pos[key] = kpos
        data.val_pos[key] = _mark_pos(loader, value_node.start_mark)


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode, cls: type = PList):
    data = cls(pos=_mark_pos(loader, node.start_mark))
    yield data
    for item in node.value:
        data.append(loader.construct_object(item, deep=True))
        data.item_pos.append(_mark_pos(loader, item.start_mark))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def _construct_reset(loader: _Loader, node: yaml.Node) -> Reset:
    return Reset(_mark_pos(loader, node.start_mark))


def _construct_override(loader: _Loader, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return (yield from _construct_mapping(loader, node, OverrideDict))
    if isinstance(node, yaml.SequenceNode):
        return (yield from _construct_sequence(loader, node, OverrideList))
    # a scalar: type it as if it had no tag (``!override 5`` is the integer 5)
    tag = loader.resolve(yaml.ScalarNode, node.value, (True, False))
    yield loader.construct_object(yaml.ScalarNode(tag, node.value, node.start_mark,
                                                  node.end_mark, node.style), deep=True)


_Loader.add_constructor("!reset", _construct_reset)
_Loader.add_constructor("!override", _construct_override)


def _flatten_mapping(self: _Loader, node: yaml.MappingNode) -> None:
    # SafeConstructor.flatten_mapping, but keys that come from a merge (<<) may be overridden
    # by the mapping itself without a duplicate-key error.
    merge = []
    index = 0
    while index < len(node.value):
        key_node, value_node = node.value[index]
        if key_node.tag == "tag:yaml.org,2002:merge":
            del node.value[index]
            sources = [value_node] if isinstance(value_node, yaml.MappingNode) else (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else None)
            if sources is None or not all(isinstance(s, yaml.MappingNode) for s in sources):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "a merge key (<<) needs a mapping or a list of mappings", value_node.start_mark)
            for sub in reversed(sources) if isinstance(value_node, yaml.SequenceNode) else sources:
                self.flatten_mapping(sub)
                for k, v in sub.value:
                    k = _MergedKey(k)
                    merge.append((k, v))
        elif key_node.tag == "tag:yaml.org,2002:value":
            key_node.tag = "tag:yaml.org,2002:str"
            index += 1
        else:
            index += 1
    if merge:
        node.value = merge + node.value


class _MergedKey(yaml.ScalarNode):
    """A key node copied in by a merge key; remembers that for the duplicate check."""

    def __init__(self, original: yaml.Node) -> None:  # noqa: D107
        self.__dict__.update(original.__dict__)
        self._from_merge = True


_Loader.flatten_mapping = _flatten_mapping


class _Fallback(Exception):
    """The fast composer met something it leaves to PyYAML's (an error, a bound reached)."""


def _compose_fast(loader: _Loader) -> list[Any]:
    """Every document's root node, composed from libyaml's events in one flat loop: the same
    nodes, tags and marks as PyYAML's recursive composer plus :class:`_Budget` — about
    twice as fast on a large file. Raises :class:`_Fallback` on anything it does not
    carry out itself (any error, a bound, a recursive alias); the caller then composes the
    text again the slow way, which says exactly what is wrong."""
    if not yaml.__with_libyaml__:
        raise _Fallback
    get_event = _Parser.get_event.__get__(loader)  # libyaml's events, not the budget's hook
    resolve = loader.resolve
    Scalar, SeqStart, MapStart = yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent
    SeqEnd, MapEnd, Alias = yaml.SequenceEndEvent, yaml.MappingEndEvent, yaml.AliasEvent
    DocStart, DocEnd, StreamEnd = yaml.DocumentStartEvent, yaml.DocumentEndEvent, yaml.StreamEndEvent
    ScalarNode, SequenceNode, MappingNode = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode
    if loader.yaml_path_resolvers:  # pragma: no cover - none are added (see above)
        raise _Fallback
    resolved: dict[tuple[str, Any], str] = {}
    docs: list[Any] = []
    try:
        event = get_event()
        if type(event) is not yaml.StreamStartEvent:
            raise _Fallback
        values = aliased = 0
        while True:
            event = get_event()
            t = type(event)
            if t is StreamEnd:
                return docs
            if t is not DocStart:
                raise _Fallback
            anchors: dict[str, Any] = {}
            sizes: dict[str, int] = {}  # anchor -> values of its subtree (as _Budget)
            # open collections: [node, anchor, values at its start, pending mapping key]
            stack: list[list[Any]] = []
            root = None
            while True:
                event = get_event()
                t = type(event)
                if t is Alias:
                    anchor = event.anchor
                    node = anchors.get(anchor)
                    size = sizes.get(anchor)
                    if node is None or size is None:  # undefined, or inside itself
                        raise _Fallback
                    values += size
                    aliased += size
                    if (aliased > 100 and values > 1000
                            and aliased / values > allowed_alias_ratio(values)):
                        raise _Fallback
                elif t is Scalar:
                    tag = event.tag
                    if tag is None or tag == "!":
                        # the resolver is a pure function of these (no path resolvers)
                        key = (event.value, event.implicit)
                        tag = resolved.get(key)
                        if tag is None:
                            tag = resolved[key] = resolve(ScalarNode, event.value,
                                                          event.implicit)
                    node = ScalarNode(tag, event.value, event.start_mark, event.end_mark,
                                      style=event.style)
                    values += 1
                    anchor = event.anchor
                    if anchor is not None:
                        if anchor in anchors:
                            raise _Fallback
                        anchors[anchor] = node
                        sizes[anchor] = 1
                elif t is SeqStart or t is MapStart:
                    if len(stack) >= MAX_DEPTH:
                        raise _Fallback
                    tag = event.tag
                    kind = SequenceNode if t is SeqStart else MappingNode
                    if tag is None or tag == "!":
                        tag = resolve(kind, None, event.implicit)
                    node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
                    values += 1
                    anchor = event.anchor
                    if anchor is not None:
                        if anchor in anchors:
                            raise _Fallback
                        anchors[anchor] = node
                    stack.append([node, anchor, values - 1, None])
                    continue
                elif t is SeqEnd or t is MapEnd:
                    node, anchor, start, key = stack.pop()
                    if key is not None:
                        raise _Fallback
                    node.end_mark = event.end_mark
                    if anchor is not None:
                        sizes[anchor] = values - start
                elif t is DocEnd:
                    if stack or root is None:
                        raise _Fallback
                    docs.append(root)
                    break
                else:
                    raise _Fallback
                # ``node`` is complete: it goes into its parent (or is the root)
                if not stack:
                    if root is not None:
                        raise _Fallback
                    root = node
                    continue
                top = stack[-1]
                parent = top[0]
                if type(parent) is SequenceNode:
                    parent.value.append(node)
                elif top[3] is None:
                    top[3] = node
                    if node.tag in _SPECIAL_KEYS:  # ``<<`` or ``=``: the constructor's work
                        parent.special_keys = True
                else:
                    parent.value.append((top[3], node))
                    top[3] = None
    except _Fallback:
        raise
    except Exception as exc:  # noqa: BLE001 - any error: the slow composer reports it
        raise _Fallback from exc


_MAP_TAG, _SEQ_TAG, _STR_TAG = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq",
                               "tag:yaml.org,2002:str")
#: scalar tags whose constructors are plain functions of the node (no generator, no state)
_PLAIN_SCALARS = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                  "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null")
_SPECIAL_KEYS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")


def _build_document(loader: _Loader, root: Any) -> Any:
    """``loader.construct_document(root)`` for nodes of :func:`_compose_fast` (so at most
    MAX_DEPTH deep), without the constructor's generators for the common nodes: plain
    mappings, sequences and scalars are built here, exactly as ``_construct_mapping`` /
    ``_construct_sequence`` build them; anything else (merge keys, ``!reset``,
    ``!override``, other tags) goes to the loader's constructor. Both share the loader's
    table of constructed nodes, so an alias is the same object either way."""
    done = loader.constructed_objects
    constructors = loader.yaml_constructors
    filename = loader.filename
    issues = loader.issues
    plain = {tag: constructors[tag] for tag in _PLAIN_SCALARS}

    def build(node: Any) -> Any:
        if node in done:
            return done[node]
        kind = type(node)
        if kind is yaml.ScalarNode:
            if node.tag == _STR_TAG:
                return node.value  # (construct_yaml_str of a scalar node)
            f = plain.get(node.tag)
            return f(loader, node) if f is not None else loader.construct_object(node, deep=True)
        if kind is yaml.SequenceNode and node.tag == _SEQ_TAG:
            mark = node.start_mark
            data = PList(pos=Pos(filename, mark.line + 1, mark.column + 1))
            done[node] = data
            append, item_pos = data.append, data.item_pos.append
            for item in node.value:
                append(build(item))
                mark = item.start_mark
                item_pos(Pos(filename, mark.line + 1, mark.column + 1))
            return data
        if kind is yaml.MappingNode and node.tag == _MAP_TAG and \
                "special_keys" not in node.__dict__:
            mark = node.start_mark
            data = PDict(pos=Pos(filename, mark.line + 1, mark.column + 1))
            done[node] = data
            seen: dict[Any, Pos] = {}
            key_pos, val_pos = data.key_pos, data.val_pos
            for key_node, value_node in node.value:
                key = build(key_node)
                mark = key_node.start_mark
                kpos = Pos(filename, mark.line + 1, mark.column + 1)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    issues.append(Issue("a mapping key must be a plain scalar", pos=kpos))
                    continue
                if key in seen:
                    issues.append(Issue(f"duplicate key {key!r} (first defined at line "
                                        f"{seen[key].line})", pos=kpos))
                seen[key] = kpos
                data[key] = build(value_node)
                key_pos[key] = kpos
                mark = value_node.start_mark
                val_pos[key] = Pos(filename, mark.line + 1, mark.column + 1)
            return data
        return loader.construct_object(node, deep=True)

    try:
        return build(root)
    finally:
        loader.constructed_objects = {}
        loader.recursive_objects = {}
        loader.deep_construct = False


def _construct_all(text: str, filename: str) -> tuple[_Loader, list[Any]] | None:
    """The documents through :func:`_compose_fast` and the loader's constructor, or None
    when the slow path must run (the fast composer gave up)."""
    loader = _Loader(text, filename)
    try:
        nodes = _compose_fast(loader)
    except _Fallback:
        loader.dispose()
        return None
    return loader, nodes


def load_yaml(text: str, filename: str) -> Any:
    """Parse one YAML document; raise :class:`SpecError` with the position on bad syntax.

    An empty document gives an empty PDict. Several documents in one file are an error (a stack
    file is one document).
    """
    fast = _construct_all(text, filename)
    if fast is not None and len(fast[1]) > 1:  # several documents: the composer says so
        fast[0].dispose()
        fast = None
    loader = fast[0] if fast is not None else _Loader(text, filename)
    try:
        if fast is not None:
            node = fast[1][0] if fast[1] else None
            data = _build_document(loader, node) if node is not None else None
        else:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Pos(filename, mark.line + 1, mark.column + 1) if mark else Pos(filename, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.problem} ({exc.context})"
        raise SpecError(Issue(f"invalid YAML: {problem}", pos=pos)) from None
    except yaml.YAMLError as exc:
        raise SpecError(Issue(f"invalid YAML: {exc}", pos=Pos(filename, 1, 1))) from None
    finally:
        loader.dispose()
    if loader.issues:
        raise SpecError(loader.issues)
    if data is None:
        return PDict(pos=Pos(filename, 1, 1))
    if not isinstance(data, (dict, list)):
        shown = f'"{data}"' if isinstance(data, str) else str(data)
        raise SpecError(Issue(f"expected a mapping, got {shown[:60]}",
                              pos=Pos(filename, node.start_mark.line + 1, node.start_mark.column + 1)))
    return data


def load_yaml_documents(text: str, filename: str) -> list[Any]:
    """Every document of a YAML stream (``---`` separated), as :func:`load_yaml` reads one;
    an empty document is ``None``. Compose reads a multi-document stack file as layers merged
    in order (``stackctl.spec.load``)."""
    fast = _construct_all(text, filename)
    loader = fast[0] if fast is not None else _Loader(text, filename)
    docs: list[Any] = []
    try:
        if fast is not None:
            for node in fast[1]:
                docs.append(_build_document(loader, node))
        else:
            while loader.check_node():
                docs.append(loader.construct_document(loader.get_node()))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Pos(filename, mark.line + 1, mark.column + 1) if mark else Pos(filename, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.problem} ({exc.context})"
        raise SpecError(Issue(f"invalid YAML: {problem}", pos=pos)) from None
    except yaml.YAMLError as exc:
        raise SpecError(Issue(f"invalid YAML: {exc}", pos=Pos(filename, 1, 1))) from None
    finally:
        loader.dispose()
    if loader.issues:
        raise SpecError(loader.issues)
    return docs
