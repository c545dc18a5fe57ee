"""Small value classes without ``dataclasses``.

The stack loader is on the path of every stack verb, and ``import dataclasses`` imports
``inspect`` (with ``ast``, ``dis``, ``tokenize``, ``linecache``): ~10 ms of a ~100 ms
``stackctl config -q``, for a dozen classes. The loader's classes therefore write their own
``__init__`` (with ``__slots__``: as fast as a dataclass's) and take equality and ``repr``
from :class:`Record` (comparing the slots in order, as a dataclass compares its fields);
:class:`FrozenRecord` adds a hash and refuses assignment after ``__init__`` (which sets its
slots with ``object.__setattr__``, as a frozen dataclass does).
"""

from __future__ import annotations

from typing import Any


class Record:
    """Equality and ``repr`` over ``__slots__`` (a subclass declares them and ``__init__``)."""

    __slots__ = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable, as a dataclass

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({shown})"


class FrozenRecord(Record):
    """A :class:`Record` that cannot be changed after ``__init__`` and so can be hashed."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._values())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def __reduce__(self) -> tuple:  # copy, deepcopy and pickle go through __init__
        return (type(self), self._values())
