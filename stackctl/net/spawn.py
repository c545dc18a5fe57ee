"""Starting a node's detached helper daemons (the DNS server, encrypted-overlay tunnels)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time


def spawn_daemon(module: str, args: list[str], timeout: float) -> str | None:
    """Run ``python -m module *args FD`` in a new session (no stdio, cwd ``/``) and return what
    it writes on FD until it closes it — its report, e.g. the daemon's pid once it serves, or
    why it could not start; None when nothing ended within ``timeout`` seconds. The first
    process is waited for (it exits once it has forked the daemon)."""
    r, w = os.pipe()
    try:
        p = subprocess.Popen([sys.executable, "-m", module, *args, str(w)], pass_fds=(w,),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, cwd="/")
    finally:
        os.close(w)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(r, 4096)
            if not chunk:
                return data.decode(errors="replace")
            data += chunk
    finally:
        os.close(r)
        p.wait()
