"""Evil image archives, build contexts and `cp` paths: every path an outsider controls must
stay inside the root it is meant for. Each test states what Docker does; stackctl must be at
least as strict: refuse with one clear line, or keep the file inside its root."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import uuid

import pytest

pytestmark = pytest.mark.root


@pytest.fixture
def marker_dir():
    """A host directory an escape would write into (created, so that a write could land)."""
    d = f"/tmp/stackctl-evil-{uuid.uuid4().hex[:8]}"
    os.makedirs(d)
    yield d
    for root, dirs, files in os.walk(d, topdown=False):
        for f in files:
            os.unlink(os.path.join(root, f))
        for x in dirs:
            p = os.path.join(root, x)
            os.unlink(p) if os.path.islink(p) else os.rmdir(p)
    os.rmdir(d)


def _layer(entries) -> bytes:
    """A layer tar of (TarInfo, data) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _entry(name, kind=tarfile.REGTYPE, data=b"", link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    info.linkname = link
    return info, None


def _archive(path, layer: bytes, tag: str, *, config_name=None, layer_name="l/layer.tar",
             manifest_config=None):
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    cname = config_name or hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": manifest_config or cname, "RepoTags": [tag],
                             "Layers": [layer_name]}]).encode()
    with tarfile.open(path, "w") as t:
        for name, data in ((cname, config), (layer_name, layer), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def _load(sec_node, tmp_path, entries, tag):
    path = str(tmp_path / "evil.tar")
    _archive(path, _layer(entries), tag)
    return sec_node("image", "load", "-i", path)


def _one_line_error(p) -> None:
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr


def test_archive_layer_entry_with_dotdot(sec_node, tmp_path, marker_dir):
    """Docker: a layer entry whose path climbs out with `..` is refused ("breakout"), the
    load fails and nothing is written outside the layer."""
    depth = "../" * 12
    p = _load(sec_node, tmp_path, [_entry(depth + marker_dir.lstrip("/") + "/pwned", data=b"x")], "evil:dotdot")
    _one_line_error(p)
    assert os.listdir(marker_dir) == []


def test_archive_layer_entry_with_absolute_path(sec_node, tmp_path, marker_dir):
    """Docker: absolute entry names are taken relative to the layer root (never the host's
    root); stackctl refuses them outright. Either way nothing lands on the host."""
    p = _load(sec_node, tmp_path, [_entry(marker_dir + "/pwned", data=b"x")], "evil:abs")
    assert os.listdir(marker_dir) == []
    if p.returncode != 0:
        _one_line_error(p)


def test_archive_symlink_then_write_through_it(sec_node, tmp_path, marker_dir):
    """Docker: a layer that makes `link -> /host/dir` and then writes `link/pwned` writes
    inside the layer (the link is resolved within the layer root) or is refused; the host
    directory stays empty."""
    entries = [_entry("link", tarfile.SYMTYPE, link=marker_dir),
               _entry("link/pwned", data=b"x"),
               _entry("rel", tarfile.SYMTYPE, link="../../../../../../" + marker_dir.lstrip("/")),
               _entry("rel/pwned2", data=b"x")]
    p = _load(sec_node, tmp_path, entries, "evil:symlink")
    assert os.listdir(marker_dir) == []
    if p.returncode == 0:  # contained: the files are inside the image's own root
        out = sec_node("run", "--rm", "evil:symlink", "sh", "-c",
                       f"ls {marker_dir}; ls /{marker_dir.lstrip('/')}", check=0).stdout
        assert "pwned" in out
    else:
        _one_line_error(p)


def test_archive_hardlink_to_a_host_file(sec_node, tmp_path, marker_dir):
    """Docker: a hard link entry whose target climbs out of the layer (`../../etc/...`) or
    goes through a symlink to the host is refused; the host file is neither linked nor
    changed."""
    secret = os.path.join(marker_dir, "secret")
    with open(secret, "w") as f:
        f.write("HOST")
    entries = [_entry("h1", tarfile.LNKTYPE, link="../" * 12 + secret.lstrip("/")),
               _entry("dir", tarfile.SYMTYPE, link=marker_dir),
               _entry("h2", tarfile.LNKTYPE, link="dir/secret")]
    for i, e in enumerate(entries):
        p = _load(sec_node, tmp_path, [e] if i != 2 else entries[1:], f"evil:hard{i}")
        st = os.stat(secret)
        assert st.st_nlink == 1 and open(secret).read() == "HOST"
        if p.returncode == 0:
            out = sec_node("run", "--rm", f"evil:hard{i}", "sh", "-c", "cat /h1 /h2 2>/dev/null; exit 0")
            assert "HOST" not in out.stdout
    assert sorted(os.listdir(marker_dir)) == ["secret"]


def test_archive_members_outside_the_archive(sec_node, tmp_path):
    """Docker: manifest.json names files inside the archive; a Config or layer path that
    climbs out (`../../etc/hostname`) names nothing in it, so the load fails: no host file
    is ever read as an image part."""
    path = str(tmp_path / "evil2.tar")
    _archive(path, _layer([_entry("f", data=b"x")]), "evil:outside",
             manifest_config="../../../../../../etc/hostname")
    p = sec_node("image", "load", "-i", path)
    _one_line_error(p)


def test_build_context_symlink_to_a_host_file(sec_node, tmp_path, marker_dir):
    """Docker: the build context is what is below its directory; a symlink in it that points
    at a host file does not bring that file into the image (COPY fails, or copies the link,
    never the host file's content)."""
    secret = os.path.join(marker_dir, "secret")
    with open(secret, "w") as f:
        f.write("HOSTSECRET")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    os.symlink(secret, ctx / "secret")
    os.symlink(marker_dir, ctx / "dirlink")
    (ctx / "Dockerfile").write_text("FROM stackctl/busybox\nCOPY secret /s1\n")
    p1 = sec_node("image", "build", "-t", "evil:ctx1", str(ctx), timeout=120)
    (ctx / "Dockerfile").write_text("FROM stackctl/busybox\nCOPY dirlink/secret /s2\n")
    p2 = sec_node("image", "build", "-t", "evil:ctx2", str(ctx), timeout=120)
    for p, tag, path in ((p1, "evil:ctx1", "/s1"), (p2, "evil:ctx2", "/s2")):
        if p.returncode == 0:
            out = sec_node("run", "--rm", tag, "sh", "-c", f"cat {path}; exit 0")
            assert "HOSTSECRET" not in out.stdout
        else:
            assert "Traceback" not in p.stderr, p.stderr


def test_build_copy_from_outside_the_context(sec_node, tmp_path, marker_dir):
    """Docker: `COPY ../x` names a path outside the context: "forbidden path outside the
    build context"."""
    with open(os.path.join(marker_dir, "secret"), "w") as f:
        f.write("HOSTSECRET")
    ctx = tmp_path / "ctx3"
    ctx.mkdir()
    rel = os.path.relpath(os.path.join(marker_dir, "secret"), ctx)
    (ctx / "Dockerfile").write_text(f"FROM stackctl/busybox\nCOPY {rel} /s\n")
    p = sec_node("image", "build", "-t", "evil:ctx3", str(ctx), timeout=120)
    if p.returncode == 0:
        out = sec_node("run", "--rm", "evil:ctx3", "sh", "-c", "cat /s; exit 0")
        assert "HOSTSECRET" not in out.stdout
    else:
        assert "Traceback" not in p.stderr, p.stderr


@pytest.fixture
def linky(sec_node, marker_dir):
    """A running container whose filesystem has links pointing at host paths."""
    p = sec_node("run", "-d", "--name", "linky", "stackctl/busybox", "sh", "-c",
                 f"ln -s {marker_dir} /dirlink; ln -s /etc/shadow /filelink; "
                 f"ln -s ../../../../../../{marker_dir.lstrip('/')} /rellink; sleep 300")
    assert p.returncode == 0, p.stderr
    yield "linky"
    sec_node("rm", "-f", "linky")


def test_cp_into_a_container_through_its_symlinks(sec_node, linky, marker_dir, tmp_path):
    """Docker: `docker cp SRC c:/link/...` resolves the container's symlinks inside the
    container's root (FollowSymlinkInScope): the file lands in the container, never in the
    host directory the link names."""
    src = tmp_path / "payload"
    src.write_text("payload")
    for dest in ("/dirlink/p1", "/rellink/p2", "/../../../../../" + marker_dir.lstrip("/") + "/p3"):
        sec_node("cp", str(src), f"{linky}:{dest}")
    assert os.listdir(marker_dir) == []


def test_cp_out_of_a_container_through_its_symlinks(sec_node, linky, tmp_path):
    """Docker: `docker cp c:/link out` copies the link itself; with -L it follows it inside
    the container's root. The host's /etc/shadow is never what comes out."""
    host_shadow = open("/etc/shadow").read() if os.path.exists("/etc/shadow") else "root:"
    for args in ((), ("-L",)):
        out = tmp_path / f"out{len(args)}"
        sec_node("cp", *args, f"{linky}:/filelink", str(out))
        if out.is_symlink():
            continue
        if out.exists():
            assert open(out).read() != host_shadow
    outdir = tmp_path / "outdir"
    sec_node("cp", f"{linky}:/dirlink/.", str(outdir))
    assert not outdir.exists() or all(not (outdir / f).exists() for f in ("passwd", "shadow"))
