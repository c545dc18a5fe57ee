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

``network_settings`` (pure) renders what ``inspect`` shows as ``NetworkSettings`` and ``ps`` as
PORTS; ``release_orphans`` tears down sandboxes whose container record is gone (``run -d --rm``:
the monitor removes the record, and it must not import networking).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from stackctl.net import sandbox, store
from stackctl.net.model import DEFAULT_BRIDGE, NetState
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
    if any(a.network == DEFAULT_BRIDGE for a in atts):
        from stackctl.net.networks import ensure_default_bridge

        ensure_default_bridge(paths)  # Docker's default network, made on first use
    result = setup(
        paths, spec.id, name=spec.name, hostname=spec.hostname, networks=atts, ports=list(ports),
        publish_all=publish_all, exposed=list(exposed), service=service,
        endpoint_mode=endpoint_mode, dns=list(spec.dns), dns_search=list(spec.dns_search),
        # a service's task starts out of its VIPs and published ports: the controller adds it
        # once it is ready, so no connection reaches a replica that is not listening yet
        serving=not service,
        dns_options=list(spec.dns_options), extra_hosts=list(spec.extra_hosts),
    )
    spec.network = result.spec_network
    spec.dns = list(result.dns)
    spec.extra_hosts = list(result.extra_hosts)
    return result


def release(paths: NodePaths, container_id: str) -> None:
    if container_id in store.load(paths).sandboxes:
        sandbox.teardown_container(paths, container_id)


def release_orphans(paths: NodePaths, live: Callable[[str], bool]) -> list[str]:
    """Tear down the sandboxes of containers for which ``live(cid)`` is false (the caller
    holds the lock that container creation holds, so a sandbox being made is never taken)."""
    gone = [cid for cid in store.load(paths).sandboxes if not live(cid)]
    for cid in gone:
        sandbox.teardown_container(paths, cid)
    return gone


def network_settings(state: NetState, container_id: str, exposed: Iterable[str] = ()) -> dict[str, Any]:
    """Docker's ``NetworkSettings`` of one container, from the networking state (pure).
    ``Ports`` maps every exposed or published ``PORT/PROTO`` to its host bindings (None when
    only exposed), as ``docker inspect`` does."""
    sb = state.sandboxes.get(container_id)
    networks: dict[str, Any] = {}
    ports: dict[str, Any] = {p if "/" in p else f"{p}/tcp": None for p in exposed}
    if sb is None:
        return {"Networks": networks, "Ports": ports}
    for nid in sb.networks:
        net = state.networks.get(nid)
        ep = state.endpoints.get(nid, {}).get(container_id)
        if net is None or ep is None:
            continue
        networks[net.name] = {
            "NetworkID": net.id, "EndpointID": ep.host_ifname,  # our host veth names the endpoint
            "Gateway": net.gateway, "IPAddress": ep.address, "IPPrefixLen": net.prefixlen,
            "MacAddress": ep.mac, "Aliases": list(ep.names), "DNSNames": list(ep.names),
        }
    for b in sb.ports:
        key = f"{b.container_port}/{b.protocol}"
        ports[key] = (ports.get(key) or []) + [{"HostIp": b.host_ip or "0.0.0.0", "HostPort": str(b.host_port)}]
    return {"Networks": networks, "Ports": ports}

