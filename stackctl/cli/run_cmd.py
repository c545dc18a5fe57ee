"""``stackctl run`` without click: its options as data, a parser for the common forms, and
the run itself.

``run --rm IMG true`` is the command whose start latency matters (bench/start_latency.py), and
importing click and building its ~45 options costs ~25 ms of a ~110 ms run. So
:func:`stackctl.cli.main.main` first offers ``run``'s arguments to :func:`fast_run`, which parses
them with :func:`parse_run_args` (pure) and runs the container without importing click. Anything
the parser is not sure about (``--help``, an unknown option, a stack's ``--file``/``-p``, a value
that does not convert, ``--env-file``, a missing image) returns ``None``, and click parses the
whole command as before — so click stays the one place that explains a bad command line.

The click command (:mod:`stackctl.cli.container_cmd`) builds its options from :data:`RUN_OPTIONS`,
so both parsers read the same table; ``tests/test_run_fastpath.py`` checks they agree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from stackctl.cli.common import error_lines, manager, read_env_files
from stackctl.errors import NotFoundError, StackctlError

if TYPE_CHECKING:
    import threading

_PROXY_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")

# The options of ``run`` and ``create``: (declarations as click takes them, kind, default, help).
# kind: "flag", "str", "multi" (repeatable), "int", "float", "path_multi" (--env-file: click
# checks it is not a directory; the fast parser leaves it to click).
RUN_OPTIONS: tuple[tuple[tuple[str, ...], str, Any, str], ...] = (
    (("--name",), "str", None, "Assign a name to the container."),
    (("-e", "--env"), "multi", None, "Set environment variables (K=V, or K to pass it on)."),
    (("--env-file",), "path_multi", None, "Read in a file of environment variables."),
    (("-v", "--volume", "volumes"), "multi", None, "Bind mount a volume: [NAME|/HOST:]/PATH[:ro]."),
    (("--mount", "mounts"), "multi", None, "type=bind|volume|tmpfs,source=..,target=..[,readonly]."),
    (("--tmpfs",), "multi", None, "Mount a tmpfs directory: /PATH[:OPTIONS]."),
    (("-w", "--workdir"), "str", "", "Working directory inside the container."),
    (("-u", "--user"), "str", "", "Username or UID (format: <name|uid>[:<group|gid>])."),
    (("--entrypoint",), "str", None, "Overwrite the default ENTRYPOINT of the image."),
    (("-h", "--hostname"), "str", "", "Container host name."),
    (("--domainname",), "str", "", "Container NIS domain name."),
    (("--init",), "flag", False, "Run an init inside the container that forwards signals and reaps processes."),
    (("-m", "--memory"), "str", None, "Memory limit (e.g. 32m, 1g)."),
    (("--memory-reservation",), "str", None, "Memory soft limit."),
    (("--cpus",), "float", None, "Number of CPUs."),
    (("--pids-limit",), "int", None, "Tune container pids limit (-1 for unlimited)."),
    (("--read-only",), "flag", False, "Mount the container's root filesystem as read only."),
    (("--cap-add",), "multi", None, "Add Linux capabilities."),
    (("--cap-drop",), "multi", None, "Drop Linux capabilities."),
    (("--privileged",), "flag", False, "Give extended privileges to this container."),
    (("--network", "--net", "network"), "str", "bridge",
     "bridge (the default network, made on first use), none, host, container:NAME, or a network "
     "made with `stackctl network create`."),
    (("--network-alias", "network_aliases"), "multi", None, "Add a network-scoped alias for the container."),
    (("--ip",), "str", "", "IPv4 address on the network (e.g., 172.30.100.104)."),
    (("--link", "links"), "multi", None, "Add link to another container (NAME[:ALIAS]): an /etc/hosts entry."),
    (("-l", "--label", "labels"), "multi", None, "Set meta data on a container (K=V)."),
    (("--stop-signal",), "str", "", "Signal to stop the container."),
    (("--stop-timeout",), "int", None, "Timeout (in seconds) to stop a container."),
    (("--add-host",), "multi", None, "Add a custom host-to-IP mapping (host:ip)."),
    (("--dns",), "multi", None, "Set custom DNS servers."),
    (("--dns-search",), "multi", None, "Set custom DNS search domains."),
    (("--dns-option",), "multi", None, "Set DNS options."),
    (("--ulimit",), "multi", None, "Ulimit options (nofile=1024:2048)."),
    (("--shm-size",), "str", None, "Size of /dev/shm."),
    (("--sysctl",), "multi", None, "Sysctl options."),
    (("--security-opt",), "multi", None,
     "Security options: seccomp=PROFILE.json|unconfined, no-new-privileges[=false], apparmor=PROFILE."),
    (("--expose",), "multi", None, "Expose a port or a range of ports."),
    (("-p", "--publish"), "multi", None, "Publish a container's port(s) to the host: [IP:][HOST:]PORT[/PROTO]."),
    (("-P", "--publish-all"), "flag", False, "Publish all exposed ports to random ports."),
    (("-i", "--interactive"), "flag", False, "Keep STDIN open even if not attached."),
    (("-t", "--tty"), "flag", False, "Allocate a pseudo-TTY."),
    (("--rm", "auto_remove"), "flag", False, "Automatically remove the container when it exits."),
)


def option_dest(decls: tuple[str, ...]) -> str:
    """The parameter name click gives an option: an undashed declaration, else the first long
    option, else the first short one, with ``-`` as ``_``."""
    for d in decls:
        if not d.startswith("-"):
            return d
    longs = [d for d in decls if d.startswith("--")]
    return (longs or list(decls))[0].lstrip("-").replace("-", "_").lower()


def _table() -> tuple[dict[str, tuple[str, str, Any]], dict[str, Any]]:
    """option string -> (dest, kind, value for a flag), and the defaults of every parameter
    the callback of ``run`` takes besides image and command."""
    opts: dict[str, tuple[str, str, Any]] = {}
    defaults: dict[str, Any] = {}
    for decls, kind, default, _help in RUN_OPTIONS:
        dest = option_dest(decls)
        for d in decls:
            if d.startswith("-"):
                opts[d] = (dest, kind, True)
        defaults[dest] = () if kind in ("multi", "path_multi") else default
    # run's own (not create's)
    opts["-d"] = opts["--detach"] = ("detach", "flag", True)
    opts["--sig-proxy"] = ("sig_proxy", "flag", True)
    opts["--no-sig-proxy"] = ("sig_proxy", "flag", False)
    defaults["detach"] = False
    defaults["sig_proxy"] = True
    return opts, defaults


def parse_run_args(args: list[str]) -> tuple[str, tuple[str, ...], dict[str, Any]] | None:
    """``run``'s arguments -> (image, command, params) as click would pass them, or ``None``
    when click should parse them (pure). Options end at the image (or ``--``), as with
    click's ``allow_interspersed_args=False``."""
    opts, params = _table()
    multi: dict[str, list[str]] = {}

    def store(dest: str, kind: str, value: str) -> bool:
        if kind == "multi":
            multi.setdefault(dest, []).append(value)
        elif kind == "str":
            params[dest] = value
        elif kind in ("int", "float"):
            try:
                params[dest] = int(value) if kind == "int" else float(value)
            except ValueError:
                return False
        else:  # path_multi: click checks it
            return False
        return True

    i, n = 0, len(args)
    while i < n:
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        if a.startswith("--"):
            name, eq, value = a.partition("=")
            spec = opts.get(name)
            if spec is None:
                return None
            dest, kind, const = spec
            if kind == "flag":
                if eq:
                    return None
                params[dest] = const
            else:
                if not eq:
                    i += 1
                    if i >= n:
                        return None
                    value = args[i]
                if not store(dest, kind, value):
                    return None
            i += 1
            continue
        j = 1  # a cluster of short options: -it, -eK=V, -e K=V
        while j < len(a):
            spec = opts.get("-" + a[j])
            if spec is None:
                return None
            dest, kind, const = spec
            if kind == "flag":
                params[dest] = const
                j += 1
                continue
            value = a[j + 1:]
            if not value:
                i += 1
                if i >= n:
                    return None
                value = args[i]
            if not store(dest, kind, value):
                return None
            break
        i += 1
    if i >= n:
        return None  # no image: click says so
    for dest, values in multi.items():
        params[dest] = tuple(values)
    return args[i], tuple(args[i + 1:]), params


def fast_run(args: list[str]) -> int | None:
    """``stackctl run ARGS`` without click when :func:`parse_run_args` can parse ARGS; the
    exit status (as :func:`stackctl.cli.main.main` would give it), or ``None``: use click."""
    parsed = parse_run_args(args)
    if parsed is None:
        return None
    image, command, params = parsed
    try:
        run_container(image, command, **params)
    except StackctlError as exc:
        for line in error_lines(exc):
            _echo_err(line)
        return exc.exit_code
    except (KeyboardInterrupt, EOFError):
        _echo_err("")  # as click's Abort, then main()'s message
        _echo_err("aborted")
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


def _echo_err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run_container(image: str, command: tuple[str, ...], detach: bool, sig_proxy: bool, **kw) -> None:
    """The body of ``stackctl run`` (both parsers call it); raises ``SystemExit`` with the
    container's exit code when attached."""
    from stackctl.trace import mark

    mark("run: parsed")
    mgr = manager()
    mark("run: manager imported")
    try:
        opts = _options_from(image, command, kw)
        # the container's cgroup, setup child and monitor start while its record is written
        # (the kernel's first cgroup attach is slow); leaving the block cancels what was unused
        prepared = mgr.prepare_start(opts, attach=not detach)
    except StackctlError as exc:
        exc.exit_code = 125
        raise
    with prepared:
        rec = _create(mgr, image, command, kw, opts=opts, prepared=prepared)
        mark("run: created")
        if detach:
            try:
                _print_warnings(mgr.start(rec.id, prepared=prepared))
            except StackctlError as exc:
                if kw["auto_remove"]:
                    _quiet_remove(mgr, rec.id)
                exc.exit_code = _exit_code_for_start_failure(exc)
                raise
            sys.stdout.write(rec.id + "\n")
            sys.stdout.flush()
            return
        code = _run_attached(mgr, rec, sig_proxy=sig_proxy, auto_remove=kw["auto_remove"],
                             stdin=kw["interactive"], tty=kw["tty"], prepared=prepared)
    raise SystemExit(code)


# --- helpers (container_cmd's start, and stack_verbs' run, use them too) -------------------



def _print_warnings(rec: Any) -> None:
    """What the start adjusted (a capability the host lacks, a clamped ulimit), as Docker's
    ``WARNING:`` lines on stderr."""
    for w in getattr(getattr(rec, "state", None), "warnings", None) or []:
        sys.stderr.write(f"WARNING: {w}\n")


def _exit_code_for_start_failure(exc: StackctlError) -> int:
    code = getattr(exc, "container_exit_code", None) or getattr(exc, "exit_code", 1)
    return code if code in (126, 127) else 125


def _options_from(image: str, command: tuple[str, ...], kw: dict[str, Any]):
    from stackctl.runtime.imageconfig import RunOptions, parse_labels

    env_lines = read_env_files(kw["env_file"])
    entrypoint = None if kw["entrypoint"] is None else ([kw["entrypoint"]] if kw["entrypoint"] else [])
    return RunOptions(
        image=image,
        command=list(command) or None,
        entrypoint=entrypoint,
        env=list(kw["env"]),
        env_file_lines=env_lines,
        workdir=kw["workdir"],
        user=kw["user"],
        hostname=kw["hostname"],
        domainname=kw["domainname"],
        labels=parse_labels(list(kw["labels"])),
        stop_signal=kw["stop_signal"],
        stop_timeout=kw["stop_timeout"],
        tty=kw["tty"],
        stdin_open=kw["interactive"],
        init=kw["init"],
        read_only=kw["read_only"],
        privileged=kw["privileged"],
        cap_add=list(kw["cap_add"]),
        cap_drop=list(kw["cap_drop"]),
        volumes=list(kw["volumes"]),
        mounts=list(kw["mounts"]),
        tmpfs=list(kw["tmpfs"]),
        memory=kw["memory"],
        memory_reservation=kw["memory_reservation"],
        cpus=kw["cpus"],
        pids_limit=kw["pids_limit"],
        shm_size=kw["shm_size"],
        network=kw["network"],
        add_hosts=list(kw["add_host"]),
        dns=list(kw["dns"]),
        dns_search=list(kw["dns_search"]),
        dns_options=list(kw["dns_option"]),
        ulimits=list(kw["ulimit"]),
        sysctls=list(kw["sysctl"]),
        security_opt=list(kw.get("security_opt") or ()),
        expose=list(kw["expose"]),
        publish=list(kw["publish"]),
        publish_all=kw["publish_all"],
        network_aliases=list(kw["network_aliases"]),
        ipv4_address=kw["ip"],
        auto_remove=kw["auto_remove"],
        links=list(kw.get("links") or ()),
    )


def _create(mgr, image: str, command: tuple[str, ...], kw: dict[str, Any], *, opts=None, prepared=None):
    try:
        if opts is None:
            opts = _options_from(image, command, kw)
        if prepared is not None:
            return mgr.create(opts, kw["name"], prepared=prepared)
        return mgr.create(opts, kw["name"])
    except StackctlError as exc:
        exc.exit_code = 125
        raise


def _quiet_remove(mgr, cid: str) -> None:
    try:
        mgr.remove(cid, force=True, volumes=True)
    except NotFoundError:
        pass


def _waiter(mgr, cid: str) -> threading.Event:
    """An event set when the container stops (its monitor recorded the exit)."""
    import threading

    done = threading.Event()

    def wait() -> None:
        try:
            mgr.core.wait_container(mgr.paths, cid)
        except Exception:  # the record vanished, or the core could not wait: poll instead
            with contextlib.suppress(Exception):
                mgr.wait_stopped(cid, None)
        finally:
            done.set()

    threading.Thread(target=wait, daemon=True, name="wait").start()
    return done


def _write(stream: str, text: str) -> None:
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.buffer.write(text.encode("utf-8", "surrogateescape"))
    out.flush()


def _run_attached(mgr, rec, *, sig_proxy: bool, auto_remove: bool, stdin: bool, tty: bool, prepared=None) -> int:
    """Start the container and stay with it: stream its output (through the attach socket,
    or by following its log), forward signals (``--sig-proxy``, not with a tty: there the
    terminal's own keys reach the container), pass stdin with ``-i``, and return its exit
    code. ``--rm`` removes it afterwards, whatever happened."""
    from stackctl.cli import attach_client as A
    from stackctl.trace import mark

    previous: dict[int, Any] = {}
    try:
        # The core holds an attached container before exec until a client connects. Its
        # monitor listens before it reports the start, so once start returns the socket is
        # there: connect at once (no thread, no polling).
        try:
            if prepared is not None:
                _print_warnings(mgr.start(rec.id, attach=True, prepared=prepared))
            else:
                _print_warnings(mgr.start(rec.id, attach=True))
        except StackctlError as exc:
            exc.exit_code = _exit_code_for_start_failure(exc)
            raise
        sock = A.connect(A.socket_path(mgr.paths, rec.id), timeout=2.0)
        mark("run: started and attached")
        if sig_proxy and not tty:
            def forward(signum: int, _frame: Any) -> None:
                try:
                    mgr.core.signal_container(mgr.paths, rec.id, signum)
                except Exception:
                    pass  # it may just have exited

            for name in _PROXY_SIGNALS:
                signum = getattr(signal, name)
                previous[signum] = signal.signal(signum, forward)
        code = None
        if sock is not None:
            if tty:
                with _raw_terminal():
                    code = A.stream(sock, stdin=stdin, tty=True)
            else:
                code = A.stream(sock, stdin=stdin, tty=False)
            mark("run: exit frame")
        else:  # no attach socket: follow the log file instead
            from stackctl.runtime import logs

            done = _waiter(mgr, rec.id)
            for entry in logs.follow_log(mgr.log_path(rec.id), 0, done.wait):
                _write(entry.stream, entry.text)
        if code is None:
            _waiter(mgr, rec.id).wait()
            try:
                state = mgr.read_state(rec.id)
                code = state.exit_code if state.exit_code is not None else 0
            except NotFoundError:
                code = 0
        return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if auto_remove:
            mgr.forget(rec)
            mark("run: removed")


@contextlib.contextmanager
def _raw_terminal():
    """The caller's terminal in raw mode for the duration (restored on any exit)."""
    if not sys.stdin.isatty():
        yield
        return
    import termios
    import tty as _tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        _tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
