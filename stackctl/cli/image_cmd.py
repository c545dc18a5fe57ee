"""``stackctl image ...``: the image store from the command line, with Docker's flags and
output shapes. Thin: every verb calls :mod:`stackctl.runtime.images`."""

from __future__ import annotations

import sys
from typing import Any

import click

from stackctl.cli.common import for_each, inspect_each, print_pruned
from stackctl.errors import StackctlError, UsageError


def _paths():
    from stackctl.paths import default_paths

    return default_paths()


def _store():
    from stackctl.runtime.images.store import ImageStore

    return ImageStore(_paths().images)


def _in_use() -> set[str]:
    """Image IDs that containers on this node use (asked of the container manager)."""
    try:
        from stackctl.runtime.manager import ContainerManager
    except ImportError:  # pragma: no cover - the manager is part of stackctl
        return set()
    return {rec.spec.image_id for rec in ContainerManager(_paths()).records()}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def image() -> None:
    """Manage images."""


# --- ls -------------------------------------------------------------------------------------

@image.command("ls")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (default hides none; kept for Docker compatibility).")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (dangling=true|false, reference=PATTERN, label=K[=V]).")
@click.option("--format", "fmt", default="", help="table (default), json, or a Go template.")
@click.argument("repository", required=False)
def ls(all_: bool, quiet: bool, no_trunc: bool, filters: tuple[str, ...], fmt: str, repository: str | None) -> None:
    """List images."""
    from stackctl.cli import format as F
    from stackctl.runtime.images import view

    images = _filter(_store().list(), filters, repository)
    if quiet:
        seen: list[str] = []
        for img in images:
            shown = img.id if no_trunc else view.short_id(img.id)
            if shown not in seen:
                seen.append(shown)
        if seen:
            click.echo("\n".join(seen))
        return
    rows = view.ls_rows(images)
    if no_trunc:
        by_short = {view.short_id(i.id): i.id for i in images}
        for r in rows:
            r["ID"] = by_short.get(r["ID"], r["ID"])
    if fmt in ("", "table"):
        click.echo(F.table(("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"),
                           [[r["Repository"], r["Tag"], r["ID"], r["CreatedSince"], r["Size"]] for r in rows]))
    elif fmt == "json":
        if rows:
            click.echo(F.to_json_lines(rows))
    else:
        template = F.unescape_template(fmt)
        if template.startswith("table "):
            template = template[len("table "):]
        for r in rows:
            click.echo(F.render_template(template, r))


def _filter(images: list[Any], filters: tuple[str, ...], repository: str | None) -> list[Any]:
    import fnmatch

    from stackctl.runtime.images import view

    out = images
    if repository:
        repo, _, tag = repository.partition(":") if repository.rfind(":") > repository.rfind("/") else (repository, "", "")
        out = [i for i in out if any(view.split_tag(t)[0] == repo and (not tag or view.split_tag(t)[1] == tag)
                                     for t in i.repo_tags)]
    for f in filters:
        key, _, value = f.partition("=")
        if key == "dangling":
            want = value.lower() in ("true", "1")
            out = [i for i in out if (not i.repo_tags) == want]
        elif key == "reference":
            out = [i for i in out if any(fnmatch.fnmatchcase(t, value) or fnmatch.fnmatchcase(view.split_tag(t)[0], value)
                                         for t in i.repo_tags)]
        elif key == "label":
            k, eq, v = value.partition("=")
            out = [i for i in out if k in ((i.config.get("config") or {}).get("Labels") or {})
                   and (not eq or i.config["config"]["Labels"][k] == v)]
        else:
            raise UsageError(f"invalid filter {key!r}", hint="supported: dangling, reference, label")
    return out


# --- inspect / history --------------------------------------------------------------------

@image.command("inspect")
@click.option("-f", "--format", "fmt", default="", help="Format the output using a Go template.")
@click.argument("images", nargs=-1, required=True)
def inspect(fmt: str, images: tuple[str, ...]) -> None:
    """Display detailed information on one or more images."""
    from stackctl.runtime.images import view

    store = _store()
    inspect_each(images, lambda ref: view.inspect(store.resolve(ref)), fmt)


@image.command("history")
@click.option("-H", "--human", default=True, type=bool, help="Print sizes and dates in human readable format.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--format", "fmt", default="", help="table (default) or json.")
@click.argument("image_ref", metavar="IMAGE")
def history(human: bool, quiet: bool, no_trunc: bool, fmt: str, image_ref: str) -> None:
    """Show the history of an image."""
    from stackctl.cli import format as F
    from stackctl.runtime.images import view

    store = _store()
    img = store.resolve(image_ref)
    sizes = [int(store.layer_meta(d).get("size", 0)) for d in img.diff_ids]
    rows = view.history_rows(img, sizes)
    if quiet:
        click.echo("\n".join(r["ID"] for r in rows))
        return
    if fmt == "json":
        click.echo(F.to_json_lines(rows))
        return
    table_rows = []
    for r in rows:
        created_by = r["CreatedBy"]
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        table_rows.append([r["ID"], r["CreatedSince"] if human else r["Created"], created_by,
                           view.human_size(r["Size"]) if human else str(r["Size"]), r["Comment"]])
    click.echo(F.table(("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"), table_rows))


# --- tag / rm / prune ---------------------------------------------------------------------

@image.command("tag")
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    _store().tag(source, target)


@image.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force removal of the image (untags it if a container uses it).")
@click.option("--no-prune", is_flag=True, hidden=True)
@click.argument("images", nargs=-1, required=True)
def rm(force: bool, no_prune: bool, images: tuple[str, ...]) -> None:
    """Remove one or more images."""
    store = _store()

    def one(ref: str) -> None:
        for line in store.remove(ref, force=force, in_use=_in_use):
            click.echo(line)

    for_each(images, one)


@image.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all images not used by a container, not just dangling ones.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--build-cache", is_flag=True, help="Also remove the build cache.")
def prune(all_: bool, force: bool, build_cache: bool) -> None:
    """Remove unused images."""
    from stackctl.runtime.images import view

    if not force:
        what = "all images without at least one container associated to them" if all_ else "all dangling images"
        click.echo(f"WARNING! This will remove {what}.")
        if not click.confirm("Are you sure you want to continue?", default=False):
            return
    lines, reclaimed = _store().prune(all=all_, in_use=_in_use, build_cache=build_cache)
    print_pruned("Images", lines, view.human_size(reclaimed))


# --- load / save / import -----------------------------------------------------------------

@image.command("load")
@click.option("-i", "--input", "input_", default="-", help="Read from tar archive file, instead of STDIN.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
def load(input_: str, quiet: bool) -> None:
    """Load images from a tar archive (docker save or OCI archive; gzip/zstd ok)."""
    from stackctl.runtime.images import archive

    if input_ == "-":
        if sys.stdin.isatty():
            raise UsageError("requested load from stdin, but stdin is a terminal", hint="use -i FILE or pipe an archive in")
        lines = archive.load(_store(), sys.stdin.buffer)
    else:
        lines = archive.load(_store(), input_)
    if not quiet:
        click.echo("\n".join(lines))


@image.command("have", hidden=True)
@click.argument("names", nargs=-1)
def have(names: tuple[str, ...]) -> None:
    """Print which of the given blob digests and image ids this node's store has (what
    `up` asks a node before it sends an image: only the layers it lacks travel)."""
    store = _store()
    for name in names:
        if name.startswith("image:"):
            try:
                found = store.resolve(name[len("image:"):]).id
            except Exception:  # noqa: BLE001 - not there (or a bad name): not listed
                continue
            if found == name[len("image:"):]:
                click.echo(name)
        elif store.has_blob(name):
            click.echo(name)


@image.command("save")
@click.option("-o", "--output", default="-", help="Write to a file, instead of STDOUT.")
@click.argument("images", nargs=-1, required=True)
def save(output: str, images: tuple[str, ...]) -> None:
    """Save images to a tar archive (docker-save and OCI layout in one)."""
    import os

    from stackctl.runtime.images import archive

    store = _store()
    for ref in images:
        store.resolve(ref)  # fail before writing anything
    if output == "-":
        if sys.stdout.isatty():
            raise UsageError("cowardly refusing to write an archive to a terminal", hint="use -o FILE or redirect stdout")
        archive.save(store, list(images), sys.stdout.buffer)
        return
    _check_output_path(output)
    tmp = f"{output}.tmp{os.getpid()}"
    try:
        try:
            f = open(tmp, "wb")
        except OSError as exc:
            raise StackctlError(f"failed to save image: cannot write {output}: {exc.strerror}") from None
        with f:
            archive.save(store, list(images), f)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_output_path(output: str) -> None:
    """Docker's checks of ``save -o``: a directory, or a missing parent, is one line."""
    import os

    if os.path.isdir(output):
        raise StackctlError(f"failed to save image: invalid output path: {output!r} is a directory",
                            hint="give a file name, e.g. -o image.tar")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise StackctlError(f"failed to save image: invalid output path: directory {parent!r} does not exist")


@image.command("import")
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction to the image (CMD, ENV, ...).")
@click.option("-m", "--message", default="", help="Set a commit message for the imported image.")
@click.argument("source")
@click.argument("reference", required=False)
def import_(changes: tuple[str, ...], message: str, source: str, reference: str | None) -> None:
    """Import a root filesystem tarball (or directory, or - for stdin) as an image."""
    from stackctl.runtime.images import archive

    src: Any = sys.stdin.buffer if source == "-" else source
    img = archive.import_rootfs(_store(), src, reference or "", changes=list(changes), message=message)
    click.echo(img.id)


# --- build ----------------------------------------------------------------------------------

@image.command("build")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and optionally a tag (name:tag).")
@click.option("-f", "--file", "dockerfile", default=None, help="Name of the Dockerfile (default: CONTEXT/Dockerfile; - for stdin).")
@click.option("--build-arg", "build_args", multiple=True, help="Set a build-time variable (K=V, or K to take it from the environment).")
@click.option("--target", default="", help="Set the target build stage to build.")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the build output and print image ID on success.")
@click.option("--network", default="host", type=click.Choice(["host", "none"]), help="Network for RUN steps (default host).")
@click.argument("context", metavar="CONTEXT")
def build(tags: tuple[str, ...], dockerfile: str | None, build_args: tuple[str, ...], target: str,
          no_cache: bool, quiet: bool, network: str, context: str) -> None:
    """Build an image from a Dockerfile."""
    import os

    from stackctl.runtime.images.build.builder import BuildOptions, build as do_build

    args: dict[str, str] = {}
    for item in build_args:
        k, eq, v = item.partition("=")
        if not eq:
            if k not in os.environ:
                continue
            v = os.environ[k]
        args[k] = v
    text = None
    if dockerfile == "-":
        text = sys.stdin.read()
    opts = BuildOptions(context=context, dockerfile=dockerfile if dockerfile != "-" else None,
                        dockerfile_text=text, tags=list(tags), build_args=args, target=target,
                        no_cache=no_cache, network=network)
    log = (lambda _line: None) if quiet else (lambda line: click.echo(line))
    img = do_build(_paths(), _store(), opts, log=log, step_output=None if not quiet else "devnull")
    if quiet:
        click.echo(img.id)


@image.command("build-busybox", hidden=True)
@click.option("-t", "--tag", default="stackctl/busybox:latest", help="Name of the image.")
@click.option("--busybox", default="", help="The static busybox binary (default: the one on PATH).")
@click.option("-q", "--quiet", is_flag=True)
def build_busybox(tag: str, busybox: str, quiet: bool) -> None:
    """Build the offline busybox base image from Debian's busybox-static."""
    from stackctl.runtime.images.busybox import make_busybox_image

    log = (lambda _line: None) if quiet else (lambda line: click.echo(line))
    img = make_busybox_image(_paths(), _store(), tag=tag, busybox=busybox or None, log=log)
    if quiet:
        click.echo(img.id)


# --- pull / push (registry_cmd holds them; importing it costs only click) -------------------

def _add_registry_commands() -> None:
    from stackctl.cli.registry_cmd import pull, push

    image.add_command(pull)
    image.add_command(push)


_add_registry_commands()
