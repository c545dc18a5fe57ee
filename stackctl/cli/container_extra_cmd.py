"""Docker's container verbs beyond the life cycle: ``commit``, ``cp``, ``diff``, ``export``,
``port``, ``pause``, ``unpause``, ``rename``, ``update``, ``attach``. Thin: parse flags, call
:mod:`stackctl.runtime.container_fs` / :mod:`stackctl.runtime.container_ops`, print Docker's
output shapes; errors of the daemon side exit 1, bad usage 2 (click), as ``docker`` does."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from stackctl.cli.common import for_each, manager
from stackctl.errors import StackctlError, UsageError


# --- commit ---------------------------------------------------------------------------------

@click.command()
@click.option("-a", "--author", default="", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>").')
@click.option("-c", "--change", "changes", multiple=True,
              help="Apply a Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, "
                   "USER, VOLUME, WORKDIR, ...).")
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("-p", "--pause/--no-pause", default=True, help="Pause container during commit (default true).")
@click.argument("container")
@click.argument("repository", required=False, metavar="[REPOSITORY[:TAG]]")
def commit(author: str, changes: tuple[str, ...], message: str, pause: bool, container: str,
           repository: str | None) -> None:
    """Create a new image from a container's changes."""
    from stackctl.runtime import container_fs

    img = container_fs.commit(manager(), container, repository or "", changes=list(changes), message=message,
                              author=author, pause=pause)
    click.echo(img.id)


# --- cp -------------------------------------------------------------------------------------

def _split_container_path(arg: str) -> tuple[str, str] | None:
    """``CONTAINER:PATH`` -> (container, path); a local path (``./a:b``, ``/x``) -> None."""
    if arg == "-" or arg.startswith(("/", ".")):
        return None
    name, sep, path = arg.partition(":")
    if not sep or not name:
        return None
    return name, path


@click.command(context_settings={"help_option_names": ["--help"]})
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information).")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output during copy.")
# what `cp -f FILE SRC SERVICE:DEST` runs on the container's node (stackctl/cli/remote.py):
# stdin holds the archive of one path that this command makes of SRC_PATH, placed by the
# same rules as that copy (into DEST if it is a directory, else as DEST)
@click.option("--place", is_flag=True, hidden=True)
@click.argument("src", metavar="SRC")
@click.argument("dest", metavar="DEST")
def cp(archive: bool, follow_link: bool, quiet: bool, src: str, dest: str, place: bool = False) -> None:
    """Copy files/folders between a container and the local filesystem.

    \b
    stackctl cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-
    stackctl cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH

    Use '-' as the source to read a tar archive from stdin and extract it to a directory
    destination in a container; '-' as the destination streams a tar archive of the source
    to stdout. SRC_PATH ending in '/.' copies the directory's contents."""
    from stackctl.runtime import container_fs as fs

    s, d = _split_container_path(src), _split_container_path(dest)
    if (s is None) == (d is None):
        raise UsageError("copying between containers is not supported" if s else
                         "must specify at least one container source",
                         hint="stackctl cp CONTAINER:SRC_PATH DEST_PATH, or SRC_PATH CONTAINER:DEST_PATH")
    mgr = manager()
    if s is not None:
        name, path = s
        if not path:
            raise UsageError("the source path inside the container must not be empty")
        path = path if path.startswith("/") else "/" + path
        contents_only = path.endswith("/.")
        if contents_only:
            path = path[:-2] or "/"
        if dest == "-":
            if sys.stdout.isatty():
                raise StackctlError("cowardly refusing to write an archive to a terminal", hint="redirect stdout")
            with _held(mgr, name) as rec:
                out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
                fs.with_root(mgr, rec, lambda root: _flush_after(out, lambda: fs.write_archive(
                    root, path, out, follow=follow_link, contents_only=contents_only)))
            return
        with _held(mgr, name) as rec, _spool() as tmp:
            local = os.path.abspath(dest) + ("/" if dest.endswith("/") else "")
            fs.with_root(mgr, rec, lambda root: _flush_after(tmp, lambda: fs.write_archive(
                root, path, tmp, follow=follow_link, contents_only=contents_only)))
            size = tmp.seek(0, os.SEEK_END)
            tmp.seek(0)
            fs.extract_archive(tmp, _host_root(), local, keep_owner=True, what="local filesystem")
        if not quiet:
            click.echo(f"Successfully copied {_size(size)} to {dest}", err=True)
        return
    name, path = d  # type: ignore[misc]
    path = path if path.startswith("/") else "/" + (path or "")
    with _held(mgr, name) as rec, _spool() as tmp:
        if rec.spec.read_only:
            raise StackctlError(f"container {rec.name}'s root filesystem is read-only: cannot copy into it")
        if src == "-":
            stream = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
            fs.with_root(mgr, rec, lambda root: fs.extract_archive(stream, root, path, keep_owner=archive,
                                                                    place=place))
            return
        local = os.path.abspath(src)
        contents_only = src.endswith("/.")
        if not os.path.lexists(local):
            raise StackctlError(f"could not find the file {src}: no such file or directory")
        fs.write_archive(_host_root(), local, tmp, follow=follow_link, contents_only=contents_only)
        size = tmp.seek(0, os.SEEK_END)
        tmp.seek(0)
        fs.with_root(mgr, rec, lambda root: fs.extract_archive(tmp, root, path, keep_owner=archive))
    if not quiet:
        click.echo(f"Successfully copied {_size(size)} to {rec.name}:{path}", err=True)


@contextlib.contextmanager
def _held(mgr, query: str):
    """The container's record for a copy. A stopped one is held under the manager's lock (its
    overlay is mounted for the copy, so it must not start meanwhile); a running one is not, so
    a long copy does not stop other containers from being created or started."""
    rec = mgr.get(query)
    if rec.state.status == "running":
        yield rec
        return
    with mgr.locked():
        yield mgr.get(query)


def _host_root() -> int:
    return os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _flush_after(f, fn) -> None:
    fn()
    f.flush()


def _spool():
    """The archive between the two sides of a copy: a nameless temporary file (one side may
    run in a child process with its own mount namespace)."""
    import tempfile

    return tempfile.TemporaryFile(prefix="stackctl-cp-")


def _size(n: float) -> str:
    """Docker's size in ``Successfully copied 2.05kB``: decimal units, 3 significant digits."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{int(n)}B" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}B"


# --- diff / export ----------------------------------------------------------------------------

@click.command()
@click.argument("container")
def diff(container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem (A added, C changed,
    D deleted)."""
    from stackctl.runtime import container_fs

    for kind, path in container_fs.diff(manager(), container):
        click.echo(f"{kind} {path}")


@click.command()
@click.option("-o", "--output", default="", help="Write to a file, instead of STDOUT.")
@click.argument("container")
def export(output: str, container: str) -> None:
    """Export a container's filesystem as a tar archive."""
    from stackctl.runtime import container_fs as fs

    if not output and sys.stdout.isatty():
        raise StackctlError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    mgr = manager()
    with _held(mgr, container) as rec:
        if not output:
            out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
            fs.with_root(mgr, rec, lambda root: _flush_after(out, lambda: fs.write_archive(
                root, "/", out, contents_only=True, dev_only=True)))
            return
        tmp = f"{output}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                fs.with_root(mgr, rec, lambda root: _flush_after(f, lambda: fs.write_archive(
                    root, "/", f, contents_only=True, dev_only=True)))
            os.replace(tmp, output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


# --- port -------------------------------------------------------------------------------------

@click.command()
@click.argument("container")
@click.argument("private_port", required=False, metavar="[PRIVATE_PORT[/PROTO]]")
def port(container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container."""
    from stackctl.runtime.container_ops import port_lines

    for line in port_lines(manager().get(container), private_port):
        click.echo(line)


# --- pause / unpause / rename / update --------------------------------------------------------

@click.command()
@click.argument("containers", nargs=-1, required=True)
def pause(containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers."""
    from stackctl.runtime import container_ops

    mgr = manager()

    def one(c: str) -> None:
        container_ops.pause(mgr, c)
        click.echo(c)

    for_each(containers, one)


@click.command()
@click.argument("containers", nargs=-1, required=True)
def unpause(containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers."""
    from stackctl.runtime import container_ops

    mgr = manager()

    def one(c: str) -> None:
        container_ops.unpause(mgr, c)
        click.echo(c)

    for_each(containers, one)


@click.command()
@click.argument("container")
@click.argument("new_name")
def rename(container: str, new_name: str) -> None:
    """Rename a container."""
    from stackctl.runtime import container_ops

    container_ops.rename(manager(), container, new_name)


def _bytes(value: str | None, flag: str, allow_unlimited: bool = False) -> int | None:
    from stackctl.runtime.imageconfig import parse_bytes

    if value is None:
        return None
    if allow_unlimited and value.strip() == "-1":
        return -1
    try:
        return parse_bytes(value, flag)
    except StackctlError as exc:
        raise UsageError(f"invalid argument {value!r} for {flag}: {exc.message}") from None


@click.command()
@click.option("--cpus", type=float, default=None, help="Number of CPUs (0: no limit).")
@click.option("-m", "--memory", default=None, help="Memory limit (e.g. 64m).")
@click.option("--memory-reservation", default=None, help="Memory soft limit.")
@click.option("--memory-swap", default=None, help="Swap limit equal to memory plus swap: -1 to enable unlimited swap.")
@click.option("--pids-limit", type=int, default=None, help="Tune container pids limit (-1 for unlimited).")
@click.option("--restart", default=None, help="Restart policy to apply when a container exits.")
@click.argument("containers", nargs=-1, required=True)
def update(cpus: float | None, memory: str | None, memory_reservation: str | None, memory_swap: str | None,
           pids_limit: int | None, restart: str | None, containers: tuple[str, ...]) -> None:
    """Update configuration of one or more containers (live: the cgroup of a running one)."""
    from stackctl.runtime import container_ops

    upd = container_ops.Update(memory=_bytes(memory, "--memory"), memory_swap=_bytes(memory_swap, "--memory-swap", True),
                               memory_reservation=_bytes(memory_reservation, "--memory-reservation"),
                               cpus=cpus, pids=pids_limit, restart=restart)
    if upd.empty():
        raise UsageError("you must provide one or more flags when using this command")
    if restart is not None and restart != "no":
        # said, not dropped: nothing restarts a single container yet (a stack's restart_policy
        # is the agent's); the policy is recorded and shown by inspect
        click.echo(f"warning: --restart {restart} is recorded (HostConfig.RestartPolicy) but not carried out: "
                   "single containers are not restarted by stackctl yet; use a stack's restart_policy", err=True)
    mgr = manager()

    def one(c: str) -> None:
        container_ops.update(mgr, c, upd)
        click.echo(c)

    for_each(containers, one)


# --- attach -----------------------------------------------------------------------------------

@click.command()
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN.")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Proxy all received signals to the process.")
@click.argument("container")
def attach(no_stdin: bool, sig_proxy: bool, container: str) -> None:
    """Attach local standard input, output, and error streams to a running container."""
    import signal

    from stackctl.cli import attach_client as A
    from stackctl.cli.run_cmd import _PROXY_SIGNALS, _raw_terminal

    mgr = manager()
    rec = mgr.get(container)
    if rec.state.status != "running":
        raise StackctlError("you cannot attach to a stopped container, start it first")
    if rec.state.paused:
        raise StackctlError("you cannot attach to a paused container, unpause it first")
    sock = A.connect(A.socket_path(mgr.paths, rec.id), timeout=2.0)
    if sock is None:
        raise StackctlError(f"container {rec.name} has no attach socket", hint=f"follow its output: stackctl logs -f {rec.name}")
    stdin = rec.spec.stdin_open and not no_stdin
    tty = rec.spec.tty
    previous = {}
    if sig_proxy and not tty:
        def forward(signum, _frame) -> None:
            try:
                mgr.core.signal_container(mgr.paths, rec.id, signum)
            except StackctlError:
                pass

        for name in _PROXY_SIGNALS:
            signum = getattr(signal, name)
            previous[signum] = signal.signal(signum, forward)
    try:
        if tty:
            with _raw_terminal():
                code = A.stream(sock, stdin=stdin, tty=True)
        else:
            code = A.stream(sock, stdin=stdin, tty=False)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if code is None:
        code = mgr.wait(rec.id)
    raise SystemExit(code)


COMMANDS = (commit, cp, diff, export, port, pause, unpause, rename, update, attach)
