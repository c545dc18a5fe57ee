"""The stack verbs' side of the agent API: connect (starting the local agent when needed),
call, stream with cancel on Ctrl-C, and the agent's error codes as exit statuses.

Blocking and light: :mod:`stackctl.agent.client` (plain socket + the sans-IO protocol) is
imported only when a verb talks to the agent, and neither trio nor asyncio ever is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from stackctl.errors import StackctlError, UsageError

# The agent's error codes (docs/agent-api.md) -> exit status of the CLI.
EXIT_FOR_CODE = {"bad_request": 2, "not_found": 1, "conflict": 1, "failed": 1, "internal": 1,
                 "cancelled": 130}


class StackCommandError(StackctlError):
    """An agent call of a stack verb failed; ``exit_code`` follows the agent's error code."""

    def __init__(self, message: str, *, code: str = "failed", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.exit_code = EXIT_FOR_CODE.get(code, 1)


def error_code(exc: BaseException) -> str:
    """The agent's error code carried by an exception from the client (``failed`` if none)."""
    for attr in ("code", "error_code"):
        code = getattr(exc, attr, None)
        if isinstance(code, str):
            return code
    info = getattr(exc, "error", None) or getattr(exc, "info", None)
    code = getattr(info, "code", None) or (info.get("code") if isinstance(info, dict) else None)
    return code if isinstance(code, str) else "failed"


def node_paths():
    from stackctl.paths import default_paths

    return default_paths()


#: the stack the running verb acts on (its inventory decides which manager it talks to)
_selected: Any = None
#: how long a verb waits for the manager to reach the inventory's nodes before it goes on
#: (a node still unreachable then is named by whatever needs it)
CONNECT_WAIT = 20.0


def select_stack(stack: Any) -> None:
    global _selected
    _selected = stack


def selected_inventory() -> Any:
    """The inventory of the selected stack, or None (this machine alone)."""
    if _selected is None:
        return None
    path = _selected.inventory_file()
    if path is None:
        return None
    from stackctl.cluster.inventory import load_inventory

    inv = load_inventory(path)
    return inv if inv.nodes else None


def inventory_params(inv: Any) -> dict[str, Any]:
    """``cluster.update_inventory``'s params (:func:`stackctl.cluster.connect.inventory_params`)
    and the manager's liveness settings from this environment (``STACKCTL_HEARTBEAT``,
    ``STACKCTL_DOWN_AFTER``), when set."""
    import os

    from stackctl.cluster.connect import inventory_params as base

    params = base(inv)
    liveness = {key: float(os.environ[env]) for key, env in (
        ("heartbeat", "STACKCTL_HEARTBEAT"), ("down_after", "STACKCTL_DOWN_AFTER"))
        if os.environ.get(env)}
    if liveness:
        params["liveness"] = liveness
    return params


class Agent:
    """A connection to the stack's manager: the local agent (started when its socket does not
    answer), or — with an inventory whose manager is another machine — that machine's agent
    over SSH. With an inventory, the manager is first told the inventory and given a moment
    to connect to its nodes."""

    def __init__(self, paths: Any = None, *, start: bool = True) -> None:
        try:
            from stackctl.agent.client import AgentClient, ensure_agent
        except ImportError:  # pragma: no cover - until the agent lands
            raise StackctlError("the agent is not available in this build of stackctl") from None
        self.paths = paths or node_paths()
        inv = selected_inventory() if paths is None else None
        from stackctl.cluster.connect import manager_client, manager_is_local

        if inv is not None and not manager_is_local(inv):
            # No read timeout: `up --wait` may spend minutes between events (a health
            # check's start period); Ctrl-C is how a person gives up, --wait-timeout how a
            # script does.
            self.client = manager_client(inv, timeout=None)
            self.client.connect()
        else:
            if start:
                ensure_agent(self.paths)
            self.client = AgentClient(self.paths, timeout=None)
        if inv is not None:
            params = inventory_params(inv)
            params["wait"] = CONNECT_WAIT
            result = self.call("cluster.update_inventory", params)
            import click

            for name in result.get("unreachable") or []:
                why = next((r.get("error") for r in result.get("nodes") or []
                            if r.get("name") == name), "") or "not connected"
                click.echo(f"warning: node {name} does not answer the manager: {why}",
                           err=True)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        try:
            return self.client.call(method, params or {})
        except StackctlError as exc:
            raise _wrap(exc) from None

    def stream(self, method: str, params: dict[str, Any] | None,
               on_event: Callable[[dict[str, Any]], None],
               on_interrupt: Callable[[], None] | None = None) -> None:
        """Feed every event to ``on_event`` until ``end``. The first Ctrl-C sends ``cancel``
        and keeps reading (the agent finishes cleanly and says what it did), a second one
        stops reading at once; both end in ``KeyboardInterrupt``."""
        it = self.client.stream(method, params or {})
        interrupted = False
        try:
            while True:
                try:
                    event = next(it)
                except StopIteration:
                    break
                except KeyboardInterrupt:
                    if interrupted or not _cancel(it):
                        if on_interrupt and not interrupted:
                            on_interrupt()  # closing the stream below sends cancel
                        raise
                    interrupted = True
                    if on_interrupt:
                        on_interrupt()
                    continue
                on_event(event)
        except StackctlError as exc:
            if interrupted or error_code(exc) == "cancelled":
                raise KeyboardInterrupt from None
            raise _wrap(exc) from None
        except KeyboardInterrupt:
            _close(it)
            raise
        if interrupted:
            raise KeyboardInterrupt

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close:
            close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _cancel(it: Iterator[Any]) -> bool:
    """Ask the agent to cancel the request behind ``it``; False when the client cannot."""
    cancel = getattr(it, "cancel", None)
    if cancel is None:
        return False
    try:
        cancel()
    except Exception:  # noqa: BLE001 - the connection may be gone; closing still works
        return False
    return True


def _close(it: Iterator[Any]) -> None:
    close = getattr(it, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:  # noqa: BLE001
        pass


def _wrap(exc: StackctlError) -> StackctlError:
    if isinstance(exc, (StackCommandError, UsageError)) or getattr(exc, "code", None) is None \
            and getattr(exc, "error", None) is None:
        return exc
    return StackCommandError(exc.message, code=error_code(exc), hint=exc.hint)
