"""Progress rendering of the stack verbs: pure, from events."""

from __future__ import annotations

import io
import json

from stackctl.cli import progress as P


def ev(action, status="done", service="web", slot="1", message="", **kw):
    return {"time": 1.0, "stack": "shop", "service": service, "slot": slot, "action": action,
            "status": status, "message": message, **kw}


def test_plain_line_shape():
    line = P.plain_line(ev("recreate", "started", slot="2", message="config changed: environment"))
    assert line == "[+] web.2 recreate: started (config changed: environment)"


def test_plain_line_error_and_service_only():
    assert P.plain_line(ev("start", "error", slot=None, message="exit 1")) == \
        "[!] web start: error (exit 1)"
    assert P.plain_line(ev("network", service="", slot=None, message="network shop_back")) == \
        "[+] network shop_back: created"
    assert P.plain_line(ev("volume", "started", service="", slot=None,
                           message="volume shop_data")) == "[+] volume shop_data: creating"
    assert P.plain_line(ev("network", service="", slot=None,
                           message="removed network shop_back")) == "[+] network shop_back: removed"
    assert P.plain_line(ev("done", service="", slot=None, message="stack shop deployed")) == \
        "[+] stack shop deployed"


def test_state_actions_print_without_status():
    assert P.plain_line(ev("failed", "error", slot="1", message="exit 1")) == "[!] web.1 failed (exit 1)"
    assert P.plain_line(ev("healthy")) == "[+] web.1 healthy"


def test_state_words():
    assert P.state_word(ev("pull", "started")) == "pulling"
    assert P.state_word(ev("build", "started")) == "building"
    assert P.state_word(ev("create", "started")) == "creating"
    assert P.state_word(ev("start", "done")) == "started"
    assert P.state_word(ev("healthy", "done")) == "healthy"
    assert P.state_word(ev("start", "error")) == "failed"


def test_json_renderer_one_object_per_event():
    out = io.StringIO()
    r = P.renderer_for("json", out=out)
    r.event(ev("create", "started"))
    r.event(ev("create", "done"))
    lines = out.getvalue().splitlines()
    assert [json.loads(x)["status"] for x in lines] == ["started", "done"]


def test_renderer_choice():
    assert isinstance(P.renderer_for("text", out=io.StringIO(), tty=False), P.PlainRenderer)
    assert isinstance(P.renderer_for("text", out=io.StringIO(), tty=True), P.LiveRenderer)


def test_live_renderer_redraws_in_place():
    out = io.StringIO()
    t = [0.0]
    r = P.LiveRenderer(out, title="Running shop", clock=lambda: t[0])
    r.event(ev("create", "started", slot="1"))
    r.event(ev("create", "started", slot="2"))
    t[0] = 1.5
    r.event(ev("healthy", "done", slot="1"))
    text = out.getvalue()
    assert "\x1b[3A" in text  # moved up over the title and two slot lines
    last = r.lines()
    assert "1/2" in last[0]
    assert "web.1" in last[1] and "healthy" in last[1] and "1.5s" in last[1]
    assert "web.2" in last[2] and "creating" in last[2]


def test_summary_collects_failures_and_rollbacks():
    r = P.PlainRenderer(io.StringIO())
    r.event(ev("unhealthy", "done", slot="2", message="health check failed 3 times"))
    r.event(ev("rollback", "started", slot=None))
    assert r.summary.failures == [("web.2", "health check failed 3 times")]
    assert r.summary.rolled_back == ["web"]
