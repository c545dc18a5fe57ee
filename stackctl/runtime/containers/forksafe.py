"""Import, before a fork, every module a forked child of the runtime imports.

The agent forks from threads (container starts, exec health probes, build steps run at once).
A module another thread is importing at the moment of a fork stays locked in the child for
ever — the thread holding its import lock does not exist there — so a child that imports it
hangs. Children therefore import nothing that is not loaded already: :func:`preload` loads
what they use (an import here waits for the importing thread to finish, as it should), and
costs a few dictionary look-ups once everything is loaded.
"""

from __future__ import annotations


def preload() -> None:
    import fcntl  # noqa: F401
    import json  # noqa: F401
    import resource  # noqa: F401
    import socket  # noqa: F401
    import stat  # noqa: F401

    from stackctl import trace  # noqa: F401
    from stackctl.runtime.containers import caps, fdio, linux, process, rootfs, seccomp, users  # noqa: F401
    from stackctl.runtime.containers.cgroups import detect, devices_bpf, v1, v2  # noqa: F401
