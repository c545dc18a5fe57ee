"""A node reached over the agent protocol: :class:`~stackctl.node.interface.NodeClient` as
``node.*`` requests (:mod:`stackctl.node.service`) on an
:class:`~stackctl.transport.aclient.AsyncAgentClient` — over SSH for another host, or a unix
socket.

Every request is bounded (:data:`CALL_TIMEOUT`, longer for a create and a stop); a lost
connection raises :class:`~stackctl.transport.errors.NodeUnreachable` naming the node. A
create is keyed by its task id on the node, so retrying one whose reply was lost makes no
second container.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from stackctl.net.sandbox import Attachment
from stackctl.node.interface import ContainerRequest, file_to_json, info_from_json
from stackctl.runtime.imageconfig import RunOptions
from stackctl.scheduler.observed import ContainerInfo

CALL_TIMEOUT = 60.0
CREATE_TIMEOUT = 300.0  # a create may copy an image's content into a new volume
PULL_TIMEOUT = 1800.0  # a pull downloads an image (bounded per request by the registry client)


#: the requests that change the node: they carry the manager's fencing token
CHANGES = frozenset({
    "node.container.create", "node.container.start", "node.container.stop",
    "node.container.kill", "node.container.remove", "node.network.ensure",
    "node.network.remove", "node.volume.ensure", "node.volume.remove", "node.serving.set",
    "node.service.publish", "node.service.unpublish", "node.files.write", "node.files.prune",
    "node.files.remove"})


class RemoteNode:
    def __init__(self, name: str, client: Any) -> None:
        self.name = name
        self.client = client  # AsyncAgentClient (or anything with its `call`)
        #: the manager's fencing token (term, the node's generation): the node refuses a
        #: change that carries an older one (docs/cluster.md, "Liveness and fencing")
        self.token: tuple[int, int] | None = None

    async def _call(self, method: str, params: dict[str, Any] | None = None, *,
                    timeout: float = CALL_TIMEOUT) -> Any:
        params = dict(params or {})
        if self.token is not None and method in CHANGES:
            params["fence"] = list(self.token)
        return await self.client.call(method, params, timeout=timeout)

    async def raise_fence(self) -> None:
        """Make this manager's token the node's: older changes are refused from now on."""
        if self.token is not None:
            await self.client.call("node.fence", {"fence": list(self.token)},
                                   timeout=CALL_TIMEOUT)

    # -- containers --------------------------------------------------------------------------

    async def list_containers(self, *, stack: str | None = None) -> list[ContainerInfo]:
        found = await self._call("node.containers", {"stack": stack})
        return [info_from_json(c, node=self.name) for c in found]

    async def create_container(self, opts: RunOptions, *, name: str,
                               networks: list[Attachment] | None = None,
                               ports: list[str] | None = None, service: str = "",
                               endpoint_mode: str = "vip",
                               health: dict[str, Any] | None = None) -> str:
        req = ContainerRequest(opts, name, list(networks or []), list(ports or []), service,
                               endpoint_mode, health)
        result = await self._call("node.container.create", {"request": req.to_json()},
                                  timeout=CREATE_TIMEOUT)
        return str(result["id"])

    async def start_container(self, cid: str) -> None:
        await self._call("node.container.start", {"id": cid}, timeout=CREATE_TIMEOUT)

    async def stop_container(self, cid: str, timeout: float | None = None) -> None:
        await self._call("node.container.stop", {"id": cid, "timeout": timeout},
                         timeout=CALL_TIMEOUT + (timeout or 10.0))

    async def kill_container(self, cid: str, signal: str = "SIGKILL") -> None:
        await self._call("node.container.kill", {"id": cid, "signal": signal})

    async def remove_container(self, cid: str, *, volumes: bool = False) -> None:
        await self._call("node.container.remove", {"id": cid, "volumes": volumes},
                         timeout=CALL_TIMEOUT * 2)

    async def inspect_container(self, cid: str) -> dict[str, Any]:
        return await self._call("node.container.inspect", {"id": cid})

    # -- networks and volumes ----------------------------------------------------------------

    async def ensure_network(self, name: str, *, internal: bool = False,
                             attachable: bool = False, subnet: str | None = None,
                             gateway: str | None = None,
                             labels: dict[str, str] | None = None) -> bool:
        result = await self._call("node.network.ensure", {
            "name": name, "internal": internal, "attachable": attachable, "subnet": subnet,
            "gateway": gateway, "labels": labels})
        return bool(result["created"])

    async def remove_network(self, name: str) -> None:
        await self._call("node.network.remove", {"name": name})

    async def ensure_volume(self, name: str, *, labels: dict[str, str] | None = None,
                            driver_opts: dict[str, str] | None = None) -> bool:
        result = await self._call("node.volume.ensure", {"name": name, "labels": labels,
                                                         "driver_opts": driver_opts})
        return bool(result["created"])

    async def remove_volume(self, name: str) -> None:
        await self._call("node.volume.remove", {"name": name})

    # -- images ------------------------------------------------------------------------------

    async def image_id(self, ref: str) -> str | None:
        return await self._call("node.image.id", {"ref": ref})

    async def image_config(self, ref: str) -> dict[str, Any] | None:
        return await self._call("node.image.config", {"ref": ref})

    async def pull_image(self, ref: str, *, policy: str = "missing",
                         auth: dict[str, Any] | None = None,
                         progress: Any = None) -> dict[str, Any]:
        """The node pulls ``ref`` itself; ``auth`` travels with this request only (its
        transfer progress stays on the node)."""
        params: dict[str, Any] = {"ref": ref, "policy": policy}
        if auth:
            params["auth"] = dict(auth)
        return await self._call("node.image.pull", params, timeout=PULL_TIMEOUT)

    async def build_image(self, context: str, *, dockerfile: str, tag: str,
                          args: dict[str, str], target: str | None) -> str:
        from stackctl.errors import StackctlError

        raise StackctlError(f"node {self.name}: images are built where the CLI runs and "
                            "sent to the nodes, never built on a remote node")

    # -- serving state -----------------------------------------------------------------------

    async def set_serving(self, container_id: str, serving: bool) -> None:
        await self._call("node.serving.set", {"id": container_id, "serving": serving})

    async def publish_service(self, stack: str, service: str, ports: list[str],
                              networks: list[str]) -> None:
        await self._call("node.service.publish", {"stack": stack, "service": service,
                                                  "ports": list(ports),
                                                  "networks": list(networks)})

    async def unpublish_service(self, stack: str, service: str) -> None:
        await self._call("node.service.unpublish", {"stack": stack, "service": service})

    # -- overlay networks --------------------------------------------------------------------

    async def overlay_sync(self, view: dict[str, Any]) -> dict[str, Any]:
        return await self._call("node.overlay.sync", {"view": view})

    async def overlay_caps(self) -> dict[str, Any]:
        return await self._call("node.overlay.caps")

    # -- task files --------------------------------------------------------------------------

    async def write_task_files(self, stack: str, service: str, config_hash: str,
                               files: list[Any], contents: Mapping[str, bytes]) -> None:
        wanted = {f.ref for f in files}
        await self._call("node.files.write", {
            "stack": stack, "service": service, "config_hash": config_hash,
            "files": [file_to_json(f) for f in files],
            # only the contents these files need travel (inside the SSH channel)
            "contents": {k: base64.b64encode(v).decode() for k, v in contents.items()
                         if k in wanted}})

    async def has_task_files(self, stack: str, service: str, config_hash: str) -> bool:
        return bool(await self._call("node.files.has", {
            "stack": stack, "service": service, "config_hash": config_hash}))

    async def prune_task_files(self, stack: str, keep: list[str]) -> None:
        await self._call("node.files.prune", {"stack": stack, "keep": list(keep)})

    async def remove_task_files(self, stack: str) -> None:
        await self._call("node.files.remove", {"stack": stack})
