"""Secret and config files: their contents, and the files tasks bind-mount.

Layout: ``<run>/secrets/<stack>/`` is a tmpfs of its own (mounted on the first deploy that
needs it, unmounted by ``remove``), so secret values never reach a persistent disk. Inside,
one directory per service *version* — ``<service>-<config hash[:12]>/`` — so that the old and
the new task of a start-first update each see their own contents. A version directory is
written completely in a temporary directory and renamed into place (a task never sees half a
file); files get the ref's uid/gid/mode (secrets 0400, configs 0444 by default).

Contents come from ``file`` (read on this node), ``environment`` (the variable's value in the
environment the CLI sent) or ``content`` (inline). The CLI sends the values it resolved as
``objects`` (``secret:<key>`` -> text); a value is never logged, labelled or stored in the
agent's database: the store keeps only digests.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterable, Mapping

from stackctl.errors import StackctlError
from stackctl.controller.taskspec import ObjectFile
from stackctl.spec.models import Stack

TMPFS_SIZE = "16m"


def stack_dir(run: str, stack: str) -> str:
    return os.path.join(run, "secrets", stack)


def version_dir(run: str, stack: str, service: str, config_hash: str) -> str:
    return os.path.join(stack_dir(run, stack), f"{service}-{config_hash[:12]}")


def decode_provided(objects: Mapping[str, str] | None) -> dict[str, bytes]:
    """The CLI's ``objects`` param: ``{"secret:pw": "base64:..."|"text"}`` -> bytes."""
    out = {}
    for key, value in (objects or {}).items():
        if value.startswith("base64:"):
            out[key] = base64.b64decode(value[len("base64:"):])
        else:
            out[key] = value.encode("utf-8")
    return out


def resolve_contents(stack: Stack, *, provided: Mapping[str, bytes],
                     environ: Mapping[str, str] | None = None,
                     read: Callable[[str], bytes] | None = None,
                     needed: Iterable[str] | None = None) -> dict[str, bytes]:
    """``secret:<key>`` / ``config:<key>`` -> content, for every object in ``needed`` (default:
    all). ``provided`` wins; then ``file`` (``read``), ``environment`` (``environ``),
    ``content``. A missing value is an error naming the object and where it was looked for."""
    environ = environ or {}

    def default_read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    read = read or default_read
    wanted = set(needed) if needed is not None else None
    out: dict[str, bytes] = {}
    for kind, objects in (("secret", stack.secrets), ("config", stack.configs)):
        for key, obj in objects.items():
            ref = f"{kind}:{key}"
            if wanted is not None and ref not in wanted:
                continue
            if ref in provided:
                out[ref] = provided[ref]
            elif obj.external:
                raise StackctlError(f"{kind} {key} is external: stackctl has no {kind} store "
                                    "yet", hint=f"give the {kind} a file, environment or "
                                    "content source")
            elif obj.file is not None:
                try:
                    out[ref] = read(obj.file)
                except OSError as exc:
                    raise StackctlError(f"{kind} {key}: cannot read {obj.file}: "
                                        f"{exc.strerror or exc}") from None
            elif obj.environment is not None:
                if obj.environment not in environ:
                    raise StackctlError(f"{kind} {key}: the environment variable "
                                        f"{obj.environment} is not set")
                out[ref] = environ[obj.environment].encode("utf-8")
            else:
                content = obj.content
                text = content.get_secret_value() if hasattr(content, "get_secret_value") \
                    else content
                if text is None or text == "<redacted>":
                    raise StackctlError(f"{kind} {key}: its inline content was not sent",
                                        hint="run `stackctl up` again from the stack file")
                out[ref] = text.encode("utf-8")
    return out


def _is_mountpoint(path: str) -> bool:
    from stackctl.runtime.containers.cgroups.detect import read_mounts

    return any(mnt == path for mnt, _root, _fstype, _opts in read_mounts())


def ensure_stack_tmpfs(run: str, stack: str, *, mount: bool | None = None) -> str:
    """The stack's secrets directory, a tmpfs (mounted when ``mount``; default: when root)."""
    path = stack_dir(run, stack)
    os.makedirs(path, mode=0o700, exist_ok=True)
    if mount is None:
        mount = os.geteuid() == 0
    if mount and not _is_mountpoint(os.path.realpath(path)):
        from stackctl.runtime.containers import linux
        linux.mount("tmpfs", path, "tmpfs", 0, f"mode=0700,size={TMPFS_SIZE}")
    return path


def write_version(run: str, stack: str, service: str, config_hash: str,
                  files: Iterable[ObjectFile], contents: Mapping[str, bytes], *,
                  chown: bool | None = None) -> str:
    """Write a version's files (once: an existing version directory is kept); its path."""
    files = list(files)
    final = version_dir(run, stack, service, config_hash)
    if os.path.isdir(final):
        return final
    if chown is None:
        chown = os.geteuid() == 0
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, mode=0o700)
    try:
        for f in files:
            if f.ref not in contents:
                raise StackctlError(f"service {service}: {f.kind} {f.key} has no content")
            path = os.path.join(tmp, f.filename)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, contents[f.ref])
            finally:
                os.close(fd)
            if chown:
                os.chown(path, f.uid, f.gid)
            os.chmod(path, f.mode)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def prune_versions(run: str, stack: str, keep: Iterable[str]) -> list[str]:
    """Remove version directories not named in ``keep`` (``<service>-<hash12>``)."""
    root = stack_dir(run, stack)
    keep = set(keep)
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return []
    for name in names:
        if name not in keep:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed.append(name)
    return removed


def remove_stack(run: str, stack: str) -> None:
    """Remove the stack's secrets (and unmount its tmpfs)."""
    path = stack_dir(run, stack)
    if not os.path.isdir(path):
        return
    real = os.path.realpath(path)
    if _is_mountpoint(real):
        from stackctl.runtime.containers import linux
        linux.umount2(real, linux.MNT_DETACH)
    shutil.rmtree(path, ignore_errors=True)
