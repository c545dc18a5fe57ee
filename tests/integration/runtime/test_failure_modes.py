"""Bad conditions get one clear error and lose nothing (root): a full disk under the state
directory (a small tmpfs), corrupt container records and a corrupt image index."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root

IMG = "bb:latest"
DISK_FULL = "no space left on device while writing"


def _cli(paths):
    env = dict(os.environ, STACKCTL_STATE_DIR=paths.state, STACKCTL_RUN_DIR=paths.run,
               STACKCTL_CGROUP_PARENT=paths.cgroup_parent)

    def run(*args, timeout=60, check=None):
        p = subprocess.run([sys.executable, "-m", "stackctl", *args], env=env, capture_output=True,
                           text=True, timeout=timeout)
        if check is not None:
            assert p.returncode == check, (args, p.returncode, p.stdout, p.stderr)
        return p

    return run


def _cleanup(cli):
    ids = cli("ps", "-aq", "--no-trunc").stdout.split()
    if ids:
        cli("rm", "-f", "-v", *ids)


@pytest.fixture
def small_disk(node_paths, busybox_rootfs):
    """The state directory on a 12 MiB tmpfs holding the busybox image ``bb:latest`` (~4 MB
    with its unpacked layer); unmounted afterwards, also when the test fails."""
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore

    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0700", "tmpfs", node_paths.state], check=True)
    cli = _cli(node_paths)
    try:
        import_rootfs(ImageStore(node_paths.images), busybox_rootfs, IMG, changes=['CMD ["sh"]'])
        yield cli
    finally:
        _cleanup(cli)
        # the network state lives on the tmpfs: remove the default bridge and its nft table
        # while it is still readable (node_paths' own clean-up would find no state)
        from kernel_cleanup import remove_networking

        remove_networking(node_paths)
        subprocess.run(["umount", "-l", node_paths.state], check=False)


def _store_files(paths):
    out = set()
    for root, _, files in os.walk(paths.images):
        out |= {os.path.relpath(os.path.join(root, f), paths.images) for f in files}
    return out


def _assert_disk_full(p, paths):
    assert p.returncode == 1, (p.stdout, p.stderr)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    assert DISK_FULL in errors[0] and paths.state in errors[0] and "prune" in errors[0], errors


def _big_rootfs(tmp_path, mb=10):
    root = tmp_path / "bigroot"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(mb << 20))
    return root


def test_full_disk_image_load_import_build_leave_nothing(small_disk, node_paths, tmp_path):
    from stackctl.runtime.images.archive import import_rootfs, save
    from stackctl.runtime.images.store import ImageStore

    cli = small_disk
    before = _store_files(node_paths)
    index = open(os.path.join(node_paths.images, "index.json")).read()
    big = _big_rootfs(tmp_path)
    subprocess.run(["tar", "-C", str(big), "-cf", str(tmp_path / "big.tar"), "."], check=True)
    other = ImageStore(str(tmp_path / "other-store"))
    import_rootfs(other, str(big), "big:1")
    with open(tmp_path / "big-image.tar", "wb") as f:
        save(other, ["big:1"], f)
    (big / "Dockerfile").write_text("FROM bb:latest\nCOPY big.bin /big.bin\n")

    for args in (("image", "import", str(tmp_path / "big.tar"), "big:1"),
                 ("image", "load", "-i", str(tmp_path / "big-image.tar")),
                 ("image", "build", "-t", "big:1", str(big))):
        p = cli(*args)
        _assert_disk_full(p, node_paths)
        # nothing half-written: no blob, layer, tag or temporary file more than before
        assert _store_files(node_paths) == before, args
        assert open(os.path.join(node_paths.images, "index.json")).read() == index
    assert cli("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", check=0).stdout.split() == ["bb:latest"]
    assert cli("run", "--rm", IMG, "echo", "still runs", check=0).stdout == "still runs\n"


def test_full_volume_is_the_container_s_business(small_disk, node_paths):
    from stackctl.agent.store import Store
    from stackctl.errors import DiskFullError

    cli = small_disk
    cli("run", "-d", "--name", "ticker", IMG, "sh", "-c", "while true; do echo tick; sleep 0.1; done", check=0)
    store = Store.open(node_paths)
    try:
        v1 = store.put_stack("app", {"services": {"web": {"image": IMG}}})
        p = cli("run", "--rm", "-v", "data:/data", IMG, "sh", "-c",
                "dd if=/dev/zero of=/data/fill bs=1M count=64; echo dd=$?")
        assert p.returncode == 0 and "dd=1" in p.stdout and "No space left on device" in p.stderr
        # the node's other container still runs, answers and logs (lines during the full disk
        # may be lost, never the container)
        assert cli("exec", "ticker", "echo", "alive", check=0).stdout == "alive\n"
        assert cli("inspect", "-f", "{{.State.Status}}", "ticker", check=0).stdout.strip() == "running"
        # the agent's database refuses the write cleanly and stays usable and intact
        with pytest.raises(DiskFullError, match=DISK_FULL):
            store.put_stack("app", {"services": {"web": {"image": IMG, "x-pad": "x" * (4 << 20)}}})
        assert store.require_stack("app").version == v1
        cli("volume", "rm", "data", check=0)
        v2 = store.put_stack("app", {"services": {"web": {"image": IMG, "command": ["true"]}}})
        assert v2 == v1 + 1
        assert store._query("PRAGMA integrity_check") == [("ok",)]
        assert "tick" in cli("logs", "--tail", "1", "ticker", check=0).stdout
    finally:
        store.close()


@pytest.fixture
def cli(node_paths, busybox_rootfs):
    from stackctl.runtime.images.archive import import_rootfs
    from stackctl.runtime.images.store import ImageStore

    import_rootfs(ImageStore(node_paths.images), busybox_rootfs, IMG, changes=['CMD ["sh"]'])
    run = _cli(node_paths)
    yield run
    _cleanup(run)


def test_corrupt_container_records_are_listed_dead_and_removable(cli, node_paths):
    broken = cli("container", "create", "--name", "broken", IMG, "true", check=0).stdout.strip()
    bad_state = cli("run", "-d", "--name", "badstate", IMG, "sleep", "100", check=0).stdout.strip()
    cli("run", "-d", "--name", "fine", IMG, "sleep", "100", check=0)
    with open(os.path.join(node_paths.containers, broken, "config.json"), "w") as f:
        f.write('{"id": "trunc')
    with open(os.path.join(node_paths.containers, bad_state, "state.json"), "w") as f:
        f.write("\0\0garbage")

    p = cli("ps", "-a", "--format", "{{.ID}} {{.Names}} {{.State}}", check=0)
    rows = {ln.split()[0]: ln.split()[1:] for ln in p.stdout.splitlines()}
    assert rows[broken[:12]] == [broken[:12], "dead"]
    assert rows[bad_state[:12]] == ["badstate", "dead"]
    assert [v for v in rows.values() if v[0] == "fine"] == [["fine", "running"]]
    err = json.loads(cli("inspect", broken[:12], check=0).stdout)[0]["State"]["Error"]
    assert "config.json is corrupt" in err and "rm -f" in err

    cli("rm", "-f", broken[:12], "badstate", check=0)
    assert cli("ps", "-a", "--format", "{{.Names}}", check=0).stdout.split() == ["fine"]
    assert not os.path.exists(os.path.join(node_paths.containers, broken))
    assert cli("inspect", "-f", "{{.State.Status}}", "fine", check=0).stdout.strip() == "running"


@pytest.mark.parametrize("garbage", ['{"schemaVersion": 2, "manif', "[]", '{"manifests": [1]}'])
def test_corrupt_image_index_is_a_clear_error(cli, node_paths, garbage):
    index = os.path.join(node_paths.images, "index.json")
    with open(index, "w") as f:
        f.write(garbage)
    for args in (("image", "ls"), ("run", "--rm", IMG, "true")):
        p = cli(*args)
        assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.startswith(f"error: the image index {index} is corrupt"), p.stderr
        assert f"mv {index}" in p.stderr
