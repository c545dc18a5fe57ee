"""A click group whose subcommands are imported only when they are run.

`stackctl --help` must stay fast, so the top-level group knows its commands by name and
import path, and imports a command's module (and whatever heavy library it needs) only when
that command is invoked or its own help is asked for.
"""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """Subcommands given as ``{name: ("module.path:attr", "one-line help")}``."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        present = {name for name, (target, _) in self.lazy.items() if _module_exists(target)}
        return sorted(set(super().list_commands(ctx)) | present)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and _module_exists(self.lazy[name][0]):
            target, _ = self.lazy[name]
            module_name, attr = target.split(":")
            cmd = getattr(importlib.import_module(module_name), attr)
            if not isinstance(cmd, click.Command):  # pragma: no cover - a wiring bug
                raise TypeError(f"{target} is not a click command")
            return cmd
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text without importing every command module.
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                rows.append((name, self.lazy[name][1]))
            else:
                cmd = super().get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=80)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(target: str) -> bool:
    import importlib.util

    module_name = target.split(":")[0]
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:
        return False
