"""``kill``, ``rm``, ``wait``, ``pause``, ``unpause``, ``port`` and ``images`` with a stack
scope (``--file``/``-f FILE``, ``-p NAME``), as :mod:`stackctl.cli.stack_scoped` does it for
``ps``/``logs``/``stop``...: the Docker command unchanged without a stack; with one, the
``docker compose`` verb (functions in :mod:`stackctl.cli.stack_more`)."""

from __future__ import annotations

from typing import Any

import click

from stackctl.cli import container_cmd as C
from stackctl.cli import container_extra_cmd as X
from stackctl.cli import image_cmd as I
from stackctl.cli.stack_options import StackArgs
from stackctl.cli.stack_scoped import _require_some, _targets, scoped
from stackctl.errors import UsageError


def _services(verb: str):
    """A stack verb over ``[SERVICE...]``: ``fn(stack, kw)`` calls ``stack_more.<verb>``."""
    def fn(stack: StackArgs, kw: dict[str, Any]) -> None:
        from stackctl.cli import stack_more as M

        if verb == "kill":
            M.stack_kill(stack, kw["targets"], signal=kw["sig"])
        elif verb == "rm":
            M.stack_rm(stack, kw["targets"], force=kw["force"], stop=kw["stop"],
                       volumes=kw["volumes"])
        elif verb == "wait":
            if not kw["targets"]:
                raise UsageError('"stackctl wait" with a stack requires at least 1 service')
            M.stack_wait(stack, kw["targets"], down_project=kw["down_project"])
        else:
            M.stack_pause(stack, kw["targets"], verb=verb)
    return fn


def _docker(verb: str, *only_stack: str):
    """The Docker form: containers required; options that only a stack has refused."""
    def fn(kw: dict[str, Any]) -> None:
        for opt in only_stack:
            if kw.pop(opt):
                raise UsageError(f"--{opt.replace('_', '-')} needs a stack "
                                 "(--file FILE or -p NAME)")
        _require_some(kw, "containers", verb)
    return fn


kill = scoped(C.kill, _services("kill"), replace_args=[_targets()], docker_args=_docker("kill"))
rm = scoped(C.rm, _services("rm"), replace_args=[
    click.Option(["-s", "--stop"], is_flag=True,
                 help="With a stack: stop the containers, if required, before removing."),
    _targets()], docker_args=_docker("rm", "stop"))
wait = scoped(C.wait, _services("wait"), replace_args=[
    click.Option(["--down-project"], is_flag=True,
                 help="With a stack: drop the project once the containers stopped."),
    _targets()], docker_args=_docker("wait", "down_project"))
pause = scoped(X.pause, _services("pause"), replace_args=[_targets()],
               docker_args=_docker("pause"))
unpause = scoped(X.unpause, _services("unpause"), replace_args=[_targets()],
                 docker_args=_docker("unpause"))


def _port(stack: StackArgs, kw: dict[str, Any]) -> None:
    from stackctl.cli.stack_more import stack_port

    if not kw["private_port"]:
        raise UsageError('"stackctl port" with a stack requires SERVICE and PRIVATE_PORT')
    stack_port(stack, kw["container"], kw["private_port"], index=kw["index"],
               protocol=kw["protocol"])


def _port_docker(kw: dict[str, Any]) -> None:
    if kw.pop("index") != 1 or kw.pop("protocol") != "tcp":
        raise UsageError("--index and --protocol need a stack (--file FILE or -p NAME)")


port = scoped(X.port, _port, replace_args=[
    click.Option(["--index"], type=int, default=1, show_default=True,
                 help="With a stack: the slot of the service."),
    click.Option(["--protocol"], type=click.Choice(["tcp", "udp", "sctp"]), default="tcp",
                 show_default=True, help="With a stack: tcp, udp or sctp."),
    click.Argument(["container"], metavar="CONTAINER|SERVICE"),
    click.Argument(["private_port"], required=False, metavar="[PRIVATE_PORT[/PROTO]]"),
], docker_args=_port_docker)


def _images(stack: StackArgs, kw: dict[str, Any]) -> None:
    from stackctl.cli.stack_more import stack_images

    if kw.get("filters") or kw.get("all_") or kw.get("no_trunc"):
        raise UsageError("-a, --filter and --no-trunc are not supported with a stack")
    fmt = kw.get("fmt") or "table"
    if fmt not in ("table", "json"):
        raise UsageError("--format with a stack is table or json")
    stack_images(stack, kw["targets"], quiet=kw["quiet"], fmt=fmt)


def _images_docker(kw: dict[str, Any]) -> None:
    targets = kw.pop("targets")
    if len(targets) > 1:
        raise UsageError('"stackctl images" takes at most 1 argument (a repository); for a '
                         "stack's services add --file FILE or -p NAME")
    kw["repository"] = targets[0] if targets else None


images = scoped(I.ls, _images, replace_args=[_targets()], docker_args=_images_docker)


# --- pull, push, build, create ---------------------------------------------------------------

def _one_name(key: str, verb: str, *only_stack: str):
    """The Docker form of pull/push/build: exactly one positional (image or context)."""
    def fn(kw: dict[str, Any]) -> None:
        for opt in only_stack:
            if kw.pop(opt):
                raise UsageError(f"--{opt.replace('_', '-')} needs a stack "
                                 "(--file FILE or -p NAME)")
        targets = kw.pop("targets")
        if len(targets) != 1:
            raise UsageError(f'"stackctl {verb}" requires exactly 1 argument; for a stack\'s '
                             "services add --file FILE or -p NAME")
        kw[key] = targets[0]
    return fn


def _no(kw: dict[str, Any], verb: str, *names: str) -> None:
    used = [n for n in names if kw.get(n)]
    if used:
        raise UsageError(f"{', '.join('--' + n.replace('_', '-') for n in used)}: not "
                         f"supported by {verb} with a stack")


def _pull(stack: StackArgs, kw: dict[str, Any]) -> None:
    from stackctl.cli.stack_more import stack_pull

    _no(kw, "pull", "all_tags", "platform")
    stack_pull(stack, kw["targets"], quiet=kw["quiet"],
               ignore_failures=kw["ignore_pull_failures"],
               ignore_buildable=kw["ignore_buildable"], include_deps=kw["include_deps"],
               policy=kw["policy"] or "always")


def _push(stack: StackArgs, kw: dict[str, Any]) -> None:
    from stackctl.cli.stack_more import stack_push

    _no(kw, "push", "all_tags")
    stack_push(stack, kw["targets"], quiet=kw["quiet"],
               ignore_failures=kw["ignore_push_failures"], include_deps=kw["include_deps"])


def _registry():
    from stackctl.cli import registry_cmd

    return registry_cmd


pull = scoped(_registry().pull, _pull, replace_args=[
    click.Option(["--ignore-pull-failures"], is_flag=True,
                 help="With a stack: pull what it can and ignore images with pull failures."),
    click.Option(["--ignore-buildable"], is_flag=True,
                 help="With a stack: ignore images that can be built."),
    click.Option(["--include-deps"], is_flag=True,
                 help="With a stack: also pull the services' dependencies."),
    click.Option(["--policy"], type=click.Choice(["missing", "always"]), default=None,
                 help="With a stack: pull only missing images, or always (default)."),
    _targets()], docker_args=_one_name("name", "pull", "ignore_pull_failures",
                                       "ignore_buildable", "include_deps", "policy"))
push = scoped(_registry().push, _push, replace_args=[
    click.Option(["--ignore-push-failures"], is_flag=True,
                 help="With a stack: push what it can and ignore images with push failures."),
    click.Option(["--include-deps"], is_flag=True,
                 help="With a stack: also push the services' dependencies."),
    _targets()], docker_args=_one_name("name", "push", "ignore_push_failures",
                                       "include_deps"))


def _create(stack: StackArgs, kw: dict[str, Any]) -> None:
    from stackctl.cli.stack_cmd import up

    targets = kw["targets"]
    flags = {k: kw.pop(k) for k in ("build", "force_recreate", "no_recreate", "remove_orphans",
                                    "stack_pull")}
    flags["pull"] = flags.pop("stack_pull")
    inner = up.callback.__wrapped__  # up's body, without its option parsing
    inner(stack=stack, detach=True, wait=False, wait_timeout=None, no_start=True,
          no_deps=False, no_color=False, fmt="text", services=tuple(targets), **flags)


def _create_docker(kw: dict[str, Any]) -> None:
    for opt in ("build", "force_recreate", "no_recreate", "remove_orphans", "stack_pull"):
        if kw.pop(opt):
            flag = "pull" if opt == "stack_pull" else opt.replace("_", "-")
            raise UsageError(f"--{flag} needs a stack (--file FILE or -p NAME)")
    targets = kw.pop("targets")
    if not targets:
        raise UsageError('"stackctl create" requires at least 1 argument (an image)')
    kw["image"], kw["command"] = targets[0], tuple(targets[1:])


create = scoped(C.create, _create, short_p=False, replace_args=[
    click.Option(["--build"], is_flag=True, help="With a stack: build images first."),
    click.Option(["--force-recreate"], is_flag=True,
                 help="With a stack: recreate containers even if unchanged."),
    click.Option(["--no-recreate"], is_flag=True,
                 help="With a stack: keep existing containers."),
    click.Option(["--remove-orphans"], is_flag=True,
                 help="With a stack: remove containers of services not in the file."),
    click.Option(["--pull", "stack_pull"],
                 type=click.Choice(["always", "missing", "never", "build"]), default=None,
                 help="With a stack: pull images before creating (as up --pull)."),
    click.Argument(["targets"], nargs=-1, type=click.UNPROCESSED)], docker_args=_create_docker)


# --- build: Docker's -f/--file is the Dockerfile --------------------------------------------

class _BuildCommand(click.Command):
    """``build``: ``-f VALUE`` names the stack file only when VALUE ends in .yml, .yaml or
    .json (a path with a ``/`` is a Dockerfile here: ``docker build -f dir/Dockerfile``);
    ``--file`` keeps Docker's meaning (the Dockerfile), so the stack is ``-f FILE.yml`` or
    ``-p NAME``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from stackctl.cli.stack_scoped import _STACK_SUFFIXES

        out = list(args)
        for i, a in enumerate(out[:-1]):
            if a == "--":
                break
            if a == "-f" and out[i + 1].endswith(_STACK_SUFFIXES):
                out[i] = "--stack-file"
        return super().parse_args(ctx, out)


def _build_callback(stack_files, stack_project, **kw) -> None:
    stack = StackArgs(files=tuple(stack_files), project_name=stack_project)
    targets = kw.pop("targets")
    if stack.explicit:
        from stackctl.cli import stack_client
        from stackctl.cli.stack_more import stack_build

        _no(kw, "build", "tags", "dockerfile", "target")
        stack_client.select_stack(stack)
        stack_build(stack, targets, quiet=kw["quiet"])
        return
    if len(targets) != 1:
        raise UsageError('"stackctl build" requires exactly 1 argument (the context); for a '
                         "stack's services add -f FILE.yml or -p NAME")
    I.build.callback(context=targets[0], **kw)


build = _BuildCommand(
    name="build", callback=_build_callback, help=I.build.help,
    context_settings=I.build.context_settings,
    params=[click.Option(["--stack-file", "stack_files"], multiple=True, metavar="FILE",
                         help="Build this stack's services (also -f FILE.yml)."),
            click.Option(["-p", "--project-name", "stack_project"], metavar="NAME",
                         help="Build the services of this stack (project).")]
    + [p for p in I.build.params if not isinstance(p, click.Argument)]
    + [click.Argument(["targets"], nargs=-1, metavar="CONTEXT | [SERVICE...]")],
    epilog="With -f FILE.yml or -p NAME: builds that stack's services that have a build: "
           "section (see docs/cli-stacks.md).")


# --- cp ---------------------------------------------------------------------------------------

def _cp(stack: StackArgs, kw: dict[str, Any]) -> None:
    from stackctl.cli.stack_more import stack_cp

    stack_cp(stack, kw["src"], kw["dest"], index=kw["index"], all_=kw["all_"],
             archive=kw["archive"], follow_link=kw["follow_link"], quiet=kw["quiet"])


def _cp_docker(kw: dict[str, Any]) -> None:
    if kw.pop("index") != 1 or kw.pop("all_"):
        raise UsageError("--index and --all need a stack (--file FILE or -p NAME)")


cp = scoped(X.cp, _cp, replace_args=[
    click.Option(["--index"], type=int, default=1, show_default=True,
                 help="With a stack: the slot of the service."),
    click.Option(["--all", "all_"], is_flag=True,
                 help="With a stack: copy into every container of the service."),
    click.Argument(["src"], metavar="SRC"), click.Argument(["dest"], metavar="DEST")],
    docker_args=_cp_docker)
