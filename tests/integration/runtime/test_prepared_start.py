"""Prepared starts against the real kernel (``api.prepare_start``, ``PreparedStart``,
``start_container(prepared=)``, and the manager's ``prepare_start``/``create``/``start``).

A prepared start creates the cgroup and forks the setup child (which joins it at once) before
the container's record exists. Whatever happens next — used, cancelled, not matching, a failed
start — nothing may be left: no cgroup, no process, no attach socket, no mount."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from stackctl.runtime.containers import api
from stackctl.runtime.spec import ContainerSpec, Resources

pytestmark = pytest.mark.root


def wait_until(cond, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def cgroups_under(paths) -> list[str]:
    """Every directory below the test's cgroup parent, in every hierarchy."""
    out = []
    for c in os.listdir("/sys/fs/cgroup"):
        top = f"/sys/fs/cgroup/{c}/{paths.cgroup_parent}"
        if os.path.isdir(top):
            out += [os.path.join(top, d) for d in os.listdir(top) if os.path.isdir(os.path.join(top, d))]
    return out


def cgroup_procs(paths, cid) -> list[int]:
    pids: set[int] = set()
    for c in os.listdir("/sys/fs/cgroup"):
        try:
            with open(f"/sys/fs/cgroup/{c}/{paths.cgroup_parent}/{cid}/cgroup.procs") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return sorted(pids)


def processes_naming(text: str) -> list[int]:
    """Live processes whose command line mentions ``text`` (the monitor's names the container dir)."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    with open(f"/proc/{p}/stat") as st:
                        if st.read().rsplit(")", 1)[1].split()[0] != "Z":
                            out.append(int(p))
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def host_mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(root)]


def output(paths, cid) -> str:
    with open(os.path.join(paths.containers, cid, f"{cid}-json.log")) as f:
        return "".join(json.loads(line)["log"] for line in f)


def assert_nothing_left(paths, cid, pids=()):
    assert cgroups_under(paths) == []
    wait_until(lambda: not processes_naming(cid), what=f"the processes of {cid[:12]} to exit")
    # an exiting process loses its cmdline before it is a zombie: wait for that too
    wait_until(lambda: not [p for p in pids if alive(p)], what=f"the processes {list(pids)} to exit")
    rdir = os.path.join(paths.run, "containers", cid)
    assert not os.path.exists(os.path.join(rdir, "attach.sock")) and not os.path.exists(rdir)
    assert host_mounts_under(os.path.dirname(paths.state)) == []


@pytest.fixture
def make(node_paths, busybox_rootfs):
    """``make(argv, **spec fields)`` builds a spec; every id made is cleaned up after."""
    made: list[str] = []

    def make(argv, **kw) -> ContainerSpec:
        kw.setdefault("env", ["PATH=/bin"])
        spec = ContainerSpec(id=uuid.uuid4().hex * 2, name=kw.pop("name", "t"), image="bb", image_id="sha256:x",
                             rootfs_layers=[busybox_rootfs], argv=argv, **kw)
        made.append(spec.id)
        return spec

    yield make
    for cid in made:
        api.cleanup_container(node_paths, cid)


# --- api level ----------------------------------------------------------------------------

def test_matching_prepared_start_runs_the_container(node_paths, make):
    spec = make(["sh", "-c", "echo pid $$; exit 3"], resources=Resources(pids=32))
    prepared = api.prepare_start(node_paths, spec)
    assert prepared.matches(spec, False) and not prepared.matches(spec, True)
    # the head start: the cgroup exists with its limits and the setup child has joined it,
    # before anything of the container's record is written
    child = wait_until(lambda: cgroup_procs(node_paths, spec.id), what="the setup child to join")
    assert len(child) == 1
    assert open(f"/sys/fs/cgroup/pids/{node_paths.cgroup_parent}/{spec.id}/pids.max").read().strip() == "32"
    assert not os.path.exists(os.path.join(node_paths.containers, spec.id))

    st = api.start_container(node_paths, spec, prepared=prepared)
    assert st.status == "running" and st.pid == child[0]  # the prepared child became the container
    assert not prepared.matches(spec, False)  # used up; a later cancel is a no-op
    prepared.cancel()
    final = api.wait_container(node_paths, spec.id, timeout=10)
    assert final.status == "exited" and final.exit_code == 3
    assert output(node_paths, spec.id) == "pid 1\n"
    assert_nothing_left(node_paths, spec.id, [st.pid, st.monitor_pid])


def test_matching_prepared_attached_start(node_paths, make):
    from stackctl.runtime.containers import attach

    spec = make(["sh", "-c", "echo hi; exit 4"])
    with api.prepare_start(node_paths, spec, attach=True) as prepared:
        st = api.start_container(node_paths, spec, attach=True, prepared=prepared)
        s = attach.connect(node_paths, spec.id)
        dec, frames = attach.FrameDecoder(), []
        while data := s.recv(65536):
            frames += dec.feed(data)
        s.close()
    assert b"".join(p for k, p in frames if k == attach.STDOUT) == b"hi\n"
    assert frames[-1] == (attach.EXIT, b"\0\0\0\x04")
    assert api.wait_container(node_paths, spec.id, timeout=10).exit_code == 4
    assert_nothing_left(node_paths, spec.id, [st.pid, st.monitor_pid])


@pytest.mark.parametrize("joined", [False, True], ids=["at-once", "after-join"])
def test_cancelled_prepared_start_leaves_nothing(node_paths, make, joined):
    # attach: the monitor listens on its socket early, so the cancel must remove it too
    spec = make(["true"], resources=Resources(memory=64 << 20, pids=16))
    prepared = api.prepare_start(node_paths, spec, attach=True)
    pids = []
    if joined:
        pids += wait_until(lambda: cgroup_procs(node_paths, spec.id), what="the setup child to join")
        pids += wait_until(lambda: processes_naming(spec.id), what="the monitor")
        wait_until(lambda: os.path.exists(os.path.join(node_paths.run, "containers", spec.id, "attach.sock")),
                   what="the monitor to listen")
    prepared.cancel()  # waits until the monitor has cleaned up
    assert cgroups_under(node_paths) == []
    assert_nothing_left(node_paths, spec.id, pids)
    # the record was never made, and the cancel did not make one
    assert not os.path.exists(os.path.join(node_paths.containers, spec.id))
    prepared.cancel()  # idempotent
    with pytest.raises(api.NotFoundError):
        api.read_state(node_paths, spec.id)


def test_leaving_the_block_cancels(node_paths, make):
    spec = make(["true"])
    with pytest.raises(RuntimeError, match="create failed"):
        with api.prepare_start(node_paths, spec):
            wait_until(lambda: cgroup_procs(node_paths, spec.id), what="the setup child to join")
            raise RuntimeError("create failed")
    assert_nothing_left(node_paths, spec.id)


@pytest.mark.parametrize("change", ["resources", "attach", "id", "tty"])
def test_prepared_start_that_no_longer_matches_is_replaced(node_paths, make, change):
    draft = make(["true"], resources=Resources(pids=16))
    prepared = api.prepare_start(node_paths, draft)
    old_child = wait_until(lambda: cgroup_procs(node_paths, draft.id), what="the setup child to join")
    attach = change == "attach"
    # alive for a while: its cgroup (read below) goes when it exits
    spec = make(["sh", "-c", "sleep 1; echo ran; exit 5"], resources=Resources(pids=24 if change == "resources" else 16),
                     tty=change == "tty")
    if change != "id":
        spec.id = draft.id
    assert not prepared.matches(spec, attach)
    st = api.start_container(node_paths, spec, attach=attach, prepared=prepared)
    assert prepared.cfg_w == -1 and prepared.ready_r == -1  # cancelled (and waited for)
    assert not alive(old_child[0]) and st.pid != old_child[0]
    # started afresh, with the spec's own settings
    want = "24" if change == "resources" else "16"
    assert open(f"/sys/fs/cgroup/pids/{node_paths.cgroup_parent}/{spec.id}/pids.max").read().strip() == want
    if attach:
        from stackctl.runtime.containers import attach as att

        s = att.connect(node_paths, spec.id)
        while s.recv(65536):
            pass
        s.close()
    final = api.wait_container(node_paths, spec.id, timeout=10)
    assert final.exit_code == 5
    assert output(node_paths, spec.id).replace("\r", "") == "ran\n"
    assert_nothing_left(node_paths, spec.id, [st.pid, st.monitor_pid])
    assert_nothing_left(node_paths, draft.id, old_child)


def test_start_error_after_prepared_start_leaves_nothing(node_paths, make):
    spec = make(["nope"])
    prepared = api.prepare_start(node_paths, spec, attach=True)
    child = wait_until(lambda: cgroup_procs(node_paths, spec.id), what="the setup child to join")
    with pytest.raises(api.ContainerStartError) as e:
        api.start_container(node_paths, spec, attach=True, prepared=prepared)
    assert e.value.container_exit_code == 127
    assert 'exec: "nope": executable file not found in $PATH' in str(e.value)
    st = api.read_state(node_paths, spec.id)
    assert st.status == "exited" and st.exit_code == 127
    assert_nothing_left(node_paths, spec.id, child)


def test_config_error_after_prepared_start_cancels_it(node_paths, make):
    # the starter fails before it sends the configuration (joining a container that is not there)
    spec = make(["true"], network="container:" + "f" * 64)
    prepared = api.prepare_start(node_paths, spec)
    child = wait_until(lambda: cgroup_procs(node_paths, spec.id), what="the setup child to join")
    with pytest.raises(api.ContainerStartError) as e:
        api.start_container(node_paths, spec, prepared=prepared)
    assert e.value.container_exit_code == 125
    assert prepared.cfg_w == -1
    # recorded as a failed start, like every other start failure
    st = api.read_state(node_paths, spec.id)
    assert st.status == "exited" and st.exit_code == 125 and st.error
    assert_nothing_left(node_paths, spec.id, child)


# --- the manager: run's sequence (prepare, create, start) ---------------------------------

@pytest.fixture
def manager(node_paths, busybox_rootfs):
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore
    from stackctl.runtime.manager import ContainerManager

    import_rootfs(ImageStore(node_paths.images), busybox_rootfs, "bb:latest", changes=['CMD ["sh"]'])
    mgr = ContainerManager(node_paths)
    yield mgr
    for cid in os.listdir(node_paths.containers) if os.path.isdir(node_paths.containers) else []:
        mgr.core.cleanup_container(node_paths, cid)


def test_manager_run_sequence_uses_the_prepared_start(node_paths, manager):
    from stackctl.runtime.imageconfig import RunOptions

    opts = RunOptions("bb:latest", command=["sh", "-c", "echo $$; exit 6"], pids_limit=20, memory="64m")
    with manager.prepare_start(opts) as prepared:
        child = wait_until(lambda: cgroup_procs(node_paths, prepared.cid), what="the setup child to join")
        rec = manager.create(opts, "web", prepared=prepared)
        assert rec.id == prepared.cid and prepared.matches(rec.spec, False)
        rec = manager.start(rec.id, prepared=prepared)
        assert rec.state.pid == child[0]
    final = manager.core.wait_container(node_paths, rec.id, timeout=10)
    assert final.exit_code == 6 and output(node_paths, rec.id) == "1\n"
    assert_nothing_left(node_paths, rec.id, [rec.state.pid, rec.state.monitor_pid])


def test_manager_failed_create_cancels_the_prepared_start(node_paths, manager):
    from stackctl.errors import NotFoundError
    from stackctl.runtime.imageconfig import RunOptions

    opts = RunOptions("nope:latest", command=["true"])
    with pytest.raises(NotFoundError):
        with manager.prepare_start(opts) as prepared:
            child = wait_until(lambda: cgroup_procs(node_paths, prepared.cid), what="the setup child to join")
            manager.create(opts, prepared=prepared)
    assert_nothing_left(node_paths, prepared.cid, child)
    assert manager.records() == []


def test_manager_prepare_start_refuses_bad_resources_before_forking(node_paths, manager):
    from stackctl.errors import UsageError
    from stackctl.runtime.imageconfig import RunOptions

    with pytest.raises(UsageError, match="minimum memory"):
        manager.prepare_start(RunOptions("bb:latest", command=["true"], memory="1m"))
    assert cgroups_under(node_paths) == []


# --- starts at once (the agent starts many replicas on one node in parallel) -------------

def test_manager_starts_of_different_containers_run_at_once(node_paths, manager):
    """Each start forks a launcher while other threads' starts hold their pipes open: none
    may keep another's pipe (each would wait for the other's EOF), so eight threads starting
    eight containers all end, every container runs, and removing them leaves nothing."""
    import threading

    from stackctl.runtime.imageconfig import RunOptions

    recs = [manager.create(RunOptions("bb:latest", command=["sleep", "300"]), f"c{i}")
            for i in range(8)]
    errors: list[BaseException] = []

    def start(cid: str) -> None:
        try:
            manager.start(cid)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=start, args=(r.id,)) for r in recs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a start never ended (a pipe held by another)"
    assert errors == []
    states = [manager.get(r.id).state for r in recs]
    assert all(s.status == "running" for s in states)
    pids = {s.pid for s in states}
    assert len(pids) == 8
    for r in recs:
        manager.remove(r.id, force=True)
    for r, s in zip(recs, states):
        assert_nothing_left(node_paths, r.id, [s.pid, s.monitor_pid])


def test_manager_remove_waits_for_a_start_of_the_same_container(node_paths, manager):
    """A removal that comes while the container starts (the runtime lock is let go during the
    start) waits for the start to end, then kills it: no process, cgroup or record stays."""
    import threading

    from stackctl.runtime.imageconfig import RunOptions

    rec = manager.create(RunOptions("bb:latest", command=["sleep", "300"]), "racer")
    started = threading.Event()
    real = manager.core.start_container

    def slow_start(paths, spec, **kw):
        started.set()
        time.sleep(0.3)  # the runtime lock is free now: the removal below comes in here
        return real(paths, spec, **kw)

    manager._core = type("Core", (), {})()
    for name in dir(api):
        if not name.startswith("__"):
            setattr(manager._core, name, getattr(api, name))
    manager._core.start_container = slow_start
    result: list = []
    t = threading.Thread(target=lambda: result.append(manager.start(rec.id)))
    t.start()
    assert started.wait(10)
    manager.remove(rec.id, force=True)  # blocks until the start has ended
    t.join(timeout=30)
    assert result and result[0].state.status == "running", "the start did not finish first"
    st = result[0].state
    assert manager.records() == []
    assert_nothing_left(node_paths, rec.id, [st.pid, st.monitor_pid])
