"""COPY and ADD: choosing the source files and writing them into a build step's root.

Sources come from the build context (minus ``.dockerignore``) or from another stage's or
image's root (``--from``). Destination rules are Docker's:

- a source directory's *contents* are copied, not the directory itself;
- the destination is a directory if it ends with ``/``, if there are several sources (then
  it must end with ``/``), or if it already exists as a directory in the image;
- a relative destination is relative to WORKDIR; missing parent directories are created;
- files keep their mode and mtime; they are owned by 0:0 (context) or keep their owner
  (``--from``), unless ``--chown``; ``--chmod`` sets the mode;
- ADD extracts a local tar archive (plain, gzip, bzip2, xz, zstd) into the destination; URLs
  and git sources are refused (builds have no network).

Every destination path is resolved inside the step's root (symlinks in the image are
followed as the container would see them, never to the host).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import stat
from dataclasses import dataclass

from stackctl.errors import StackctlError
from stackctl.runtime.images.build.dockerignore import Matcher, _to_regex
from stackctl.runtime.images.layers import remove_path, resolve_in_root

_GLOB = re.compile(r"[*?\[]")


class CopyError(StackctlError):
    """A COPY/ADD source or destination is wrong."""


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


class SourceRoot:
    """Where COPY reads from: the context directory (with its ignore rules) or a stage root."""

    def __init__(self, root: str, matcher: Matcher | None = None, *, is_context: bool = True) -> None:
        self.root = root
        self.matcher = matcher
        self.is_context = is_context

    def included(self, rel: str) -> bool:
        return not (self.matcher and rel not in ("", ".") and self.matcher.excluded(rel))

    def host_path(self, rel: str) -> str:
        """The host path of ``rel``, symlinks on the way resolved inside the root (as
        Docker's FollowSymlinkInScope): a link in the context that points at a host
        directory leads into the context, never out of it. In the context, the last
        component itself is not followed (a link is copied as a link)."""
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if not parts:
            return self.root
        if self.is_context:
            return os.path.join(resolve_in_root(self.root, parts[:-1], what=rel), parts[-1])
        return resolve_in_root(self.root, parts, what=rel) if _is_dir_in_root(self.root, parts) else \
            os.path.join(resolve_in_root(self.root, parts[:-1], what=rel), parts[-1])

    def expand(self, pattern: str, instr: str) -> list[str]:
        """Relative paths named by a source argument (glob patterns allowed)."""
        clean = posixpath.normpath("/" + pattern).lstrip("/")
        norm = posixpath.normpath(pattern)
        if self.is_context and (norm == ".." or norm.startswith("../")):
            raise CopyError(f"{instr} failed: forbidden path outside the build context: {pattern}")
        if not _GLOB.search(clean):
            rel = clean or "."
            try:
                path = self.host_path(rel)
            except StackctlError:  # a parent that is missing, not a directory, or loops
                path = ""
            if not path or not os.path.lexists(path) or not self.included(rel):
                where = "build context" if self.is_context else "source stage"
                raise CopyError(f"{instr} failed: file not found in {where} or excluded by .dockerignore: {pattern}",
                                hint="paths are relative to the build context" if self.is_context else None)
            return [rel]
        rx = re.compile(_to_regex(clean))
        found = [rel for rel, _ in self.walk(".") if rx.match(rel)]
        if not found:
            raise CopyError(f"{instr} failed: no source files were specified matching {pattern!r}")
        # a directory matched by the glob brings its contents; drop entries below matched dirs
        found.sort()
        out: list[str] = []
        for rel in found:
            if not any(rel.startswith(o + "/") for o in out):
                out.append(rel)
        return out

    def walk(self, rel: str) -> list[tuple[str, os.stat_result]]:
        """Everything below ``rel`` that the ignore rules let through, parents first."""
        out: list[tuple[str, os.stat_result]] = []
        base = self.host_path(rel)
        prefix = "" if rel in ("", ".") else rel.rstrip("/") + "/"

        def rec(dir_host: str, dir_rel: str, out: list[tuple[str, os.stat_result]]) -> None:
            try:
                names = sorted(os.listdir(dir_host))
            except NotADirectoryError:
                return
            for name in names:
                r = dir_rel + name
                p = os.path.join(dir_host, name)
                st = os.lstat(p)
                if not self.included(r):
                    if stat.S_ISDIR(st.st_mode) and self.matcher and self.matcher.may_include_below(r):
                        below: list[tuple[str, os.stat_result]] = []
                        rec(p, r + "/", below)
                        if below:  # an excluded directory still holds re-included files
                            out.append((r, st))
                            out.extend(below)
                    continue
                out.append((r, st))
                if stat.S_ISDIR(st.st_mode):
                    rec(p, r + "/", out)

        rec(base, prefix, out)
        return out


def _is_dir_in_root(root: str, parts: list[str]) -> bool:
    try:
        return os.path.isdir(resolve_in_root(root, parts))
    except StackctlError:
        return False


def content_hash(src: SourceRoot, rels: list[str]) -> str:
    """A digest of everything the sources name: paths, types, modes, link targets, contents."""
    h = hashlib.sha256()
    for rel in rels:
        top = src.host_path(rel)
        st = os.stat(top) if not src.is_context else os.lstat(top)
        entries = [(rel, st)] + (src.walk(rel) if stat.S_ISDIR(st.st_mode) else [])
        for r, est in entries:
            h.update(f"{r}\0{stat.S_IFMT(est.st_mode)}\0{stat.S_IMODE(est.st_mode)}\0".encode())
            path = src.host_path(r) if r == rel else os.path.join(top, os.path.relpath(r, rel))
            if stat.S_ISLNK(est.st_mode):
                h.update(os.readlink(path).encode())
            elif stat.S_ISREG(est.st_mode):
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            if not src.is_context:
                h.update(f"{est.st_uid}:{est.st_gid}".encode())
            h.update(b"\n")
    return h.hexdigest()


def copy_sources(src: SourceRoot, rels: list[str], root: str, dest: str, *, owner: Owner | None,
                 chmod: int | None, instr: str, many: bool) -> None:
    """Copy the sources into the step root ``root`` at ``dest`` (absolute, already joined
    with WORKDIR). ``many``: several sources or a glob (the destination must be a dir)."""
    dest_is_dir = dest.endswith("/") or many
    if many and not dest.endswith("/"):
        raise CopyError(f"{instr}: when using {instr.split()[0]} with more than one source file, "
                        f"the destination must be a directory and end with a /")
    dparts = [p for p in dest.split("/") if p]
    for rel in rels:
        host = src.host_path(rel)
        st = os.stat(host) if not src.is_context or not os.path.islink(host) else os.lstat(host)
        if stat.S_ISDIR(st.st_mode):
            target_dir = resolve_in_root(root, dparts, create=True, what=dest)
            _copy_tree(src, rel, host, target_dir, owner, chmod, st)
            continue
        parent_parts, name = (dparts, posixpath.basename(rel)) if dest_is_dir else (dparts[:-1], dparts[-1] if dparts else "")
        if not dest_is_dir and dparts and _is_dir_in_root(root, dparts):
            parent_parts, name = dparts, posixpath.basename(rel)
        if not name:
            raise CopyError(f"{instr}: cannot copy a file to the root directory itself", hint="end the destination with /")
        parent = resolve_in_root(root, parent_parts, create=True, what=dest)
        _copy_entry(host, os.path.join(parent, name), st, owner, chmod, src.is_context)


def _copy_tree(src: SourceRoot, rel: str, host: str, target_dir: str, owner: Owner | None,
               chmod: int | None, top_st: os.stat_result) -> None:
    dirs: list[tuple[str, os.stat_result]] = [(target_dir, top_st)]
    _apply_meta(target_dir, top_st, owner, chmod, src.is_context, is_dir=True)
    for r, st in src.walk(rel):
        sub = os.path.relpath(r, rel) if rel not in ("", ".") else r
        spath = os.path.join(host, sub)
        tpath = os.path.join(target_dir, sub)
        if stat.S_ISDIR(st.st_mode):
            if not (os.path.isdir(tpath) and not os.path.islink(tpath)):
                remove_path(tpath)
                os.mkdir(tpath, 0o755)
            _apply_meta(tpath, st, owner, chmod, src.is_context, is_dir=True)
            dirs.append((tpath, st))
        else:
            _copy_entry(spath, tpath, st, owner, chmod, src.is_context)
    for path, st in reversed(dirs):
        os.utime(path, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_entry(spath: str, tpath: str, st: os.stat_result, owner: Owner | None, chmod: int | None,
                from_context: bool) -> None:
    if os.path.isdir(tpath) and not os.path.islink(tpath):
        shutil.rmtree(tpath)
    else:
        remove_path(tpath)
    mode = st.st_mode
    if stat.S_ISREG(mode):
        fd = os.open(tpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out, open(spath, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(spath), tpath)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        os.mknod(tpath, stat.S_IFMT(mode) | 0o600, st.st_rdev)
    elif stat.S_ISFIFO(mode):
        os.mkfifo(tpath, 0o600)
    else:
        return  # sockets are not copied
    _apply_meta(tpath, st, owner, chmod, from_context, is_dir=False)


def _apply_meta(path: str, st: os.stat_result, owner: Owner | None, chmod: int | None,
                from_context: bool, *, is_dir: bool) -> None:
    if owner is not None:
        uid, gid = owner.uid, owner.gid
    elif from_context:
        uid, gid = 0, 0
    else:
        uid, gid = st.st_uid, st.st_gid
    if os.geteuid() == 0:
        os.lchown(path, uid, gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
    if not is_dir:
        os.utime(path, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)


def is_archive(path: str) -> bool:
    """A local file ADD extracts: a (possibly compressed) tar."""
    from stackctl.runtime.images.layers import detect_compression

    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        head = f.read(512)
    if detect_compression(head):
        return True
    return len(head) == 512 and head[257:262] == b"ustar"


def extract_archive(path: str, root: str, dest: str) -> None:
    """ADD of a local archive: unpack it into the directory ``dest`` inside ``root``."""
    from stackctl.runtime.images.layers import LayerError, apply_layer

    target = resolve_in_root(root, [p for p in dest.split("/") if p], create=True, what=dest)
    with open(path, "rb") as f:
        try:
            apply_layer(f, target, overlay=False)
        except LayerError as exc:
            raise CopyError(f"ADD {os.path.basename(path)}: {exc.message}") from None


def parse_chown(spec: str, root: str) -> Owner:
    """``--chown=user[:group]`` with names looked up in the image's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")
    uid, primary = _lookup(root, "passwd", user, spec)
    if group:
        gid, _ = _lookup(root, "group", group, spec)
    else:
        gid = primary if primary is not None else uid
    return Owner(uid, gid)


def _lookup(root: str, db: str, name: str, spec: str) -> tuple[int, int | None]:
    if name.isdigit():
        return int(name), None
    try:
        etc = resolve_in_root(root, ["etc"])
        with open(os.path.join(etc, db)) as f:
            lines = f.read().splitlines()
    except (OSError, StackctlError):
        lines = []
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name:
            primary = int(fields[3]) if db == "passwd" and len(fields) > 3 and fields[3].isdigit() else None
            return int(fields[2]), primary
    what = "user" if db == "passwd" else "group"
    raise CopyError(f"--chown={spec}: no {what} {name!r} in the image's /etc/{db}",
                    hint="use numeric IDs, or create the user in an earlier step")
