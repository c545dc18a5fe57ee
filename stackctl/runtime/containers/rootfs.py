"""Build a container's root filesystem inside its own mount namespace.

Runs in the setup child after ``unshare(CLONE_NEWNS)``: every mount made here lives only in the
container's mount namespace, so the kernel takes all of them down when the container's last
process exits — nothing of a container is ever mounted in the host's namespace.

Sequence (as runc's rootfs_linux.go): make ``/`` rprivate; overlay of the layers at
``<container dir>/rootfs``; /proc, /sys (read-only), /dev (tmpfs with the standard nodes,
a private devpts, shm, mqueue), /etc/{hostname,hosts,resolv.conf} bind-mounted from the
container dir; the user's mounts (bind, volume, tmpfs) in order of depth; pivot_root; then
masked and read-only paths, and a read-only root on request.
"""

from __future__ import annotations

import errno
import os
import stat

from stackctl.runtime.containers import linux
from stackctl.runtime.containers.linux import (
    MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC,
    MS_REMOUNT, MS_SLAVE, MS_STRICTATIME,
)

# Docker's defaults (moby oci/defaults.go)
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# name, major, minor (all 0666 character devices)
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))

_FLAG_WORDS = {
    "ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False), "nosuid": (MS_NOSUID, True), "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False), "noexec": (MS_NOEXEC, True), "exec": (MS_NOEXEC, False),
    "strictatime": (MS_STRICTATIME, True),
}


class RootfsError(Exception):
    """A mount the container needs could not be made; the message names it."""


def secure_join(root: str, unsafe: str) -> str:
    """``root`` + ``unsafe`` with every symlink resolved as if ``root`` were ``/`` — a link in
    the image can never lead a mount outside the container's root (like filepath-securejoin).
    Missing components are kept as they are."""
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        cur = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise RootfsError(f"too many symlinks resolving {unsafe} in the container")
            target = os.readlink(cur)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


PLAIN_OVERLAY_FEATURES = ("index", "redirect_dir", "metacopy")


def plain_overlay_options(kernel_params: list[str] | set[str]) -> str:
    """``index=off,redirect_dir=off,metacopy=off`` for the features this kernel's overlayfs
    knows (its module parameters, /sys/module/overlay/parameters, name them; an older kernel
    refuses an option it does not know). With them off, an upper dir holds only plain files,
    directories and whiteouts — what a layer tar can say (pure)."""
    return ",".join(f"{f}=off" for f in PLAIN_OVERLAY_FEATURES if f in kernel_params)


def kernel_overlay_params(path: str = "/sys/module/overlay/parameters") -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def overlay_options(lowers: list[str], upper: str | None, work: str | None, extra: str = "") -> tuple[str, str | None]:
    """The overlay data string and the directory to chdir to first. Lower dirs are given
    bottom → top; overlay wants top first. Past the one-page limit of mount data, paths are
    made relative to their common parent (the caller chdirs there). ``extra``: more options
    (``index=off,...``), appended."""
    top_first = list(reversed(lowers))
    tail = f",{extra}" if extra else ""
    data = "lowerdir=" + ":".join(top_first)
    if upper:
        data += f",upperdir={upper},workdir={work}"
    if len(data + tail) < 3800:
        return data + tail, None
    base = os.path.commonpath(top_first + ([upper, work] if upper else []))
    rel = [os.path.relpath(p, base) for p in top_first]
    data = "lowerdir=" + ":".join(rel)
    if upper:
        data += f",upperdir={os.path.relpath(upper, base)},workdir={os.path.relpath(work, base)}"
    data += tail
    if len(data) >= 4000:
        raise RootfsError(f"too many image layers for one overlay mount ({len(lowers)})")
    return data, base


# An overlay mount option (Linux 5.10+) for containers removed when they exit (``--rm``):
# no sync of the upper filesystem when the overlay is unmounted, which the kernel does as the
# container's last process exits — before its parent learns of the exit. On a busy disk that
# sync took 2-14 ms of every `run --rm`, for an upper directory removed right after.
# (Podman mounts the overlay of its --rm containers so too.)
VOLATILE = "volatile"


def mount_overlay(target: str, lowers: list[str], upper: str | None, work: str | None, extra: str = "") -> None:
    """``extra`` may hold ``volatile`` (see :data:`VOLATILE`): on a kernel without it (before
    5.10) the overlay is mounted without it."""
    if not lowers:
        raise RootfsError("the image has no layers")
    for d in lowers:
        if not os.path.isdir(d):
            raise RootfsError(f"image layer directory {d} is missing (re-pull or re-build the image)")
    if upper is None and len(lowers) == 1:
        linux.mount(lowers[0], target, None, MS_BIND | MS_REC)
        linux.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        return
    opts = extra.split(",") if extra else []
    if VOLATILE in opts and upper and work:
        _clear_volatile_mark(work)
        try:
            _mount_overlay(target, lowers, upper, work, extra)
            return
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
        extra = ",".join(o for o in opts if o != VOLATILE)  # an older kernel: synced as usual
    _mount_overlay(target, lowers, upper, work, extra)


def _clear_volatile_mark(work: str) -> None:
    """A volatile overlay leaves ``work/work/incompat/volatile`` behind and the kernel refuses
    to mount the same upper and work directories again while it is there: a container
    started again (``restart``) mounts afresh."""
    mark = os.path.join(work, "work", "incompat", "volatile")
    for path, remove in ((os.path.join(mark, "dirty"), os.unlink), (mark, os.rmdir)):
        try:
            remove(path)
        except FileNotFoundError:
            pass


def _mount_overlay(target: str, lowers: list[str], upper: str | None, work: str | None, extra: str) -> None:
    data, base = overlay_options(lowers, upper, work, extra)
    if base is None:
        linux.mount("overlay", target, "overlay", 0, data)
        return
    old = os.open(".", os.O_DIRECTORY | os.O_RDONLY)
    try:
        os.chdir(base)
        linux.mount("overlay", target, "overlay", 0, data)
    finally:
        os.fchdir(old)
        os.close(old)


def make_private() -> None:
    linux.mount(None, "/", None, MS_REC | MS_PRIVATE)


def _mkfile(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def mount_dev(root: str, *, shm_size: int, console: str | None = None, init_binary: str | None = None) -> None:
    dev = os.path.join(root, "dev")
    os.makedirs(dev, exist_ok=True)
    linux.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        p = os.path.join(dev, name)
        os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(p, 0o666)
    os.mkdir(os.path.join(dev, "pts"), 0o755)
    linux.mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    linux.mount("shm", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                f"mode=1777,size={int(shm_size)}")
    os.mkdir(os.path.join(dev, "mqueue"), 0o755)
    try:
        linux.mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass  # a kernel without POSIX message queues
    for name, target in DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))
    if console:
        _mkfile(os.path.join(dev, "console"))
        linux.mount(console, os.path.join(dev, "console"), None, MS_BIND)
    if init_binary:
        _mkfile(os.path.join(dev, "init"))
        linux.mount(init_binary, os.path.join(dev, "init"), None, MS_BIND)
        linux.mount(None, os.path.join(dev, "init"), None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def bind_console(root: str, slave_path: str) -> None:
    console = os.path.join(root, "dev", "console")
    _mkfile(console)
    linux.mount(slave_path, console, None, MS_BIND)


def mount_proc_sys(root: str, *, privileged: bool) -> None:
    for d in ("proc", "sys"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    linux.mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    ro = 0 if privileged else MS_RDONLY
    try:
        linux.mount("sysfs", os.path.join(root, "sys"), "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | ro)
    except OSError as e:
        if e.errno != errno.EPERM:  # host network namespace without CAP_SYS_ADMIN over it
            raise
        linux.mount("/sys", os.path.join(root, "sys"), None, MS_BIND | MS_REC)
        linux.mount(None, os.path.join(root, "sys"), None, MS_BIND | MS_REMOUNT | MS_REC | ro)


def bind_etc_files(root: str, files: dict[str, str], *, read_only_root: bool) -> None:
    """Bind ``{"/etc/hosts": host_path, ...}`` over the image's files (created if missing and
    the root is writable)."""
    for target, source in files.items():
        dst = secure_join(root, target)
        if not os.path.exists(dst):
            if read_only_root:
                continue
            _mkfile(dst)
        linux.mount(source, dst, None, MS_BIND)


def parse_tmpfs_options(options: list[str], read_only: bool) -> tuple[int, str]:
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    data = []
    for opt in options:
        if opt in _FLAG_WORDS:
            bit, on = _FLAG_WORDS[opt]
            flags = flags | bit if on else flags & ~bit
        else:
            data.append(opt)
    if read_only:
        flags |= MS_RDONLY
    return flags, ",".join(data)


def _copy_up(src_dir: str, volume_dir: str) -> None:
    """Docker's first-use copy: an empty volume mounted onto a non-empty image directory gets
    that directory's content, with owners, modes, times, symlinks, hard links, device nodes and
    xattrs kept (as Docker's copy-up; shutil.copytree would make root own everything)."""
    if not os.path.isdir(src_dir) or os.listdir(volume_dir) or not os.listdir(src_dir):
        return
    copy_tree(src_dir, volume_dir)


def copy_tree(src: str, dst: str) -> None:
    """Copy the content of directory ``src`` into the existing directory ``dst`` and give
    ``dst`` the metadata of ``src``. Needs root for foreign owners and device nodes."""
    links: dict[tuple[int, int], str] = {}
    _copy_dir_content(src, dst, links)
    _copy_meta(src, dst, os.lstat(src))


def _copy_dir_content(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = list(it)
    for e in entries:
        s, d = e.path, os.path.join(dst, e.name)
        st = e.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            _copy_dir_content(s, d, links)
        elif st.st_nlink > 1 and not stat.S_ISLNK(mode) and (st.st_dev, st.st_ino) in links:
            os.link(links[(st.st_dev, st.st_ino)], d)
            continue
        elif stat.S_ISREG(mode):
            _copy_file(s, d, st.st_size)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        else:  # fifo, socket, device
            os.mknod(d, mode, st.st_rdev)
        if st.st_nlink > 1 and not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode):
            links[(st.st_dev, st.st_ino)] = d
        _copy_meta(s, d, st)


def _copy_file(src: str, dst: str, size: int) -> None:
    fi = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            left = size
            while left > 0:
                n = os.sendfile(fo, fi, None, min(left, 1 << 30))
                if n == 0:
                    break
                left -= n
        finally:
            os.close(fo)
    finally:
        os.close(fi)


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    """xattrs, owner, then mode (chown clears setuid bits), then times; never following a link."""
    link = stat.S_ISLNK(st.st_mode)
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        names = []
    for name in names:
        if name.startswith("trusted.overlay."):  # overlayfs' own bookkeeping, not content
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL):
                raise
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def mount_user(root: str, mounts: list[dict], *, read_only_root: bool) -> None:
    """The spec's mounts (plain dicts as in config.json), parents before children."""
    for m in sorted(mounts, key=lambda m: len([p for p in m["target"].split("/") if p])):
        target = secure_join(root, m["target"])
        kind = m["type"]
        try:
            if kind == "tmpfs":
                os.makedirs(target, exist_ok=True)
                flags, data = parse_tmpfs_options(m.get("options", []), m.get("read_only", False))
                linux.mount("tmpfs", target, "tmpfs", flags, data or None)
                continue
            src = m["source"]
            if not os.path.exists(src):
                raise RootfsError(f"bind source path does not exist: {src}")
            if os.path.isdir(src):
                if kind == "volume" and "nocopy" not in m.get("options", []):
                    _copy_up(target, src)
                os.makedirs(target, exist_ok=True)
            elif not os.path.exists(target):
                _mkfile(target)
            linux.mount(src, target, None, MS_BIND | MS_REC)
            if m.get("read_only"):
                linux.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
        except OSError as e:
            raise RootfsError(f"mount {m.get('source') or kind} on {m['target']}: {e.strerror or e}") from e


def pivot(root: str) -> None:
    """pivot_root(".", ".") into ``root`` and detach the old root (runc's sequence; needs no
    put_old directory, so it works on a read-only root)."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
    new = os.open(root, os.O_DIRECTORY | os.O_RDONLY)
    try:
        os.fchdir(new)
        linux.pivot_root(".", ".")
        os.fchdir(old)
        linux.mount(None, ".", None, MS_SLAVE | MS_REC)
        linux.umount2(".", MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def mask_paths(masked: tuple[str, ...] = MASKED_PATHS, readonly: tuple[str, ...] = READONLY_PATHS) -> None:
    """After pivot_root: /dev/null over masked files, an empty read-only tmpfs over masked
    directories; read-only bind mounts over the read-only paths."""
    for p in readonly:
        try:
            linux.mount(p, p, None, MS_BIND | MS_REC)
        except OSError as e:
            if e.errno == errno.ENOENT:
                continue
            raise
        linux.mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for p in masked:
        try:
            st = os.stat(p)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            linux.mount("tmpfs", p, "tmpfs", MS_RDONLY)
        else:
            linux.mount("/dev/null", p, None, MS_BIND)


def remount_root_readonly() -> None:
    linux.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
