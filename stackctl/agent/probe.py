"""Run one health-check probe in a container: ``python3 -m stackctl.agent.probe STATE RUN
CGROUP_PARENT CID ARGV_JSON``. Exits with the probe's exit code; its stdout and stderr are the
probe's output.

Why a process of its own: :func:`~stackctl.runtime.containers.exec.exec_in_container` forks and
hands the command the *caller's* stdio. In the agent that would be the agent's log, and a fork
of a multi-threaded trio process is best avoided. Here the agent gives the probe pipes, kills
the whole process group when the probe outlives its timeout, and the agent's own state is never
at risk.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    state, run, cgroup_parent, cid, command = argv
    from stackctl.paths import NodePaths
    from stackctl.runtime.containers.exec import ExecError, exec_in_container

    fd = os.open("/dev/null", os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    paths = NodePaths(state=state, run=run, cgroup_parent=cgroup_parent)
    try:
        return exec_in_container(paths, cid, json.loads(command), stdin=False)
    except ExecError as exc:
        print(exc.message, file=sys.stderr)
        return exc.container_exit_code
    except Exception as exc:  # noqa: BLE001 - the probe's output is the report
        print(f"health check could not run: {exc}", file=sys.stderr)
        return 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
