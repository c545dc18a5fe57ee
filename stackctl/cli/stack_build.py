"""``up --build``: build the images of services that have a ``build:`` section, on this node,
before the stack is sent to the agent (the agent then finds them in the node's image store).

The image is the service's ``image:`` when it has one, else ``<project>-<service>`` (as
Compose names it). Builds run one after the other; each reports ``build`` progress events
through the same renderer as the deploy.
"""

from __future__ import annotations

import os
import time
from typing import Any


def image_name(project_name: str, service_name: str, service: Any) -> str:
    return getattr(service, "image", None) or f"{project_name}-{service_name}"


def build_services(project: Any, only: tuple[str, ...], fmt: str) -> None:
    from stackctl.cli.progress import renderer_for
    from stackctl.paths import default_paths
    from stackctl.runtime.images.build.builder import BuildOptions, build
    from stackctl.runtime.images.store import ImageStore

    todo = [(name, svc) for name, svc in sorted(project.stack.services.items())
            if getattr(svc, "build", None) is not None and (not only or name in only)]
    if not todo:
        return
    out = renderer_for(fmt, title=f"Building {project.name}")
    paths = default_paths()
    store = ImageStore(paths.images)
    for name, svc in todo:
        b = svc.build
        event = {"stack": project.name, "service": name, "action": "build"}
        out.event({**event, "time": time.time(), "status": "started", "message": ""})
        context = b.context if os.path.isabs(b.context) else os.path.join(project.directory,
                                                                          b.context)
        dockerfile = b.dockerfile if os.path.isabs(b.dockerfile) else os.path.join(context,
                                                                                   b.dockerfile)
        opts = BuildOptions(context=context, dockerfile=dockerfile,
                            tags=[image_name(project.name, name, svc)],
                            build_args={k: v for k, v in (b.args or {}).items() if v is not None},
                            target=b.target or "")
        img = build(paths, store, opts, log=lambda _line: None, step_output="devnull")
        out.event({**event, "time": time.time(), "status": "done", "message": img.id[:19]})
    out.close()
