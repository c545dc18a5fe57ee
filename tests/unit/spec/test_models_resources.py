"""Top-level secrets and configs, and a service's use of them."""

from __future__ import annotations

from spec_models_help import errors, stack, svc_text

from stackctl.spec.dump import stack_data


def test_secret_sources_and_defaults():
    st = stack(svc_text("secrets: [a, {source: b, target: bee, uid: '1', mode: 0440}]\n"
                        "configs: [c]") + """
secrets:
  a: {file: ./a.txt}
  b: {environment: B_SECRET}
configs:
  c: {content: "hello"}
  d: {external: true}
""")
    web = st.services["web"]
    assert [(r.source, r.target) for r in web.secrets] == [("a", "a"), ("b", "bee")]
    assert web.secrets[1].mode == 0o440
    assert web.configs[0].target == "/c"
    assert st.secrets["a"].file == "/srv/proj/a.txt" and st.secrets["a"].name == "proj_a"
    assert st.configs["d"].name == "d"
    assert st.configs["c"].content == "hello"


def test_secret_content_is_redacted():
    st = stack(svc_text("secrets: [s]") + "secrets:\n  s: {content: hunter2}\n")
    assert st.secrets["s"].content.get_secret_value() == "hunter2"
    data = stack_data(st)
    assert data["secrets"]["s"]["content"] == "<redacted>"
    assert "hunter2" not in repr(st) and "hunter2" not in str(data)


def test_secret_needs_exactly_one_source():
    errs = errors("services: {}\nsecrets:\n  a: {labels: {x: y}}\n  b: {file: f, content: c}\n")
    assert errs == [
        "stack.yml:3:6: secrets.a: a secret needs one of: file, environment, content, external, "
        "driver",
        'stack.yml:4:6: secrets.b: a secret takes only one of file, environment, content and '
        'external; got "file" and "content"',
    ]


def test_undefined_secret_and_config():
    errs = errors(svc_text("secrets: [nope]\nconfigs: [{source: gone}]"))
    assert errs == [
        "stack.yml:4:15: services.web.secrets[0]: undefined secret nope "
        "(declare it under the top-level secrets: key)",
        "stack.yml:5:15: services.web.configs[0]: undefined config gone "
        "(declare it under the top-level configs: key)",
    ]
