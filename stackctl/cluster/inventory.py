"""The inventory: which nodes make the cluster, and how each is reached (pure).

A YAML file, ``nodes.yml`` next to the stack file by default (``--nodes FILE`` or
``STACKCTL_NODES`` name another)::

    nodes:
      - name: n0
        url: ssh://root@10.0.0.1          # ssh://[user@]host[:port], or `local` (this machine)
        id: 4x0kvy2r8h2n1x2l3y0z7q9w1     # written by `node add`; derived from the name if absent
        role: manager                     # manager | worker (default: the first node manages)
        availability: active              # active | pause | drain
        labels: {zone: a}
        identity: ~/.ssh/id_ed25519       # optional; relative paths are from this file's folder
        known_hosts: ./known_hosts        # optional; default ~/.ssh/known_hosts

Exactly one node is the manager: the one whose ``role`` says so, else the first. Every error
is located (``nodes.yml:7:10: nodes[1].url: ...``) and all of them are reported at once.

Saving keeps what the user wrote where it can: the file's text is kept as it was around the
nodes that did not change (comments included), a changed node's block is written anew in the
same place and indentation, a new node is appended after the last one. Keys stackctl does not
know (``x-*``) stay. Only a file whose node list is not a block sequence is written anew as a
whole.

No I/O here but :func:`load_inventory`, :func:`save_inventory` (read and write one file) and
:func:`find_inventory` (which looks for files).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stackctl.errors import Issue, NotFoundError, Pos, SpecError, StackctlError, UsageError
from stackctl.spec.yamlpos import PDict, PList, format_path, load_yaml
from stackctl.transport.errors import SSHTargetError
from stackctl.transport.target import SSHTarget

FILE_NAME = "nodes.yml"
ENV_VAR = "STACKCTL_NODES"
ROLES = ("manager", "worker")
AVAILABILITIES = ("active", "pause", "drain")
LOCAL_URL = "local"
NODE_KEYS = ("name", "url", "id", "role", "availability", "labels", "identity", "known_hosts")
TOP_KEYS = ("nodes",)
ID_LENGTH = 25  # as Docker's node IDs: 128 random bits in base 36, 25 characters
NAME_RULE = "letters, digits, _, . and -, starting with a letter or digit, at most 63"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_ID_RE = re.compile(r"[a-z0-9]{1,64}")
_LABEL_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]*")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class InventoryError(SpecError):
    """The inventory file is invalid (every issue, located)."""


# ----------------------------------------------------------------------------------------------
# URLs and ids


def parse_url(text: str) -> SSHTarget | None:
    """``ssh://[user@]host[:port]`` -> :class:`~stackctl.transport.target.SSHTarget` (the one
    reader of node URLs, shared with both SSH clients); ``local`` -> None (this machine).
    Raises ValueError with the reason (worded to follow ``invalid URL "...": ``)."""
    if not isinstance(text, str):
        raise ValueError("expected a string like ssh://root@10.0.0.2")
    if text == LOCAL_URL:
        return None
    if "://" not in text:
        hint = f' (write "ssh://{text}")' if "@" in text or _HOSTNAME_RE.fullmatch(text) else ""
        raise ValueError(f"expected ssh://[user@]host[:port] or `local`{hint}")
    try:
        return SSHTarget.parse(text)
    except SSHTargetError as exc:
        prefix = f"invalid SSH URL {text!r}: "
        raise ValueError(exc.message[len(prefix):] if exc.message.startswith(prefix)
                         else exc.message) from None


def _base36(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out or "0"


def new_node_id(randbits: int | None = None) -> str:
    """A new node id: 128 random bits in base 36, 25 characters (Docker's shape)."""
    n = secrets.randbits(128) if randbits is None else randbits
    return _base36(n).rjust(ID_LENGTH, "0")[-ID_LENGTH:]


def derived_node_id(name: str) -> str:
    """The id of a node whose entry has none: derived from its name, so it is the same on
    every read and every machine until a save writes it down."""
    digest = hashlib.sha256(f"stackctl-node:{name}".encode()).digest()
    return _base36(int.from_bytes(digest[:16], "big")).rjust(ID_LENGTH, "0")[-ID_LENGTH:]


def check_name(name: str) -> str:
    """``name`` if it is a valid node name, else a UsageError saying what one is."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise UsageError(f"invalid node name {_show(name)}: {NAME_RULE}")
    return name


def parse_label(text: str) -> tuple[str, str]:
    """``k=v`` (or ``k``: empty value) -> ``(k, v)``, as Docker's ``--label``."""
    key, _, value = text.partition("=")
    if not _LABEL_KEY_RE.fullmatch(key):
        raise UsageError(f'invalid label "{text}": expected KEY=VALUE with a key of letters, '
                         "digits, ., _, / and -")
    return key, value


# ----------------------------------------------------------------------------------------------
# The model


@dataclass(slots=True)
class Node:
    """One node of the inventory. ``role`` is what the file says (None: unset); the
    effective role is :meth:`Inventory.role_of`."""

    name: str
    url: str
    id: str = ""
    role: str | None = None
    availability: str = "active"
    labels: dict[str, str] = field(default_factory=dict)
    identity: str | None = None
    known_hosts: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys stackctl does not know (x-*)
    written: frozenset[str] = frozenset()  # keys the file had (kept on save even at defaults)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = derived_node_id(self.name)

    @property
    def address(self) -> SSHTarget | None:
        """Where its sshd is; None for the ``local`` node (this machine)."""
        return parse_url(self.url)

    @property
    def is_local(self) -> bool:
        return self.url == LOCAL_URL

    def public(self, role: str) -> dict[str, Any]:
        """Plain data (for JSON output and the manager's ``cluster.update_inventory``)."""
        return {"id": self.id, "name": self.name, "url": self.url, "role": role,
                "availability": self.availability, "labels": dict(self.labels),
                "identity": self.identity, "known_hosts": self.known_hosts}


@dataclass(slots=True)
class _Source:
    """The text a loaded inventory came from, and where its nodes were in it."""

    text: str
    # per loaded node: (its comment lines' first line, its item's first line, end (excl.),
    # indentation of its "- ")
    blocks: list[tuple[int, int, int, str]]
    end_line: int  # where a new node goes (0-based line index)
    item_indent: str  # "  " before "- " of the items
    loaded: list[Node]  # copies as loaded (to see what changed)


@dataclass(slots=True)
class Inventory:
    path: str | None
    nodes: list[Node] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # top-level keys stackctl does not know
    source: _Source | None = None

    # -- queries ---------------------------------------------------------------------------------

    @property
    def manager(self) -> Node | None:
        for n in self.nodes:
            if n.role == "manager":
                return n
        return self.nodes[0] if self.nodes else None

    def role_of(self, node: Node) -> str:
        return "manager" if node is self.manager else "worker"

    def get(self, ref: str) -> Node:
        """A node by name, by id, or by a unique id prefix (as ``docker node inspect``)."""
        for n in self.nodes:
            if n.name == ref or n.id == ref:
                return n
        matches = [n for n in self.nodes if ref and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        where = f" in {self.path}" if self.path else ""
        if len(matches) > 1:
            raise UsageError(f'node "{ref}" is ambiguous{where}: it starts the ids of '
                             + ", ".join(n.name for n in matches))
        names = ", ".join(n.name for n in self.nodes) or "none"
        raise NotFoundError(f'no node "{ref}"{where} (nodes: {names})')

    def public(self) -> list[dict[str, Any]]:
        return [n.public(self.role_of(n)) for n in self.nodes]

    def resolve(self, path: str | None) -> str | None:
        """A path written in the file (identity, known_hosts) as a usable path: ``~``
        expanded, relative to the file's folder."""
        if not path:
            return None
        path = os.path.expanduser(path)
        if not os.path.isabs(path) and self.path:
            path = os.path.join(os.path.dirname(os.path.abspath(self.path)), path)
        return path

    # -- changes (each keeps the inventory valid) ------------------------------------------------

    def add(self, node: Node) -> Node:
        """Append ``node``; the first node of an inventory is written as its manager."""
        for n in self.nodes:
            if n.name == node.name:
                raise StackctlError(f'a node named "{node.name}" is already in the inventory '
                                    f"({n.url})", hint=f"remove it first: stackctl node rm {n.name}")
            if n.id == node.id:
                raise StackctlError(f'node id {node.id} is already used by "{n.name}"')
            if not n.is_local and not node.is_local and n.address == node.address:
                raise StackctlError(f'{node.url} is already in the inventory as "{n.name}"')
        if node.role == "manager" and self.nodes:
            old = self.manager
            if old is not None and old.role == "manager":
                raise StackctlError(f'"{old.name}" is the manager already; one manager for now',
                                    hint=f"add it as a worker, then: stackctl node promote {node.name}")
            # the file named no manager: the first node was it implicitly; now it is not
            for n in self.nodes:
                n.role = "worker"
        if not self.nodes and node.role is None:
            node.role = "manager"
        self.nodes.append(node)
        return node

    def remove(self, ref: str, *, force: bool = False) -> Node:
        node = self.get(ref)
        if node is self.manager and len(self.nodes) > 1 and not force:
            raise StackctlError(f'"{node.name}" is the manager: it cannot be removed while other '
                                "nodes remain", hint="promote another node first, or pass --force")
        self.nodes.remove(node)
        if node.role == "manager" and self.nodes:
            self.nodes[0].role = "manager"
        return node

    def promote(self, ref: str) -> tuple[Node, Node | None]:
        """Make ``ref`` the manager; the old manager becomes a worker (one manager for now).
        Returns (new manager, former manager or None if ``ref`` managed already)."""
        node = self.get(ref)
        old = self.manager
        if node is old:
            node.role = "manager"
            return node, None
        for n in self.nodes:
            n.role = "manager" if n is node else ("worker" if n.role is not None or n is old else None)
        return node, old


# ----------------------------------------------------------------------------------------------
# Parsing


def parse_inventory(text: str, filename: str) -> Inventory:
    """The inventory in ``text`` (``filename`` only names places in errors)."""
    try:
        data = load_yaml(text, filename)
    except SpecError as exc:
        raise InventoryError(exc.issues) from None
    issues: list[Issue] = []
    if not isinstance(data, PDict):
        raise InventoryError(Issue("expected a mapping with a `nodes:` list", pos=getattr(data, "pos", None)))
    inv = Inventory(path=filename)
    for key in data:
        if key not in TOP_KEYS and not str(key).startswith("x-"):
            issues.append(_unknown(key, TOP_KEYS, (), data.key_pos.get(key)))
        elif key != "nodes":
            inv.extra[key] = data[key]
    raw = data.get("nodes")
    if raw is None:
        raw = PList(pos=data.val_pos.get("nodes") or data.pos)
    if not isinstance(raw, PList):
        issues.append(Issue("expected a list of nodes", "nodes", data.val_pos.get("nodes")))
        raise InventoryError(issues)
    names: dict[str, Pos | None] = {}
    ids: dict[str, Pos | None] = {}
    addrs: dict[SSHTarget, tuple[str, Pos | None]] = {}
    manager: tuple[str, Pos | None] | None = None
    for i, item in enumerate(raw):
        ipos = raw.item_pos[i] if i < len(raw.item_pos) else raw.pos
        here = ("nodes", i)

        def at(key: str) -> Pos | None:
            return item.val_pos.get(key) or ipos

        name = item.get("name") if isinstance(item, PDict) else None
        if isinstance(name, str) and name in names:  # also when the node has other errors
            issues.append(Issue(f'duplicate node name "{name}" (first at line '
                                f"{_line(names[name])})", format_path((*here, "name")), at("name")))
        elif isinstance(name, str):
            names[name] = at("name")
        node = _parse_node(item, i, ipos, issues)
        if node is None:
            continue
        if "id" not in node.written:
            pass  # derived from the name: a duplicate name is reported already
        elif node.id in ids:
            issues.append(Issue(f'duplicate node id "{node.id}" (first at line {_line(ids[node.id])})',
                                format_path((*here, "id")), at("id")))
        else:
            ids[node.id] = at("id")
        addr = node.address if not node.is_local else None
        if addr is not None:
            if addr in addrs:
                first, fpos = addrs[addr]
                issues.append(Issue(f'{node.url} is also node "{first}" (line {_line(fpos)})',
                                    format_path((*here, "url")), at("url")))
            else:
                addrs[addr] = (node.name, at("url"))
        if node.role == "manager":
            if manager is not None:
                issues.append(Issue(f'a second manager: "{manager[0]}" (line {_line(manager[1])}) '
                                    "is the manager already; one manager for now",
                                    format_path((*here, "role")), at("role")))
            else:
                manager = (node.name, at("role"))
        inv.nodes.append(node)
    if issues:
        raise InventoryError(issues)
    inv.source = _source_of(text, data, raw, inv.nodes)
    return inv


def _line(pos: Pos | None) -> str:
    return str(pos.line) if pos else "?"


def _unknown(key: Any, known: Iterable[str], path: tuple, pos: Pos | None) -> Issue:
    near = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f'; did you mean "{near[0]}"?' if near else f" (known: {', '.join(known)}; or x-*)"
    return Issue(f"unknown key{hint}", format_path((*path, key)), pos)


def _parse_node(item: Any, i: int, ipos: Pos | None, issues: list[Issue]) -> Node | None:
    here = ("nodes", i)
    if not isinstance(item, PDict):
        issues.append(Issue("expected a mapping with name and url", format_path(here), ipos))
        return None
    n_before = len(issues)

    def bad(key: str, message: str) -> None:
        issues.append(Issue(message, format_path((*here, key)), item.val_pos.get(key) or ipos))

    extra: dict[str, Any] = {}
    for key in item:
        if key not in NODE_KEYS:
            if str(key).startswith("x-"):
                extra[key] = item[key]
            else:
                issues.append(_unknown(key, NODE_KEYS, here, item.key_pos.get(key)))
    name = item.get("name")
    if name is None:
        issues.append(Issue('missing "name"', format_path(here), ipos))
    elif not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        bad("name", f"invalid node name {_show(name)}: {NAME_RULE}")
    url = item.get("url")
    if url is None:
        issues.append(Issue('missing "url" (ssh://user@host[:port], or `local`)', format_path(here), ipos))
    else:
        try:
            parse_url(url)
        except ValueError as exc:
            bad("url", f"invalid URL {_show(url)}: {exc}")
    node_id = item.get("id")
    if node_id is not None and (not isinstance(node_id, str) or not _ID_RE.fullmatch(node_id)):
        bad("id", f"invalid node id {_show(node_id)}: lowercase letters and digits")
    role = item.get("role")
    if role is not None and role not in ROLES:
        bad("role", f"expected manager or worker, got {_show(role)}")
    avail = item.get("availability", "active")
    if avail not in AVAILABILITIES:
        bad("availability", f"expected active, pause or drain, got {_show(avail)}")
    labels: dict[str, str] = {}
    raw_labels = item.get("labels")
    if raw_labels is not None:
        if isinstance(raw_labels, PList):  # ["k=v", ...] as Compose allows for labels
            for j, text in enumerate(raw_labels):
                if not isinstance(text, str) or not _LABEL_KEY_RE.fullmatch(text.partition("=")[0]):
                    issues.append(Issue(f"invalid label {_show(text)}: expected KEY=VALUE",
                                        format_path((*here, "labels", j)),
                                        raw_labels.item_pos[j] if j < len(raw_labels.item_pos) else None))
                else:
                    k, _, v = text.partition("=")
                    labels[k] = v
        elif isinstance(raw_labels, PDict):
            for k, v in raw_labels.items():
                kpos = raw_labels.key_pos.get(k)
                if not isinstance(k, str) or not _LABEL_KEY_RE.fullmatch(k):
                    issues.append(Issue(f"invalid label key {_show(k)}", format_path((*here, "labels", k)), kpos))
                elif isinstance(v, (dict, list)):
                    issues.append(Issue("a label value is a string", format_path((*here, "labels", k)),
                                        raw_labels.val_pos.get(k)))
                else:
                    labels[k] = "" if v is None else (json.dumps(v) if isinstance(v, bool) else str(v))
        else:
            bad("labels", "expected a mapping of labels (zone: a) or a list of KEY=VALUE")
    for key in ("identity", "known_hosts"):
        v = item.get(key)
        if v is not None and (not isinstance(v, str) or not v):
            bad(key, f"expected a file path, got {_show(v)}")
    if len(issues) > n_before:
        return None
    return Node(name=name, url=url, id=node_id or "", role=role, availability=avail, labels=labels,
                identity=item.get("identity"), known_hosts=item.get("known_hosts"), extra=extra,
                written=frozenset(str(k) for k in item))


def _show(v: Any) -> str:
    return json.dumps(v) if isinstance(v, str) else str(v)


# ----------------------------------------------------------------------------------------------
# Writing


def _source_of(text: str, data: PDict, raw: PList, nodes: list[Node]) -> _Source | None:
    """Where each node's block is in ``text`` (None: not a block sequence we can edit)."""
    lines = text.splitlines(keepends=True)
    if "nodes" not in data or not raw.item_pos or len(raw.item_pos) != len(nodes):
        if "nodes" in data and len(raw) == 0:
            return None  # `nodes: []`: written anew
        if "nodes" not in data:
            return _Source(text, [], len(lines), "  ", [])
        return None
    starts = []
    for p in raw.item_pos:
        if p is None:
            return None
        line = lines[p.line - 1]
        dash = p.col - 3  # "- " precedes the item's first key
        if dash < 0 or line[dash:dash + 2] != "- " or line[:dash].strip():
            return None
        starts.append((p.line - 1, line[:dash]))
    # the list ends where the next top-level key after it starts, or at the end of the text
    after = [p.line - 1 for k, p in data.key_pos.items() if p.line - 1 > starts[-1][0]]
    stop = min(after) if after else len(lines)
    blocks = []
    floor = data.key_pos["nodes"].line  # the line after `nodes:`
    for i, (first, indent) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else stop
        while end > first + 1 and _is_gap(lines[end - 1]):
            end -= 1  # trailing blank/comment lines: between the nodes, kept as they are
        lead = first
        while lead > floor and lines[lead - 1].strip().startswith("#"):
            lead -= 1  # comment lines right above an item are its own (they go with it)
        blocks.append((lead, first, end, indent))
        floor = end
    return _Source(text, blocks, blocks[-1][2], starts[0][1],
                   [dataclasses.replace(n, labels=dict(n.labels), extra=dict(n.extra)) for n in nodes])


def _is_gap(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#")


_INDICATORS = set("-?:,[]{}#&*!|>'\"%@`")


def _scalar(v: Any) -> str:
    """A value as YAML text: plain where YAML reads it back as the same string, else quoted
    (JSON's double-quoted strings are YAML's)."""
    if isinstance(v, str):
        plain = (v and v == v.strip() and v[0] not in _INDICATORS and ": " not in v
                 and " #" not in v and not v.endswith(":") and "\n" not in v)
        if plain and _reads_back(v):
            return v
        return json.dumps(v)
    if v is None:
        return "null"
    return json.dumps(v)


def _reads_back(v: str) -> bool:
    try:
        return load_yaml(f"k: {v}\n", "<value>").get("k") == v
    except SpecError:
        return False


def _value_lines(key: str, v: Any, indent: str) -> list[str]:
    if isinstance(v, dict):
        if not v:
            return [f"{indent}{_scalar(key)}: {{}}"]
        out = [f"{indent}{_scalar(key)}:"]
        for k, sub in v.items():
            out += _value_lines(str(k), sub, indent + "  ")
        return out
    if isinstance(v, list):
        if not v:
            return [f"{indent}{_scalar(key)}: []"]
        return [f"{indent}{_scalar(key)}: {json.dumps(v)}"]  # JSON is YAML flow style
    return [f"{indent}{_scalar(key)}: {_scalar(v)}"]


def render_node(node: Node, role: str | None, indent: str = "  ") -> str:
    """One node as a block item (``indent`` before its ``- ``). Keys the file had are kept
    even at their defaults; defaults the file did not have are not added."""
    fields: list[tuple[str, Any]] = [("name", node.name), ("url", node.url), ("id", node.id)]
    if role is not None:
        fields.append(("role", role))
    if node.availability != "active" or "availability" in node.written:
        fields.append(("availability", node.availability))
    if node.labels or "labels" in node.written:
        fields.append(("labels", node.labels))
    if node.identity:
        fields.append(("identity", node.identity))
    if node.known_hosts:
        fields.append(("known_hosts", node.known_hosts))
    fields += list(node.extra.items())
    inner = indent + "  "
    out: list[str] = []
    for i, (k, v) in enumerate(fields):
        lines = _value_lines(k, v, inner)
        if i == 0:
            lines[0] = f"{indent}- {lines[0][len(inner):]}"
        out += lines
    return "\n".join(out) + "\n"


def dump_inventory(inv: Inventory) -> str:
    """The whole inventory written anew (used when the file cannot be edited in place)."""
    out = ["nodes:\n"] if inv.nodes else ["nodes: []\n"]
    out += [render_node(n, n.role) for n in inv.nodes]
    for k, v in inv.extra.items():
        out.append("\n".join(_value_lines(str(k), v, "")) + "\n")
    return "".join(out)


def render_inventory(inv: Inventory) -> str:
    """The text to save: the loaded text with only what changed rewritten (see the module doc)."""
    src = inv.source
    if src is None:
        return dump_inventory(inv)
    lines = src.text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    by_id = {id(n): i for i, n in enumerate(inv.nodes)}
    kept: dict[int, int] = {}  # index of a loaded node -> index in inv.nodes
    loaded_ids = {n.id: i for i, n in enumerate(src.loaded)}
    for n in inv.nodes:
        if n.id in loaded_ids:
            kept[loaded_ids[n.id]] = by_id[id(n)]
    if not src.blocks:  # a file without `nodes:` (only x- keys, comments): append the list
        body = "".join(lines)
        if not inv.nodes:
            return body
        return body + ("" if not body or body.endswith("\n") else "\n") + "nodes:\n" + "".join(
            render_node(n, n.role, src.item_indent) for n in inv.nodes)
    # an order change (none of our verbs does that) is written anew
    order = [kept[i] for i in sorted(kept)]
    if order != sorted(order) or not kept:
        return dump_inventory(inv)
    out: list[str] = []
    cursor = 0
    for i, (lead, first, end, indent) in enumerate(src.blocks):
        out += lines[cursor:lead]
        if i in kept:
            now = inv.nodes[kept[i]]
            if _same(now, src.loaded[i]):
                out += lines[lead:end]
            else:
                out += lines[lead:first]
                out.append(render_node(now, now.role, indent))
        cursor = end
    new = [n for n in inv.nodes if n.id not in loaded_ids]
    out += lines[cursor:src.end_line] if cursor < src.end_line else []
    cursor = max(cursor, src.end_line)
    out += [render_node(n, n.role, src.item_indent) for n in new]
    out += lines[cursor:]
    return "".join(out)


def _same(a: Node, b: Node) -> bool:
    return (a.name, a.url, a.id, a.role, a.availability, a.labels, a.identity, a.known_hosts,
            a.extra) == (b.name, b.url, b.id, b.role, b.availability, b.labels, b.identity,
                         b.known_hosts, b.extra)


# ----------------------------------------------------------------------------------------------
# Files


def load_inventory(path: str) -> Inventory:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise NotFoundError(f"no inventory file {path}",
                            hint="create it with `stackctl node add ssh://user@host --name NAME`") from None
    except OSError as exc:
        raise StackctlError(f"cannot read the inventory {path}: {exc.strerror or exc}") from None
    inv = parse_inventory(text, path)
    inv.path = path
    return inv


def save_inventory(inv: Inventory, path: str | None = None) -> str:
    """Write ``inv`` (atomically: a temporary file renamed over the old one) and make the
    written text the new baseline. Returns the path."""
    from stackctl.errors import writing

    path = path or inv.path
    if not path:
        raise StackctlError("the inventory has no file to be saved to")
    text = render_inventory(inv)
    tmp = f"{path}.tmp{os.getpid()}"
    with writing(path):
        try:
            d = os.path.dirname(os.path.abspath(path))
            os.makedirs(d, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            try:
                os.chmod(tmp, os.stat(path).st_mode & 0o7777)
            except FileNotFoundError:
                pass
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
    fresh = parse_inventory(text, path)
    inv.path, inv.source = path, fresh.source
    # the saved nodes are the new baseline; keep the caller's objects (they may hold them)
    if inv.source is not None:
        inv.source.loaded = [dataclasses.replace(n, labels=dict(n.labels), extra=dict(n.extra))
                             for n in inv.nodes]
    for n, f in zip(inv.nodes, fresh.nodes):
        n.written = f.written
    return path


def inventory_path(stack_file: str | None, explicit: str | None, environ: Mapping[str, str],
                   *, cwd: str | None = None) -> tuple[str, str]:
    """Which inventory file applies, whether it exists or not, and why:
    ``(path, "flag" | "env" | "default")``. Order: ``--nodes``, ``$STACKCTL_NODES``, then
    ``nodes.yml`` next to the stack file (``-f``; else the current directory)."""
    if explicit:
        return explicit, "flag"
    if environ.get(ENV_VAR):
        return environ[ENV_VAR], "env"
    base = os.path.dirname(os.path.abspath(stack_file)) if stack_file and stack_file != "-" else (cwd or os.getcwd())
    return os.path.join(base, FILE_NAME), "default"


def find_inventory(stack_file: str | None, explicit: str | None, environ: Mapping[str, str],
                   *, cwd: str | None = None) -> str | None:
    """The inventory file to use, or None: no inventory, the local node alone (as without
    any cluster). A file named by ``--nodes`` or ``$STACKCTL_NODES`` must exist."""
    path, why = inventory_path(stack_file, explicit, environ, cwd=cwd)
    if os.path.exists(path):
        return path
    if why == "default":
        return None
    what = "--nodes" if why == "flag" else f"${ENV_VAR}"
    raise NotFoundError(f"no inventory file {path} (named by {what})",
                        hint="create it with `stackctl node add ssh://user@host --name NAME "
                             f"--nodes {path}`")
