"""A container's networking: its network namespace, its endpoints on networks, its published
ports. This is what the runtime calls:

    setup = setup_container(paths, cid, name="web", networks=[Attachment("front")],
                            ports=["8080:80"])
    spec.network = setup.spec_network          # "netns:<paths.run>/netns/<cid>"
    spec.dns, spec.dns_search, spec.extra_hosts = setup.dns, setup.dns_search, setup.extra_hosts
    ...
    teardown_container(paths, cid)             # after the container is gone

Ports and addresses are checked before anything is made; a failure part-way removes what was
made (netns, veths, VIPs, rules) before the error is raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stackctl.errors import ConflictError, NotFoundError
from stackctl.net import bridge, ipam, netns, ports as ports_mod, store, veth
from stackctl.net.model import DEFAULT_BRIDGE, Endpoint, NetState, Network, NetworkError, PortBinding, Sandbox
from stackctl.net.networks import commit, get, tag
from stackctl.paths import NodePaths


@dataclass
class Attachment:
    """A request to put the container on one network."""

    network: str  # name or id
    aliases: list[str] = field(default_factory=list)
    ipv4_address: str | None = None


@dataclass
class NetworkSetup:
    """What the runtime needs to start the container on its networks."""

    netns: str
    addresses: dict[str, str]  # network name -> address
    ports: list[PortBinding]
    dns: list[str]  # nameservers for /etc/resolv.conf (the embedded DNS server)
    dns_search: list[str]
    dns_options: list[str]
    extra_hosts: list[str]  # "name:ip" for /etc/hosts, own name first
    state: NetState | None = field(default=None, repr=False, compare=False)  # as committed with it

    @property
    def spec_network(self) -> str:
        return f"netns:{self.netns}"


def _taken(state: NetState, net: Network) -> set[str]:
    used = {net.gateway}
    used |= {ep.address for ep in state.endpoints_of(net.id)}
    used |= set(state.vips.get(net.id, {}).values())
    return used


def _published(state: NetState, except_cid: str = "") -> list[PortBinding]:
    """Host ports held by other containers' ``-p`` and by service ports."""
    held = [p for cid, sb in state.sandboxes.items() if cid != except_cid for p in sb.ports]
    return held + [p for sp in state.service_ports.values() for p in sp.ports]


def setup_container(
    paths: NodePaths,
    container_id: str,
    *,
    name: str,
    hostname: str = "",
    networks: Iterable[Attachment] = (),
    ports: Iterable[str | ports_mod.PortSpec] = (),
    publish_all: bool = False,
    exposed: Iterable[str] = (),
    service: str = "",
    endpoint_mode: str = "vip",
    dns: Iterable[str] = (),
    dns_search: Iterable[str] = (),
    dns_options: Iterable[str] = (),
    extra_hosts: Iterable[str] = (),
    is_free=ports_mod.port_is_free,
    serving: bool = True,
) -> NetworkSetup:
    """``serving=False`` makes the endpoints start out of their service's VIPs, ``tasks.``
    names and service ports until :func:`set_health` puts them in (a replica that is not
    listening yet must not get connections)."""
    attachments = list(networks)
    specs = [p if isinstance(p, ports_mod.PortSpec) else ports_mod.parse(p) for p in ports]
    if publish_all:
        specs += ports_mod.parse_exposed(exposed)
    if specs and not attachments:
        raise NetworkError(f"container {name!r} publishes ports but is on no network",
                           hint="attach it to a network (--network NAME)")
    with store.locked(paths) as state:
        if container_id in state.sandboxes:
            raise NetworkError(f"container {container_id[:12]} already has its network set up")
        nets: list[Network] = []
        for att in attachments:
            net = get(paths, att.network, state)
            if net in nets:
                raise NetworkError(f"container {name!r} is attached to network {net.name!r} twice")
            nets.append(net)
        # everything that can be refused is checked before anything is made
        bindings = ports_mod.resolve(specs, is_free=is_free, published=_published(state))
        if specs and all(n.internal for n in nets):
            raise NetworkError(f"container {name!r} publishes ports but is only on internal networks",
                               hint="internal networks have no way in or out; add a non-internal one")
        for att, net in zip(attachments, nets):
            if net.overlay and not att.ipv4_address and not net.attachable:
                # addresses on an overlay are the manager's; only its tasks come with one
                raise NetworkError(f"network {net.name!r} is an overlay network of the "
                                   "cluster and not attachable",
                                   hint="declare it `attachable: true` in the stack file")
            if att.ipv4_address:
                ipam.allocate(ipam.parse_subnet(net.subnet), _taken(state, net),
                              requested=att.ipv4_address, network_name=net.name)

        path = store.netns_path(paths, container_id)
        netns.create(path)
        sb = Sandbox(container_id=container_id, netns=path, name=name, dns=list(dns))
        state.sandboxes[container_id] = sb
        try:
            addresses = {}
            default_set = False
            for i, (att, net) in enumerate(zip(attachments, nets)):
                address = ipam.allocate(ipam.parse_subnet(net.subnet), _taken(state, net),
                                        requested=att.ipv4_address,
                                        ip_range=_standalone_range(net, att),
                                        network_name=net.name)
                names = [n for n in dict.fromkeys([name, hostname, *att.aliases]) if n]
                ep = Endpoint(network_id=net.id, container_id=container_id, address=str(address),
                              ifname=f"eth{i}", names=names, service=service,
                              endpoint_mode="dnsrr" if endpoint_mode == "dnsrr" else "vip",
                              healthy=serving)
                state.endpoints.setdefault(net.id, {})[container_id] = ep
                sb.networks.append(net.id)
                if service and ep.endpoint_mode == "vip":
                    _ensure_vip(state, net, service)
                bridge.ensure_bridge(net, tag(paths), state.vips.get(net.id, {}).values())
                want_default = not default_set and not net.internal
                veth.attach(path, net, ep, default_route=want_default, tag=tag(paths))
                default_set = default_set or want_default
                addresses[net.name] = str(address)
            sb.ports = bindings
            commit(paths, state)
        except BaseException:
            _teardown(paths, state, container_id)
            try:
                commit(paths, state)
            except NetworkError:
                pass
            raise
    first = next(iter(addresses.values()), "")
    hosts = [f"{h}:{first}" for h in dict.fromkeys([hostname or name, name]) if h and first]
    return NetworkSetup(
        netns=path,
        addresses=addresses,
        ports=bindings,
        # the embedded DNS server on the first network's gateway; the default bridge has no
        # name resolution (as Docker's): the user's --dns, else the host's resolvers
        dns=[nets[0].gateway] if nets and nets[0].name != DEFAULT_BRIDGE else list(dns),
        dns_search=list(dns_search),
        dns_options=list(dns_options),
        extra_hosts=hosts + list(extra_hosts),
        state=state,
    )


def _standalone_range(net: Network, att: Attachment) -> str:
    """Where a container's address comes from: the network's ``ip_range``; on an overlay,
    a standalone container (an attachable network; no address from the manager) takes one
    from the subnet's third quarter, which the manager (bottom half) and the VIPs (top
    quarter) never use."""
    if not net.overlay or att.ipv4_address:
        return net.ip_range
    quarters = list(ipam.parse_subnet(net.subnet).subnets(prefixlen_diff=2))
    return str(quarters[2])


def _ensure_vip(state: NetState, net: Network, service: str) -> str:
    vips = state.vips.setdefault(net.id, {})
    if service not in vips:
        subnet = ipam.parse_subnet(net.subnet)
        # VIPs from the top of the subnet, containers from the bottom: they rarely meet
        taken = _taken(state, net)
        for addr in reversed(list(subnet.hosts())):
            if str(addr) not in taken:
                vips[service] = str(addr)
                break
        else:
            raise NetworkError(f"no free address left on network {net.name!r} for the VIP of {service!r}")
    return vips[service]


def _teardown(paths: NodePaths, state: NetState, container_id: str) -> None:
    """Remove a container's endpoints, VIPs no longer used, and netns (state and kernel)."""
    sb = state.sandboxes.pop(container_id, None)
    for nid, eps in state.endpoints.items():
        ep = eps.pop(container_id, None)
        net = state.networks.get(nid)
        if ep is None or net is None:
            continue
        veth.detach(net, container_id, sb.netns if sb else "", ep.ifname)
        vips = state.vips.get(nid, {})
        if ep.service in vips and not any(e.service == ep.service for e in eps.values()):
            del vips[ep.service]
            bridge.ensure_bridge(net, tag(paths), vips.values())
    netns.remove(sb.netns if sb else store.netns_path(paths, container_id))


def _default_network(state: NetState, sb: Sandbox) -> Network | None:
    """The network whose gateway is the sandbox's default route: its first non-internal one."""
    for nid in sb.networks:
        net = state.networks.get(nid)
        if net is not None and not net.internal:
            return net
    return None


def connect_container(paths: NodePaths, container_id: str, att: Attachment, *, name: str,
                      hostname: str = "") -> NetState:
    """Put a container that has a sandbox on one more network (``network connect``): an
    address (``att.ipv4_address`` if given), the next ``ethN``, names (``name``, ``hostname``,
    aliases), and the default route if it had none. Refusals come before anything is made; a
    failure part-way removes the endpoint. Returns the state as committed."""
    with store.locked(paths) as state:
        sb = state.sandboxes.get(container_id)
        if sb is None:
            raise NotFoundError(f"container {name} has no network namespace of ours to connect")
        net = get(paths, att.network, state)
        if net.id in sb.networks:
            raise ConflictError(f"endpoint with name {name} already exists in network {net.name}")
        address = ipam.allocate(ipam.parse_subnet(net.subnet), _taken(state, net), requested=att.ipv4_address,
                                ip_range=net.ip_range, network_name=net.name)
        used = [state.endpoints.get(nid, {})[container_id].ifname for nid in sb.networks
                if container_id in state.endpoints.get(nid, {})]
        ep = Endpoint(network_id=net.id, container_id=container_id, address=str(address),
                      ifname=veth.next_ifname(used),
                      names=[n for n in dict.fromkeys([name, hostname, *att.aliases]) if n])
        want_default = _default_network(state, sb) is None and not net.internal
        state.endpoints.setdefault(net.id, {})[container_id] = ep
        sb.networks.append(net.id)
        try:
            bridge.ensure_bridge(net, tag(paths), state.vips.get(net.id, {}).values())
            veth.attach(sb.netns, net, ep, default_route=want_default, tag=tag(paths))
            commit(paths, state)
        except BaseException:
            state.endpoints[net.id].pop(container_id, None)
            sb.networks.remove(net.id)
            veth.detach(net, container_id, sb.netns, ep.ifname)
            try:
                commit(paths, state)
            except NetworkError:
                pass
            raise
        return state


def disconnect_container(paths: NodePaths, container_id: str, network: str, *, name: str) -> NetState:
    """Take a container off one network (``network disconnect``): its endpoint and veth go;
    if that network held the default route, the next non-internal network gets it."""
    with store.locked(paths) as state:
        sb = state.sandboxes.get(container_id)
        net = get(paths, network, state)
        if sb is None or net.id not in sb.networks:
            raise NotFoundError(f"container {name} is not connected to network {net.name}")
        had_default = _default_network(state, sb)
        ep = state.endpoints.get(net.id, {}).pop(container_id, None)
        sb.networks.remove(net.id)
        veth.detach(net, container_id, sb.netns, ep.ifname if ep else "")
        vips = state.vips.get(net.id, {})
        if ep is not None and ep.service in vips and not any(
                e.service == ep.service for e in state.endpoints.get(net.id, {}).values()):
            del vips[ep.service]
            bridge.ensure_bridge(net, tag(paths), vips.values())
        now_default = _default_network(state, sb)
        if had_default is not None and had_default.id == net.id and now_default is not None:
            veth.set_default_route(sb.netns, state.endpoints[now_default.id][container_id].ifname,
                                   now_default.gateway)
        commit(paths, state)
        return state


def rename_container(paths: NodePaths, container_id: str, old: str, new: str) -> None:
    """``rename``: the container's endpoints answer to ``new`` instead of ``old`` (DNS)."""
    with store.locked(paths) as state:
        sb = state.sandboxes.get(container_id)
        if sb is None:
            return
        sb.name = new if sb.name in (old, "") else sb.name
        for nid in sb.networks:
            ep = state.endpoints.get(nid, {}).get(container_id)
            if ep is not None:
                ep.names = list(dict.fromkeys(new if n == old else n for n in ep.names))


def teardown_container(paths: NodePaths, container_id: str) -> None:
    """Undo :func:`setup_container` (idempotent: an unknown container is fine)."""
    with store.locked(paths) as state:
        _teardown(paths, state, container_id)
        commit(paths, state)


def set_health(paths: NodePaths, container_id: str, healthy: bool) -> None:
    """Mark a container's endpoints healthy (serving) or not: only healthy replicas are
    answered for ``tasks.<service>``/dnsrr names and balanced to by VIPs and service ports
    (:mod:`stackctl.net.service_ports`). Taking one out stops NEW connections only: those
    already DNAT'd to it keep their conntrack entry and finish while it runs."""
    with store.locked(paths) as state:
        if container_id not in state.sandboxes:
            raise NotFoundError(f"container {container_id[:12]} has no network set up")
        changed = False
        for eps in state.endpoints.values():
            ep = eps.get(container_id)
            if ep is not None and ep.healthy != healthy:
                ep.healthy = healthy
                changed = True
        if changed:
            commit(paths, state)


def sandbox_of(paths: NodePaths, container_id: str) -> Sandbox | None:
    return store.load(paths).sandboxes.get(container_id)
