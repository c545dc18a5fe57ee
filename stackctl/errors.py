"""The one error family of stackctl.

Every error a user can cause or meet derives from :class:`StackctlError`. The CLI prints an
expected error as one clear line (or one line per located issue) and exits with
``exit_code``; anything else is a bug and gets a traceback.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator


class StackctlError(Exception):
    """Root of every expected stackctl error."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The lines the CLI prints for this error (without the ``error:`` prefix)."""
        out = [self.message]
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out


class UsageError(StackctlError):
    """The command line itself is wrong."""

    exit_code = 2


# Pos and Issue are written out rather than made with ``dataclasses``: every stack verb imports
# this module, and ``dataclasses`` imports ``inspect`` (with ast, dis, tokenize: ~10 ms of a
# ~100 ms ``config -q``). They behave as frozen, slotted dataclasses would.

class Pos:
    """A place in a file: 1-based line and column (immutable, hashable)."""

    __slots__ = ("file", "line", "col")

    def __init__(self, file: str, line: int, col: int) -> None:
        _set = object.__setattr__
        _set(self, "file", file)
        _set(self, "line", line)
        _set(self, "col", col)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def __repr__(self) -> str:
        return f"Pos(file={self.file!r}, line={self.line!r}, col={self.col!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not Pos:
            return NotImplemented
        return (self.file, self.line, self.col) == (other.file, other.line, other.col)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.col))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: Pos is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: Pos is immutable")

    def __reduce__(self) -> tuple:  # copy, deepcopy and pickle go through __init__
        return (Pos, (self.file, self.line, self.col))


class Issue:
    """One located problem (or warning) in a stack file (immutable, hashable)."""

    __slots__ = ("message", "path", "pos")

    def __init__(self, message: str, path: str = "", pos: Pos | None = None) -> None:
        _set = object.__setattr__
        _set(self, "message", message)
        _set(self, "path", path)  # dotted key path, e.g. services.web.ports[0]
        _set(self, "pos", pos)

    def __str__(self) -> str:
        where = f"{self.pos}: " if self.pos else ""
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"

    def __repr__(self) -> str:
        return f"Issue(message={self.message!r}, path={self.path!r}, pos={self.pos!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not Issue:
            return NotImplemented
        return (self.message, self.path, self.pos) == (other.message, other.path, other.pos)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.message, self.path, self.pos))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: Issue is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: Issue is immutable")

    def __reduce__(self) -> tuple:
        return (Issue, (self.message, self.path, self.pos))


class SpecError(StackctlError):
    """A stack file is invalid. Carries every issue found, not only the first."""

    exit_code = 2

    def __init__(self, issues: list[Issue] | Issue, *, hint: str | None = None) -> None:
        if isinstance(issues, Issue):
            issues = [issues]
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues), hint=hint)

    def lines(self) -> list[str]:
        out = [str(i) for i in self.issues]
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out


class NotFoundError(StackctlError):
    """A named object (image, container, volume, network, stack) does not exist."""

    exit_code = 1


class ConflictError(StackctlError):
    """A name or resource is already in use."""

    exit_code = 1


class DiskFullError(StackctlError):
    """A write failed because the disk (or the user's quota) is full."""

    exit_code = 1


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SQLITE_FULL = 13  # sqlite3.SQLITE_FULL, without importing sqlite3


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC/EDQUOT (an OSError) and SQLite's "database or disk is full"."""
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL_ERRNOS
    return getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL


def disk_full_error(path: str) -> DiskFullError:
    return DiskFullError(f"no space left on device while writing {path}; free some space "
                         "(stackctl image prune / volume prune) or move STACKCTL_STATE_DIR")


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
    """Turn a full disk met in the block into one :class:`DiskFullError` naming the file
    being written (the OSError's own file name when it has one, else ``path``). The one place
    that maps ENOSPC/EDQUOT: every write site of the state directory goes through it. The
    block's own cleanup (``finally``, ``except BaseException``) runs first, so nothing
    half-written stays behind."""
    try:
        yield
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        where = getattr(exc, "filename", None) or path
        raise disk_full_error(str(where)) from exc
