"""Durations, byte sizes and CPU counts, parsed as Docker Compose and Swarm parse them.

- Durations follow Go's ``time.ParseDuration`` (``1m30s``, ``1.5s``, ``10ms``, ``100us``,
  ``1h``; units ns, us/µs, ms, s, m, h) and are kept as integer nanoseconds. Compose also takes a
  plain number as seconds (``stop_grace_period: 10``); so do we. They print back as Go prints
  them (``1m30s``, ``1h0m0s``, ``500ms``), which is what ``docker compose config`` shows.
- Byte sizes follow ``go-units.RAMInBytes``: a decimal number, an optional space, an optional
  unit b/k/m/g/t/p (any case, optional ``i``, optional trailing ``b``), powers of 1024;
  fractions are truncated to whole bytes. A plain integer is bytes.
- CPUs follow ``docker``'s ``ParseCPUs``: an exact decimal, multiplied by 1e9 into NanoCPUs;
  more than 9 decimal places is an error ("too precise").

Every parser raises :class:`ValueError` with a message fit for a user; callers add the
position. Pure functions, no I/O.
"""

from __future__ import annotations

import re

NANOSECOND = 1
MICROSECOND = 1_000
MILLISECOND = 1_000_000
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_DURATION_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,  # micro sign
    "\u03bcs": MICROSECOND,  # greek mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_MAX_NS = 2**63 - 1
# a plain decimal number: what the exact integer arithmetic below takes; anything else
# (exponents, signs, underscores) goes to ``decimal``, imported only then (it costs ~3 ms of
# every stack verb's start otherwise)
_PLAIN = re.compile(r"([0-9]*)(?:\.([0-9]*))?")


def _plain_parts(text: str) -> tuple[str, str] | None:
    """(integer digits, fraction digits) of a plain decimal such as ``1.5`` or ``.5``."""
    match = _PLAIN.fullmatch(text)
    if match is None or not (match.group(1) or match.group(2)):
        return None
    return match.group(1), match.group(2) or ""


def _scaled(parts: tuple[str, str], factor: int) -> tuple[int, int]:
    """``number * factor`` as (numerator, denominator), exactly."""
    whole, frac = parts
    return int(whole + frac or "0") * factor, 10 ** len(frac)


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def parse_duration(value: object) -> int:
    """A duration in nanoseconds from ``"1m30s"``, ``"1.5s"``, ``90`` (seconds) ..."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a duration such as 10s or 1m30s, got {_describe(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a non-negative duration, got {value}")
        return _check_range(value * SECOND, value)
    if isinstance(value, float):
        if value != value or value < 0 or value in (float("inf"),):
            raise ValueError(f"expected a non-negative duration, got {value}")
        parts = _plain_parts(repr(value))
        if parts is not None:
            num, den = _scaled(parts, SECOND)
            return _check_range(num // den, value)
        from decimal import Decimal

        return _check_range(int(Decimal(repr(value)) * SECOND), value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 10s or 1m30s, got {_describe(value)}")
    text = value.strip()
    if re.fullmatch(r"[0-9]{1,30}", text):  # a bare number: seconds, as Compose reads it
        return _check_range(int(text) * SECOND, value)
    body = text
    sign = 1
    if body[:1] in "+-" and body:
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0
    if not body:
        raise ValueError(f"expected a duration such as 10s or 1m30s, got {_describe(value)}")
    parts = []
    pos = 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            raise ValueError(
                f"invalid duration {_describe(value)}: expected numbers with units "
                "ns, us, ms, s, m or h, such as 1m30s")
        parts.append(_scaled(_plain_parts(match.group(1)),  # type: ignore[arg-type]
                             _DURATION_UNITS[match.group(2)]))
        pos = match.end()
    # the exact sum, truncated to whole nanoseconds at the end (as Decimal arithmetic did)
    den = max(d for _, d in parts)
    total = sum(n * (den // d) for n, d in parts)
    if sign < 0 and total:
        raise ValueError(f"expected a non-negative duration, got {_describe(value)}")
    return _check_range(total // den, value)


def _check_range(ns: int, original: object) -> int:
    if ns > _MAX_NS:
        raise ValueError(f"duration {_describe(original)} is too large")
    return ns


def format_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: ``1m30s``, ``1h0m0s``, ``1.5s``, ``10ms``, ``0s``."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < SECOND:
        if u < MICROSECOND:
            out = f"{u}ns"
        elif u < MILLISECOND:
            out = _fraction(u, 3) + "\u00b5s"
        else:
            out = _fraction(u, 6) + "ms"
    else:
        secs = _fraction(u % MINUTE, 9) + "s"
        mins = u // MINUTE
        if mins == 0:
            out = secs
        elif mins < 60:
            out = f"{mins}m{secs}"
        else:
            out = f"{mins // 60}h{mins % 60}m{secs}"
    return "-" + out if neg else out


def _fraction(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10**digits)
    if not frac:
        return str(whole)
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
               "p": 1024**5}


def parse_bytes(value: object) -> int:
    """A size in bytes from ``"512m"``, ``"1gb"``, ``"1.5g"``, ``"100k"``, ``1024`` ..."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a size such as 512m or 1g, got {_describe(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a non-negative size, got {value}")
        return value
    if isinstance(value, float):
        if value != value or value < 0 or value == float("inf"):
            raise ValueError(f"expected a non-negative size, got {value}")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as 512m or 1g, got {_describe(value)}")
    match = _SIZE.match(value.strip())
    if not match:
        raise ValueError(
            f"invalid size {_describe(value)}: expected a number with an optional unit "
            "b, k, m or g (such as 512m or 1gb)")
    parts = _plain_parts(match.group(1))
    if parts is None:  # 1.2.3
        raise ValueError(f"invalid size {_describe(value)}: not a number")
    unit = (match.group(2) or "").lower()
    num, den = _scaled(parts, _SIZE_UNITS[unit])
    result = num // den
    if result > _MAX_NS:
        raise ValueError(f"size {_describe(value)} is too large")
    return result


def format_bytes(size: int) -> int:
    """Sizes are printed as plain byte counts (as ``docker compose config`` does)."""
    return int(size)


def human_bytes(size: int) -> str:
    """A short human form for messages: ``512MiB``."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def parse_cpus(value: object) -> int:
    """NanoCPUs from ``0.5``, ``"1.5"``, ``2`` — exact, as ``docker``'s ParseCPUs."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a number of CPUs such as 0.5 or 2, got {_describe(value)}")
    plain = _plain_parts(value.strip() if isinstance(value, str) else
                         repr(value) if isinstance(value, float) else "")
    if isinstance(value, int) or plain is not None:  # exact, in integers
        num, den = (value * SECOND, 1) if isinstance(value, int) else _scaled(plain, SECOND)  # type: ignore[arg-type]
        if num < 0:
            raise ValueError(f"expected a non-negative number of CPUs, got {_describe(value)}")
        if num % den:
            raise ValueError(f"number of CPUs {_describe(value)} is too precise (at most 9 decimals)")
        if num // den > _MAX_NS:
            raise ValueError(f"number of CPUs {_describe(value)} is too large")
        return num // den
    from decimal import Decimal, InvalidOperation  # 1e-3, " +1_5", "Infinity"...

    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"expected a number of CPUs, got {value}")
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(
                f"expected a number of CPUs such as 0.5 or 2, got {_describe(value)}") from None
        if not number.is_finite():
            raise ValueError(f"expected a number of CPUs, got {_describe(value)}")
    else:
        raise ValueError(f"expected a number of CPUs such as 0.5 or 2, got {_describe(value)}")
    if number < 0:
        raise ValueError(f"expected a non-negative number of CPUs, got {_describe(value)}")
    nano = number * SECOND
    if nano != nano.to_integral_value():
        raise ValueError(f"number of CPUs {_describe(value)} is too precise (at most 9 decimals)")
    if nano > _MAX_NS:
        raise ValueError(f"number of CPUs {_describe(value)} is too large")
    return int(nano)


def format_cpus(nano: int) -> float | int:
    """NanoCPUs back to the number users write: ``0.5``, ``2``."""
    if nano % SECOND == 0:
        return nano // SECOND
    return nano / SECOND  # correctly rounded, as float(Decimal(nano) / SECOND) was
