"""Run one command in a throw-away container, in the foreground — for Dockerfile RUN steps.

No monitor, no cgroup, no state file: an overlay of ``lower_dirs`` with ``upper_dir`` as the
writable layer (what the command changes lands there, ready to become the step's layer), new
pid/mount/uts/ipc namespaces (and a new net namespace for ``network="none"``), Docker's default
capabilities, no_new_privs and seccomp. All mounts live in the command's own mount namespace and
vanish with it; the overlay's work dir (``<upper_dir>.work``, next to the upper dir because
overlayfs needs both on one filesystem) is removed afterwards. The overlay is mounted with
``index=off,redirect_dir=off,metacopy=off`` (those the kernel knows), so that the upper dir is
a plain layer: no redirect or metacopy xattrs for the layer writer to misread.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

from stackctl.errors import StackctlError
from stackctl.paths import NodePaths


class OneshotError(StackctlError):
    """The command could not be started (bad layer, user, mount...)."""


def run_oneshot(
    paths: NodePaths,
    *,
    lower_dirs: list[str],
    upper_dir: str,
    argv: list[str],
    env: list[str],
    cwd: str = "/",
    user: str = "",
    network: str = "host",
    stdout: int | None = None,
    stderr: int | None = None,
    hostname: str = "buildsandbox",
) -> int:
    """Run ``argv`` and return its exit code (128+N for a death by signal N). A command that
    is not found or not executable returns 127/126 with Docker's message on ``stderr``; a
    failure to set the container up raises :class:`OneshotError`."""
    from stackctl.runtime.containers import linux, process

    if network not in ("host", "none"):
        raise OneshotError(f"oneshot network must be 'host' or 'none', not {network!r}")
    base = os.path.join(paths.run, "oneshot")
    os.makedirs(base, exist_ok=True)
    mnt = tempfile.mkdtemp(prefix="root-", dir=base)
    work = upper_dir.rstrip("/") + ".work"
    os.makedirs(upper_dir, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    etc = {}
    if network == "host":
        etc = {"/etc/resolv.conf": "/etc/resolv.conf", "/etc/hosts": "/etc/hosts"}
    from stackctl.runtime.containers.rootfs import kernel_overlay_params, plain_overlay_options

    cfg = {
        "rootfs": mnt, "lowers": list(lower_dirs), "upper": upper_dir, "work": work,
        # the upper dir becomes the step's layer: plain files, dirs and whiteouts only
        "overlay_options": plain_overlay_options(kernel_overlay_params()),
        "hostname": hostname, "network": network, "etc_files": etc, "etc_no_create": True,
        "argv": list(argv), "env": list(env), "cwd": cwd or "/", "user": user,
    }
    out_fd = 1 if stdout is None else stdout
    err_fd = 2 if stderr is None else stderr
    from stackctl.runtime.containers import forksafe

    forksafe.preload()  # the children import nothing (see forksafe)
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # intermediate: becomes the parent of the new pid namespace's PID 1
        try:
            os.close(r)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            linux.unshare(linux.CLONE_NEWPID)
            child = os.fork()
            if child == 0:
                linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
                process.setup_and_exec(cfg, w)
            os.close(w)
            _, status = os.waitpid(child, 0)
            os._exit(_exit_code(status))
        except BaseException as e:  # noqa: BLE001
            try:
                os.write(w, b"E125\n" + str(e).encode())
            finally:
                os._exit(125)
    os.close(w)
    try:
        msg = b""
        while chunk := os.read(r, 65536):
            msg += chunk
        _, status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(r)
        _remove(mnt, work)
    code = _exit_code(status)
    msg = msg.lstrip(b"R")
    if msg.startswith(b"E"):
        head, _, text = msg[1:].partition(b"\n")
        text_s = text.decode(errors="replace")
        if int(head or 125) in (126, 127):
            os.write(err_fd, text + b"\n")
            return int(head)
        raise OneshotError(f"RUN {' '.join(argv)}: {text_s}")
    return code


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _remove(mnt: str, work: str) -> None:
    try:
        os.rmdir(mnt)
    except OSError:
        pass
    shutil.rmtree(work, ignore_errors=True)
