import random

import pytest

from stackctl.errors import NotFoundError, StackctlError, UsageError
from stackctl.runtime import names


def test_new_id_is_64_hex_and_short_id_is_12():
    cid = names.new_id()
    assert names.ID_RE.match(cid)
    assert names.short_id(cid) == cid[:12]
    assert names.short_id("sha256:" + cid) == cid[:12]


@pytest.mark.parametrize("name", ["web", "a1", "my_app.v2-x", "/web"])
def test_valid_names(name):
    assert names.validate_name(name) == name.lstrip("/")


@pytest.mark.parametrize("name", ["a", "-web", "_x", "with space", "é1", "a/b", ""])
def test_invalid_names(name):
    with pytest.raises(UsageError, match="invalid container name"):
        names.validate_name(name)


def test_random_name_is_adjective_surname_and_avoids_taken():
    rng = random.Random(1)
    first = names.random_name(lambda n: False, random.Random(1))
    adj, sur = first.split("_")
    assert adj in names.ADJECTIVES and sur in names.SURNAMES
    # the plain pair taken -> a digit is appended
    second = names.random_name(lambda n: n == first, rng)
    assert second != first and names.NAME_RE.match(second)


def test_random_name_gives_up_clearly():
    with pytest.raises(StackctlError, match="--name"):
        names.random_name(lambda n: True)


A = "a" * 64
AB = "ab" + "0" * 62
B = "b" * 64


def test_match_by_full_id_name_and_prefix():
    pairs = [(A, "web"), (AB, "db"), (B, "cache")]
    assert names.match(A, pairs) == A
    assert names.match("db", pairs) == AB
    assert names.match("/db", pairs) == AB
    assert names.match("b", pairs) == B
    assert names.match("ab", pairs) == AB


def test_match_ambiguous_prefix_and_missing():
    pairs = [(A, "web"), (AB, "db")]
    with pytest.raises(StackctlError, match="ambiguous"):
        names.match("a", pairs)
    with pytest.raises(NotFoundError, match="no such container: nope"):
        names.match("nope", pairs)


def test_name_wins_over_id_prefix():
    # a container named like another one's ID prefix: Docker resolves the name first
    pairs = [(A, "bbbb"), (B, "web")]
    assert names.match("bbbb", pairs) == A
