"""What the stack verbs share (``up``/``down``/``plan``... in :mod:`.stack_cmd`, the
stack-scoped container verbs in :mod:`.stack_verbs`): the stack's name, the deploy request,
the connection to its manager, and streaming a request's progress. Both import it; it
imports neither (no cycle between them)."""

from __future__ import annotations

from typing import Any

import click

from stackctl.cli.stack_options import StackArgs
from stackctl.errors import StackctlError, UsageError


def stack_name(stack: StackArgs) -> str:
    """The project name without validating the whole file: ``-p`` alone is enough; else the
    files are read (discovered in the working directory without ``-f``) up to the merged raw
    tree, which is all the name needs (no pydantic)."""
    if stack.project_name and not stack.files:
        from stackctl.spec.project import choose_project_name

        return choose_project_name(stack.project_name, {}, None, ".")
    from stackctl.spec.load import load_raw

    return load_raw(stack.load_options()).name


def check_services(project, services: tuple[str, ...]) -> None:
    known = set(project.stack.services)
    unknown = [s for s in services if s not in known]
    if unknown:
        raise UsageError(f"no such service: {', '.join(unknown)}",
                         hint=f"services in {project.name}: {', '.join(sorted(known))}")


def deploy_params(project, *, services: tuple[str, ...] = (), force_recreate: bool = False,
                  no_recreate: bool = False, no_start: bool = False,
                  remove_orphans: bool = False, wait: bool = False,
                  wait_timeout: float | None = None, pull: str | None = None,
                  build: bool = False) -> dict[str, Any]:
    """``stack.deploy`` / ``stack.plan`` params: the normalized stack (spec/dump.py form)."""
    from stackctl.spec.dump import stack_data

    return {
        "stack": stack_data(project.stack),
        "project_dir": project.directory,
        "files": list(project.files),
        "options": {
            "services": list(services), "force_recreate": force_recreate,
            "no_recreate": no_recreate, "no_start": no_start, "remove_orphans": remove_orphans,
            "wait": wait, "wait_timeout": wait_timeout, "pull": pull, "build": build,
        },
    }


def agent():
    from stackctl.cli.stack_client import Agent

    return Agent()


def run_stream(client, method: str, params: dict[str, Any], fmt: str, *, title: str,
               stack: str, services: tuple[str, ...] = ()) -> Any:
    """Stream a progress request into a renderer. Returns the renderer's summary. Raises
    :class:`StackCommandError` (exit 1, naming what failed) when the agent ends with an error;
    on Ctrl-C (after the agent has cancelled) prints what is left running and exits 130."""
    from stackctl.cli.progress import renderer_for
    from stackctl.cli.stack_client import StackCommandError

    out = renderer_for(fmt, title=title)

    def interrupted() -> None:
        out.note("interrupted: cancelling the request (Ctrl-C again to stop waiting)")

    try:
        client.stream(method, params, out.event, interrupted)
    except KeyboardInterrupt:
        out.close()
        _report_left_running(client, stack, services)
        raise SystemExit(130) from None
    except StackCommandError as exc:
        out.close()
        raise StackCommandError(_failure_message(exc.message, out.summary), code=exc.code,
                                hint=exc.hint) from None
    out.close()
    return out.summary


def _failure_message(message: str, summary) -> str:
    """The agent's message, with the failed slots named when it names none."""
    named = {f.split(".")[0] for f, _ in summary.failures}
    if summary.failures and not any(n and n in message for n in named):
        first, why = summary.failures[-1]
        message = f"{message}: {first}: {why}"
    if summary.rolled_back and "roll" not in message:
        message += f" (rolled back: {', '.join(summary.rolled_back)})"
    return message


def _report_left_running(client, stack: str, services: tuple[str, ...]) -> None:
    try:
        rows = client.call("stack.ps", {"name": stack, "all": False, "services": list(services)})
    except (StackctlError, OSError, KeyboardInterrupt):
        click.echo("interrupted; could not ask the agent what is running", err=True)
        return
    running = sorted(f"{r.get('service')}.{r.get('slot')}" for r in rows or [])
    if running:
        click.echo(f"interrupted; left running: {', '.join(running)}", err=True)
    else:
        click.echo("interrupted; nothing of the stack is running", err=True)
