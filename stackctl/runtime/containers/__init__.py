"""The execution core: namespaces, root filesystem, cgroups, the per-container monitor.

Import the submodules directly (``from stackctl.runtime.containers import api``); this package
imports nothing itself, so the monitor and the setup child stay small and fast to start.
"""
