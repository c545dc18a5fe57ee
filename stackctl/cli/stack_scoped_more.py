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
