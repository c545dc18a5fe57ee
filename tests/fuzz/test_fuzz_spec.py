"""Arbitrary input only ever raises SpecError (never a traceback of another kind)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackctl.errors import SpecError
from stackctl.spec.validate import build_stack
from stackctl.spec.yamlpos import load_yaml

KEYS = ["services", "networks", "volumes", "secrets", "configs", "web", "db", "image", "ports",
        "volumes", "deploy", "replicas", "mode", "healthcheck", "test", "depends_on",
        "condition", "environment", "command", "target", "published", "type", "source",
        "resources", "limits", "cpus", "memory", "restart_policy", "update_config", "delay",
        "network_mode", "volumes_from", "profiles", "external", "driver", "ipam", "config",
        "subnet", "x-a", "build", "context", "ulimits", "extra_hosts", "secrets", "file",
        "content", "aliases", "labels", "scale", "restart", "tmpfs", "devices", "1"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.sampled_from(["8080:80", "80-81", "data:/data", "./x:/y:ro", "1m30s", "512m", "0.5",
                     "service:web", "global", "CMD", "web", "", "a=b", "::1", "10.0.0.0/8"]),
    st.text(max_size=12),
)
data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _run(raw) -> None:
    try:
        build_stack(raw, project_name="p", project_dir="/nonexistent", environ={},
                    profiles=["*"])
    except SpecError as exc:
        assert exc.issues and all(str(i) for i in exc.issues)


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS), data, max_size=5))
def test_arbitrary_data(raw):
    _run(raw)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["web", "db", "a"]),
                       st.dictionaries(st.sampled_from(KEYS), data, max_size=6), max_size=3))
def test_arbitrary_services(services):
    _run({"services": services})


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}&*!|>'\"#\n 0123.,$")), max_size=80))
def test_arbitrary_yaml_text(text):
    try:
        raw = load_yaml(text, "f.yml")
    except SpecError:
        return
    _run(raw)
