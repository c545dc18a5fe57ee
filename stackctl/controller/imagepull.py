"""A task's registry image on the node its container is about to be created on.

``up`` pulls a service's registry image on the nodes its tasks are placed on, by the digest it
resolved once for the deploy (:func:`~stackctl.controller.deploy.pull_service_image`). A task
placed later on another node — its node went down or was drained, and the reconcile pass
moves it — would find no image there. So before a task's container is created
(:func:`~stackctl.controller.taskops.start_task`), :func:`ensure_task_image` makes that node
hold the very image the deploy resolved: if the node's ``repo:tag`` is not that image, the node
pulls ``repo:tag@sha256:...`` (the digest, not the tag: a tag moved in the registry since
changes nothing), with the credentials ``up --with-registry-auth`` forwarded for the stack, if
any. Those stay in the manager's memory for the stack (the latest deploy's), never on disk and
never on the nodes; without them the node uses its own credentials, as at deploy time.

A pull that fails leaves the slot without a container, as Swarm's "No such image" task: the
error says which image, node and why (one line, in the reconcile's progress events and log),
:meth:`ImagePins.pending` keeps the reason for ``plan``, and the next reconcile pass tries
again. What the manager learnt (pins, credentials) lives as long as the manager process: a
manager restarted since the deploy knows no pin, and a moved task then needs the image on its
node as before (``up`` again pins and pulls).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from stackctl.errors import StackctlError


class ImageUnavailableError(StackctlError):
    """The node a task is placed on lacks the service's image and could not pull it."""


@dataclass(frozen=True)
class Pin:
    """What a deploy resolved a service's image to."""

    ref: str  # as the service names it (and the task is created with): HOST/repo:tag
    node_ref: str  # HOST/repo:tag@sha256:... — what a node pulls
    image_id: str  # the image (config digest) the service's config hash was made with
    registry: str  # the registry host, the key of the forwarded credentials


@dataclass
class ImagePins:
    """The manager's memory of the deploys' resolved images (one per controller context)."""

    #: (stack, service, image id) -> pin
    pins: dict[tuple[str, str, str], Pin] = field(default_factory=dict)
    #: stack -> registry -> RegistryAuth.to_dict(), from the latest `up --with-registry-auth`
    auth: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: (node, image id) known to be on the node (checked or pulled by this manager)
    present: set[tuple[str, str]] = field(default_factory=set)
    #: (stack, service, slot) -> why its task has no container (the last pull that failed)
    failed: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def remember(self, stack: str, service: str, pin: Pin, nodes: list[str],
                 registry_auth: Mapping[str, Mapping[str, Any]] | None) -> None:
        """A deploy resolved ``service``'s image to ``pin`` and ``nodes`` hold it now."""
        self.pins[(stack, service, pin.image_id)] = pin
        self.present.update((n, pin.image_id) for n in nodes)
        if registry_auth is not None:
            self.auth[stack] = {k: dict(v) for k, v in registry_auth.items()}

    def pin_of(self, stack: str, service: str, image_id: str | None) -> Pin | None:
        return self.pins.get((stack, service, image_id)) if image_id else None

    def forget(self, stack: str) -> None:
        """The stack is gone (``down``): its pins and credentials too."""
        self.pins = {k: v for k, v in self.pins.items() if k[0] != stack}
        self.auth.pop(stack, None)
        self.failed = {k: v for k, v in self.failed.items() if k[0] != stack}

    def pending(self, stack: str) -> dict[str, str]:
        """``service.slot`` -> why it has no container, for the stack's slots whose image
        could not be pulled on their node (cleared once a pull there succeeds)."""
        return {f"{svc}.{slot}": why for (s, svc, slot), why in sorted(self.failed.items())
                if s == stack}


async def ensure_task_image(ctx: Any, stack: str, service: str, slot: str, image_id: str | None,
                            node: str | None) -> None:
    """Make ``node`` hold the image the deploy resolved for ``service`` before a task of it
    is created there (the module docstring); a service whose image was not pulled from a
    registry by this manager (built, loaded, sent by the CLI) is left as it is. Raises
    :class:`ImageUnavailableError` (one line) when the node cannot get it."""
    pins: ImagePins = ctx.images
    key = (stack, service, slot)
    pin = pins.pin_of(stack, service, image_id)
    if pin is None or node is None or (node, pin.image_id) in pins.present:
        pins.failed.pop(key, None)  # (placed elsewhere since, or another version)
        return
    if await ctx.node.image_id(pin.ref, node=node) != pin.image_id:
        auth = (pins.auth.get(stack) or {}).get(pin.registry)
        try:
            await ctx.node.member(node).pull_image(pin.node_ref, policy="missing", auth=auth)
        except StackctlError as exc:
            why = (f"No such image: {pin.ref} on node {node}; pulling {pin.node_ref} there "
                   f"failed: {exc.message}")
            pins.failed[key] = why
            raise ImageUnavailableError(f"service {service}: {why}", hint=exc.hint) from None
    pins.failed.pop(key, None)
    pins.present.add((node, pin.image_id))
