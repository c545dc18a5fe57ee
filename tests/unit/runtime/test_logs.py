"""Reading json-file logs: selection, time parsing, following."""

import json
import threading

import pytest

from stackctl.errors import UsageError
from stackctl.runtime import logs as L

NS = L.NS
T0 = "2024-05-01T12:00:00.000000001Z"


def write_log(path, lines):
    with open(path, "w") as f:
        for i, (stream, text) in enumerate(lines):
            f.write(json.dumps({"log": text, "stream": stream, "time": f"2024-05-01T12:00:{i:02d}.5Z"}) + "\n")


def test_rfc3339_round_trip_and_zones():
    ns = L.parse_rfc3339_ns(T0)
    assert ns % NS == 1
    assert L.format_rfc3339_ns(ns) == T0
    assert L.parse_rfc3339_ns("2024-05-01T14:00:00+02:00") == L.parse_rfc3339_ns("2024-05-01T12:00:00Z")
    assert L.parse_rfc3339_ns("2024-05-01") == L.parse_rfc3339_ns("2024-05-01T00:00:00Z")
    assert L.format_rfc3339(ns - 1) == "2024-05-01T12:00:00Z"
    assert L.format_rfc3339(ns + 99) == "2024-05-01T12:00:00.0000001Z"


def test_time_args():
    now = 1_700_000_000 * NS
    assert L.parse_time_arg("10m", now) == now - 600 * NS
    assert L.parse_time_arg("1h30m", now) == now - 5400 * NS
    assert L.parse_time_arg("1700000000", now) == now
    assert L.parse_time_arg("1700000000.5", now) == now + NS // 2
    assert L.parse_time_arg("2023-11-14T22:13:20Z", now) == now
    with pytest.raises(UsageError, match="--since"):
        L.parse_time_arg("yesterday", now)


def test_tail_values():
    assert L.parse_tail("all") is None and L.parse_tail("3") == 3 and L.parse_tail(-1) is None
    with pytest.raises(UsageError):
        L.parse_tail("x")


def test_read_all_tail_since_until(tmp_path):
    p = tmp_path / "c-json.log"
    write_log(p, [("stdout", f"line{i}\n") for i in range(10)] + [("stderr", "oops\n")])
    entries, offset = L.read_log(str(p))
    assert [e.text for e in entries][:2] == ["line0\n", "line1\n"] and entries[-1].stream == "stderr"
    assert offset == p.stat().st_size
    tail, _ = L.read_log(str(p), tail=2)
    assert [e.text for e in tail] == ["line9\n", "oops\n"]
    assert L.read_log(str(p), tail=0)[0] == []
    since = L.parse_rfc3339_ns("2024-05-01T12:00:08Z")
    got, _ = L.read_log(str(p), since_ns=since)
    assert [e.text for e in got] == ["line8\n", "line9\n", "oops\n"]
    got, _ = L.read_log(str(p), since_ns=since, until_ns=L.parse_rfc3339_ns("2024-05-01T12:00:09.9Z"), tail=1)
    assert [e.text for e in got] == ["line9\n"]


def test_tail_reads_backwards_across_blocks(tmp_path):
    p = tmp_path / "big.log"
    write_log(p, [("stdout", "x" * 500 + f"{i}\n") for i in range(60)])
    with open(p, "rb") as f:
        lines = L._last_lines(f, 3, block=1000)
    assert [json.loads(x)["log"].strip()[-2:] for x in lines] == ["57", "58", "59"]


def test_torn_and_missing(tmp_path):
    p = tmp_path / "t.log"
    p.write_text('{"log":"ok\\n","stream":"stdout","time":"2024-05-01T12:00:00Z"}\nnot json\n{"log":"half')
    entries, offset = L.read_log(str(p))
    assert [e.text for e in entries] == ["ok\n"]
    assert offset == len(p.read_bytes()) - len('{"log":"half')
    assert L.read_log(str(tmp_path / "none.log")) == ([], 0)


def test_render_timestamps():
    e = L.LogEntry(L.parse_rfc3339_ns(T0), "stdout", "hi\n")
    assert L.render(e) == "hi\n"
    assert L.render(e, timestamps=True) == f"{T0} hi\n"


def test_follow_until_stopped(tmp_path):
    p = tmp_path / "f.log"
    write_log(p, [("stdout", "a\n")])
    _, offset = L.read_log(str(p))
    stopped = threading.Event()
    got = []
    calls = {"n": 0}

    def wait_stopped(t):
        calls["n"] += 1
        if calls["n"] == 1:  # the container writes more, then exits
            with open(p, "a") as f:
                f.write(json.dumps({"log": "b\n", "stream": "stderr", "time": T0}) + "\n")
                f.write(json.dumps({"log": "partial", "stream": "stdout", "time": T0}))
            stopped.set()
            return False
        return stopped.is_set()

    for e in L.follow_log(str(p), offset, wait_stopped):
        got.append((e.stream, e.text))
    assert got == [("stderr", "b\n"), ("stdout", "partial")]


def test_follow_stops_at_until(tmp_path):
    p = tmp_path / "u.log"
    write_log(p, [("stdout", f"{i}\n") for i in range(5)])
    until = L.parse_rfc3339_ns("2024-05-01T12:00:02Z")
    got = [e.text for e in L.follow_log(str(p), 0, lambda t: False, until_ns=until)]
    assert got == ["0\n", "1\n"]
