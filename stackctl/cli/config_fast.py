"""``stackctl config`` without click, for the common forms (``config -q -f stack.yml``,
``--services``, ``--format json``...). ``-o FILE`` goes through click, which checks the
path.

Importing click and building the command is ~30 ms of a ~100 ms ``config -q``, and every CI
check pays it. :func:`stackctl.cli.main.main` tries :func:`fast_config` first; whatever it
does not recognise (``--help``, ``--output=X``, a typo) goes to the click command of
:mod:`stackctl.cli.config_cmd`, which gives the same result and click's messages. Both print
through :func:`_text`.
"""

from __future__ import annotations

# the options fast_config parses: name -> (key, takes a value)
_FAST = {
    "-f": ("files", True), "--file": ("files", True),
    "-p": ("project_name", True), "--project-name": ("project_name", True),
    "--profile": ("profiles", True), "--env-file": ("env_files", True),
    "--project-directory": ("project_directory", True), "--nodes": ("nodes", True),
    "--format": ("fmt", True),
    "-q": ("quiet", False), "--quiet": ("quiet", False),
    "--services": ("services", False), "--volumes": ("volumes", False),
    "--networks": ("networks", False), "--profiles": ("list_profiles", False),
}
_REPEATED = ("files", "profiles", "env_files")


def parse_fast_args(args: list[str]) -> dict | None:
    """The options of a plain ``config`` command line (pure), or None when click must parse
    it: an option not in the table, a missing value, a positional argument, ``--help``."""
    out: dict = {"files": [], "profiles": [], "env_files": [], "fmt": "yaml"}
    i = 0
    while i < len(args):
        spec = _FAST.get(args[i])
        if spec is None:
            return None
        key, takes_value = spec
        if not takes_value:
            out[key] = True
            i += 1
            continue
        if i + 1 >= len(args) or args[i + 1].startswith("-"):
            return None
        if key in _REPEATED:
            out[key].append(args[i + 1])
        else:
            out[key] = args[i + 1]
        i += 2
    if out["fmt"] not in ("yaml", "json"):
        return None
    return out


def fast_config(args: list[str]) -> int | None:
    """``stackctl config ARGS`` without click when :func:`parse_fast_args` can parse ARGS; the
    exit status (as :func:`stackctl.cli.main.main` gives it), or None: click parses it."""
    import os
    import sys

    o = parse_fast_args(args)
    if o is None:
        return None
    import gc

    gc.disable()  # a short process that makes next to no cycles: no collector passes over
    # the objects the imports and the loader make (load_project pauses it too, for everyone)
    from stackctl.cli.common import error_lines
    from stackctl.errors import StackctlError
    from stackctl.spec.load import LoadOptions, load_project

    try:
        project = load_project(LoadOptions(
            files=o["files"], project_name=o.get("project_name"), profiles=o["profiles"],
            env_files=o["env_files"], project_directory=o.get("project_directory"),
            environ=dict(os.environ), cwd=os.getcwd()))
        for warning in project.warnings:
            sys.stderr.write(f"warning: {warning}\n")
        if o.get("quiet"):
            return 0
        text = _text(project, o["fmt"], o.get("services"), o.get("volumes"),
                     o.get("networks"), o.get("list_profiles"))
        sys.stdout.write(text)  # (-o FILE goes through click: it checks the path)
        sys.stdout.flush()
    except StackctlError as exc:
        sys.stderr.write("".join(line + "\n" for line in error_lines(exc)))
        return exc.exit_code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


def _text(project, fmt: str, list_services, list_volumes, list_networks,
          list_profiles) -> str:
    from stackctl.spec.dump import render

    if list_services:
        return _lines(project.stack.services)
    if list_volumes:
        return _lines(project.stack.volumes)
    if list_networks:
        return _lines(project.stack.networks)
    if list_profiles:
        return _lines(_all_profiles(project))
    return render(project.stack, fmt)


def _lines(names) -> str:
    return "".join(f"{name}\n" for name in sorted(names))


def _all_profiles(project) -> set[str]:
    """Profiles named anywhere in the file, also by services the active profiles leave off."""
    from stackctl.spec.models import Stack

    names: set[str] = set()
    services = project.raw.get("services") if isinstance(project.raw, dict) else None
    if isinstance(services, dict):
        for svc in services.values():
            profiles = svc.get("profiles") if isinstance(svc, dict) else None
            if isinstance(profiles, list):
                names.update(str(p) for p in profiles)
    if isinstance(project.stack, Stack):
        for svc in project.stack.services.values():
            names.update(svc.profiles)
    return names
