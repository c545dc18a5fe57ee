"""The benchmark suite's pure parts (bench/results.py): statistics and figures, the Markdown
table with its ratio columns, the targets met / not met / not measured, the SVG chart and the
results page. No benchmark runs here."""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

from bench import results as res  # noqa: E402


def _result(name: str, *groups: res.Group, **values: float) -> res.Result:
    return res.Result(name, list(groups), values=dict(values))


def test_p95_and_median_of_samples():
    xs = [float(i) for i in range(1, 21)]  # 1..20
    assert res.median(xs) == 10.5
    assert res.p95(xs) == 19.0
    assert res.p95([3.0]) == 3.0


def test_fmt_keeps_three_significant_digits():
    assert res.fmt(123456.7) == "123,457"
    assert res.fmt(12.345) == "12.3"
    assert res.fmt(1.2345) == "1.23"
    assert res.fmt(0.012345) == "0.0123"
    assert res.fmt(0) == "0"


def test_group_of_scales_and_drops_empty_rows():
    g = res.group_of("t", "ms", [("stackctl x", [0.1, 0.2]), ("docker y", [])], scale=1000)
    assert [r.label for r in g.rows] == ["stackctl x"]
    assert g.rows[0].samples == [100.0, 200.0]


def test_markdown_table_has_a_ratio_column_per_peer():
    g = res.Group("start", "ms", [res.Row("stackctl run", [10.0, 20.0, 30.0]),
                                  res.Row("crun run", [5.0, 10.0, 15.0]),
                                  res.Row("docker run", [40.0])])
    lines = res.markdown_table(g).splitlines()
    assert lines[0] == ("| tool | median (ms) | p95 (ms) | min–max (ms) | runs | vs crun run "
                        "| vs docker run |")
    assert lines[2] == "| **stackctl run** | 20.0 | 30.0 | 10.0–30.0 | 3 | 2.00x | 0.50x |"
    assert lines[3] == "| crun run | 10.0 | 15.0 | 5.00–15.0 | 3 | — | 0.25x |"
    assert lines[4].endswith("| 4.00x | — |")


def test_result_survives_json():
    r = _result("x", res.Group("g", "s", [res.Row("stackctl a", [1.0])], True), failed=0)
    r.notes.append("podman: not installed")
    back = res.Result.from_json(r.to_json())
    assert back == r


def test_targets_met_not_met_and_not_measured():
    start = _result("start_latency", res.Group("container start, /bin/true", "ms", [
        res.Row("stackctl run --rm (agent up: warm)", [40.0]), res.Row("crun run", [10.0])]))
    config = _result("config_speed",
                     res.Group("config, 3 services", "ms", [res.Row("stackctl config -q", [90.0])]),
                     res.Group("config, 400 services", "ms", [res.Row("stackctl config -q", [1500.0])]))
    verdicts = {v.target: v for v in res.verdicts({"start_latency": start, "config_speed": config})}
    warm = verdicts["warm start within 3x of crun"]
    assert (warm.measured, warm.met) == ("4.00x", False)
    assert verdicts["`config` of 3 services <= 100 ms"].met is True
    config.values["stackctl_cpu_ms_3_services"] = 40.0
    got = {v.target: v for v in res.verdicts({"config_speed": config})}
    assert got["`config` of 3 services <= 100 ms"].measured == "90.0 ms wall (CPU 40.0 ms)"
    assert verdicts["`config` of 400 services <= 1 s"].met is False
    assert verdicts["overlay >= 0.8x direct"].met is None
    assert verdicts["overlay >= 0.8x direct"].mark == "not measured"


def test_rolling_update_target_needs_speed_and_no_failed_request():
    def rolling(ours: float, failed: int) -> res.Verdict:
        r = _result("rolling_update", res.Group("rolling update of 3 replicas", "s", [
            res.Row("stackctl up (rolling update)", [ours]),
            res.Row("docker service update (swarm)", [6.0])]), stackctl_failed_requests=failed)
        return next(v for v in res.verdicts({"rolling_update": r}) if "rolling" in v.target)

    assert rolling(3.0, 0).met is True
    assert rolling(3.0, 1).met is False
    assert rolling(7.0, 0).met is False
    assert rolling(3.0, 0).measured == "0.50x of swarm's time, 0 failed requests"


def test_throughput_target_is_higher_is_better():
    def overlay(ours: float) -> bool | None:
        r = _result("overlay", res.Group("throughput between two nodes", "Gb/s", [
            res.Row("direct (veth)", [10.0]), res.Row("stackctl overlay (VXLAN)", [ours])], True))
        return next(v for v in res.verdicts({"overlay": r}) if "overlay" in v.target).met

    assert overlay(9.0) is True
    assert overlay(7.0) is False


def test_pull_needs_both_peers_measured():
    group = res.Group("pull, plain layers (48 MB)", "ms", [
        res.Row("stackctl pull", [100.0]), res.Row("skopeo copy", [120.0])])
    v = next(v for v in res.verdicts({"registry": _result("registry", group)})
             if v.target.startswith("pull"))
    assert v.met is None  # docker pull not measured: the target cannot be judged
    group.rows.append(res.Row("docker pull", [300.0]))
    v = next(v for v in res.verdicts({"registry": _result("registry", group)})
             if v.target.startswith("pull"))
    assert (v.met, v.measured) == (True, "vs skopeo 0.83x, vs docker 0.33x")


def test_svg_chart_is_well_formed_and_escapes_labels():
    g = res.Group("a <b> & c", "ms", [res.Row("stackctl <x>", [1.0, 2.0, 9.0]),
                                      res.Row("docker", [4.0])])
    svg = res.svg_chart("title & more", [g, res.Group("empty", "ms", [])])
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    rects = [e for e in root.iter() if e.tag.endswith("rect")]
    bars = [r for r in rects if r.get("fill") in (res.OURS_COLOUR, res.PEER_COLOUR)]
    assert [b.get("fill") for b in bars] == [res.OURS_COLOUR, res.PEER_COLOUR]
    # the bars are proportional to the medians (2 and 4)
    assert abs(float(bars[1].get("width")) / float(bars[0].get("width")) - 2.0) < 0.01
    assert "stackctl &lt;x&gt;" in svg and "empty" not in svg


def test_results_page_shows_run_targets_and_reasons():
    state = {"run": {"command": "scripts/bench --quick", "date": "2026-01-01 00:00 UTC",
                     "commit": "abc123", "machine": {"cores": 2, "kernel": "6.1"},
                     "missing": ["podman: not installed (apt-get install podman)"]},
             "entries": {
                 "config_speed": {"command": "python3 bench/config_speed.py", "mode": "quick",
                                  "result": _result("config_speed", res.Group(
                                      "config, 3 services", "ms",
                                      [res.Row("stackctl config -q", [50.0])])).to_json()},
                 "node_loss": {"skipped": "bench/node_loss.py is not in this checkout"}}}
    page = res.results_markdown(state, [("config_speed", "Config", "what"),
                                        ("node_loss", "Node loss", "what")])
    assert "`scripts/bench --quick`" in page and "abc123" in page
    assert "- peer podman: not installed (apt-get install podman)" in page
    assert "| `config` of 3 services <= 100 ms | 50.0 ms | met |" in page
    assert "![Config](charts/config_speed.svg)" in page
    assert "Not measured: bench/node_loss.py is not in this checkout." in page
    assert "a **quick** run" in page


def test_readme_region_is_replaced_between_its_markers_only():
    text = f"intro\n{res.README_BEGIN}\nold\n{res.README_END}\nafter\n"
    assert res.replace_between(text, res.README_BEGIN, res.README_END, "new") == (
        f"intro\n{res.README_BEGIN}\nnew\n{res.README_END}\nafter\n")
    assert res.replace_between("no markers", res.README_BEGIN, res.README_END, "x") is None
    summary = res.readme_summary({"run": {"command": "scripts/bench", "commit": "abc (dirty)"},
                                  "entries": {}}, [])
    assert "[bench/RESULTS.md](bench/RESULTS.md)" in summary and "| target |" in summary


def test_node_loss_result_of_its_own_form_and_its_target():
    data = {"benchmark": "node_loss", "results": [{"replicas": 1, "seconds": 6.1},
                                                  {"replicas": 100, "seconds": 12.5}]}
    r = res.adapt("node_loss", data)
    assert [row.label for row in r.groups[0].rows] == ["stackctl, 1 replicas",
                                                       "stackctl, 100 replicas"]
    v = next(v for v in res.verdicts({"node_loss": r}) if "node-loss" in v.target)
    assert (v.met, v.measured) == (False, "12.5 s (slowest: 100 replicas)")
    data["results"][1]["seconds"] = 9.0
    assert next(v for v in res.verdicts({"node_loss": res.adapt("node_loss", data)})
                if "node-loss" in v.target).met is True
