"""Settings shared by the fuzz tests (tests/fuzz/).

Every parser that reads outside input is fed random and malformed input; the property is always
the same: it returns a result or raises a ``StackctlError`` whose message is one clear line —
never another exception (a traceback for the user), never unbounded time.

The default run (``scripts/test``) tries ``STACKCTL_FUZZ_EXAMPLES`` examples per test (default
100; the whole directory then takes under a minute on 2 cores). A longer run is one command::

    STACKCTL_FUZZ_EXAMPLES=5000 STACKCTL_FUZZ_LONG=1 scripts/test tests/fuzz
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from hypothesis import HealthCheck, settings

from stackctl.errors import StackctlError

EXAMPLES = int(os.environ.get("STACKCTL_FUZZ_EXAMPLES", "100"))
# One example may take at most this long (a loaded CI machine is slow; a hang or a quadratic
# blow-up on inputs of a few kB is far beyond it).
EXAMPLE_SECONDS = 10.0

FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)


def check_error(exc: StackctlError) -> None:
    """An expected error is one line (or, for a stack file, one line per located issue)."""
    lines = exc.lines()
    assert lines and all(line.strip() for line in lines), lines
    issues = getattr(exc, "issues", None)
    if issues is None:
        assert "\n" not in exc.message, exc.message
    else:
        assert all("\n" not in str(i) for i in issues), issues


@contextmanager
def bounded(seconds: float = EXAMPLE_SECONDS):
    """The block ends in time; a StackctlError it raises is checked and swallowed."""
    start = time.monotonic()
    try:
        yield
    except StackctlError as exc:
        check_error(exc)
    elapsed = time.monotonic() - start
    assert elapsed < seconds, f"took {elapsed:.1f}s"
