"""Pure parts of the registry client: references, challenges, platforms, pull policies,
insecure-registry rules, progress shapes."""

from __future__ import annotations

import io

import pytest

from stackctl.errors import UsageError
from stackctl.runtime.images.registry.auth import parse_challenge
from stackctl.runtime.images.registry.config import RegistryConfig, is_insecure, is_loopback, load_config
from stackctl.runtime.images.registry.errors import PlatformError
from stackctl.runtime.images.registry.platforms import choose_manifest, parse_platform
from stackctl.runtime.images.registry.policy import policy_interval, should_pull
from stackctl.runtime.images.registry.progress import CallbackProgress, PlainProgress, bar, layer_line
from stackctl.runtime.images.registry.reference import parse_ref, registry_key

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, registry, repository, tag, digest, local, full", [
    ("busybox", "docker.io", "library/busybox", "", "", "busybox:latest", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", "", "busybox:1.36", "docker.io/library/busybox:1.36"),
    ("docker.io/library/busybox", "docker.io", "library/busybox", "", "", "busybox:latest",
     "docker.io/library/busybox:latest"),
    ("user/app", "docker.io", "user/app", "", "", "user/app:latest", "docker.io/user/app:latest"),
    ("localhost:5000/app", "localhost:5000", "app", "", "", "localhost:5000/app:latest", "localhost:5000/app:latest"),
    ("localhost/app:2", "localhost", "app", "2", "", "localhost/app:2", "localhost/app:2"),
    ("127.0.0.1:5000/team/app:1.4", "127.0.0.1:5000", "team/app", "1.4", "", "127.0.0.1:5000/team/app:1.4",
     "127.0.0.1:5000/team/app:1.4"),
    ("ghcr.io/o/p@" + D, "ghcr.io", "o/p", "", D, "", "ghcr.io/o/p@" + D),
    ("reg.example.com/app:1@" + D, "reg.example.com", "app", "1", D, "reg.example.com/app:1",
     "reg.example.com/app:1@" + D),
])
def test_parse_ref(text, registry, repository, tag, digest, local, full):
    r = parse_ref(text)
    assert (r.registry, r.repository, r.tag, r.digest) == (registry, repository, tag, digest)
    assert r.local_tag == local and r.full == full
    assert r.reference == (digest or tag or "latest")
    assert r.api_host == ("registry-1.docker.io" if registry == "docker.io" else registry)


@pytest.mark.parametrize("bad", ["", "app/UPPER", "app:bad tag", "x@sha256:123", "a//b", "host:99999999999/x/../y"])
def test_parse_ref_refuses(bad):
    with pytest.raises(UsageError):
        parse_ref(bad)


@pytest.mark.parametrize("text, key", [
    ("", "docker.io"), ("docker.io", "docker.io"), ("https://index.docker.io/v1/", "docker.io"),
    ("registry-1.docker.io", "docker.io"), ("localhost:5000", "localhost:5000"),
    ("https://reg.example.com/v2/", "reg.example.com"), ("http://10.0.0.5:5000", "10.0.0.5:5000"),
])
def test_registry_key(text, key):
    assert registry_key(text) == key


def test_parse_challenge():
    scheme, p = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                'scope="repository:library/busybox:pull,push"')
    assert scheme == "bearer"
    assert p == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                 "scope": "repository:library/busybox:pull,push"}
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})
    assert parse_challenge('Bearer realm=http://x/token, service=svc') == ("bearer", {"realm": "http://x/token",
                                                                                    "service": "svc"})
    assert parse_challenge('Bearer realm="a\\"b"')[1] == {"realm": 'a"b'}
    assert parse_challenge("") == ("", {})


def _idx(*platforms):
    return {"manifests": [{"digest": f"sha256:{i:064x}", "platform": p} for i, p in enumerate(platforms)]}


def test_choose_manifest_by_platform():
    idx = _idx({"os": "linux", "architecture": "arm", "variant": "v6"},
               {"os": "linux", "architecture": "arm", "variant": "v7"},
               {"os": "linux", "architecture": "amd64"},
               {"os": "linux", "architecture": "arm64", "variant": "v8"},
               {"os": "unknown", "architecture": "unknown"},
               {"os": "windows", "architecture": "amd64"})
    assert choose_manifest(idx, parse_platform("linux/amd64"))["digest"].endswith("2")
    assert choose_manifest(idx, parse_platform("linux/arm64"))["digest"].endswith("3")
    assert choose_manifest(idx, parse_platform("linux/arm"))["digest"].endswith("1")  # v7 is arm's usual
    assert choose_manifest(idx, parse_platform("linux/arm/v6"))["digest"].endswith("0")
    assert choose_manifest(idx, parse_platform("windows/amd64"))["digest"].endswith("5")
    with pytest.raises(PlatformError, match=r"no manifest for linux/s390x .*linux/amd64"):
        choose_manifest(idx, parse_platform("linux/s390x"))
    with pytest.raises(PlatformError):
        choose_manifest(_idx({"os": "unknown", "architecture": "unknown"}), parse_platform("linux/amd64"))
    no_platforms = {"manifests": [{"digest": "sha256:" + "1" * 64}]}
    assert choose_manifest(no_platforms, parse_platform("linux/amd64")) == no_platforms["manifests"][0]


def test_parse_platform():
    assert parse_platform("linux/arm64/v8") == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert parse_platform("linux/x86_64") == {"os": "linux", "architecture": "amd64"}
    assert parse_platform("arm64") == {"os": "linux", "architecture": "arm64"}
    for bad in ("", "linux//v8", "a/b/c/d"):
        with pytest.raises(UsageError):
            parse_platform(bad)


HOUR = 3600.0


@pytest.mark.parametrize("policy, present, last, now, want", [
    ("always", True, 0.0, 1.0, True),
    ("always", False, None, 1.0, True),
    ("missing", True, None, 1.0, False),
    ("missing", False, None, 1.0, True),
    ("if_not_present", False, None, 1.0, True),
    ("never", False, None, 1.0, False),
    ("build", False, None, 1.0, False),
    ("daily", False, None, 1.0, True),
    ("daily", True, None, 1.0, True),  # present but never pulled: unknown age
    ("daily", True, 0.0, 23 * HOUR, False),
    ("daily", True, 0.0, 24 * HOUR, True),
    ("weekly", True, 0.0, 6 * 24 * HOUR, False),
    ("weekly", True, 0.0, 7 * 24 * HOUR, True),
    ("every_12h", True, 0.0, 11 * HOUR, False),
    ("every_12h", True, 0.0, 12 * HOUR, True),
    ("every_1h30m", True, 0.0, 1.4 * HOUR, False),
    ("every_1h30m", True, 0.0, 1.5 * HOUR, True),
    ("every_2d", True, 0.0, 47 * HOUR, False),
    ("every_1w", True, 0.0, 7 * 24 * HOUR, True),
])
def test_should_pull(policy, present, last, now, want):
    assert should_pull(policy, present, last, now) is want


def test_policy_errors():
    with pytest.raises(UsageError, match="unknown pull_policy"):
        should_pull("sometimes", True, None, 0.0)
    with pytest.raises(UsageError):
        policy_interval("every_")
    with pytest.raises(UsageError):
        policy_interval("every_soon")
    assert policy_interval("always") is None


def test_loopback_and_insecure():
    for host in ("localhost:5000", "127.0.0.1:5000", "127.8.9.10", "[::1]:5000", "localhost"):
        assert is_loopback(host), host
    for host in ("10.0.0.5:5000", "reg.example.com", "localhost.example.com:5000"):
        assert not is_loopback(host), host
    insecure = ["10.1.0.0/16", "reg.lan", "other.lan:5000"]
    assert is_insecure("10.1.2.3:5000", insecure)
    assert is_insecure("reg.lan:443", insecure) and is_insecure("reg.lan", insecure)
    assert is_insecure("other.lan:5000", insecure) and not is_insecure("other.lan:6000", insecure)
    assert not is_insecure("10.2.0.1:5000", insecure)
    cfg = RegistryConfig(insecure=tuple(insecure))
    assert cfg.plain_http_allowed("127.0.0.1:5000") and not cfg.skip_verify("127.0.0.1:5000")
    assert cfg.plain_http_allowed("reg.lan") and cfg.skip_verify("reg.lan")
    assert not RegistryConfig().plain_http_allowed("reg.example.com")


def test_load_config(tmp_path):
    f = tmp_path / "registries.json"
    f.write_text('{"insecure-registries": ["a.lan:5000"]}')
    cfg = load_config({"STACKCTL_INSECURE_REGISTRIES": "b.lan, 10.0.0.0/8", "STACKCTL_REGISTRIES_CONFIG": str(f)})
    assert cfg.insecure == ("b.lan", "10.0.0.0/8", "a.lan:5000")
    assert load_config({"STACKCTL_REGISTRIES_CONFIG": str(tmp_path / "none")}).insecure == ()
    f.write_text("{nope")
    from stackctl.errors import StackctlError

    with pytest.raises(StackctlError, match="insecure-registries"):
        load_config({"STACKCTL_REGISTRIES_CONFIG": str(f)})


def test_progress_shapes():
    assert bar(0, 100) == "[" + " " * 50 + "]  0B/100B"
    assert bar(50, 100) == "[" + "=" * 24 + ">" + " " * 25 + "]  50B/100B"
    assert bar(1_234_567, 12_345_678).endswith("]  1.23MB/12.3MB")
    assert layer_line("abc", "Downloading", 5, 10).startswith("abc: Downloading [")
    assert layer_line("abc", "Pull complete", 10, 10) == "abc: Pull complete"
    out = io.StringIO()
    p = PlainProgress(out)
    p.line("1: Pulling from app")
    for cur in (0, 5, 10):
        p.layer("abc", "Downloading", cur, 10)
    p.layer("abc", "Pull complete")
    assert out.getvalue().splitlines() == ["1: Pulling from app", "abc: Downloading", "abc: Pull complete"]


def test_bars_fit_narrow_terminals():
    wide = layer_line("0123456789ab", "Downloading", 5, 10)
    narrow = layer_line("0123456789ab", "Downloading", 5, 10, columns=60)
    assert len(wide) > 60 >= len(narrow) and "[" in narrow and narrow.endswith("5B/10B")
    assert len(layer_line("0123456789ab", "Downloading", 5, 10, columns=20)) > 20  # never below 10 columns of bar


def test_callback_progress_for_the_controller():
    events, now = [], [0.0]
    p = CallbackProgress(events.append, interval=0.5, clock=lambda: now[0])
    p.line("1: Pulling from app")
    p.layer("abc", "Pulling fs layer")
    for t, cur in ((0.1, 1), (0.2, 2), (0.7, 3)):
        now[0] = t
        p.layer("abc", "Downloading", cur, 10)
    p.layer("abc", "Pull complete")
    assert events == [{"line": "1: Pulling from app"},
                      {"layer": "abc", "status": "Pulling fs layer", "current": 0, "total": 0},
                      {"layer": "abc", "status": "Downloading", "current": 1, "total": 10},
                      {"layer": "abc", "status": "Downloading", "current": 3, "total": 10},
                      {"layer": "abc", "status": "Pull complete", "current": 0, "total": 0}]
