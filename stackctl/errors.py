"""The one error family of stackctl.

Every error a user can cause or meet derives from :class:`StackctlError`. The CLI prints an
expected error as one clear line (or one line per located issue) and exits with
``exit_code``; anything else is a bug and gets a traceback.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from dataclasses import dataclass


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


@dataclass(frozen=True, slots=True)
class Pos:
    """A place in a file: 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Issue:
    """One located problem (or warning) in a stack file."""

    message: str
    path: str = ""  # dotted key path, e.g. services.web.ports[0]
    pos: Pos | None = None

    def __str__(self) -> str:
        where = f"{self.pos}: " if self.pos else ""
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"


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
