"""Entry point of the ``stackctl`` command.

Only click is imported at start; every command lives in its own module and is imported when
it runs (see :mod:`stackctl.cli.lazy`). ``stackctl run`` does not even import click when its
arguments are plain (see :mod:`stackctl.cli.run_cmd`): the click group ``cli`` is built on
first use.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms of every command)
if TYPE_CHECKING:
    from typing import Any

# name -> (module:attr, short help). Keep the help here so `stackctl --help` imports nothing.
# A command whose module does not exist yet is not listed (see LazyGroup.list_commands).
_C = "stackctl.cli.container_cmd"
_S = "stackctl.cli.stack_cmd"
_V = "stackctl.cli.stack_scoped"  # the container verbs, plus --file/-p for a stack's services
_X = "stackctl.cli.container_extra_cmd"
_I = "stackctl.cli.image_cmd"
_M = "stackctl.cli.stack_scoped_more"  # kill, rm, wait, pause, port, images: also -f/-p
COMMANDS: dict[str, tuple[str, str]] = {
    # stack verbs
    "config": ("stackctl.cli.config_cmd:config", "Validate a stack file and print it normalized."),
    "up": (f"{_S}:up", "Create and start (or update) a stack's services."),
    "down": (f"{_S}:down", "Stop and remove a stack's containers and networks (-v: volumes)."),
    "plan": (f"{_S}:plan", "Show what `up` would do, per slot, in waves, with reasons."),
    "ls": (f"{_S}:ls", "List stacks."),
    "scale": (f"{_S}:scale", "Set the number of replicas of a stack's services."),
    "rollback": (f"{_S}:rollback", "Roll services back to their previous version."),
    # container verbs (docker-like)
    "run": (f"{_V}:run", "Create and run a new container from an image."),
    "ps": (f"{_V}:ps", "List containers."),
    "logs": (f"{_V}:logs", "Fetch the logs of a container."),
    "exec": (f"{_V}:exec_", "Run a command in a running container."),
    "stop": (f"{_V}:stop", "Stop one or more running containers."),
    "start": (f"{_V}:start", "Start one or more stopped containers."),
    "restart": (f"{_V}:restart", "Restart one or more containers."),
    "kill": (f"{_M}:kill", "Kill one or more running containers."),
    "rm": (f"{_M}:rm", "Remove one or more containers."),
    "top": (f"{_V}:top", "Display the running processes of a container."),
    "inspect": (f"{_C}:inspect", "Return low-level information on containers or images."),
    "wait": (f"{_M}:wait", "Block until containers stop, then print their exit codes."),
    "stats": (f"{_C}:stats", "Display resource usage of containers."),
    "events": (f"{_V}:events", "Stream events of stacks' containers."),
    # more container verbs (docker-like; stackctl/cli/container_extra_cmd.py, system_cmd.py)
    "create": (f"{_M}:create", "Create a new container."),
    "attach": (f"{_X}:attach", "Attach local standard input, output, and error streams to a running container."),
    "commit": (f"{_X}:commit", "Create a new image from a container's changes."),
    "cp": (f"{_M}:cp", "Copy files/folders between a container and the local filesystem."),
    "diff": (f"{_X}:diff", "Inspect changes to files or directories on a container's filesystem."),
    "export": (f"{_X}:export", "Export a container's filesystem as a tar archive."),
    "port": (f"{_M}:port", "List port mappings or a specific mapping for the container."),
    "pause": (f"{_M}:pause", "Pause all processes within one or more containers."),
    "unpause": (f"{_M}:unpause", "Unpause all processes within one or more containers."),
    "rename": (f"{_X}:rename", "Rename a container."),
    "update": (f"{_X}:update", "Update configuration of one or more containers."),
    "info": ("stackctl.cli.system_cmd:info", "Display system-wide information."),
    "version": ("stackctl.cli.system_cmd:version", "Show the stackctl version information."),
    # image shortcuts (aliases of `image ...`, as docker's)
    "build": (f"{_M}:build", "Build an image from a Dockerfile (image build)."),
    "images": (f"{_M}:images", "List images (image ls)."),
    "rmi": (f"{_I}:rm", "Remove one or more images (image rm)."),
    "tag": (f"{_I}:tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE (image tag)."),
    "save": (f"{_I}:save", "Save one or more images to a tar archive (image save)."),
    "load": (f"{_I}:load", "Load an image from a tar archive or STDIN (image load)."),
    "import": (f"{_I}:import_", "Import the contents from a tarball to create a filesystem image (image import)."),
    "history": (f"{_I}:history", "Show the history of an image (image history)."),
    # resource groups
    "container": (f"{_C}:container", "Manage containers."),
    "image": ("stackctl.cli.image_cmd:image", "Manage images (build, load, save, import, ls...)."),
    "volume": ("stackctl.cli.volume_cmd:volume", "Manage named volumes."),
    "network": ("stackctl.cli.network_cmd:network", "Manage networks."),
    "agent": ("stackctl.cli.agent_cmd:agent", "Run and manage the node agent."),
    "node": ("stackctl.cli.node_cmd:node", "Manage the cluster's nodes (inventory, bootstrap)."),
    # registries
    "pull": (f"{_M}:pull", "Download an image from a registry."),
    "push": (f"{_M}:push", "Upload an image to a registry."),
    "login": ("stackctl.cli.registry_cmd:login", "Log in to a registry."),
    "logout": ("stackctl.cli.registry_cmd:logout", "Log out from a registry."),
    "search": ("stackctl.cli.registry_cmd:search", "Search a registry's repositories (/v2/_catalog)."),
}


def _build_cli() -> Any:
    import click

    from stackctl import __version__
    from stackctl.cli.lazy import LazyGroup

    @click.group(
        cls=LazyGroup,
        lazy=COMMANDS,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )
    @click.version_option(__version__, "-v", "--version", prog_name="stackctl",
                          message="%(prog)s version %(version)s")
    def cli() -> None:
        """stackctl: Compose files, Swarm scheduling, and a container runtime of its own."""

    return cli


def _cli() -> Any:
    """The click group, built (and click imported) once."""
    g = globals()
    if "cli" not in g:
        g["cli"] = _build_cli()
    return g["cli"]


def __getattr__(name: str) -> Any:
    # ``from stackctl.cli.main import cli`` (PEP 562: only called while ``cli`` is not built)
    if name == "cli":
        return _cli()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _dial_stdio() -> int:
    """``stackctl agent dial-stdio`` without click (stackctl/transport/dial.py)."""
    from stackctl.errors import StackctlError
    from stackctl.paths import default_paths
    from stackctl.transport.dial import dial_stdio

    try:
        dial_stdio(default_paths())
    except StackctlError as exc:
        print("error: " + "\n".join(exc.lines()), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


def _leave(code: int) -> None:
    """Exit with ``code`` once the output is out, without the interpreter's finalization (a
    last garbage collection and the teardown of every module: a few ms of a short command
    that holds no resource to release)."""
    from stackctl.trace import report_now

    report_now()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None, *, quick_exit: bool = False) -> None:
    """Run the CLI; expected errors become one clear message and an exit status.
    ``quick_exit`` (the launcher's, for its own process): a command that holds nothing to
    release (``config``'s fast path) leaves by ``os._exit``."""
    from stackctl.trace import mark

    args = sys.argv[1:] if argv is None else list(argv)
    from stackctl.warm.client import try_warm

    code = try_warm(args, os.environb)  # None: no warm server for this command; run it here
    if code is not None:
        sys.stderr.flush()
        os._exit(code)  # nothing of ours to tear down: skip the interpreter's finalization
    if args == ["agent", "dial-stdio"]:
        # what every SSH channel to this node runs: no click (~50 ms of a loaded start)
        sys.exit(_dial_stdio())
    if args[:1] == ["run"]:
        from stackctl.cli.run_cmd import fast_run

        mark("cli: started")
        code = fast_run(args[1:])  # None: not a plain run, click parses it
        if code is not None:
            sys.exit(code)
    if args[:1] == ["config"]:
        from stackctl.cli.config_fast import fast_config

        code = fast_config(args[1:])  # None: not a plain config, click parses it
        if code is not None:
            if quick_exit:
                _leave(code)
            sys.exit(code)
    if args[:1] in (["pull"], ["push"]):
        from stackctl.cli.registry_fast import fast_registry

        code = fast_registry(args[0], args[1:])  # None: not a plain pull/push, click parses it
        if code is not None:
            sys.exit(code)
    import click

    from stackctl.cli.common import print_error
    from stackctl.errors import StackctlError

    group = _cli()
    mark("cli: click imported")
    try:
        rv = group.main(args=args, prog_name="stackctl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except StackctlError as exc:
        print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        from stackctl.errors import disk_full_error, is_disk_full

        if is_disk_full(exc):  # a write site that does not go through errors.writing()
            print_error(disk_full_error(str(getattr(exc, "filename", None) or "the state directory")))
            sys.exit(1)
        import traceback

        traceback.print_exc()
        click.echo("error: this is a bug in stackctl (an unexpected error, traceback above); "
                   "please report it with the command you ran", err=True)
        sys.exit(70)  # EX_SOFTWARE
    # Without standalone mode click returns the code of a `ctx.exit(code)` instead of raising.
    sys.exit(rv if isinstance(rv, int) else 0)
