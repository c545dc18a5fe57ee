import datetime as dt

import pytest

from stackctl.runtime.images import view
from stackctl.runtime.images.store import Image


@pytest.mark.parametrize("n,s", [(0, "0B"), (999, "999B"), (1000, "1kB"), (4_261_000, "4.26MB"),
                                 (1_982_272, "1.98MB"), (123_456_789, "123MB"), (5 * 10**9, "5GB")])
def test_human_size(n, s):
    assert view.human_size(n) == s


@pytest.mark.parametrize("sec,s", [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
                                   (60, "About a minute"), (150, "2 minutes"), (3600, "About an hour"),
                                   (7200, "2 hours"), (3 * 86400, "3 days"), (20 * 86400, "2 weeks"),
                                   (90 * 86400, "3 months"), (800 * 86400, "2 years")])
def test_human_duration(sec, s):
    assert view.human_duration(sec) == s


def test_ago_and_rows():
    now = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert view.ago("2024-01-01T11:57:30.123456789Z", now) == "2 minutes ago"
    assert view.ago("", now) == "N/A"
    img = Image(id="sha256:" + "b" * 64, repo_tags=["host:5000/app:1", "app:latest"], created="2024-01-01T11:00:00Z",
                size=4_261_000, config={"config": {"Cmd": ["sh"]}, "rootfs": {"diff_ids": []},
                                        "history": [{"created_by": "CMD [\"sh\"]", "empty_layer": True}]})
    rows = view.ls_rows([img], now=now)
    assert [(r["Repository"], r["Tag"]) for r in rows] == [("host:5000/app", "1"), ("app", "latest")]
    assert rows[0]["ID"] == "b" * 12 and rows[0]["Size"] == "4.26MB" and rows[0]["CreatedSince"] == "About an hour ago"
    dangling = Image(id="sha256:" + "c" * 64, repo_tags=[], created="", size=0, config={})
    assert view.ls_rows([dangling])[0]["Repository"] == "<none>"
    ins = view.inspect(img)
    assert ins["Id"] == img.id and ins["Config"]["Cmd"] == ["sh"] and ins["RepoTags"] == img.repo_tags
    hist = view.history_rows(img, [], now=now)
    assert hist[0]["ID"] == "b" * 12 and hist[0]["Size"] == 0
