"""The agent methods that serve this node to a remote manager: ``node.*`` (docs/agent-api.md,
"Node methods"). Each is one call of :class:`~stackctl.node.local.LocalNode`, its
parameters and result in the wire forms of :mod:`stackctl.node.interface`.

Only a manager calls these: on a worker, the manager's own SSH key is authorized for
``stackctl agent dial-stdio`` and nothing else (docs/nodes.md).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any

from stackctl.agent.server import Method, RequestContext
from stackctl.errors import StackctlError, UsageError
from stackctl.node.interface import ContainerRequest, file_from_json, info_to_json
from stackctl.node.local import LocalNode


def _str(p: dict[str, Any], key: str, *, default: str | None = None) -> str:
    value = p.get(key, default)
    if not isinstance(value, str):
        raise UsageError(f"parameter {key!r} must be a string")
    return value


def _opt_str(p: dict[str, Any], key: str) -> str | None:
    value = p.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"parameter {key!r} must be a string")
    return value


def _labels(p: dict[str, Any]) -> dict[str, str] | None:
    value = p.get("labels")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise UsageError("parameter 'labels' must map strings to strings")
    return value


def _str_list(p: dict[str, Any], key: str) -> list[str]:
    value = p.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"parameter {key!r} must be a list of strings")
    return value


class StaleRequest(StackctlError):
    """A change from a manager whose fencing token is older than one this node has seen."""


class Fence:
    """This node's fencing token: the highest (term, generation) a manager has shown it,
    kept in ``<state>/fence.json``. A change carrying an older token is refused."""

    def __init__(self, state_dir: str | None) -> None:
        self.path = os.path.join(state_dir, "fence.json") if state_dir else None
        self.token: tuple[int, int] = (0, 0)
        if self.path and os.path.exists(self.path):
            try:
                with open(self.path) as f:
                    t = json.load(f)
                self.token = (int(t[0]), int(t[1]))
            except (OSError, ValueError, TypeError, IndexError):
                pass

    @staticmethod
    def parse(value: Any) -> tuple[int, int] | None:
        if value is None:
            return None
        if not (isinstance(value, list) and len(value) == 2 and
                all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise UsageError("parameter 'fence' must be [term, generation]")
        return (value[0], value[1])

    def check(self, value: Any) -> None:
        token = self.parse(value)
        if token is not None and token < self.token:
            raise StaleRequest(f"a stale request (fencing token {list(token)} is older than "
                                f"{list(self.token)}): a manager that no longer owns this "
                                "node's tasks sent it; refused")

    def raise_to(self, value: Any) -> None:
        token = self.parse(value)
        if token is None or token <= self.token:
            return
        self.token = token
        if self.path:
            tmp = self.path + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(list(token), f)
            os.replace(tmp, self.path)


def node_methods(node: LocalNode, fence: Fence | None = None) -> dict[str, Method]:
    """The ``node.*`` methods of the agent API, on ``node``; ``fence``: this node's fencing
    token (default: kept in the node's state directory)."""
    fence = fence if fence is not None else Fence(node.paths.state)

    async def containers(req: RequestContext) -> list[dict[str, Any]]:
        return [info_to_json(c) for c in
                await node.list_containers(stack=_opt_str(req.params, "stack"))]

    async def create(req: RequestContext) -> dict[str, Any]:
        r = ContainerRequest.from_json(req.params.get("request") or {})
        return {"id": await node.create_container(r.opts, **r.kwargs())}

    def on_container(fn: Callable[..., Any]) -> Callable[[RequestContext], Any]:
        async def call(req: RequestContext) -> Any:
            return await fn(req.params, _str(req.params, "id"))
        return call

    async def stop(p: dict[str, Any], cid: str) -> None:
        timeout = p.get("timeout")
        if timeout is not None and not isinstance(timeout, (int, float)):
            raise UsageError("parameter 'timeout' must be a number")
        await node.stop_container(cid, timeout)

    async def ensure_network(req: RequestContext) -> dict[str, Any]:
        p = req.params
        made = await node.ensure_network(
            _str(p, "name"), internal=bool(p.get("internal")),
            attachable=bool(p.get("attachable")), subnet=_opt_str(p, "subnet"),
            gateway=_opt_str(p, "gateway"), labels=_labels(p))
        return {"created": made}

    async def ensure_volume(req: RequestContext) -> dict[str, Any]:
        p = req.params
        opts = p.get("driver_opts")
        if opts is not None and not isinstance(opts, dict):
            raise UsageError("parameter 'driver_opts' must be an object")
        return {"created": await node.ensure_volume(_str(p, "name"), labels=_labels(p),
                                                    driver_opts=opts)}

    async def write_files(req: RequestContext) -> None:
        p = req.params
        files = [file_from_json(f) for f in p.get("files") or []]
        raw = p.get("contents") or {}
        if not isinstance(raw, dict):
            raise UsageError("parameter 'contents' must be an object")
        contents = {k: base64.b64decode(v) for k, v in raw.items()}
        await node.write_task_files(_str(p, "stack"), _str(p, "service"),
                                    _str(p, "config_hash"), files, contents)

    async def simple(req: RequestContext, fn: Callable[..., Any], *keys: str) -> Any:
        return await fn(*(_str(req.params, k) for k in keys))

    def m(fn: Callable[..., Any], *keys: str) -> Method:
        async def call(req: RequestContext) -> Any:
            return await simple(req, fn, *keys)
        return Method(call)

    async def raise_fence(req: RequestContext) -> dict[str, Any]:
        fence.raise_to(req.params.get("fence"))
        return {"fence": list(fence.token)}

    table = {
        "node.containers": Method(containers),
        "node.container.create": Method(create),
        "node.container.start": m(node.start_container, "id"),
        "node.container.stop": Method(on_container(stop)),
        "node.container.kill": Method(on_container(
            lambda p, cid: node.kill_container(cid, _str(p, "signal", default="SIGKILL")))),
        "node.container.remove": Method(on_container(
            lambda p, cid: node.remove_container(cid, volumes=bool(p.get("volumes"))))),
        "node.container.inspect": m(node.inspect_container, "id"),
        "node.network.ensure": Method(ensure_network),
        "node.network.remove": m(node.remove_network, "name"),
        "node.volume.ensure": Method(ensure_volume),
        "node.volume.remove": m(node.remove_volume, "name"),
        "node.image.id": m(node.image_id, "ref"),
        "node.image.config": m(node.image_config, "ref"),
        "node.image.pull": Method(lambda req: node.pull_image(
            _str(req.params, "ref"), policy=_str(req.params, "policy", default="missing"),
            auth=req.params.get("auth") if isinstance(req.params.get("auth"), dict) else None)),
        "node.serving.set": Method(on_container(
            lambda p, cid: node.set_serving(cid, bool(p.get("serving"))))),
        "node.service.publish": Method(lambda req: node.publish_service(
            _str(req.params, "stack"), _str(req.params, "service"),
            _str_list(req.params, "ports"), _str_list(req.params, "networks"))),
        "node.service.unpublish": m(node.unpublish_service, "stack", "service"),
        "node.overlay.sync": Method(lambda req: node.overlay_sync(
            req.params.get("view") or {})),
        "node.overlay.caps": Method(lambda req: node.overlay_caps()),
        "node.files.write": Method(write_files),
        "node.files.has": m(node.has_task_files, "stack", "service", "config_hash"),
        "node.files.prune": Method(lambda req: node.prune_task_files(
            _str(req.params, "stack"), _str_list(req.params, "keep"))),
        "node.files.remove": m(node.remove_task_files, "stack"),
    }
    from stackctl.node.remote import CHANGES

    def checked(method: Method) -> Method:
        async def call(req: RequestContext) -> Any:
            fence.check(req.params.get("fence"))
            return await method.fn(req)
        return Method(call, stream=method.stream)

    out = {name: checked(m_) if name in CHANGES else m_ for name, m_ in table.items()}
    out["node.fence"] = Method(raise_fence)
    return out
