"""``import yaml`` without compiling PyYAML's regular expressions up front.

Importing PyYAML compiles ~15 regular expressions at module level: the pure-Python reader's
NON_PRINTABLE (a character class spanning all of Unicode, ~9 ms alone), the resolver's YAML
1.1 patterns (bool, int, float, timestamp) and the constructor's timestamp pattern — ~15 ms
of a ~100 ms ``stackctl config -q``. The loader of stack files uses none of the costly ones:
libyaml reads and scans, and :mod:`stackctl.spec.yamlpos` replaces the bool, int, float and
timestamp resolvers by YAML 1.2's. So while PyYAML's modules are first imported, a
``re.compile`` called from them returns a :class:`LazyPattern`, compiled when it is first
used (Bazaar's ``lazy_regex`` did the same for its start-up). Calls from anywhere else get
the real ``re.compile``; ``re.compile`` is itself again when the import returns.

Everything of PyYAML keeps working as before (``yaml.safe_load`` included): a lazy pattern
answers every attribute of the compiled pattern it stands for.
"""

from __future__ import annotations

import re
import sys
from typing import Any


class LazyPattern:
    """A compiled regular expression made the first time one of its attributes is read."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: Any, flags: int) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern | None = None

    def compiled(self) -> re.Pattern:
        if self._compiled is None:
            self._compiled = _real_compile(*self._args)
        return self._compiled

    def __getattr__(self, name: str) -> Any:  # match, search, pattern, flags, ...
        return getattr(self.compiled(), name)

    def __repr__(self) -> str:
        return f"LazyPattern({self._args[0]!r}, {self._args[1]!r})"


_real_compile = re.compile


def compiled(rx: Any) -> Any:
    """``rx`` itself, or the compiled pattern a :class:`LazyPattern` stands for."""
    return rx.compiled() if isinstance(rx, LazyPattern) else rx


def import_yaml() -> Any:
    """The ``yaml`` module, imported (the first time) with lazy module-level patterns."""
    mod = sys.modules.get("yaml")
    if mod is not None:
        return mod

    def lazy_compile(pattern: Any, flags: int = 0) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller == "yaml" or caller.startswith("yaml."):
            return LazyPattern(pattern, flags)
        return _real_compile(pattern, flags)

    re.compile = lazy_compile  # type: ignore[assignment]
    try:
        import yaml
    finally:
        re.compile = _real_compile
    return yaml
