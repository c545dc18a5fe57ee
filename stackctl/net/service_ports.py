"""A stack service's published ports, spread over its serving replicas (Swarm's
``mode: ingress`` ports, done with DNAT so that servers still see the client's real address).

The controller calls (through ``LocalNet`` in :mod:`stackctl.controller.context`)::

    publish(paths, "shop_web", "web", ["127.0.0.1:8080:80/tcp"], ["shop_front"])
    sandbox.set_health(paths, cid, True)     # a replica is ready: it gets new connections
    sandbox.set_health(paths, cid, False)    # before stopping one: no new connections
    unpublish(paths, "shop_web")

What is recorded is a :class:`~stackctl.net.model.ServicePorts` in the networking state; the
rules come from :func:`stackctl.net.firewall.render`, re-rendered (one atomic ``nft -f``) on
every change of the state, so membership follows ``set_health`` and container teardown with
nothing to do here. The backends are the endpoints of containers whose ``Endpoint.service``
is ``service`` on the given networks (each container once, on the first of them it is on).

Every host port is checked before anything is recorded: against containers' ``-p``
bindings, other service ports (state), and by binding it (:func:`ports.port_is_free`).
:func:`check` is the pure part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from stackctl.net import ports as ports_mod
from stackctl.net import store
from stackctl.net.model import NetState, NetworkError, PortBinding, ServicePorts
from stackctl.net.networks import commit, get
from stackctl.paths import NodePaths

PortLike = str | ports_mod.PortSpec

HINT = "choose another published port"


def bindings(service: str, ports: Iterable[PortLike]) -> list[PortBinding]:
    """The concrete bindings of a service's ports (pure). Each needs a host port; equal-length
    host and target ranges are expanded pairwise; duplicates are refused."""
    out: list[PortBinding] = []
    for p in ports:
        spec = p if isinstance(p, ports_mod.PortSpec) else ports_mod.parse(p)
        if spec.host is None:
            raise NetworkError(f"service {service}: port {spec.text} has no published port",
                               hint="a port balanced over replicas needs a host port; "
                                    "publish it per container (mode: host) otherwise")
        hn, cn = spec.host[1] - spec.host[0], spec.container[1] - spec.container[0]
        if hn != cn:
            raise NetworkError(f"service {service}: port {spec.text}: the published range must be "
                               "as long as the target range", hint=HINT)
        for i in range(hn + 1):
            pb = PortBinding(spec.host_ip, spec.host[0] + i, spec.container[0] + i,
                             spec.protocol)  # type: ignore[arg-type]
            if any(_overlap(pb, q) for q in out):
                raise NetworkError(f"service {service}: port {pb.host_port}/{pb.protocol} "
                                   "is published twice", hint=HINT)
            out.append(pb)
    return out


def _overlap(a: PortBinding, b: PortBinding) -> bool:
    return (a.host_port == b.host_port and a.protocol == b.protocol
            and (not a.host_ip or not b.host_ip or a.host_ip == b.host_ip))


def _in_use(pb: PortBinding, why: str) -> NetworkError:
    return NetworkError(f"port {pb.host_port}/{pb.protocol} is already in use on "
                        f"{pb.host_ip or '0.0.0.0'} ({why}); {HINT}")


def check(state: NetState, key: str, wanted: list[PortBinding]) -> None:
    """Refuse a host port another container or service of this node holds (pure). The ports
    ``key`` itself holds are not a conflict (publish is idempotent, and may change them)."""
    for pb in wanted:
        for cid, sb in sorted(state.sandboxes.items()):
            if any(_overlap(pb, q) for q in sb.ports):
                raise _in_use(pb, f"published by container {sb.name or cid[:12]}")
        for other, sp in sorted(state.service_ports.items()):
            if other != key and any(_overlap(pb, q) for q in sp.ports):
                raise _in_use(pb, f"published by service {other}")


def publish(paths: NodePaths, key: str, service: str, ports: Iterable[PortLike],
            networks: Iterable[str], *,
            is_free: Callable[[str, int, str], bool] = ports_mod.port_is_free) -> list[PortBinding]:
    """Publish ``ports`` of ``service`` (``key`` = ``<stack>_<service>``) over its serving
    replicas on ``networks`` (names or ids). Idempotent; calling it again with other ports
    replaces them. Refused, with nothing changed, when a host port is in use."""
    wanted = bindings(service, ports)
    with store.locked(paths) as state:
        nets = [get(paths, n, state) for n in networks]
        if not nets:
            raise NetworkError(f"service {service}: published ports need a network",
                               hint="attach the service to a network")
        if all(n.internal for n in nets):
            raise NetworkError(f"service {service}: ports cannot be published on internal "
                               f"network{'s' if len(nets) > 1 else ''} "
                               f"{', '.join(n.name for n in nets)}",
                               hint="internal networks have no way in; add a non-internal one")
        check(state, key, wanted)
        old = state.service_ports.get(key)
        held = old.ports if old is not None else []
        for pb in wanted:
            # ours already: DNAT'd, not bound, so binding would tell nothing new
            if pb not in held and not is_free(pb.host_ip, pb.host_port, pb.protocol):
                raise _in_use(pb, "by another process")
        new = ServicePorts(key=key, service=service, networks=[n.id for n in nets],
                           ports=wanted)
        if old is None or old.to_json() != new.to_json():
            state.service_ports[key] = new
            commit(paths, state)
    return wanted


def unpublish(paths: NodePaths, key: str) -> bool:
    """Remove the service ports of ``key``; False if there were none (idempotent)."""
    with store.locked(paths) as state:
        if state.service_ports.pop(key, None) is None:
            return False
        commit(paths, state)
    return True


def stale(state: NetState) -> list[str]:
    """Keys of service ports nothing can serve any more (pure): none of their networks
    exists, or no container of the service (serving or not) is on them."""
    out = []
    for key, sp in sorted(state.service_ports.items()):
        nets = [nid for nid in sp.networks if nid in state.networks]
        if not any(ep.service == sp.service for nid in nets
                   for ep in state.endpoints.get(nid, {}).values()):
            out.append(key)
    return out


def list_service_ports(paths: NodePaths) -> list[ServicePorts]:
    return [sp for _, sp in sorted(store.load(paths).service_ports.items())]
