"""The container verbs with an explicit stack scope: ``--file``/``-f FILE`` and
``-p``/``--project-name``.

Each command here is the Docker-like command of :mod:`stackctl.cli.container_cmd` (same
options, same behaviour) plus the stack options; given a stack, it calls the function of
:mod:`stackctl.cli.stack_verbs` instead. Nothing else changes: the scope is always explicit,
the directory you stand in never changes what these verbs mean (DESIGN.md, "The CLI's shape").

**The ``-f`` rule.** Docker gives ``-f`` to ``logs --follow`` and ``ps --filter``; DESIGN
gives it to the stack file (``stackctl logs -f stack.yml web``). ``-f VALUE`` is read as the
stack file when VALUE ends in ``.yml``/``.yaml``/``.json``, or contains a ``/`` and names an
existing file; otherwise ``-f`` keeps Docker's meaning. ``--file`` is always the stack file,
``--follow``/``--filter`` always what they say. So ``logs -f web`` follows the container
``web``; ``logs -f stack.yml web`` prints the stack's service ``web``;
``logs -f stack.yml -f web`` is not valid (write ``--follow``). For ``run``, ``-p`` stays
``--publish``: name a project there with ``--project-name``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from stackctl.cli import container_cmd as C
from stackctl.cli.stack_options import StackArgs
from stackctl.errors import UsageError

_STACK_SUFFIXES = (".yml", ".yaml", ".json")


def names_stack_file(value: str) -> bool:
    """Whether ``-f VALUE`` means the stack file (see the module docstring)."""
    if value.endswith(_STACK_SUFFIXES):
        return True
    return "/" in value and os.path.isfile(value)


def rewrite_file_flag(args: list[str], params: list[click.Parameter], *,
                      interspersed: bool = True) -> list[str]:
    """``-f VALUE`` -> ``--file VALUE`` where the rule says VALUE is a stack file. Options
    that take a value skip it; scanning stops at ``--`` (and, for commands whose positional
    arguments end the options, at the first one)."""
    takes_value = set()
    for p in params:
        if isinstance(p, click.Option) and not p.is_flag and not p.count:
            takes_value.update(o for o in p.opts + p.secondary_opts)
    out = list(args)
    i = 0
    while i < len(out):
        a = out[i]
        if a == "--":
            break
        if a == "-f" and i + 1 < len(out) and names_stack_file(out[i + 1]):
            out[i] = "--file"
            i += 2
            continue
        if a.startswith("-") and a != "-":
            if a in takes_value and "=" not in a:
                i += 2
                continue
            i += 1
            continue
        if not interspersed:
            break
        i += 1
    return out


class ScopedCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        interspersed = (self.context_settings or {}).get("allow_interspersed_args", True)
        return super().parse_args(ctx, rewrite_file_flag(args, self.params,
                                                         interspersed=interspersed))


def _stack_params(short_p: bool) -> list[click.Parameter]:
    return [
        click.Option(["--file", "stack_files"], multiple=True, metavar="FILE",
                     help="Act on this stack's services (repeat to merge overrides); "
                          "-f FILE too when FILE ends in .yml/.yaml."),
        click.Option((["-p"] if short_p else []) + ["--project-name", "stack_project"],
                     metavar="NAME", help="Act on the services of this stack (project)."),
        click.Option(["--profile", "stack_profiles"], multiple=True, metavar="PROFILE",
                     help="With a stack: activate a profile."),
        click.Option(["--project-directory", "stack_project_dir"], metavar="DIR",
                     help="With a stack: base directory for relative paths."),
        click.Option(["--nodes", "stack_nodes"], metavar="FILE", default=None,
                     help="With a stack: its inventory of nodes (default: $STACKCTL_NODES, "
                          "else nodes.yml next to the stack file)."),
    ]


def scoped(base: click.Command, stack_fn: Callable[..., Any], *, short_p: bool = True,
           replace_args: list[click.Parameter] | None = None,
           docker_args: Callable[[dict[str, Any]], None] | None = None) -> click.Command:
    """``base`` with the stack options; ``stack_fn(stack, kw)`` runs when a stack is named.
    ``replace_args`` replaces base's positional arguments (a stack verb takes services);
    ``docker_args(kw)`` then checks and maps them back for the Docker form."""
    params = [p for p in base.params if not isinstance(p, click.Argument)] \
        if replace_args is not None else list(base.params)
    params = _stack_params(short_p) + params + list(replace_args or [])

    def callback(stack_files, stack_project, stack_profiles, stack_project_dir, stack_nodes,
                 **kw):
        stack = StackArgs(files=tuple(stack_files), project_name=stack_project,
                          profiles=tuple(stack_profiles), project_directory=stack_project_dir,
                          nodes=stack_nodes)
        if stack.explicit:
            from stackctl.cli import stack_client

            stack_client.select_stack(stack)  # its manager answers for its services
            return stack_fn(stack, kw)
        if stack_profiles or stack_project_dir:
            raise UsageError("--profile and --project-directory need a stack "
                             "(--file FILE or -p NAME)")
        if docker_args is not None:
            docker_args(kw)
        return base.callback(**kw)

    return ScopedCommand(name=base.name, params=params, callback=callback, help=base.help,
                         short_help=base.short_help, context_settings=base.context_settings,
                         epilog="With --file FILE or -p NAME: acts on that stack's services "
                                "(see docs/cli-stacks.md).")


def _require_one(kw: dict[str, Any], key: str, name: str) -> None:
    values = kw.pop("targets")
    if len(values) != 1:
        raise UsageError(f'"stackctl {name}" requires exactly 1 argument (a container)'
                         if not values else f'"stackctl {name}" takes one container; '
                         "for a stack's services add --file FILE or -p NAME")
    kw[key] = values[0]


def _require_some(kw: dict[str, Any], key: str, name: str) -> None:
    values = kw.pop("targets")
    if not values:
        raise UsageError(f'"stackctl {name}" requires at least 1 argument (a container)')
    kw[key] = values


def _targets(required: bool = False) -> click.Argument:
    return click.Argument(["targets"], nargs=-1, required=required)


# --- the commands -------------------------------------------------------------------------

def _ps(stack: StackArgs, kw: dict[str, Any]) -> None:
    from stackctl.cli.stack_verbs import stack_ps

    if kw.get("filters") or kw.get("latest") or kw.get("last", -1) >= 0:
        raise UsageError("--filter, --latest and --last are not supported with a stack")
    stack_ps(stack, services=kw["targets"], all_=kw["all_"], quiet=kw["quiet"], fmt=kw["fmt"],
             no_trunc=kw["no_trunc"])


def _ps_docker(kw: dict[str, Any]) -> None:
    if kw.pop("targets"):
        raise UsageError('"stackctl ps" accepts no arguments; for a stack\'s services add '
                         "--file FILE or -p NAME")


ps = scoped(C.ps, _ps, replace_args=[_targets()], docker_args=_ps_docker)


def _logs(stack: StackArgs, kw: dict[str, Any]) -> None:
    from stackctl.cli.stack_verbs import stack_logs

    stack_logs(stack, services=kw["targets"], follow=kw["follow"], tail=kw["tail"],
               since=kw["since"], until=kw["until"], timestamps=kw["timestamps"])


logs = scoped(C.logs, _logs, replace_args=[_targets()],
              docker_args=lambda kw: _require_one(kw, "container", "logs"))


def _exec(stack: StackArgs, kw: dict[str, Any]) -> None:
    from stackctl.cli.stack_verbs import stack_exec

    if kw.get("env_file"):
        raise UsageError("--env-file is not supported with a stack yet; use -e")
    stack_exec(stack, kw["container"], kw["command"], detach=kw["detach"],
               interactive=kw["interactive"], tty=kw["tty"], env=kw["env"],
               workdir=kw["workdir"], user=kw["user"], privileged=kw["privileged"])


exec_ = scoped(C.exec_, _exec)


def _run(stack: StackArgs, kw: dict[str, Any]) -> None:
    from stackctl.cli.stack_verbs import stack_run

    stack_run(stack, kw["image"], kw["command"], rm=kw["auto_remove"], detach=kw["detach"],
              interactive=kw["interactive"], tty=kw["tty"], env=kw["env"],
              entrypoint=kw["entrypoint"], name=kw["name"], user=kw["user"],
              workdir=kw["workdir"], sig_proxy=kw["sig_proxy"])


run = scoped(C.run, _run, short_p=False)


def _lifecycle(verb: str) -> Callable[[StackArgs, dict[str, Any]], None]:
    def fn(stack: StackArgs, kw: dict[str, Any]) -> None:
        from stackctl.cli.stack_verbs import stack_lifecycle

        # `start` has no --timeout: kw.get gives None
        stack_lifecycle(stack, verb, kw["targets"], timeout=kw.get("timeout"))
    return fn


stop = scoped(C.stop, _lifecycle("stop"), replace_args=[_targets()],
              docker_args=lambda kw: _require_some(kw, "containers", "stop"))
start = scoped(C.start, _lifecycle("start"), replace_args=[_targets()],
               docker_args=lambda kw: _require_some(kw, "containers", "start"))
restart = scoped(C.restart, _lifecycle("restart"), replace_args=[_targets()],
                 docker_args=lambda kw: _require_some(kw, "containers", "restart"))


def _top(stack: StackArgs, kw: dict[str, Any]) -> None:
    from stackctl.cli.stack_verbs import stack_top

    stack_top(stack, kw["targets"])


def _top_docker(kw: dict[str, Any]) -> None:
    targets = kw.pop("targets")
    if not targets:
        raise UsageError('"stackctl top" requires at least 1 argument (a container)')
    kw["container"], kw["ps_args"] = targets[0], tuple(targets[1:])


top = scoped(C.top, _top, replace_args=[click.Argument(["targets"], nargs=-1,
                                                       type=click.UNPROCESSED)],
             docker_args=_top_docker)


@click.command(name="events", cls=ScopedCommand)
@click.option("--file", "stack_files", multiple=True, metavar="FILE",
              help="Only this stack's events (-f FILE too).")
@click.option("-p", "--project-name", "stack_project", metavar="NAME",
              help="Only this stack's events.")
@click.option("--json", "json_", is_flag=True, help="Output events as a stream of json objects.")
@click.argument("services", nargs=-1)
def events(stack_files: tuple[str, ...], stack_project: str | None, json_: bool,
           services: tuple[str, ...]) -> None:
    """Stream events of a stack's containers (every stack's without --file/-p)."""
    from stackctl.cli import stack_verbs as V

    stack = StackArgs(files=stack_files, project_name=stack_project)
    if stack.explicit:
        from stackctl.cli import stack_client

        stack_client.select_stack(stack)
        V.stack_events(stack, services, json_=json_)
        return
    if services:
        raise UsageError("services need a stack: add --file FILE or -p NAME")
    V.all_events(json_=json_)
