"""The two calls the container manager makes to put a container on bridge networks:

    # in ContainerManager.create, after build_plan(), before config.json is written:
    if runtime_hooks.wants_bridge(opts.network):
        runtime_hooks.attach(paths, spec, networks=[opts.network], ports=opts.publish,
                             publish_all=opts.publish_all, exposed=list(exposed))
    # and in its failure path / in _remove_locked():
    runtime_hooks.release(paths, cid)

``attach`` sets ``spec.network`` to ``netns:<path>`` and fills ``spec.dns`` (the embedded DNS
server), ``spec.extra_hosts`` (own name first); the user's ``--dns`` servers become the
upstreams the embedded server forwards to for this container. ``release`` is idempotent and
costs one file read when the container has no networking of ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from stackctl.net import sandbox, store
from stackctl.paths import NodePaths

MODES = ("", "none", "host")


def wants_bridge(network: str) -> bool:
    """True for a network *name* (not a mode such as none, host, container:X, netns:P)."""
    return network not in MODES and not network.startswith(("container:", "netns:"))


def attach(
    paths: NodePaths,
    spec: Any,  # stackctl.runtime.spec.ContainerSpec (duck-typed: keeps this import light)
    *,
    networks: Iterable[str | sandbox.Attachment],
    ports: Iterable[str] = (),
    publish_all: bool = False,
    exposed: Iterable[str] = (),
    service: str = "",
    endpoint_mode: str = "vip",
    setup: Callable[..., sandbox.NetworkSetup] = sandbox.setup_container,
) -> sandbox.NetworkSetup:
    atts = [n if isinstance(n, sandbox.Attachment) else sandbox.Attachment(n) for n in networks]
    result = setup(
        paths, spec.id, name=spec.name, hostname=spec.hostname, networks=atts, ports=list(ports),
        publish_all=publish_all, exposed=list(exposed), service=service,
        endpoint_mode=endpoint_mode, dns=list(spec.dns), dns_search=list(spec.dns_search),
        dns_options=list(spec.dns_options), extra_hosts=list(spec.extra_hosts),
    )
    spec.network = result.spec_network
    spec.dns = list(result.dns)
    spec.extra_hosts = list(result.extra_hosts)
    return result


def release(paths: NodePaths, container_id: str) -> None:
    if container_id in store.load(paths).sandboxes:
        sandbox.teardown_container(paths, container_id)
