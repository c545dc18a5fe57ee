"""Durations, byte sizes and CPUs, as Compose and Docker parse them."""

from __future__ import annotations

import pytest

from stackctl.spec import units
from stackctl.spec.units import (
    HOUR,
    MILLISECOND,
    MINUTE,
    SECOND,
    format_cpus,
    format_duration,
    parse_bytes,
    parse_cpus,
    parse_duration,
)


@pytest.mark.parametrize("text,ns", [
    ("1m30s", 90 * SECOND),
    ("1h", HOUR),
    ("10ms", 10 * MILLISECOND),
    ("1.5s", 1500 * MILLISECOND),
    ("100us", 100_000),
    ("100µs", 100_000),
    ("2h45m", 2 * HOUR + 45 * MINUTE),
    ("0", 0),
    ("0s", 0),
    (".5s", 500 * MILLISECOND),
    ("1ns", 1),
    (10, 10 * SECOND),
    ("10", 10 * SECOND),
    (1.5, 1500 * MILLISECOND),
])
def test_parse_duration(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "1x", "abc", "1m30", "s", "-5s", "1.2.3s", True, None, [1],
                                  -1, "1 s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("ns,text", [
    (0, "0s"),
    (90 * SECOND, "1m30s"),
    (HOUR, "1h0m0s"),
    (10 * MILLISECOND, "10ms"),
    (1500 * MILLISECOND, "1.5s"),
    (100_000, "100µs"),
    (1, "1ns"),
    (HOUR + 1500 * MILLISECOND, "1h0m1.5s"),
    (5 * SECOND, "5s"),
])
def test_format_duration_like_go(ns, text):
    assert format_duration(ns) == text
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text,size", [
    ("512m", 512 * 1024**2),
    ("1gb", 1024**3),
    ("1.5g", int(1.5 * 1024**3)),
    ("100k", 100 * 1024),
    ("1024", 1024),
    (1024, 1024),
    ("64M", 64 * 1024**2),
    ("1GiB", 1024**3),
    ("10b", 10),
    ("512 m", 512 * 1024**2),
    ("1.5k", 1536),
])
def test_parse_bytes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "abc", "1x", "-1", "1.2.3m", "m", True, None, -5, {}])
def test_parse_bytes_rejects(text):
    with pytest.raises(ValueError):
        parse_bytes(text)


@pytest.mark.parametrize("text,nano", [
    (0.5, 500_000_000), ("1.5", 1_500_000_000), (2, 2 * SECOND), ("0.000000001", 1),
    ("0.01", 10_000_000),
])
def test_parse_cpus(text, nano):
    assert parse_cpus(text) == nano


@pytest.mark.parametrize("text", ["abc", "-1", "0.0000000001", True, None, "nan", "inf"])
def test_parse_cpus_rejects(text):
    with pytest.raises(ValueError):
        parse_cpus(text)


def test_format_cpus_round_trips():
    for nano in (500_000_000, 2 * SECOND, 1, 1_250_000_000):
        assert parse_cpus(format_cpus(nano)) == nano
    assert format_cpus(2 * SECOND) == 2
    assert units.human_bytes(512 * 1024**2) == "512MiB"


# Durations, sizes and CPUs are computed in exact integers (``decimal`` is imported only for
# forms such as 1e-3): the same results as exact decimal arithmetic.
from decimal import Decimal  # noqa: E402

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NUMBER = st.from_regex(r"\A(?:[0-9]{1,6}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})\Z")
_UNIT = st.sampled_from(["ns", "us", "ms", "s", "m", "h"])


@given(st.lists(st.tuples(_NUMBER, _UNIT), min_size=1, max_size=4))
def test_duration_is_the_exact_decimal_sum_truncated(parts):
    text = "".join(n + u for n, u in parts)
    exact = sum(Decimal(n) * units._DURATION_UNITS[u] for n, u in parts)
    assert parse_duration(text) == int(exact)


@given(st.from_regex(r"\A[0-9]{1,6}(?:\.[0-9]{1,12})?\Z"),
       st.sampled_from(["", "b", "k", "m", "g", "kb", "mib"]))
def test_size_is_the_exact_decimal_product_truncated(number, unit):
    exact = Decimal(number) * units._SIZE_UNITS[unit[:1]]
    assert parse_bytes(number + unit) == int(exact)


@given(_NUMBER)
def test_cpus_exact_or_too_precise(number):
    nano = Decimal(number) * SECOND
    if nano != nano.to_integral_value():
        with pytest.raises(ValueError, match="too precise"):
            parse_cpus(number)
    else:
        assert parse_cpus(number) == int(nano)
        assert format_cpus(int(nano)) == (int(nano) // SECOND if int(nano) % SECOND == 0
                                          else float(nano / SECOND))


def test_forms_beyond_plain_decimals_still_parse():
    assert parse_cpus("1e-3") == 1_000_000
    assert parse_cpus(1e-05) == 10_000
    assert parse_duration(1e-05) == 10_000
    with pytest.raises(ValueError, match="not a number"):
        parse_bytes("1.2.3")
