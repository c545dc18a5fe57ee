"""The service graph: edges, start/stop levels, cycles, profiles."""

from __future__ import annotations

from spec_models_help import FIXTURES, build, errors

from stackctl.spec.graph import Dependency


def graph(text: str, **kwargs):
    return build(text, **kwargs)[1]


STACK = """
services:
  web:
    image: x
    depends_on:
      api: {condition: service_healthy, restart: true}
  api:
    image: x
    depends_on: [db, cache]
  db:
    image: x
  cache:
    image: x
  sidecar:
    image: x
    network_mode: service:web
  backup:
    image: x
    volumes_from: [db:ro]
"""


def test_levels():
    g = graph(STACK)
    assert g.start_levels() == [["cache", "db"], ["api", "backup"], ["web"], ["sidecar"]]
    assert g.stop_levels() == [["sidecar"], ["web"], ["api", "backup"], ["cache", "db"]]
    assert g.start_order() == ["cache", "db", "api", "backup", "web", "sidecar"]


def test_edges_and_queries():
    g = graph(STACK)
    assert g.dependencies("web") == [Dependency("web", "api", "depends_on", "service_healthy",
                                                True, True)]
    assert [d.kind for d in g.dependencies("sidecar")] == ["network_mode"]
    assert [d.kind for d in g.dependencies("backup")] == ["volumes_from"]
    assert g.dependents("db") == ["api", "backup"]
    assert g.with_dependencies(["web"]) == {"web", "api", "db", "cache"}
    assert len(g) == 6 and "web" in g and len(g.edges()) == 5


def test_cycle_named_in_order():
    text = (FIXTURES / "cycle" / "stack.yml").read_text()
    assert errors(text) == (FIXTURES / "cycle" / "expected.txt").read_text().splitlines()


def test_two_cycles_both_reported():
    text = """
services:
  a: {image: x, depends_on: [b]}
  b: {image: x, depends_on: [a]}
  c: {image: x, depends_on: [d]}
  d: {image: x, depends_on: [c]}
"""
    lines = errors(text)
    assert [line.split(": ", 2)[2] for line in lines] == ["dependency cycle: a -> b -> a",
                                                          "dependency cycle: c -> d -> c"]


PROFILES = (FIXTURES / "profiles" / "stack.yml").read_text()


def test_profiles_switch_services():
    st, g, warnings = build(PROFILES, profiles=["db"])
    assert sorted(st.services) == ["db", "web"]
    assert g.start_levels() == [["db"], ["web"]]
    # the optional dependency on the switched-off debug service is dropped, with a warning
    assert "debug" not in st.services["web"].depends_on
    assert [str(w) for w in warnings] == [
        "stack.yml:6:7: services.web.depends_on.debug: depends on service debug, which is not "
        "enabled by the active profiles (it needs profile debug); ignored"]


def test_star_activates_all_profiles():
    st, g, _ = build(PROFILES, profiles=["*"])
    assert sorted(st.services) == ["db", "debug", "tools", "web"]
    assert g.start_levels() == [["db", "debug"], ["web"], ["tools"]]


def test_required_dependency_on_switched_off_service():
    assert errors(PROFILES) == [
        "stack.yml:5:7: services.web.depends_on.db: depends on service db, which is not "
        "enabled by the active profiles (it needs profile db, all)"]
