"""The container manager against a fake image store and a fake execution core (no root)."""

import json
import os
import threading
from dataclasses import dataclass, field

import pytest

from stackctl.errors import ConflictError, NotFoundError, StackctlError, UsageError
from stackctl.paths import NodePaths
from stackctl.runtime.imageconfig import RunOptions
from stackctl.runtime.manager import ContainerManager
from stackctl.runtime.records import parse_filters, parse_ps_table
from stackctl.runtime.spec import ContainerState


@dataclass
class FakeImage:
    id: str
    repo_tags: list
    config: dict
    dirs: list = field(default_factory=list)

    def layer_dirs(self):
        return self.dirs


class FakeImages:
    def __init__(self, tmp):
        layer = tmp / "layer"
        layer.mkdir()
        self.img = FakeImage("sha256:" + "e" * 64, ["bb:latest"],
                             {"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "Volumes": {"/cache": {}}}}, [str(layer)])

    def resolve(self, ref):
        if ref in ("bb", "bb:latest"):
            return self.img
        raise NotFoundError(f"image {ref!r} not found locally")


class FakeCore:
    """Keeps states in memory; writes state.json so the manager knows it started."""

    def __init__(self, paths):
        self.paths, self.states, self.signals, self.cleaned = paths, {}, [], []

    def _cdir(self, cid):
        return os.path.join(self.paths.containers, cid)

    def start_container(self, paths, spec, attach=False):
        if spec.argv[0] == "missing":
            raise StackctlError("exec: not found")
        st = ContainerState(status="running", pid=4242, monitor_pid=4241, started_at="2024-05-01T12:00:00Z")
        self.states[spec.id] = st
        with open(os.path.join(self._cdir(spec.id), "state.json"), "w") as f:
            json.dump(st.to_json(), f)
        return st

    def read_state(self, paths, cid):
        return self.states[cid]

    def signal_container(self, paths, cid, sig):
        self.signals.append((cid, int(sig)))
        if int(sig) == 9:
            self.states[cid] = ContainerState(status="exited", exit_code=137)

    def stop_container(self, paths, cid, timeout):
        self.states[cid] = ContainerState(status="exited", exit_code=0)

    def wait_container(self, paths, cid):
        return self.states[cid]

    def cleanup_container(self, paths, cid):
        self.cleaned.append(cid)


@pytest.fixture
def mgr(tmp_path):
    paths = NodePaths(str(tmp_path / "state"), str(tmp_path / "run"), "test")
    return ContainerManager(paths, FakeImages(tmp_path), FakeCore(paths))


def opts(**kw):
    return RunOptions(kw.pop("image", "bb"), **kw)


def test_create_writes_records_and_anonymous_volume(mgr):
    rec = mgr.create(opts(command=["echo", "hi"], labels={"a": "1"}), "web")
    d = os.path.join(mgr.paths.containers, rec.id)
    assert sorted(os.listdir(d)) == ["config.json", "meta.json"]
    again = mgr.get("web")
    assert again.spec.argv == ["echo", "hi"] and again.state.status == "created"
    (cache,) = [m for m in again.spec.mounts if m.target == "/cache"]
    assert cache.type == "volume" and len(cache.volume_name) == 64 and os.path.isdir(cache.source)
    assert mgr.volumes.get(cache.volume_name).anonymous


def test_name_in_use_is_a_conflict_and_leaves_nothing(mgr):
    first = mgr.create(opts(), "web")
    vols_before = {v.name for v in mgr.volumes.list()}
    with pytest.raises(ConflictError, match=f'the container name "/web" is already in use by container "{first.id}"'):
        mgr.create(opts(), "web")
    assert mgr.ids() == [first.id]
    assert {v.name for v in mgr.volumes.list()} == vols_before


def test_unknown_image_and_bad_name(mgr):
    with pytest.raises(NotFoundError, match="nope"):
        mgr.create(opts(image="nope"))
    with pytest.raises(UsageError):
        mgr.create(opts(), "x")
    assert mgr.ids() == []


def test_bad_bind_source_rolls_back_everything(mgr, tmp_path):
    with pytest.raises(StackctlError, match="bind source path does not exist: /no/such/dir"):
        mgr.create(opts(volumes=["newvol:/data"], mounts=["type=bind,source=/no/such/dir,target=/x"]))
    assert mgr.ids() == [] and mgr.volumes.list() == []
    # -v creates a missing host directory, as Docker does
    host = tmp_path / "made" / "here"
    rec = mgr.create(opts(volumes=[f"{host}:/h"]))
    assert host.is_dir() and rec.spec.mounts[0].source == str(host)


def test_get_by_prefix_and_ambiguity(mgr):
    a = mgr.create(opts(), "one")
    assert mgr.get(a.id[:5]).name == "one"
    assert mgr.resolve("/one") == a.id
    with pytest.raises(NotFoundError):
        mgr.get("nothere")


def test_start_stop_kill_remove(mgr):
    rec = mgr.create(opts(), "web")
    mgr.start("web")
    assert mgr.get("web").state.status == "running"
    with pytest.raises(ConflictError, match="container is running"):
        mgr.remove("web")
    mgr.kill("web", "HUP")
    assert mgr.core.signals[-1] == (rec.id, 1)
    mgr.stop("web")
    assert mgr.get("web").state.status == "exited"
    with pytest.raises(ConflictError, match="not running"):
        mgr.kill("web")
    anon = [m.volume_name for m in rec.spec.mounts]
    mgr.remove("web", volumes=True)
    assert mgr.ids() == [] and rec.id in mgr.core.cleaned
    assert not any(mgr.volumes.exists(v) for v in anon)


def test_rm_force_kills_and_keeps_named_volumes(mgr):
    mgr.create(opts(volumes=["keep:/data"]), "web")
    mgr.start("web")
    mgr.remove("web", force=True, volumes=True)
    assert mgr.volumes.exists("keep")


def test_failed_start_cleans_up_and_keeps_record(mgr):
    rec = mgr.create(opts(command=["missing"]), "bad")
    with pytest.raises(StackctlError):
        mgr.start("bad")
    assert rec.id in mgr.core.cleaned and mgr.ids() == [rec.id]


def test_volume_in_use_and_prune(mgr):
    mgr.create(opts(volumes=["data:/data"]), "web")
    with pytest.raises(ConflictError, match="volume data is in use by container web"):
        mgr.remove_volume("data")
    with mgr.locked():
        mgr.volumes.create("unused")
        mgr.volumes.create()  # anonymous, unused
    removed, _ = mgr.prune_volumes()
    assert len(removed) == 1 and len(removed[0]) == 64  # only the unused anonymous one
    removed, _ = mgr.prune_volumes(all_volumes=True)
    assert removed == ["unused"]


def test_list_filters_and_order(mgr):
    a = mgr.create(opts(labels={"tier": "web"}), "alpha")
    b = mgr.create(opts(labels={"tier": "db"}), "beta")
    mgr.start("beta")
    assert [r.name for r in mgr.list()] == ["beta"]
    assert {r.name for r in mgr.list(all=True)} == {"alpha", "beta"}
    assert [r.name for r in mgr.list(filters=parse_filters(["status=created"]))] == ["alpha"]
    assert [r.name for r in mgr.list(all=True, filters=parse_filters(["label=tier=db"]))] == ["beta"]
    assert [r.name for r in mgr.list(all=True, filters=parse_filters(["name=alp"]))] == ["alpha"]
    assert [r.name for r in mgr.list(all=True, filters=parse_filters([f"id={a.id[:6]}"]))] == ["alpha"]
    assert len(mgr.list(all=True, filters=parse_filters(["ancestor=bb"]))) == 2
    assert len(mgr.list(last=1)) == 1
    with pytest.raises(UsageError):
        mgr.list(filters=parse_filters(["color=red"]))
    with pytest.raises(UsageError):
        parse_filters(["novalue"])
    assert b.id


def test_auto_remove_exited_containers_are_reaped(mgr):
    rec = mgr.create(opts(auto_remove=True), "tmp")
    mgr.start("tmp")
    mgr.core.states[rec.id] = ContainerState(status="exited", exit_code=0)
    assert mgr.list(all=True) == [] and mgr.ids() == []


def test_inspect_shape(mgr):
    mgr.create(opts(command=["echo"], memory="64m", cpus=1.5, pids_limit=10, read_only=True,
                    volumes=["data:/data:ro"]), "web")
    doc = mgr.inspect("web")
    assert doc["Name"] == "/web" and doc["Path"] == "echo" and doc["Args"] == []
    assert doc["State"]["Status"] == "created" and doc["State"]["StartedAt"] == "0001-01-01T00:00:00Z"
    hc = doc["HostConfig"]
    assert (hc["Memory"], hc["NanoCpus"], hc["PidsLimit"], hc["ReadonlyRootfs"]) == (64 << 20, 1_500_000_000, 10, True)
    assert hc["Binds"] == ["data:/data:ro"]
    assert doc["Config"]["Cmd"] == ["echo"] and doc["Config"]["Env"] == ["PATH=/bin"]
    assert {m["Destination"] for m in doc["Mounts"]} == {"/data", "/cache"}
    json.dumps(doc)


def test_two_creators_at_once_get_distinct_names(mgr):
    errors, made = [], []

    def create(i):
        try:
            made.append(mgr.create(opts(), "same").id)
        except ConflictError as e:
            errors.append(e)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(errors) == 3


PS_EF = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 14:58 ?        00:00:01 /sbin/init
root        4242    4241  0 15:00 ?        00:00:00 sh -c sleep 100
root        4300    4242  0 15:00 ?        00:00:00 sleep 100
"""


def test_parse_ps_table():
    headers, rows = parse_ps_table(PS_EF, {4242, 4300})
    assert headers == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert [r[1] for r in rows] == ["4242", "4300"] and rows[0][-1] == "sh -c sleep 100"
