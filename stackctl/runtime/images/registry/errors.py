"""The registry client's errors: each one line that names the reference (or registry) and says
what to do. All are :class:`~stackctl.errors.StackctlError`, so the CLI prints them without a
traceback and exits 1, as ``docker pull`` does."""

from __future__ import annotations

from stackctl.errors import NotFoundError, StackctlError


class RegistryError(StackctlError):
    """A registry refused or failed a request."""


class RegistryNotFound(NotFoundError, RegistryError):
    """The repository, tag or digest does not exist (or is hidden from us)."""


class RegistryAuthError(RegistryError):
    """Credentials are missing or wrong."""


class RegistryConnectError(RegistryError):
    """The registry cannot be reached: no such host, refused, TLS failure, timeout."""


class RateLimitError(RegistryError):
    """429 Too Many Requests; ``retry_after`` in seconds when the registry said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DigestMismatchError(RegistryError):
    """Content did not hash to the digest it was asked for: nothing of it is stored."""


class PlatformError(RegistryNotFound):
    """An image index has no manifest for the wanted platform."""
