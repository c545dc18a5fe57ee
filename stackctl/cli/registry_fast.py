"""``stackctl pull`` and ``stackctl push`` without click, and their bodies (shared with the
click commands of :mod:`stackctl.cli.registry_cmd`).

Importing click is ~60 ms of a cold ``stackctl pull`` here, while the pull of a
tens-of-MB image itself takes a few hundred: :func:`stackctl.cli.main.main` tries
:func:`fast_registry` first for the common forms (``pull [-q] [--platform P] NAME``,
``push [-q] NAME``); anything else (``--help``, ``-a``, a typo) goes to click, which gives
the same result and click's messages.
"""

from __future__ import annotations

import sys

# verb -> option -> (key, takes a value)
_FAST = {
    "pull": {"-q": ("quiet", False), "--quiet": ("quiet", False), "--platform": ("platform", True),
             "--disable-content-trust": ("", False)},
    "push": {"-q": ("quiet", False), "--quiet": ("quiet", False), "--disable-content-trust": ("", False)},
}


def parse_fast_args(verb: str, args: list[str]) -> dict | None:
    """The options of a plain ``pull``/``push`` command line (pure), or None when click must
    parse it: an unknown option, a missing value, not exactly one name, ``--help``."""
    table = _FAST.get(verb)
    if table is None:
        return None
    out: dict = {"quiet": False, "platform": "", "name": ""}
    names = []
    i = 0
    while i < len(args):
        a = args[i]
        opt, eq, value = a.partition("=")
        spec = table.get(opt) if a.startswith("-") else None
        if a.startswith("-"):
            if spec is None or (eq and not spec[1]):
                return None
            key, takes_value = spec
            if takes_value and not eq:
                if i + 1 >= len(args):
                    return None
                value = args[i + 1]
                i += 1
            if key:
                out[key] = value if takes_value else True
        else:
            names.append(a)
        i += 1
    if len(names) != 1:
        return None
    out["name"] = names[0]
    if verb == "push":
        del out["platform"]
    return out


def fast_registry(verb: str, args: list[str]) -> int | None:
    """Run ``stackctl pull|push ARGS`` here if :func:`parse_fast_args` can parse ARGS; the exit
    status (as :func:`stackctl.cli.main.main` would give it), or None: use click."""
    parsed = parse_fast_args(verb, args)
    if parsed is None:
        return None
    from stackctl.errors import StackctlError

    try:
        if verb == "pull":
            run_pull(parsed["name"], all_tags=False, platform=parsed["platform"], quiet=parsed["quiet"])
        else:
            run_push(parsed["name"], all_tags=False, quiet=parsed["quiet"])
    except StackctlError as exc:
        from stackctl.cli.common import error_lines

        sys.stdout.flush()
        for line in error_lines(exc):
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    sys.stdout.flush()
    return 0


def _echo(text: str) -> None:
    sys.stdout.write(text + "\n")


def _store():
    from stackctl.paths import default_paths
    from stackctl.runtime.images.store import ImageStore

    return ImageStore(default_paths().images)


def run_pull(name: str, *, all_tags: bool, platform: str, quiet: bool) -> None:
    """The body of ``stackctl pull``: Docker's output on stdout."""
    from stackctl.errors import UsageError
    from stackctl.runtime.images.registry import progress as P
    from stackctl.runtime.images.registry.client import RegistryClient
    from stackctl.runtime.images.registry.pull import list_tags, pull as do_pull
    from stackctl.runtime.images.registry.reference import parse_ref

    r = parse_ref(name)
    if all_tags and (r.tag or r.digest):
        raise UsageError(f"pull {name}: tag can't be used with --all-tags/-a; give the repository only")
    store = _store()
    prog = P.for_terminal(quiet)
    try:
        with RegistryClient(r.registry) as client:
            if all_tags:
                client.subject = f"pull {r.familiar_repository} --all-tags"
                tags = sorted(list_tags(client, r.repository))
                if not tags:
                    raise UsageError(f"pull {r.familiar_repository}: the repository has no tags; push one first")
                results = []
                for t in tags:
                    results.append(do_pull(store, r.with_tag(t), platform=platform or None, progress=prog,
                                           client=client))
                    prog.line(f"Digest: {results[-1].digest}")
            else:
                results = [do_pull(store, r, platform=platform or None, progress=prog, client=client)]
    finally:
        prog.close()
    if all_tags:
        if not quiet:
            new = any(not res.up_to_date for res in results)
            status = "Downloaded newer image for" if new else "Image is up to date for"
            _echo(f"Status: {status} {r.familiar_repository}")
        _echo(r.full_name)
        return
    res = results[0]
    if not quiet:
        _echo(f"Digest: {res.digest}")
        status = "Image is up to date for" if res.up_to_date else "Downloaded newer image for"
        _echo(f"Status: {status} {r}")
    _echo(r.full)


def run_push(name: str, *, all_tags: bool, quiet: bool) -> None:
    """The body of ``stackctl push``."""
    from stackctl.errors import UsageError
    from stackctl.runtime.images.registry import progress as P
    from stackctl.runtime.images.registry.client import RegistryClient
    from stackctl.runtime.images.registry.push import local_tags_of, push as do_push
    from stackctl.runtime.images.registry.reference import parse_ref

    r = parse_ref(name)
    if all_tags and r.tag:
        raise UsageError(f"push {name}: tag can't be used with --all-tags/-a; give the repository only")
    store = _store()
    names = local_tags_of(store, name) if all_tags else [name]
    prog = P.for_terminal(quiet)
    try:
        with RegistryClient(r.registry) as client:
            results = [do_push(store, n, progress=prog, client=client) for n in names]
    finally:
        prog.close()
    if quiet:
        for res in results:
            _echo(res.ref.full)
