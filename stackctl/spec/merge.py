"""Merging stack files (``-f a.yml -f b.yml``) and extended services by Compose's rules.

The later tree overrides the earlier one:

- mappings merge key by key, recursively; a scalar is replaced by the later one;
- sequences are appended, except where Compose gives them a key:
  ``ports`` (host ip, published port, target, protocol), ``volumes`` and ``devices`` (the mount
  target), ``secrets`` and ``configs`` (the target file), ``env_file`` (the path),
  ``networks.*.ipam.config`` (the subnet); ``expose``, ``dns``, ``dns_search``, ``dns_opt``,
  ``tmpfs``, ``cap_add``, ``cap_drop``, ``profiles``, ``links``, ``external_links`` keep each value
  once. A later entry with the same key replaces the earlier one, in the earlier one's place;
- ``environment``, ``labels``, ``annotations``, ``sysctls``, ``build.args``, ``build.labels``,
  ``deploy.labels`` and the labels of networks, volumes, secrets and configs merge as mappings,
  also when either side uses the list syntax (``K=V``; ``K`` alone stays without a value);
  the result is a mapping;
- ``extra_hosts``: both sides as ``host=ip`` entries, appended, each entry once (a host may
  have several addresses, as in Compose);
- ``command``, ``entrypoint``, ``healthcheck.test``, each ``ulimits`` entry and ``x-*``
  extension fields are replaced as a whole;
- ``build`` as a string is ``{context: ...}``; ``depends_on`` and a service's ``networks`` merge as
  mappings when either side is one (a list entry becoming a default entry);
- ``logging`` merges when both sides name the same driver (or one names none), else the later
  one replaces it;
- ``null`` in a later file leaves a mapping or sequence of the earlier one as it was;
- ``!reset`` removes the key, ``!override`` replaces the value without merging.

A mapping merged with a sequence (or with a scalar) anywhere else is an error naming both
places. Positions follow the value that wins, so an error about a value points at the file that
wrote it. Pure: inputs are never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stackctl.errors import Issue, Pos, SpecError
from stackctl.spec.yamlpos import OverrideDict, OverrideList, PDict, PList, Reset, format_path

Path = tuple[Any, ...]


# --------------------------------------------------------------------------------------------
# Copying and markers


def copy_tree(node: Any, *, resolve: bool = True) -> Any:
    """A deep copy keeping positions. With ``resolve`` (the default) the ``!override``/
    ``!reset`` markers are resolved: an OverrideDict becomes a PDict, a key holding Reset is
    dropped. Without, they are copied as they are (for a tree that is still to be merged)."""
    if isinstance(node, dict):
        cls = type(node) if not resolve and isinstance(node, PDict) else PDict
        new = cls(pos=getattr(node, "pos", None))
        for k, v in node.items():
            if resolve and isinstance(v, Reset):
                continue
            new[k] = copy_tree(v, resolve=resolve)
            _copy_key_pos(new, node, k)
        return new
    if isinstance(node, list):
        cls = type(node) if not resolve and isinstance(node, PList) else PList
        new = cls(pos=getattr(node, "pos", None))
        for i, v in enumerate(node):
            if resolve and isinstance(v, Reset):
                continue
            new.append(copy_tree(v, resolve=resolve))
            new.item_pos.append(_item_pos(node, i))
        return new
    return node


def _copy_key_pos(dst: PDict, src: Any, key: Any, dst_key: Any = None) -> None:
    dst_key = key if dst_key is None else dst_key
    if isinstance(src, PDict):
        if key in src.key_pos:
            dst.key_pos[dst_key] = src.key_pos[key]
        if key in src.val_pos:
            dst.val_pos[dst_key] = src.val_pos[key]


def _item_pos(node: Any, i: int) -> Pos | None:
    if isinstance(node, PList) and i < len(node.item_pos):
        return node.item_pos[i]
    return getattr(node, "pos", None)


def _kind(node: Any) -> str:
    if isinstance(node, dict):
        return "a mapping"
    if isinstance(node, list):
        return "a sequence"
    return "a scalar"


# --------------------------------------------------------------------------------------------
# The merge


class _Merger:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def merge(self, base: Any, over: Any, path: Path, pos: Pos | None) -> Any:
        if isinstance(over, Reset):  # only reached for list items or the root
            return None
        if isinstance(over, (OverrideDict, OverrideList)):
            return copy_tree(over)
        if over is None and isinstance(base, (dict, list)):
            return copy_tree(base)
        if base is None:
            return copy_tree(over)
        rule = _rule_for(path)
        if rule is not None:
            return rule(self, base, over, path, pos)
        return self.generic(base, over, path, pos)

    def generic(self, base: Any, over: Any, path: Path, pos: Pos | None) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return self.mapping(base, over, path)
        if isinstance(base, list) and isinstance(over, list):
            return _concat(base, over)
        if isinstance(base, (dict, list)) or isinstance(over, (dict, list)):
            where = f" (the earlier value is at {getattr(base, 'pos', None)})" \
                if getattr(base, "pos", None) else ""
            self.issues.append(Issue(
                f"cannot merge {_kind(over)} into {_kind(base)}{where}; write the same form in "
                "both files, or tag the later value !override", format_path(path), pos))
            return copy_tree(base)
        return over

    def mapping(self, base: dict, over: dict, path: Path) -> PDict:
        out = PDict(pos=getattr(over, "pos", None) or getattr(base, "pos", None))
        for k, v in base.items():
            if isinstance(v, Reset):
                continue
            out[k] = copy_tree(v)
            _copy_key_pos(out, base, k)
        for k, v in over.items():
            vpos = over.val_pos.get(k) if isinstance(over, PDict) else None
            if isinstance(v, Reset):
                out.pop(k, None)
                out.key_pos.pop(k, None)
                out.val_pos.pop(k, None)
                continue
            if k not in out or (isinstance(k, str) and k.startswith("x-")):
                out[k] = copy_tree(v)
                _copy_key_pos(out, over, k)
                continue
            merged = self.merge(base[k], v, path + (k,), vpos)
            out[k] = merged
            if merged is base[k] or (v is None and isinstance(base[k], (dict, list))):
                continue  # the earlier value stands: keep its positions
            _copy_key_pos(out, over, k)
        return out


def _concat(base: list, over: list) -> PList:
    out = PList(pos=getattr(base, "pos", None))
    for src in (base, over):
        for i, v in enumerate(src):
            if isinstance(v, Reset):
                continue
            out.append(copy_tree(v))
            out.item_pos.append(_item_pos(src, i))
    return out


# --------------------------------------------------------------------------------------------
# Rules for keys with their own merge


Rule = Callable[[_Merger, Any, Any, Path, "Pos | None"], Any]


def _replace(m: _Merger, base: Any, over: Any, path: Path, pos: Pos | None) -> Any:
    return copy_tree(over)


def _as_list(node: Any) -> list:
    if isinstance(node, list):
        return node
    out = PList(pos=getattr(node, "pos", None))
    out.append(node)
    out.item_pos.append(getattr(node, "pos", None))
    return out


def _unique(key_of: Callable[[Any], Any]) -> Rule:
    def rule(m: _Merger, base: Any, over: Any, path: Path, pos: Pos | None) -> PList:
        items = _concat(_as_list(base), _as_list(over))
        out = PList(pos=getattr(base, "pos", None) or items.pos)
        index: dict[Any, int] = {}
        for i, v in enumerate(items):
            try:
                key = key_of(v)
            except (TypeError, ValueError):
                key = None
            if key is not None and key in index:
                j = index[key]
                out[j] = v
                out.item_pos[j] = items.item_pos[i]
                continue
            if key is not None:
                index[key] = len(out)
            out.append(v)
            out.item_pos.append(items.item_pos[i])
        return out
    return rule


def _scalar_key(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return repr(v)
    return str(v)


def _port_key(v: Any) -> Any:
    if isinstance(v, dict):
        return (str(v.get("host_ip", "") or ""), str(v.get("published", "") or ""),
                str(v.get("target", "")), str(v.get("protocol", "tcp") or "tcp"))
    text = str(v)
    proto = "tcp"
    if "/" in text:
        text, proto = text.rsplit("/", 1)
    host = ""
    if text.startswith("["):
        end = text.find("]")
        host, text = text[1:end], text[end + 2:]
    parts = text.rsplit(":", 2) if not host else text.rsplit(":", 1)
    if len(parts) == 3:
        host, published, target = parts
    elif len(parts) == 2:
        published, target = parts
    else:
        published, target = "", parts[0]
    return (host, published, target, proto)


def _mount_target(v: Any) -> Any:
    if isinstance(v, dict):
        return v.get("target")
    parts = str(v).split(":")
    return parts[1] if len(parts) >= 2 else parts[0]


def _file_target(default_dir: str) -> Callable[[Any], Any]:
    def key(v: Any) -> Any:
        if isinstance(v, dict):
            target = v.get("target")
            if target:
                target = str(target)
                return target if target.startswith("/") else f"{default_dir}/{target}"
            return f"{default_dir}/{v.get('source')}"
        return f"{default_dir}/{v}"
    return key


def _env_file_key(v: Any) -> Any:
    return str(v.get("path")) if isinstance(v, dict) else str(v)


def _subnet_key(v: Any) -> Any:
    return v.get("subnet") if isinstance(v, dict) else None


def _to_mapping(node: Any, sep: str = "=") -> PDict:
    """``[K=V, K]`` -> ``{K: V, K: None}``, positions kept; a mapping is copied (its
    ``!reset`` markers kept, so that the merge removes those keys)."""
    if isinstance(node, dict):
        return copy_tree(node, resolve=False)
    out = PDict(pos=getattr(node, "pos", None))
    for i, item in enumerate(node if isinstance(node, list) else [node]):
        if isinstance(item, Reset) or item is None:
            continue
        text = str(item)
        key, found, value = text.partition(sep)
        out[key] = value if found else None
        p = _item_pos(node, i)
        if p is not None:
            out.key_pos[key] = p
            out.val_pos[key] = p
    return out


def _key_values(m: _Merger, base: Any, over: Any, path: Path, pos: Pos | None) -> PDict:
    return m.mapping(_to_mapping(base), _to_mapping(over), path)


def _host_entries(node: Any) -> PList:
    out = PList(pos=getattr(node, "pos", None))
    if isinstance(node, dict):
        for host, ips in node.items():
            p = node.val_pos.get(host) if isinstance(node, PDict) else None
            for ip in ips if isinstance(ips, list) else [ips]:
                for one in str(ip).split(","):
                    out.append(f"{host}={one}")
                    out.item_pos.append(p)
        return out
    for i, item in enumerate(_as_list(node)):
        text = str(item)
        sep = "=" if "=" in text else ":"
        host, found, ips = text.partition(sep)
        for ip in ips.split(",") if found else [None]:  # host=a,b: one entry per address
            out.append(f"{host}={ip}" if ip is not None else text)
            out.item_pos.append(_item_pos(node, i) if isinstance(node, list) else out.pos)
    return out


def _extra_hosts(m: _Merger, base: Any, over: Any, path: Path, pos: Pos | None) -> PList:
    return _unique(str)(m, _host_entries(base), _host_entries(over), path, pos)


def _build(m: _Merger, base: Any, over: Any, path: Path, pos: Pos | None) -> Any:
    def as_map(node: Any) -> Any:
        if isinstance(node, str):
            out = PDict(pos=None)
            out["context"] = node
            return out
        return node
    return m.generic(as_map(base), as_map(over), path, pos)


def _list_to_map(default: Callable[[], Any]) -> Callable[[Any], Any]:
    def conv(node: Any) -> Any:
        if not isinstance(node, list):
            return node
        out = PDict(pos=getattr(node, "pos", None))
        for i, item in enumerate(node):
            out[str(item)] = default()
            p = _item_pos(node, i)
            if p is not None:
                out.key_pos[str(item)] = p
                out.val_pos[str(item)] = p
        return out
    return conv


def _service_started() -> PDict:
    d = PDict()
    d["condition"] = "service_started"
    return d


def _list_or_map(default: Callable[[], Any]) -> Rule:
    conv = _list_to_map(default)

    def rule(m: _Merger, base: Any, over: Any, path: Path, pos: Pos | None) -> Any:
        if isinstance(base, list) and isinstance(over, list):
            return _unique(_scalar_key)(m, base, over, path, pos)
        return m.generic(conv(base), conv(over), path, pos)
    return rule


def _logging(m: _Merger, base: Any, over: Any, path: Path, pos: Pos | None) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        d1, d2 = base.get("driver"), over.get("driver")
        if d1 is not None and d2 is not None and d1 != d2:
            return copy_tree(over)
    return m.generic(base, over, path, pos)


_unique_str = _unique(_scalar_key)
_kv = _key_values

_RULES: dict[Path, Rule] = {
    ("services", "*", "command"): _replace,
    ("services", "*", "entrypoint"): _replace,
    ("services", "*", "healthcheck", "test"): _replace,
    ("services", "*", "ulimits", "*"): _replace,
    ("services", "*", "environment"): _kv,
    ("services", "*", "labels"): _kv,
    ("services", "*", "annotations"): _kv,
    ("services", "*", "sysctls"): _kv,
    ("services", "*", "build", "args"): _kv,
    ("services", "*", "build", "labels"): _kv,
    ("services", "*", "deploy", "labels"): _kv,
    ("networks", "*", "labels"): _kv,
    ("volumes", "*", "labels"): _kv,
    ("secrets", "*", "labels"): _kv,
    ("configs", "*", "labels"): _kv,
    ("services", "*", "extra_hosts"): _extra_hosts,
    ("services", "*", "build", "extra_hosts"): _extra_hosts,
    ("services", "*", "build"): _build,
    ("services", "*", "depends_on"): _list_or_map(_service_started),
    ("services", "*", "networks"): _list_or_map(lambda: None),
    ("services", "*", "logging"): _logging,
    ("services", "*", "ports"): _unique(_port_key),
    ("services", "*", "volumes"): _unique(_mount_target),
    ("services", "*", "devices"): _unique(_mount_target),
    ("services", "*", "secrets"): _unique(_file_target("/run/secrets")),
    ("services", "*", "configs"): _unique(_file_target("")),
    ("services", "*", "env_file"): _unique(_env_file_key),
    ("networks", "*", "ipam", "config"): _unique(_subnet_key),
    **{("services", "*", key): _unique_str for key in (
        "expose", "dns", "dns_search", "dns_opt", "tmpfs", "cap_add", "cap_drop", "profiles",
        "links", "external_links")},
}


def _rule_for(path: Path) -> Rule | None:
    for pattern, rule in _RULES.items():
        if len(pattern) == len(path) and all(p == "*" or p == k for p, k in zip(pattern, path)):
            return rule
    return None


# --------------------------------------------------------------------------------------------
# Entry points


def merge_trees(trees: Sequence[Any]) -> PDict:
    """Merge the top-level trees of several files, later ones winning. Also resolves the
    ``!reset``/``!override`` markers of a single file. Raises :class:`SpecError` with every
    conflict found. The result is new, except for a single tree without markers, which is
    returned as it is."""
    trees = [t for t in trees if t is not None]
    if len(trees) == 1 and isinstance(trees[0], PDict) and not _has_markers(trees[0]):
        return trees[0]  # nothing to merge or resolve (the common case: one file)
    m = _Merger()
    result: Any = PDict()
    for i, tree in enumerate(trees):
        if tree is None:
            continue
        result = copy_tree(tree) if i == 0 or not result else m.merge(result, tree, (), None)
    if m.issues:
        raise SpecError(m.issues)
    return result if isinstance(result, PDict) else copy_tree(result)


def _has_markers(node: Any) -> bool:
    """Whether ``!reset`` / ``!override`` occur anywhere below ``node``."""
    if isinstance(node, (OverrideDict, OverrideList, Reset)):
        return True
    if isinstance(node, dict):
        return any(_has_markers(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_markers(v) for v in node)
    return False


def merge_service(base: Any, local: Any, name: str) -> PDict:
    """The service ``local`` extending ``base`` (``extends``): the same rules as for files."""
    m = _Merger()
    out = m.merge(base, local, ("services", name), getattr(local, "pos", None))
    if m.issues:
        raise SpecError(m.issues)
    return out
