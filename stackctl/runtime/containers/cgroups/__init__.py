"""cgroups for containers, v1 and v2, each in stackctl's own subtree only.

``detect.layout()`` reads /proc/self/mountinfo and says which version this host uses;
``detect.open_cgroup(layout, parent, id)`` returns a :class:`~.v1.V1Cgroup` or
:class:`~.v2.V2Cgroup` with the same methods: create, procs_files, pids, stats, oom_kills,
kill_all, remove.
"""
