import pytest

from stackctl.errors import UsageError
from stackctl.runtime.images.refs import normalize_tagged, parse, parse_lookup, short_id

HEX = "a" * 64


@pytest.mark.parametrize("text,repo,tag,digest", [
    ("busybox", "busybox", "", ""),
    ("busybox:1.36", "busybox", "1.36", ""),
    ("docker.io/library/busybox:latest", "busybox", "latest", ""),
    ("docker.io/user/app", "user/app", "", ""),
    ("localhost:5000/app:v1", "localhost:5000/app", "v1", ""),
    ("registry.example.com/a/b/c:x_y.z-1", "registry.example.com/a/b/c", "x_y.z-1", ""),
    ("localhost/app", "localhost/app", "", ""),
    (f"app@sha256:{HEX}", "app", "", f"sha256:{HEX}"),
    (f"app:1@sha256:{HEX}", "app", "1", f"sha256:{HEX}"),
    ("a__b/c-d", "a__b/c-d", "", ""),
])
def test_parse(text, repo, tag, digest):
    r = parse(text)
    assert (r.repository, r.tag, r.digest) == (repo, tag, digest)


def test_default_tag_and_full_name():
    assert normalize_tagged("busybox") == "busybox:latest"
    assert parse("busybox").full_name == "docker.io/library/busybox"
    assert parse("u/app").full_name == "docker.io/u/app"
    assert parse("host:5000/app:1").full_name == "host:5000/app"
    assert str(parse("host:5000/app:1")) == "host:5000/app:1"


@pytest.mark.parametrize("bad", ["", "Busybox", "a:b:c", "app:", "app@sha256:123", "-app", "a//b", "app:" + "x" * 129])
def test_parse_refuses(bad):
    with pytest.raises(UsageError) as e:
        parse(bad)
    assert "invalid reference format" in str(e.value) or "tag" in str(e.value)


def test_uppercase_hint():
    with pytest.raises(UsageError, match="lowercase"):
        parse("MyApp")


def test_lookup():
    assert parse_lookup("sha256:" + HEX).reference is None
    assert parse_lookup(HEX).id_prefix == HEX
    lk = parse_lookup("abc123")
    assert lk.reference is not None and lk.id_prefix == "abc123"
    lk = parse_lookup("busybox")
    assert lk.id_prefix == ""
    assert parse_lookup("sha256:abc").id_prefix == "abc"


def test_short_id():
    assert short_id("sha256:" + "0123456789ab" + "f" * 52) == "0123456789ab"


from hypothesis import given, strategies as st  # noqa: E402

_comp = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8})?", fullmatch=True)


@given(domain=st.sampled_from(["", "localhost:5000/", "reg.example.com/"]),
       path=st.lists(_comp, min_size=1, max_size=3).map("/".join),
       tag=st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)))
def test_round_trip(domain, path, tag):
    text = f"{domain}{path}" + (f":{tag}" if tag else "")
    r = parse(text)
    assert parse(str(r)) == r
    assert r.tagged.endswith(":" + (tag or "latest"))
