"""Layer tars: unpack one into a directory, and make one from an overlay upper directory.

Unpacking never follows a link to the host. Every entry name is checked (no absolute names,
no ``..``), and every parent directory is resolved component by component *inside* the root:
a symlink met on the way is followed as the container would see it (an absolute target
starts again at the layer's root); a target that climbs above the root is refused. The last
component is never followed: whatever is there is replaced.

Two modes:

- ``overlay=True`` (the store's mode): the layer goes into a directory of its own that will be
  one overlayfs lowerdir. OCI whiteouts become overlay whiteouts: ``.wh.NAME`` a character
  device 0/0 named NAME, ``.wh..wh..opq`` the xattr ``trusted.overlay.opaque=y`` on its
  directory.
- ``overlay=False``: the layer is applied on top of a directory that already holds the layers
  below (a flattened rootfs); whiteouts delete.

:func:`diff_to_tar` is the reverse: an overlay upper directory (a build step's changes)
becomes a layer tar with OCI whiteouts.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from stackctl.errors import StackctlError

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
OVERLAY_XATTR_PREFIX = "trusted.overlay."
_MAX_LINK_HOPS = 40
_CHUNK = 1 << 20


class LayerError(StackctlError):
    """A layer tar is unreadable or unsafe to unpack."""


@dataclass(frozen=True, slots=True)
class LayerInfo:
    diff_id: str  # sha256 of the uncompressed tar stream
    size: int  # bytes of file content (what `image ls` adds up)
    tar_size: int  # bytes of the uncompressed tar


# --- compression ----------------------------------------------------------------------------

def detect_compression(head: bytes) -> str:
    """"gzip", "zstd", "bzip2", "xz" or "" (plain tar), from the first bytes of a stream."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:3] == b"BZh":
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    return ""


class _Peek:
    """A reader that lets the first bytes be looked at before they are consumed."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.buf = b""

    def peek(self, n: int) -> bytes:
        while len(self.buf) < n:
            more = self.raw.read(n - len(self.buf))
            if not more:
                break
            self.buf += more
        return self.buf[:n]

    def read(self, n: int = -1) -> bytes:
        if self.buf:
            if n < 0:
                out, self.buf = self.buf + self.raw.read(), b""
                return out
            out, self.buf = self.buf[:n], self.buf[n:]
            if len(out) < n:
                out += self.raw.read(n - len(out))
            return out
        return self.raw.read(n)


def open_decompressed(raw: BinaryIO) -> tuple[BinaryIO, str]:
    """Wrap ``raw`` so that it reads uncompressed bytes; also says which compression it was."""
    peek = _Peek(raw)
    kind = detect_compression(peek.peek(6))
    if kind == "gzip":
        return gzip.GzipFile(fileobj=peek, mode="rb"), kind  # type: ignore[arg-type]
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(peek, read_across_frames=True), kind
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(peek, "rb"), kind  # type: ignore[arg-type]
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(peek, "rb"), kind  # type: ignore[arg-type]
    return peek, kind  # type: ignore[return-value]


class HashingReader:
    """Reads through, keeping the sha256 and length of what passed."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


class HashingWriter:
    """Writes through, keeping the sha256 and length of what passed."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.count += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


# --- paths inside a root --------------------------------------------------------------------

def split_entry_name(name: str) -> list[str]:
    """The components of a tar entry name; refuses absolute names and ``..``."""
    if name.startswith("/"):
        raise LayerError(f"refusing tar entry {name!r}: absolute path (a layer entry must be relative)")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"refusing tar entry {name!r}: '..' would escape the layer root")
    return parts


def resolve_in_root(root: str, parts: list[str], *, create: bool = False, what: str = "") -> str:
    """The host path of directory ``/parts...`` inside ``root``, symlinks resolved inside it.

    With ``create``, missing directories are made (mode 0755). Raises :class:`LayerError` if
    a symlink points above the root, a component is not a directory, or links loop.
    """
    todo = list(parts)
    done: list[str] = []
    hops = 0
    label = what or "/" + "/".join(parts)
    while todo:
        comp = todo.pop(0)
        if comp in ("", "."):
            continue
        if comp == "..":
            if not done:
                raise LayerError(f"refusing {label!r}: a symlink on its path points outside the root")
            done.pop()
            continue
        path = os.path.join(root, *done, comp)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise LayerError(f"{label!r}: '/{'/'.join(done + [comp])}' does not exist") from None
            os.mkdir(path, 0o755)
            done.append(comp)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise LayerError(f"refusing {label!r}: too many levels of symbolic links")
            target = os.readlink(path)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p] + todo
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise LayerError(f"{label!r}: '/{'/'.join(done + [comp])}' is not a directory")
        done.append(comp)
    return os.path.join(root, *done)


def remove_path(path: str) -> None:
    """Remove whatever is at ``path`` (a directory recursively); never follows a link."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


# --- unpacking ------------------------------------------------------------------------------

def apply_layer(src: BinaryIO, dest: str, *, overlay: bool = True,
                xattr_prefix: str = OVERLAY_XATTR_PREFIX) -> LayerInfo:
    """Unpack the layer tar read from ``src`` (gzip, zstd or plain) into ``dest``.

    Returns the diff ID (sha256 of the uncompressed stream) and sizes. On error, ``dest`` is
    left partly written: callers unpack into a temporary directory and rename it when done.
    """
    stream, _kind = open_decompressed(src)
    reader = HashingReader(stream)
    unpacker = _Unpacker(dest, overlay=overlay, xattr_prefix=xattr_prefix)
    with _tar_errors():
        # bufsize: the stream is read 1 MiB at a time (tarfile's default, 10 KiB, is 100 calls
        # through the decompressor and the hasher per MiB)
        with tarfile.open(fileobj=reader, mode="r|", errorlevel=2, bufsize=_CHUNK) as tar:  # type: ignore[call-overload]
            for member in tar:
                unpacker.add(member, tar)
        reader.drain()
    unpacker.finish()
    return LayerInfo(diff_id=reader.digest, size=unpacker.size, tar_size=reader.count)


def apply_plain_layer(path: str, dest: str, diff_id: str, *, overlay: bool = True,
                      xattr_prefix: str = OVERLAY_XATTR_PREFIX) -> LayerInfo:
    """Unpack an *uncompressed* layer tar stored at ``path`` whose sha256 the caller has
    already checked to be ``diff_id`` (for an uncompressed layer, its digest is its diff ID).

    Same result as :func:`apply_layer`, cheaper: only the headers pass through Python; a
    file's content is copied from its offset in the tar by the kernel (``copy_file_range``),
    and the tar is not hashed a second time.
    """
    unpacker = _Unpacker(dest, overlay=overlay, xattr_prefix=xattr_prefix)
    with open(path, "rb") as f, _tar_errors():
        if detect_compression(f.read(6)):
            raise LayerError("apply_plain_layer: the layer is compressed")
        f.seek(0)
        unpacker.copy_from = f.fileno()
        with tarfile.open(fileobj=f, mode="r:", errorlevel=2) as tar:
            for member in tar:
                unpacker.add(member, tar)
                tar.members = []  # headers are not kept: a layer may have very many entries
        tar_size = os.fstat(f.fileno()).st_size
    unpacker.finish()
    return LayerInfo(diff_id=diff_id, size=unpacker.size, tar_size=tar_size)


@contextlib.contextmanager
def _tar_errors() -> Iterator[None]:
    """A damaged tar or compressed stream is one :class:`LayerError`."""
    try:
        yield
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, ValueError) as exc:
        raise LayerError(f"unreadable layer tar: {exc}") from None
    except Exception as exc:
        # a decompressor's complaint about its data: zlib.error, lzma.LZMAError, zstandard's
        # ZstdError (an OSError or not, by version), bz2's errno-less OSError. An OSError with
        # an errno is the disk's (ENOSPC and friends) and goes on as it is.
        if exc.__class__.__name__ in ("error", "LZMAError", "ZstdError") \
                or (isinstance(exc, OSError) and exc.errno is None) or "zstd" in str(exc).lower():
            raise LayerError(f"unreadable layer tar: {exc}") from None
        raise


class _Unpacker:
    def __init__(self, dest: str, *, overlay: bool, xattr_prefix: str) -> None:
        self.dest = dest
        self.overlay = overlay
        self.xattr_prefix = xattr_prefix
        self.is_root = os.geteuid() == 0
        self.size = 0
        self.written: set[str] = set()
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []  # metadata applied at the end
        self.copy_from = -1  # an uncompressed tar's descriptor: content copied by offset

    def add(self, m: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        parts = split_entry_name(m.name)
        if not parts:  # "./": the root directory itself
            if m.isdir():
                self.dirs.append((self.dest, m))
            return
        base = parts[-1]
        parent = resolve_in_root(self.dest, parts[:-1], create=True, what=m.name)
        rel = "/".join(parts)
        if base == WH_OPAQUE:
            self._opaque(parent, "/".join(parts[:-1]))
            return
        if base.startswith(WH_PREFIX):
            self._whiteout(os.path.join(parent, base[len(WH_PREFIX):]))
            return
        path = os.path.join(parent, base)
        self.written.add(rel)
        if m.isdir():
            if not os.path.isdir(path) or os.path.islink(path):
                remove_path(path)
                os.mkdir(path, 0o700)
            self.dirs.append((path, m))
            return
        remove_path(path)
        if m.islnk():
            self._hardlink(m, path)
            return
        if m.isreg():
            self._regular(m, tar, path)
        elif m.issym():
            os.symlink(m.linkname, path)
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            if not self.is_root:
                return  # devices need CAP_MKNOD; rootless unpacking skips them, as Docker does
            os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise LayerError(f"refusing tar entry {m.name!r}: unsupported type {m.type!r}")
        self._meta(path, m)

    def _regular(self, m: tarfile.TarInfo, tar: tarfile.TarFile, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            if self.copy_from >= 0 and not m.issparse():
                _copy_range(self.copy_from, fd, m.offset_data, m.size, m.name)
            else:
                data = tar.extractfile(m)
                if data is not None:
                    shutil.copyfileobj(data, out, _CHUNK)
        self.size += m.size

    def _hardlink(self, m: tarfile.TarInfo, path: str) -> None:
        tparts = split_entry_name(m.linkname)
        if not tparts:
            raise LayerError(f"refusing hard link {m.name!r}: empty link target")
        tparent = resolve_in_root(self.dest, tparts[:-1], what=m.linkname)
        target = os.path.join(tparent, tparts[-1])
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            raise LayerError(f"hard link {m.name!r} -> {m.linkname!r}: target not in this layer") from None
        if stat.S_ISDIR(st.st_mode):
            raise LayerError(f"refusing hard link {m.name!r}: target {m.linkname!r} is a directory")
        os.link(target, path, follow_symlinks=False)

    def _meta(self, path: str, m: tarfile.TarInfo) -> None:
        if self.is_root:
            os.lchown(path, m.uid, m.gid)
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if name.startswith(("trusted.overlay.", "user.overlay.")):
                continue  # a layer may not forge overlayfs metadata
            try:
                os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP) or self.is_root and name.startswith("user."):
                    raise LayerError(f"cannot set xattr {name} on {m.name!r}: {exc.strerror}") from None
        if not m.issym():
            os.chmod(path, stat.S_IMODE(m.mode) | (m.mode & 0o7000))
        mtime_ns = int(float(m.pax_headers.get("mtime", m.mtime)) * 1e9)
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def _whiteout(self, path: str) -> None:
        remove_path(path)
        if not self.overlay:
            return
        if not self.is_root:
            raise LayerError("unpacking a layer with whiteouts for overlayfs needs root (mknod)")
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))

    def _opaque(self, dirpath: str, rel: str) -> None:
        if self.overlay:
            os.setxattr(dirpath, self.xattr_prefix + "opaque", b"y")
            return
        prefix = rel + "/" if rel else ""
        for name in os.listdir(dirpath):
            if prefix + name not in self.written:
                remove_path(os.path.join(dirpath, name))

    def finish(self) -> None:
        for path, m in reversed(self.dirs):
            self._meta(path, m)


def _copy_range(src: int, dst: int, offset: int, size: int, name: str) -> None:
    """``size`` bytes of ``src`` from ``offset`` to the start of ``dst``, in the kernel."""
    done = 0
    while done < size:
        n = os.copy_file_range(src, dst, size - done, offset + done, done)
        if n == 0:
            raise LayerError(f"unreadable layer tar: {name!r} is cut short ({done} of {size} bytes)")
        done += n


# --- making a layer -------------------------------------------------------------------------

def diff_to_tar(upper: str, out: BinaryIO, *, whiteouts: bool = True,
                xattr_prefix: str = OVERLAY_XATTR_PREFIX) -> LayerInfo:
    """Write the contents of ``upper`` to ``out`` as an uncompressed layer tar.

    With ``whiteouts`` (an overlay upper dir), a char device 0/0 becomes ``.wh.NAME`` and an
    opaque directory gets a ``.wh..wh..opq`` entry. Without, the directory is a plain rootfs
    (``image import DIR``). Entries are sorted, so equal trees give equal tars.
    """
    writer = HashingWriter(out)
    size = 0
    seen: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for rel, path, st in _walk(upper):
            if whiteouts and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                head, base = os.path.split(rel)
                tar.addfile(_plain_info(os.path.join(head, WH_PREFIX + base), st))
                continue
            info = _tarinfo(rel, path, st, xattr_prefix)
            if info is None:
                continue
            if info.isreg() and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, seen[key], 0
                    tar.addfile(info)
                    continue
                seen[key] = rel
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
                size += info.size
            else:
                tar.addfile(info)
            if whiteouts and info.isdir() and _is_opaque(path, xattr_prefix):
                tar.addfile(_plain_info(os.path.join(rel, WH_OPAQUE), st))
    return LayerInfo(diff_id=writer.digest, size=size, tar_size=writer.count)


def _walk(top: str) -> Iterator[tuple[str, str, os.stat_result]]:
    return _walk_sub(top, "")


def _walk_sub(top: str, rel_dir: str) -> Iterator[tuple[str, str, os.stat_result]]:
    for e in sorted(os.scandir(os.path.join(top, rel_dir)), key=lambda e: e.name):
        rel = os.path.join(rel_dir, e.name) if rel_dir else e.name
        st = e.stat(follow_symlinks=False)
        yield rel, e.path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_sub(top, rel)


def _is_opaque(path: str, prefix: str) -> bool:
    try:
        return os.getxattr(path, prefix + "opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _plain_info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    info.mtime = int(st.st_mtime)
    info.uname = info.gname = ""
    return info


def _tarinfo(rel: str, path: str, st: os.stat_result, xattr_prefix: str) -> tarfile.TarInfo | None:
    info = tarfile.TarInfo(rel)
    mode = st.st_mode
    info.mode = stat.S_IMODE(mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    if stat.S_ISREG(mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    else:
        return None  # sockets do not go into images
    pax = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        names = []
    for name in sorted(names):
        if name.startswith((xattr_prefix, "trusted.overlay.", "user.overlay.")):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        pax["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    info.pax_headers = pax
    return info
