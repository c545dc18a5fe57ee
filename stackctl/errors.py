"""The one error family of stackctl.

Every error a user can cause or meet derives from :class:`StackctlError`. The CLI prints an
expected error as one clear line (or one line per located issue) and exits with
``exit_code``; anything else is a bug and gets a traceback.
"""

from __future__ import annotations

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
