"""The per-container monitor (like conmon): parent of the container, owner of its output.

Started detached by :func:`stackctl.runtime.containers.api.start_container` as
``python3 -S -I monitor.py CONTAINER_DIR RUN_DIR CGROUP_PARENT READY_FD WAIT_ATTACH`` and
imports only os, sys, errno, select, struct, time and the C modules _signal and _socket (the
``signal`` and ``socket`` modules import enum, which costs a start ~12 ms of CPU), fcntl for a
pty resize, the cgroup driver after the container exited — because it runs once per container,
so its memory and start time are kept small (no json: state is flat and written by hand).

The launcher (:mod:`api`) forked the container's setup child before exec'ing this program (so
the monitor is the container's parent and the child's setup runs while Python starts). The
monitor waits for the child's ``R``, releases it, reports the outcome on READY_FD (one JSON object, then EOF), writes
``state.json`` atomically, copies the container's stdout/stderr (or its pty) into
``<id>-json.log`` and to attached clients, and after the exit records the exit code and OOM
flag, removes the cgroup and the attach socket, and (``auto_remove``) the container directory.
The attach protocol is described in docs/containers.md.
"""

from __future__ import annotations

import _signal as signal
import _socket
import errno
import os
import select
import struct
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import socket

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

# attach frames: [type u8, 0, 0, 0, length u32 big-endian] + payload (Docker's stdcopy header)
STDIN, STDOUT, STDERR, RESIZE, EXIT = 0, 1, 2, 3, 4
# the start failed after the client attached (the exec itself: E2BIG, ENOEXEC, ...): exit code
# i32 + the message; the client reports it as the start's error
ERROR = 5
ATTACH_WAIT_TIMEOUT = 30.0
DRAIN_TIMEOUT = 2.0
LOG_LINE_MAX = 16 * 1024


def _mark(name: str) -> None:
    from stackctl.trace import mark

    mark(name)


def now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def start_time(pid: int) -> int:
    """When ``pid`` started (clock ticks since boot, /proc/PID/stat field 22); 0 if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def recv_fds(sock, maxfds: int) -> list[int]:
    """The descriptors passed on ``sock`` (SCM_RIGHTS) with one message: socket.recv_fds
    without the socket module."""
    _, ancdata, _, _ = sock.recvmsg(16, _socket.CMSG_LEN(maxfds * 4))
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            n = len(data) // 4
            fds += struct.unpack(f"{n}i", data[:n * 4])
    return fds


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", kind, len(payload)) + payload


_ESC = {i: f"\\u{i:04x}" for i in range(32)} | {ord('"'): '\\"', ord("\\"): "\\\\", 10: "\\n", 13: "\\r", 9: "\\t"}


def to_json(value) -> str:
    """JSON for the flat state dict (str, int, bool, None) without importing json (whose
    import pulls in re and costs the start path ~2 ms)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.translate(_ESC) + '"'
    if isinstance(value, dict):
        return "{" + ",".join(to_json(str(k)) + ":" + to_json(v) for k, v in value.items()) + "}"
    raise TypeError(type(value))


def _rmtree(path: str) -> None:
    """``shutil.rmtree(path, ignore_errors=True)`` without importing shutil (with fnmatch, re,
    zlib, bz2 and lzma: ~3 ms on the exit path of every ``--rm`` container). Symlinks are
    removed, never followed; what cannot be removed stays."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        entries = []
    for e in entries:
        try:
            is_dir = e.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            _rmtree(e.path)
        else:
            try:
                os.unlink(e.path)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


# where an --rm container's directory waits for its removal: beside ``<state>/containers``,
# so that nothing listing containers sees it
TRASH = "removing"


def set_aside(cdir: str) -> str:
    """Move ``cdir`` (``<state>/containers/<id>``) to ``<state>/removing/<id>``; its new
    path, or "" when it could not be moved (the caller removes it in place)."""
    containers = os.path.dirname(cdir)
    trash = os.path.join(os.path.dirname(containers), TRASH)
    dest = os.path.join(trash, os.path.basename(cdir))
    try:
        try:
            os.rename(cdir, dest)
        except FileNotFoundError:
            if not os.path.isdir(cdir):
                return ""
            os.makedirs(trash, mode=0o700, exist_ok=True)
            os.rename(cdir, dest)
    except OSError:
        return ""
    return dest


def write_state(cdir: str, state: dict) -> None:
    tmp = os.path.join(cdir, ".state.json.tmp")
    with open(tmp, "w") as f:
        f.write(to_json(state))
    os.replace(tmp, os.path.join(cdir, "state.json"))


class LogWriter:
    """Docker's json-file format: one ``{"log", "stream", "time"}`` object per line."""

    def __init__(self, path: str) -> None:
        self.f = open(path, "ab", buffering=0)
        self.partial = {"stdout": b"", "stderr": b""}

    def feed(self, stream: str, data: bytes) -> None:
        buf = self.partial[stream] + data
        out = []
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            out.append(buf[: i + 1])
            buf = buf[i + 1 :]
        while len(buf) >= LOG_LINE_MAX:
            out.append(buf[:LOG_LINE_MAX])
            buf = buf[LOG_LINE_MAX:]
        self.partial[stream] = buf
        self._write(stream, out)

    def _write(self, stream: str, lines: list[bytes]) -> None:
        if not lines:
            return
        t = now()
        try:
            self.f.write(b"".join(
                to_json({"log": ln.decode("utf-8", "replace"), "stream": stream, "time": t}).encode() + b"\n"
                for ln in lines
            ))
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):  # as stackctl.errors.DISK_FULL_ERRNOS
                raise
            # A full disk loses log lines, never the container: it keeps running and its
            # output keeps being read (a monitor that died here would block it on a full pipe).

    def flush(self) -> None:
        for stream, buf in self.partial.items():
            if buf:
                self._write(stream, [buf])
                self.partial[stream] = b""


class Monitor:
    def __init__(self, cdir: str, rundir: str, parent: str, ready_fd: int, wait_attach: bool, auto_remove: bool) -> None:
        self.cdir, self.rundir, self.parent = cdir, rundir, parent
        self.ready_fd = ready_fd
        self.wait_attach = wait_attach
        self.auto_remove = auto_remove
        self._cgroup = None
        self._released = False
        self._trash = ""  # an --rm container's directory, set aside until the exit is told
        self.id = os.path.basename(cdir)
        self.pid = 0
        self.state = {
            "status": "created", "pid": 0, "monitor_pid": os.getpid(), "monitor_start": start_time(os.getpid()),
            "exit_code": None,
            "oom_killed": False, "error": "", "started_at": "", "finished_at": "",
        }
        self.clients: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.stdin_w = -1
        self.master = -1
        self.outputs: dict[int, str] = {}
        self._bufs: dict = {}
        self.log: LogWriter | None = None

    # -- reporting --
    def report(self, obj: dict) -> None:
        if self.ready_fd >= 0:
            try:
                os.write(self.ready_fd, to_json(obj).encode())
            finally:
                os.close(self.ready_fd)
                self.ready_fd = -1

    def fail(self, code: int, message: str) -> None:
        self.state.update(status="exited", exit_code=code, error=message, finished_at=now())
        write_state(self.cdir, self.state)
        self.report({"error": message, "code": code})

    # -- start --
    def start(self, fds: dict) -> int | None:
        """Finish the start the launcher began: wait for the setup child's ``R``, release it
        (after an attach when asked), confirm the exec, report to the starter."""
        self.pid = fds["pid"]
        err_r, sync_w = fds["err"], fds["sync"]
        self.stdin_w = fds["stdin"]
        if fds["out"] >= 0:
            self.outputs = {fds["out"]: "stdout", fds["errout"]: "stderr"}
        if self.wait_attach:
            # listen while the child is still setting up: off the start's
            # critical path, and the starter can connect as soon as it has the report
            self.listen()
        msg = os.read(err_r, 65536)
        if msg == b"C":
            return self.cancelled(err_r)
        # a prepared start's record exists once the child has its configuration
        self.log = LogWriter(os.path.join(self.cdir, f"{self.id}-json.log"))
        if msg == b"R" and fds["console"] >= 0:
            console = _socket.socket(fileno=fds["console"])
            try:
                got = recv_fds(console, 1)
                self.master = got[0]
                self.outputs = {self.master: "stdout"}
            except (OSError, IndexError):
                pass
            console.close()
        if msg != b"R":
            return self.start_failed(msg, err_r)
        _mark("monitor: child ready")
        self.state.update(status="running", pid=self.pid, started_at=now())
        if self.wait_attach:
            write_state(self.cdir, self.state)
            self.report(self.state)
            r, _, _ = select.select([self.listener], [], [], ATTACH_WAIT_TIMEOUT)
            if r:
                self.accept()
            _mark("monitor: client attached")
            os.write(sync_w, b"G")
        os.close(sync_w)
        rest = b""
        while chunk := os.read(err_r, 65536):
            rest += chunk
        os.close(err_r)
        if rest:
            return self.start_failed(rest, -1)
        if not self.wait_attach:
            write_state(self.cdir, self.state)
            self.report(self.state)
            self.listen()
        return self.pid

    def listen(self) -> None:
        os.makedirs(self.rundir, exist_ok=True)
        os.chdir(self.rundir)  # bound by a short relative name: sun_path holds only 108 bytes
        try:
            os.unlink("attach.sock")
        except FileNotFoundError:
            pass
        self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.listener.bind("attach.sock")
        os.chmod("attach.sock", 0o600)
        self.listener.listen(8)

    def cancelled(self, err_r: int) -> None:
        """The starter gave up on a prepared start (its record may not exist): remove the
        cgroup and the attach socket, touch nothing in the container's directory."""
        os.close(err_r)
        os.waitpid(self.pid, 0)
        self.auto_remove = False
        self.teardown()
        self.report({"error": "start cancelled", "code": 125})
        return None

    def start_failed(self, msg: bytes, err_r: int) -> None:
        if err_r >= 0:
            while chunk := os.read(err_r, 65536):
                msg += chunk
            os.close(err_r)
        msg = msg.lstrip(b"R")
        head, _, text = msg[1:].partition(b"\n") if msg.startswith(b"E") else (b"125", b"", b"the container's setup process died")
        try:
            code = int(head)
        except ValueError:
            code = 125
        os.waitpid(self.pid, 0)
        message = text.decode(errors="replace")
        self.state.update(status="exited", exit_code=code, error=message, finished_at=now())
        write_state(self.cdir, self.state)
        # an attached starter had its report ("running") already: it learns here instead
        self.broadcast(ERROR, struct.pack(">i", code) + f"container {self.id[:12]}: {message}".encode())
        self.teardown()  # before the report: the starter's error means nothing is left
        self.report({"error": message, "code": code})
        return None

    # -- running --
    def accept(self) -> None:
        fd, _ = self.listener._accept()
        self.clients.append(_socket.socket(fileno=fd))

    def broadcast(self, kind: int, data: bytes) -> None:
        f = frame(kind, data)
        for c in list(self.clients):
            try:
                c.sendall(f)
            except OSError:
                self.drop(c)

    def drop(self, c: socket.socket) -> None:
        if c in self.clients:
            self.clients.remove(c)
        c.close()

    def client_input(self, c: socket.socket) -> None:
        try:
            data = c.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.drop(c)
            return
        buf = self._bufs.get(c, b"") + data
        while len(buf) >= 8:
            kind, n = struct.unpack(">BxxxI", buf[:8])
            if len(buf) < 8 + n:
                break
            payload, buf = buf[8 : 8 + n], buf[8 + n :]
            if kind == STDIN:
                self.to_stdin(payload)
            elif kind == RESIZE and self.master >= 0 and len(payload) >= 4:
                import fcntl

                rows, cols = struct.unpack(">HH", payload[:4])
                fcntl.ioctl(self.master, 0x5414, struct.pack("HHHH", rows, cols, 0, 0))
        self._bufs[c] = buf

    def to_stdin(self, payload: bytes) -> None:
        target = self.master if self.master >= 0 else self.stdin_w
        if target < 0:
            return
        if not payload:  # an empty stdin frame closes stdin (EOF); on a pty it sends ^D
            if self.master >= 0:
                os.write(self.master, b"\x04")
            else:
                os.close(self.stdin_w)
                self.stdin_w = -1
            return
        try:
            os.write(target, payload)
        except OSError:
            pass

    def run(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        status = None
        drain_deadline = None
        while True:
            if status is None:
                try:
                    p, st = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    p, st = self.pid, 0
                if p:
                    _mark("monitor: container exited")
                    status = st
                    drain_deadline = time.monotonic() + DRAIN_TIMEOUT
            if status is not None and (not self.outputs or time.monotonic() > drain_deadline):
                break
            timeout = None if drain_deadline is None else max(0.0, drain_deadline - time.monotonic())
            rlist = [wake_r, *self.outputs, *self.clients] + ([self.listener] if self.listener else [])
            try:
                ready, _, _ = select.select(rlist, [], [], timeout)
            except InterruptedError:
                continue
            for fd in ready:
                if fd == wake_r:
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
                elif fd is self.listener:
                    self.accept()
                elif not isinstance(fd, int):
                    self.client_input(fd)
                else:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:  # EIO on a pty whose slave side is gone
                        data = b""
                    stream = self.outputs[fd]
                    if not data:
                        del self.outputs[fd]
                        os.close(fd)
                        if fd == self.master:
                            self.master = -1
                        continue
                    self.log.feed(stream, data)
                    self.broadcast(STDOUT if stream == "stdout" else STDERR, data)
        self.finish(status)

    def finish(self, status: int) -> None:
        if self.log is not None:
            self.log.flush()
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        oom = False
        try:
            oom = self.cgroup().oom_kills() > 0
        except Exception:  # noqa: BLE001 - a missing stats file must not lose the exit code
            pass
        self.state.update(status="exited", exit_code=code, oom_killed=oom, finished_at=now())
        write_state(self.cdir, self.state)
        # the cgroup goes (and an --rm container's directory is set aside) before the exit is
        # told: an attached `run --rm` then finds nothing left to wait for
        self.release()
        _mark("monitor: released")
        self.broadcast(EXIT, struct.pack(">i", code))
        _mark("monitor: exit sent")
        self.teardown()
        _mark("monitor: torn down")

    def cgroup(self):
        # once: finish() reads the OOM count, teardown() removes it (each layout() parses mountinfo)
        if self._cgroup is None:
            from stackctl.runtime.containers.cgroups import detect

            self._cgroup = detect.open_cgroup(_LAYOUT or detect.layout(), self.parent, self.id)
        return self._cgroup

    def teardown(self) -> None:
        for c in list(self.clients):
            self.drop(c)
        if self.listener is not None:
            self.listener.close()
        try:
            os.unlink(os.path.join(self.rundir, "attach.sock"))
        except FileNotFoundError:
            pass
        os.chdir("/")
        try:
            os.rmdir(self.rundir)
        except OSError:
            pass
        self.release()
        if self._trash:
            _rmtree(self._trash)
            self._trash = ""

    def release(self) -> None:
        """Remove the cgroup (killing what is left in it) and, for ``auto_remove``, the
        container's directory: renamed out of the containers directory at once (the record is
        gone), its files removed by :meth:`teardown`, after the exit is told — an attached
        ``run --rm`` does not wait for ~25 unlinks. Once."""
        if self._released:
            return
        self._released = True
        try:
            cg = self.cgroup()
            cg.kill_all()
            cg.remove()
        except Exception as e:  # noqa: BLE001
            self.state["error"] = (self.state.get("error") or "") + f" (cleanup: {e})"
            write_state(self.cdir, self.state)
        if self.auto_remove:
            self._trash = set_aside(self.cdir)
            if not self._trash:
                _rmtree(self.cdir)


_LAYOUT: dict | None = None  # the cgroup layout, read ahead by a pool slot's monitor


def unclaimed(parent: str, cgroup_name: str, fds: dict) -> int:
    """A pool slot whose holder went away without claiming it (the warm server stopped or
    died, or a worker did not need it): kill the waiting setup child, remove its cgroup."""
    try:
        os.kill(fds["pid"], signal.SIGKILL)
        os.waitpid(fds["pid"], 0)
    except OSError:
        pass
    from stackctl.runtime.containers.cgroups import detect

    cg = detect.open_cgroup(_LAYOUT or detect.layout(), parent, cgroup_name)
    cg.kill_all()
    cg.remove()
    return 0


def main(argv: list[str]) -> int:
    """argv: CONTAINER_DIR RUN_DIR CGROUP_PARENT FLAGS FDS — FLAGS is a string of letters
    (``a``: wait for an attach before exec, ``r``: auto-remove, ``p``: a pool slot), FDS is
    comma-separated ``pid,ready,err,sync,out,errout,stdin,console,claim`` (-1 when absent).

    A pool slot (:mod:`stackctl.runtime.containers.pool`) is started with its cgroup's name
    as CONTAINER_DIR and no RUN_DIR; it waits on ``claim`` for ``CONTAINER_DIR\nRUN_DIR\nFLAGS``
    (the cgroup has been renamed to the container's id by then), or EOF: nobody wants it."""
    from stackctl.trace import mark

    mark("monitor: main")
    cdir, rundir, parent, flags, fdlist = argv[1:6]
    for s in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(s, signal.SIG_IGN)
    fds = dict(zip(("pid", "ready", "err", "sync", "out", "errout", "stdin", "console", "claim"),
                   map(int, fdlist.split(","))))
    if "p" in flags:
        # while it waits: what the exit path needs (the OOM check reads the cgroup)
        from stackctl.runtime.containers.cgroups import detect

        from stackctl.runtime.containers.fdio import read_to_eof

        global _LAYOUT
        _LAYOUT = detect.layout()
        claim = read_to_eof(fds["claim"]).decode()
        if not claim:
            return unclaimed(parent, cdir, fds)
        mark("monitor: claimed")
        cdir, rundir, flags = claim.split("\n")
    m = Monitor(cdir, rundir, parent, fds["ready"], "a" in flags, "r" in flags)
    try:
        if m.start(fds) is None:
            return 1
    except BaseException as e:  # noqa: BLE001 - report anything to the starter, then clean up
        m.pid = fds["pid"]
        try:
            os.kill(m.pid, signal.SIGKILL)
            os.waitpid(m.pid, 0)
        except OSError:
            pass
        m.fail(125, f"monitor: {type(e).__name__}: {e}")
        m.teardown()
        return 1
    try:
        m.run()
    except BaseException as e:  # noqa: BLE001 - never leave a container without its record
        try:
            os.kill(m.pid, signal.SIGKILL)
            _, status = os.waitpid(m.pid, 0)
        except OSError:
            status = 9
        m.state["error"] = f"monitor: {type(e).__name__}: {e}"
        m.finish(status)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
