"""The unix-socket transport: a trio stream to an agent socket on this machine (the manager's
own node, or ``stackctl agent dial-stdio`` on a remote one)."""

from __future__ import annotations

import errno

import trio

from stackctl.agent.client import AgentUnavailable, short_address


async def connect_unix(path: str) -> trio.SocketStream:
    """A stream connected to the agent socket ``path`` (any length: a path longer than
    sun_path goes through ``/proc/self/fd``). :class:`AgentUnavailable` when nobody listens."""
    try:
        with short_address(path) as addr:
            return await trio.open_unix_socket(addr)
    except OSError as exc:
        hint = ("start it with `stackctl agent serve`"
                if exc.errno in (errno.ENOENT, errno.ECONNREFUSED) else None)
        raise AgentUnavailable(f"the agent does not answer on {path}: "
                               f"{exc.strerror or exc}", hint=hint) from None
