"""image build as root: COPY/ADD/RUN on real overlays, multi-stage, cache, errors."""

import io
import json
import os
import subprocess
import tarfile
import time

import pytest

from stackctl.errors import StackctlError
from stackctl.runtime.images.build.builder import BuildOptions, build
from stackctl.runtime.images.busybox import DOCKERFILE, make_busybox_image
from stackctl.runtime.images.store import ImageStore

pytestmark = pytest.mark.root
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "images", "busybox", "Dockerfile")


@pytest.fixture
def store(node_paths):
    return ImageStore(node_paths.images)


@pytest.fixture
def busybox(node_paths, store, busybox_rootfs):
    return make_busybox_image(node_paths, store, tag="bb:1", log=lambda _l: None)


def do_build(node_paths, store, ctx, dockerfile, **kw):
    (ctx / "Dockerfile").write_text(dockerfile)
    lines: list[str] = []
    img = build(node_paths, store, BuildOptions(context=str(ctx), **kw), log=lines.append, step_output="devnull")
    return img, lines


def read_in(img, path):
    """A file of the image, looked up top layer first (no mount needed)."""
    for d in reversed(img.layer_dirs()):
        p = os.path.join(d, path.lstrip("/"))
        if os.path.lexists(p):
            with open(p) as f:
                return f.read()
    raise FileNotFoundError(path)


def test_example_dockerfile_matches_library():
    with open(EXAMPLE) as f:
        assert f.read() == DOCKERFILE


def test_busybox_base(busybox):
    [layer] = busybox.layer_dirs()
    assert os.stat(os.path.join(layer, "tmp")).st_mode & 0o7777 == 0o1777
    assert os.readlink(os.path.join(layer, "bin", "sh")) == "busybox"
    assert busybox.config["config"]["Cmd"] == ["sh"]
    assert busybox.repo_tags == ["bb:1"]


def test_copy_add_metadata_multistage(tmp_path, node_paths, store, busybox):
    ctx = tmp_path / "ctx"
    (ctx / "src" / "sub").mkdir(parents=True)
    (ctx / "src" / "a.txt").write_text("A")
    (ctx / "src" / "sub" / "b.txt").write_text("B")
    (ctx / "src" / "skip.log").write_text("no")
    (ctx / "one.py").write_text("1")
    (ctx / "two.py").write_text("2")
    (ctx / ".dockerignore").write_text("src/*.log\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("inside/t.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"T"))
    (ctx / "arch.tar.gz").write_bytes(buf.getvalue())
    img, lines = do_build(node_paths, store, ctx, """\
FROM bb:1 AS base
ARG WHO=world
ENV DIR=/app
WORKDIR $DIR
COPY src/ ./
COPY --chown=nobody:nogroup --chmod=600 *.py /py/
ADD arch.tar.gz /x/
RUN echo "hello $WHO" > greet && rm /bin/vi
USER nobody
ENTRYPOINT ["/bin/sh", "-c"]
FROM scratch
COPY --from=base /app/greet /greet
COPY --from=base /py /py
CMD ["/greet"]
""", tags=["out:1"], build_args={"WHO": "you"})
    assert lines[0] == "#1 [base 1/10] FROM bb:1 AS base"
    assert lines[-2:] == [f"Successfully built {img.id[7:19]}", "Successfully tagged out:1"]
    assert read_in(img, "/greet") == "hello you\n"
    py = os.path.join(img.layer_dirs()[1], "py", "one.py")
    st = os.stat(py)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o600)
    assert img.config["config"]["Cmd"] == ["/greet"]
    base = build(node_paths, store, BuildOptions(context=str(ctx), target="base", tags=["base:1"]),
                 log=lambda _l: None, step_output="devnull")
    cfg = base.config["config"]
    assert cfg["WorkingDir"] == "/app" and cfg["User"] == "nobody" and "DIR=/app" in cfg["Env"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] is None  # ENTRYPOINT resets inherited CMD
    assert read_in(base, "/app/a.txt") == "A" and read_in(base, "/app/sub/b.txt") == "B"
    with pytest.raises(FileNotFoundError):
        read_in(base, "/app/skip.log")
    assert read_in(base, "/x/inside/t.txt") == "T"
    whiteout = os.lstat(os.path.join(base.layer_dirs()[-1], "bin", "vi"))
    assert whiteout.st_rdev == 0 and (whiteout.st_mode & 0o170000) == 0o020000
    assert [h.get("empty_layer", False) for h in base.config["history"]][-8:] == [
        True, True, False, False, False, False, True, True]


def test_cache_second_build(tmp_path, node_paths, store, busybox):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("1")
    df = "FROM bb:1\nCOPY f /f\nRUN cat /f > /g\nCMD [\"cat\", \"/g\"]\n"
    first, lines = do_build(node_paths, store, ctx, df, tags=["c:1"])
    assert not any("CACHED" in line for line in lines)
    t0 = time.monotonic()
    second, lines = do_build(node_paths, store, ctx, df, tags=["c:1"])
    assert time.monotonic() - t0 < 1.0
    assert [line for line in lines if "CACHED" in line] == ["#2 CACHED", "#3 CACHED"]
    assert second.id == first.id
    (ctx / "f").write_text("2")  # a changed source invalidates COPY and everything after
    third, lines = do_build(node_paths, store, ctx, df, tags=["c:1"])
    assert not any("CACHED" in line for line in lines) and third.id != first.id
    assert read_in(third, "/g") == "2"
    fourth, lines = do_build(node_paths, store, ctx, df, tags=["c:1"], no_cache=True)
    assert not any("CACHED" in line for line in lines)


@pytest.mark.parametrize("dockerfile,msg", [
    ("FROM nope:1\n", "FROM nope:1 (line 1): image not found locally"),
    ("FROM bb:1\nCOPY missing /x\n", "file not found in build context"),
    ("FROM bb:1\nCOPY ../x /x\n", "forbidden path outside the build context"),
    ("FROM bb:1\nRUN exit 3\n", 'process "/bin/sh -c exit 3" did not complete successfully: exit code: 3'),
    ("FROM bb:1\nADD http://example.com/x /x\n", "remote sources are not supported"),
    ("FROM bb:1\nCOPY --chown=ghost f /f\n", "no user 'ghost'"),
    ("FROM bb:1\nCOPY f g /dst\n", "must be a directory and end with a /"),
    ("FROM bb:1\nCOPY --from=nostage /x /x\n", "no such stage or local image"),
])
def test_errors_leave_nothing(tmp_path, node_paths, store, busybox, dockerfile, msg):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("1")
    (ctx / "g").write_text("1")
    before = sorted(os.listdir(os.path.join(store.root, "layers")))
    with pytest.raises(StackctlError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        do_build(node_paths, store, ctx, dockerfile, tags=["bad:1"])
    assert not store.exists("bad:1")
    assert os.listdir(store.tmp_dir) == []
    assert sorted(os.listdir(os.path.join(store.root, "layers"))) == before
    with open("/proc/self/mountinfo") as f:
        assert store.root not in f.read()


def test_cli_build_and_ls(tmp_path, node_paths, busybox):
    env = dict(os.environ, STACKCTL_STATE_DIR=node_paths.state, STACKCTL_RUN_DIR=node_paths.run)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN echo built > /b\nLABEL x=y\n")
    cli = ["python", "-m", "stackctl"]
    r = subprocess.run(cli + ["image", "build", "-q", "-t", "cli:1", str(ctx)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.strip()
    assert image_id.startswith("sha256:")
    r = subprocess.run(cli + ["image", "ls", "--format", "json"], env=env, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert {(row["Repository"], row["Tag"]) for row in rows} == {("cli", "1"), ("bb", "1")}
    r = subprocess.run(cli + ["image", "inspect", "cli:1"], env=env, capture_output=True, text=True, check=True)
    assert json.loads(r.stdout)[0]["Config"]["Labels"] == {"x": "y"}
    r = subprocess.run(cli + ["image", "rm", "nope"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error: image 'nope' not found locally")


def test_run_forms_user_shell_network(tmp_path, node_paths, store, busybox):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    img, _ = do_build(node_paths, store, ctx, """\
FROM bb:1
WORKDIR /work/deep
RUN ["/bin/sh", "-c", "pwd > /pwd"]
SHELL ["/bin/sh", "-ec"]
USER nobody
RUN id -u > /tmp/uid
USER root
RUN --network=none ls /sys/class/net > /nets
ENV X=1
RUN echo "$X" > /x
""", tags=["run:1"])
    assert read_in(img, "/pwd") == "/work/deep\n"
    assert read_in(img, "/tmp/uid") == "65534\n"
    assert read_in(img, "/nets").split() == ["lo"]
    assert read_in(img, "/x") == "1\n"
    assert img.config["config"]["Shell"] == ["/bin/sh", "-ec"]
    hist = [h["created_by"] for h in img.config["history"] if not h.get("empty_layer")]
    assert hist[-1] == "RUN /bin/sh -ec echo \"$X\" > /x # buildkit"


def test_copy_destination_rules_and_ignore_exceptions(tmp_path, node_paths, store, busybox):
    ctx = tmp_path / "ctx"
    (ctx / "docs").mkdir(parents=True)
    (ctx / "docs" / "keep.md").write_text("k")
    (ctx / "docs" / "drop.md").write_text("d")
    (ctx / "f").write_text("f")
    (ctx / ".dockerignore").write_text("docs\n!docs/keep.md\n")
    img, _ = do_build(node_paths, store, ctx, """\
FROM bb:1
COPY f /etc
COPY f /renamed
COPY f /newdir/
COPY . /ctx/
RUN ln -s /etc /linked
COPY f /linked/via-link
""", tags=["rules:1"])
    assert read_in(img, "/etc/f") == "f"  # an existing directory means "into"
    assert read_in(img, "/renamed") == "f"
    assert read_in(img, "/newdir/f") == "f"
    assert read_in(img, "/ctx/docs/keep.md") == "k"
    with pytest.raises(FileNotFoundError):
        read_in(img, "/ctx/docs/drop.md")
    assert read_in(img, "/etc/via-link") == "f"  # symlinks in the image resolve inside it
    # /etc keeps its metadata in the COPY layer (copied up, not recreated as 0755 root)
    etc_layer = img.layer_dirs()[1]
    assert os.stat(os.path.join(etc_layer, "etc")).st_mode & 0o777 == os.stat(
        os.path.join(img.layer_dirs()[0], "etc")).st_mode & 0o777


def test_cli_save_load_stdio(tmp_path, node_paths, busybox):
    env = dict(os.environ, STACKCTL_STATE_DIR=node_paths.state, STACKCTL_RUN_DIR=node_paths.run)
    cli = ["python", "-m", "stackctl", "image"]
    saved = subprocess.run(cli + ["save", "bb:1"], env=env, capture_output=True, check=True).stdout
    other = dict(env, STACKCTL_STATE_DIR=str(tmp_path / "other"))
    r = subprocess.run(cli + ["load"], env=other, input=saved, capture_output=True, check=True)
    assert r.stdout.decode().strip() == "Loaded image: bb:1"
    r = subprocess.run(cli + ["ls", "-q", "--no-trunc"], env=other, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == busybox.id


@pytest.mark.skipif(not __import__("shutil").which("umoci"), reason="umoci not installed")
def test_built_image_unpacks_with_umoci(tmp_path, node_paths, store, busybox):
    from stackctl.runtime.images import archive

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    do_build(node_paths, store, ctx, "FROM bb:1\nRUN rm /bin/vi && mkdir /made\n", tags=["u:1"])
    out = tmp_path / "u.tar"
    with open(out, "wb") as f:
        archive.save(store, ["u:1"], f)
    layout = tmp_path / "layout"
    layout.mkdir()
    subprocess.run(["tar", "-C", str(layout), "-xf", str(out)], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:1", str(tmp_path / "bundle")], check=True, capture_output=True)
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "made").is_dir() and (rootfs / "bin" / "sh").is_symlink()
    assert not os.path.lexists(rootfs / "bin" / "vi")
