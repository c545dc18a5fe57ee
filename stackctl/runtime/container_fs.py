"""A container's filesystem from outside: ``diff`` (its overlay upper directory as Docker's
A/C/D list), ``export`` (its root as a tar), ``cp`` (tar streams both ways, with Docker's rules
for where things land) and ``commit`` (the upper directory as a new layer on the image).

The root of a running container is ``/proc/<pid>/root`` (its own mount namespace: volumes
included, as Docker's ``cp``); a stopped one's is mounted for the call in a child process with
a private mount namespace, so no mount can outlive it. Every path inside a root is resolved by
the kernel (:mod:`stackctl.runtime.containers.inroot`), every entry then reached through a
directory fd with ``O_NOFOLLOW``: a symlink in the container never takes a copy outside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from stackctl.errors import ConflictError, StackctlError
from stackctl.runtime.containers.inroot import open_in_root

WHITEOUT_OPAQUE = "trusted.overlay.opaque"
_CHUNK = 1 << 20


class CopyError(StackctlError):
    """A copy into or out of a container failed; the message names the path."""


# --- the container's root ------------------------------------------------------------------

def with_root(mgr: Any, rec: Any, fn: Callable[[int], None]) -> None:
    """Call ``fn(root_fd)`` with the container's root directory. Running: its
    ``/proc/<pid>/root``. Otherwise: in a forked child that unshares its mount namespace and
    mounts the container's overlay (layers + upper) — the caller holds the manager's lock, so
    the container cannot start meanwhile. A StackctlError in the child is raised here."""
    st = rec.state
    if st.status == "running" and st.pid:
        try:
            fd = os.open(f"/proc/{st.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            raise StackctlError(f"container {rec.name} stopped while it was being read",
                                hint="run the command again") from None
        try:
            fn(fd)
        finally:
            os.close(fd)
        return
    _in_mounted_root(mgr, rec, fn)


def _in_mounted_root(mgr: Any, rec: Any, fn: Callable[[int], None]) -> None:
    import json
    import sys

    from stackctl.runtime.containers import linux, rootfs

    cdir = mgr._dir(rec.id)
    r, w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            linux.unshare(linux.CLONE_NEWNS)
            rootfs.make_private()
            target = os.path.join(cdir, "rootfs")
            for d in ("upper", "work", "rootfs"):
                os.makedirs(os.path.join(cdir, d), exist_ok=True)
            rootfs.mount_overlay(target, list(rec.spec.rootfs_layers), os.path.join(cdir, "upper"),
                                 os.path.join(cdir, "work"))
            fd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            fn(fd)
            sys.stdout.flush()
        except StackctlError as exc:
            os.write(w, json.dumps({"message": exc.message, "hint": exc.hint, "code": exc.exit_code}).encode())
            code = 1
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
            os.write(w, json.dumps({"message": f"{type(exc).__name__}: {exc}", "code": 1}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    if data:
        err = json.loads(data)
        exc = StackctlError(err["message"], hint=err.get("hint"))
        exc.exit_code = err.get("code", 1)
        raise exc


# --- diff ----------------------------------------------------------------------------------

def diff_changes(upper: str, in_lower: Callable[[str], bool]) -> list[tuple[str, str]]:
    """Docker's ``diff`` from an overlay upper directory: ``("A"|"C"|"D", "/path")`` sorted by
    path. A whiteout (char device 0/0) is a deletion; an entry that the image's layers have is
    changed, one they lack added; inside an opaque directory everything is added (the lower
    contents are hidden). ``in_lower("/path")`` says whether the layers have the path."""
    out: list[tuple[str, str]] = []

    def walk(rel: str, opaque_above: bool) -> None:
        for e in sorted(os.scandir(os.path.join(upper, rel.lstrip("/"))), key=lambda e: e.name):
            path = f"{rel}/{e.name}"
            st = e.stat(follow_symlinks=False)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(("D", path))
                continue
            existed = not opaque_above and in_lower(path)
            out.append(("C" if existed else "A", path))
            if stat.S_ISDIR(st.st_mode):
                walk(path, opaque_above or _is_opaque(e.path))

    if os.path.isdir(upper):
        walk("", False)
    return sorted(out, key=lambda c: c[1])


def _is_opaque(path: str) -> bool:
    for name in (WHITEOUT_OPAQUE, "user.overlay.opaque"):
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def layers_have(layer_dirs: list[str]) -> Callable[[str], bool]:
    """``in_lower`` of :func:`diff_changes` over unpacked layers (bottom -> top): the path is
    in the top-most layer that mentions it, and not a whiteout there; an opaque directory
    above hides what the layers below it have."""
    top_first = list(reversed(layer_dirs))

    def have(path: str) -> bool:
        parts = path.strip("/").split("/")
        for layer in top_first:
            # an opaque parent in this layer hides the layers below
            for i in range(1, len(parts)):
                if _is_opaque(os.path.join(layer, *parts[:i])):
                    return os.path.lexists(os.path.join(layer, *parts))
            p = os.path.join(layer, *parts)
            try:
                st = os.lstat(p)
            except (FileNotFoundError, NotADirectoryError):
                continue
            return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
        return False

    return have


RUNTIME_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def hide_mount_points(changes: list[tuple[str, str]], mount_points: set[str]) -> list[tuple[str, str]]:
    """Leave out what the runtime made as mount points (Docker keeps those in an init layer
    that ``diff`` does not show): added entries at ``mount_points``, and changed directories
    that are only in the upper directory because of them (pure)."""
    hidden = {p for kind, p in changes if kind == "A" and p in mount_points}
    kept = [(k, p) for k, p in changes if p not in hidden]
    out = []
    for kind, path in kept:
        prefix = path + "/"
        if kind == "C" and any(h.startswith(prefix) for h in hidden) and \
                not any(p.startswith(prefix) for _, p in kept):
            continue
        out.append((kind, path))
    return out


def diff(mgr: Any, query: str) -> list[tuple[str, str]]:
    rec = mgr.get(query)
    upper = os.path.join(mgr._dir(rec.id), "upper")
    changes = diff_changes(upper, layers_have(list(rec.spec.rootfs_layers)))
    points = set(RUNTIME_FILES) | {"/" + m.target.strip("/") for m in rec.spec.mounts}
    return hide_mount_points(changes, points)


# --- writing a tar from a root --------------------------------------------------------------

def _info(name: str, st: os.stat_result, link: str = "") -> tarfile.TarInfo | None:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    m = st.st_mode
    if stat.S_ISREG(m):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(m):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(m):
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(m):
        info.type = tarfile.FIFOTYPE
    else:
        return None  # sockets: not archived (as tar)
    return info


def archive_tree(tar: tarfile.TarFile, dir_fd: int, name: str, st: os.stat_result, *, dev: int | None,
                 links: dict[tuple[int, int], str]) -> None:
    """Add the entry open as ``dir_fd``'s child-less self (a directory fd) recursively under
    ``name``. ``dev``: stay on this device (``export``: other mounts' contents are left out,
    their mount points kept as empty directories)."""
    info = _info(name, st)
    if info is not None:
        tar.addfile(info)
    if dev is not None and st.st_dev != dev:
        return
    with os.scandir(dir_fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        child = f"{name}/{e.name}" if name not in ("", ".") else e.name
        cst = os.stat(e.name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(cst.st_mode):
            try:
                cfd = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError:
                continue  # gone meanwhile, or swapped for something else
            try:
                archive_tree(tar, cfd, child, cst, dev=dev, links=links)
            finally:
                os.close(cfd)
        else:
            _archive_leaf(tar, dir_fd, e.name, child, cst, links)


def _archive_leaf(tar: tarfile.TarFile, dir_fd: int, base: str, name: str, st: os.stat_result,
                  links: dict[tuple[int, int], str]) -> None:
    link = os.readlink(base, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else ""
    info = _info(name, st, link)
    if info is None:
        return
    if info.isreg():
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            info.type, info.linkname, info.size = tarfile.LNKTYPE, links[key], 0
            tar.addfile(info)
            return
        if st.st_nlink > 1:
            links[key] = name
        try:
            fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return
        with os.fdopen(fd, "rb") as f:
            tar.addfile(info, f)
        return
    tar.addfile(info)


def write_archive(root_fd: int, src: str, out: BinaryIO, *, follow: bool = False, contents_only: bool = False,
                  dev_only: bool = False) -> None:
    """``src`` (resolved in the root) as a tar on ``out``: its entries are named
    ``basename(src)/...``, or ``./...`` with ``contents_only`` (``SRC/.``). ``follow``: a
    symlink at ``src`` itself is followed (``cp -L``); links inside are kept as links."""
    try:
        fd = open_in_root(root_fd, src, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
    except OSError as exc:
        raise CopyError(f"could not find the file {src} in container: {exc.strerror}") from None
    try:
        st = os.stat(fd)
        top = "." if contents_only else (os.path.basename(src.rstrip("/")) or ".")
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            if stat.S_ISDIR(st.st_mode):
                dfd = open_in_root(root_fd, src, os.O_RDONLY | os.O_DIRECTORY | (0 if follow else os.O_NOFOLLOW))
                try:
                    archive_tree(tar, dfd, top, st, dev=st.st_dev if dev_only else None, links={})
                finally:
                    os.close(dfd)
            elif contents_only:
                raise CopyError(f"{src}: not a directory")
            else:
                parent = open_in_root(root_fd, os.path.dirname(src.rstrip("/")) or "/", os.O_PATH | os.O_DIRECTORY)
                try:
                    _archive_leaf(tar, parent, os.path.basename(src.rstrip("/")), top, st, {}) if not follow \
                        else _archive_followed(tar, fd, top, st)
                finally:
                    os.close(parent)
    finally:
        os.close(fd)


def _archive_followed(tar: tarfile.TarFile, fd: int, name: str, st: os.stat_result) -> None:
    info = _info(name, st)
    if info is None:
        return
    if info.isreg():
        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        with os.fdopen(rfd, "rb") as f:
            tar.addfile(info, f)
    else:
        tar.addfile(info)


# --- extracting a tar into a root -------------------------------------------------------------

def _split(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise CopyError(f"refusing archive entry {name!r}: it would land outside the destination")
    return parts


class _Extractor:
    """Entries created below a directory of the root, each reached through its parent's fd."""

    def __init__(self, root_fd: int, base: str, *, keep_owner: bool) -> None:
        self.root_fd, self.base, self.keep_owner = root_fd, base.rstrip("/") or "/", keep_owner
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []

    def _parent(self, parts: list[str], create: bool = True) -> int:
        """The directory that will hold ``parts[-1]``; missing directories on the way are made
        (0755, as tar does for entries without their parents)."""
        path = "/".join([self.base.rstrip("/"), *parts[:-1]]) or "/"
        try:
            return open_in_root(self.root_fd, path, os.O_PATH | os.O_DIRECTORY)
        except OSError as exc:
            if exc.errno != errno.ENOENT or not create or len(parts) < 2:
                raise CopyError(f"cannot create {path}/{parts[-1]}: {exc.strerror}") from None
        pfd = self._parent(parts[:-1])
        try:
            os.mkdir(parts[-2], 0o755, dir_fd=pfd)
        except FileExistsError:
            pass
        finally:
            os.close(pfd)
        return self._parent(parts, create=False)

    def add(self, m: tarfile.TarInfo, parts: list[str], tar: tarfile.TarFile) -> None:
        if not parts:
            if m.isdir():
                self.dirs.append(("", m))
            return
        pfd = self._parent(parts)
        base = parts[-1]
        try:
            try:
                old = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                old = None
            if m.isdir():
                if old is not None and not stat.S_ISDIR(old.st_mode):
                    os.unlink(base, dir_fd=pfd)
                    old = None
                if old is None:
                    os.mkdir(base, 0o700, dir_fd=pfd)
                self.dirs.append(("/".join(parts), m))
                return
            if old is not None:
                if stat.S_ISDIR(old.st_mode):
                    raise CopyError(f"cannot overwrite directory {'/'.join(parts)} with a non-directory")
                os.unlink(base, dir_fd=pfd)
            if m.isreg():
                fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=pfd)
                with os.fdopen(fd, "wb") as out:
                    src = tar.extractfile(m)
                    if src is not None:
                        while chunk := src.read(_CHUNK):
                            out.write(chunk)
                    self._meta_fd(out.fileno(), m)
                os.utime(base, ns=(int(m.mtime * 1e9),) * 2, dir_fd=pfd, follow_symlinks=False)
                return
            if m.issym():
                os.symlink(m.linkname, base, dir_fd=pfd)
            elif m.islnk():
                tparts = _split(m.linkname)
                tfd = self._parent(tparts)
                try:
                    os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
                finally:
                    os.close(tfd)
                return
            elif m.ischr() or m.isblk() or m.isfifo():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
                os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor) if not m.isfifo() else 0, dir_fd=pfd)
            else:
                return
            self._meta_at(pfd, base, m)
        except OSError as exc:
            raise CopyError(f"cannot create {'/'.join(parts)} in {self.base}: {exc.strerror}") from None
        finally:
            os.close(pfd)

    def _owner(self, m: tarfile.TarInfo) -> tuple[int, int]:
        return (m.uid, m.gid) if self.keep_owner else (0, 0)

    def _meta_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        os.fchown(fd, *self._owner(m))
        os.fchmod(fd, m.mode & 0o7777)

    def _meta_at(self, pfd: int, base: str, m: tarfile.TarInfo) -> None:
        os.chown(base, *self._owner(m), dir_fd=pfd, follow_symlinks=False)
        if not m.issym():
            fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                os.chmod(f"/proc/self/fd/{fd}", m.mode & 0o7777)
            finally:
                os.close(fd)
        os.utime(base, ns=(int(m.mtime * 1e9),) * 2, dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        for rel, m in reversed(self.dirs):
            fd = open_in_root(self.root_fd, "/".join([self.base.rstrip("/"), rel]).rstrip("/") or "/",
                              os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                self._meta_fd(fd, m)
                os.utime(fd, ns=(int(m.mtime * 1e9),) * 2)
            finally:
                os.close(fd)


def _kind(root_fd: int, path: str) -> str:
    """"dir", "file" (anything else) or "" (missing), following links in the root."""
    try:
        fd = open_in_root(root_fd, path, os.O_PATH)
    except OSError as exc:
        if exc.errno in (errno.ENOENT,):
            return ""
        raise CopyError(f"{path}: {exc.strerror}") from None
    try:
        return "dir" if stat.S_ISDIR(os.stat(fd).st_mode) else "file"
    finally:
        os.close(fd)


def extract_archive(src: BinaryIO, root_fd: int, dest: str, *, keep_owner: bool, place: bool = True,
                    what: str = "container") -> None:
    """Unpack the tar read from ``src`` at ``dest`` in the root. ``place`` (an archive made by
    :func:`write_archive`): Docker's ``cp`` rules decide from its top entry where it lands —
    into ``dest`` if that is a directory, else as ``dest`` itself (its parent must exist); a
    directory over a file is refused. Without ``place`` (``cp - C:DEST``) ``dest`` must be a
    directory and the archive is unpacked into it as it is."""
    dest_kind = _kind(root_fd, dest)
    with tarfile.open(fileobj=src, mode="r|*") as tar:
        ex: _Extractor | None = None
        top_from = top_to = ""
        for m in tar:
            parts = _split(m.name)
            if ex is None:
                if not place:
                    if dest_kind != "dir":
                        raise CopyError(f'destination "{dest}" must be a directory')
                    ex = _Extractor(root_fd, dest, keep_owner=keep_owner)
                else:
                    is_dir = m.isdir()
                    if dest_kind == "dir" and parts:
                        ex = _Extractor(root_fd, dest, keep_owner=keep_owner)
                    else:
                        if dest_kind == "file" and is_dir:
                            raise CopyError(f"cannot copy a directory to a file: {dest}")
                        if not dest_kind and dest.endswith("/") and not is_dir:
                            raise CopyError(f'destination directory "{dest}" must exist')
                        parent = os.path.dirname(dest.rstrip("/")) or "/"
                        if _kind(root_fd, parent) != "dir":
                            raise CopyError(f'destination directory "{parent}" does not exist in the {what}')
                        ex = _Extractor(root_fd, parent, keep_owner=keep_owner)
                        top_from, top_to = (parts[0] if parts else ""), os.path.basename(dest.rstrip("/"))
            if top_to:
                parts = [top_to] + (parts[1:] if parts and parts[0] == top_from else parts)
            ex.add(m, parts, tar)
        if ex is not None:
            ex.finish()


# --- commit ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _paused_for_commit(mgr: Any, rec: Any, pause: bool) -> Iterator[None]:
    """Docker pauses a running container during a commit (``--pause``, on by default)."""
    if not (pause and rec.state.status == "running" and not rec.state.paused):
        yield
        return
    from stackctl.runtime.containers import control

    control.freeze_container(mgr.paths, rec.id)
    try:
        yield
    finally:
        control.thaw_container(mgr.paths, rec.id, strict=False)


def commit_config(image_config: dict[str, Any], container_config: dict[str, Any], changes: list[str], *,
                  author: str, comment: str, created: str, created_by: str, diff_id: str) -> dict[str, Any]:
    """The new image's config: the container's Config over the image's (its Env, Cmd, …), then
    the ``-c`` Dockerfile instructions; one more layer and history entry (pure)."""
    import copy

    from stackctl.runtime.images.build.metadata import apply_changes

    cfg = copy.deepcopy(image_config)
    inner = dict(cfg.get("config") or {})
    for key in ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "StopSignal"):
        if key in container_config and container_config[key] not in (None, "", [], {}):
            inner[key] = container_config[key]
    try:
        inner = apply_changes(inner, list(changes))
    except StackctlError as exc:
        exc.exit_code = 1
        raise
    cfg["config"] = inner
    cfg["created"] = created
    if author:
        cfg["author"] = author
    cfg.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    cfg["rootfs"] = {"type": "layers", "diff_ids": list(cfg["rootfs"].get("diff_ids", [])) + [diff_id]}
    entry: dict[str, Any] = {"created": created, "created_by": created_by}
    if comment:
        entry["comment"] = comment
    if author:
        entry["author"] = author
    cfg["history"] = list(cfg.get("history") or []) + [entry]
    return cfg


def commit(mgr: Any, query: str, ref: str = "", *, changes: list[str] = (), message: str = "",  # type: ignore[assignment]
           author: str = "", pause: bool = True) -> Any:
    """``docker commit``: the container's upper directory as a layer tar on top of its image's
    layers, a config from :func:`commit_config`, tagged ``ref`` if given."""
    import shlex
    import tempfile

    from stackctl.runtime.images import oci
    from stackctl.runtime.images.layers import diff_to_tar
    from stackctl.runtime.images.refs import parse

    tags = [parse(ref).tagged] if ref else []
    store = mgr.images
    with mgr.locked():
        rec = mgr.get(query)
        try:
            image = store.resolve(rec.spec.image_id)
        except StackctlError:
            raise ConflictError(f"the image of container {rec.name} ({rec.spec.image_id[:19]}) is gone",
                                hint="a container whose image was removed cannot be committed") from None
        upper = os.path.join(mgr._dir(rec.id), "upper")
        with store.ingesting():
            os.makedirs(store.tmp_dir, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=store.tmp_dir, prefix="commit-")
            try:
                with _paused_for_commit(mgr, rec, pause), os.fdopen(fd, "wb") as f:
                    if os.path.isdir(upper):
                        info = diff_to_tar(upper, f)
                    else:
                        empty = tempfile.mkdtemp(dir=store.tmp_dir, prefix="empty-")
                        try:
                            info = diff_to_tar(empty, f)
                        finally:
                            os.rmdir(empty)
                os.rename(tmp, store.blob_path(info.diff_id))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            store.unpack_layer(info.diff_id, oci.MT_LAYER, expected_diff_id=info.diff_id)
            created = oci.now_rfc3339()
            cfg = commit_config(image.config, dict(rec.meta.get("Config") or {}), list(changes), author=author,
                                comment=message, created=created, created_by=shlex.join(rec.spec.argv),
                                diff_id=info.diff_id)
            layers = [{k: v for k, v in lay.items() if k in ("mediaType", "digest", "size")} for lay in image.layers]
            layers.append({"mediaType": oci.MT_LAYER, "digest": info.diff_id,
                           "size": os.path.getsize(store.blob_path(info.diff_id))})
            return store.commit_image(oci.canonical_json(cfg), layers, tags)
