"""Docker's output shapes."""

import pytest

from stackctl.cli import format as F
from stackctl.runtime.logs import parse_rfc3339_ns
from stackctl.runtime.spec import ContainerSpec, ContainerState, Mount


@pytest.mark.parametrize("n,want", [(0, "0B"), (999, "999B"), (1000, "1kB"), (4_260_000, "4.26MB"),
                                    (4_261_234, "4.261MB"), (1_500_000_000, "1.5GB")])
def test_human_size(n, want):
    assert F.human_size(n) == want


@pytest.mark.parametrize("n,want", [(0, "0B"), (1536, "1.5KiB"), (32 << 20, "32MiB"), (int(31.3 * (1 << 30)), "31.3GiB")])
def test_bytes_size(n, want):
    assert F.bytes_size(n) == want


@pytest.mark.parametrize("s,want", [(0.3, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
                                    (60, "About a minute"), (119, "About a minute"), (150, "2 minutes"),
                                    (3600, "About an hour"), (3 * 3600, "3 hours"), (47 * 3600, "47 hours"),
                                    (3 * 86400, "3 days"), (20 * 86400, "2 weeks"), (90 * 86400, "3 months"),
                                    (800 * 86400, "2 years")])
def test_human_duration(s, want):
    assert F.human_duration(s) == want


def test_status_strings():
    assert F.status_string("running", None, 3, None) == "Up 3 seconds"
    assert F.status_string("exited", 0, 10, 125) == "Exited (0) 2 minutes ago"
    assert F.status_string("exited", 137, 10, 0.1) == "Exited (137) Less than a second ago"
    assert F.status_string("created", None, None, None) == "Created"


def test_table_padding_like_docker_tabwriter():
    out = F.table(["A", "LONGER HEADER", "LAST"], [["x", "y", "zzzzzzzzzzzzzzzzzz"]])
    lines = out.splitlines()
    assert lines[0] == "A         LONGER HEADER   LAST"
    assert lines[1] == "x         y               zzzzzzzzzzzzzzzzzz"


def test_command_and_ellipsis():
    assert F.command_string(["sh", "-c", "echo hi"]) == "sh -c 'echo hi'"
    assert F.ellipsis("sh -c 'while true; do sleep 1; done'", 20) == "sh -c 'while true; …"
    assert F.quote_go("sh -c 'x'") == '"sh -c \'x\'"'


def test_templates():
    obj = {"Name": "/web", "State": {"OOMKilled": True, "ExitCode": 137}, "Labels": {"a": "1"}}
    assert F.render_template("{{.Name}} {{.State.OOMKilled}} {{.State.ExitCode}}", obj) == "/web true 137"
    assert F.render_template("{{json .Labels}}", obj) == '{"a": "1"}'
    assert F.render_template("{{.Missing}}", obj) == "<no value>"
    assert F.unescape_template("{{.A}}\\t{{.B}}") == "{{.A}}\t{{.B}}"


def _spec(**kw):
    base = dict(id="a" * 64, name="busy_bohr", image="bb:latest", image_id="sha256:" + "f" * 64, rootfs_layers=[],
                argv=["sh", "-c", "sleep 1000; echo done"], created="2024-05-01T12:00:00Z")
    base.update(kw)
    return ContainerSpec(**base)


def test_container_row_and_ps_table():
    now = parse_rfc3339_ns("2024-05-01T12:02:30Z")
    spec = _spec(mounts=[Mount("volume", "/data", "/v/_data", volume_name="mydata-volume-long"),
                         Mount("tmpfs", "/run")], labels={"b": "2", "a": "1"})
    st = ContainerState(status="running", started_at="2024-05-01T12:02:27Z")
    row = F.container_row(spec, st, now)
    assert row["ID"] == "a" * 12 and row["Names"] == "busy_bohr"
    assert row["Command"] == '"sh -c \'sleep 1000; …"'
    assert row["RunningFor"] == "2 minutes ago" and row["Status"] == "Up 3 seconds"
    assert row["Labels"] == "a=1,b=2" and row["Mounts"] == "mydata-volume-…" and row["LocalVolumes"] == "1"
    assert row["CreatedAt"] == "2024-05-01 12:00:00 +0000 UTC"
    out = F.ps_table([row]).splitlines()
    assert out[0].startswith("CONTAINER ID   IMAGE       COMMAND                  CREATED         STATUS         PORTS     NAMES")
    assert out[1].split() [:2] == ["a" * 12, "bb:latest"]
    full = F.container_row(spec, ContainerState(status="exited", exit_code=3, finished_at="2024-05-01T12:01:30Z"), now, trunc=False)
    assert full["ID"] == "a" * 64 and full["Status"] == "Exited (3) About a minute ago"


def test_stats_row_two_samples():
    prev = {}
    spec = _spec()
    r1 = F.stats_row(spec, {"memory_usage": 1 << 20, "memory_limit": 32 << 20, "cpu_usage_ns": 0, "pids": 2}, prev, 10.0)
    assert r1["_sampled"] and r1["MemUsage"] == "1MiB / 32MiB" and r1["MemPerc"] == "3.12%"
    r2 = F.stats_row(spec, {"memory_usage": 1 << 20, "memory_limit": 32 << 20, "cpu_usage_ns": 250_000_000, "pids": 2}, prev, 10.5)
    assert r2["CPUPerc"] == "50.00%" and r2["PIDs"] == "2"
    assert F.stats_table([r2]).splitlines()[0].split("   ")[0] == "CONTAINER ID"
