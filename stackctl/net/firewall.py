"""The firewall: one nftables table per node, rendered whole from the networking state.

Plan, then apply: :func:`render` is a pure function from :class:`NetState` to an ``nft``
script; :func:`apply` loads it (through libnftables in-process, else ``nft -f``) in one atomic
transaction (the old table is deleted and the
new one created in the same ``nft -f`` run, so there is never a moment without rules).
Every change re-renders the table from state, so the rules are always exactly what the state
says — a crash can leave rules for an object that is gone only until the next change or
:func:`stackctl.net.gc.gc_stale`, and cleanup of everything is one ``delete table``.

We never touch anybody else's tables or chains. Layout (see docs/networking.md)::

    table ip stackctl {
      chain raw         filter raw      drop what arrives from a bridge for 127.0.0.0/8 (the
                                        bridges have route_localnet, which published ports
                                        on loopback need); drop what arrives from anywhere
                                        but lo for a port published on a loopback address
      chain prerouting  nat    dstnat   -> jump ports (local destinations), jump vips
      chain output      nat    -100     -> jump ports (local destinations), jump vips
      chain ports       DNAT per published port; per service port, numgen inc over the
                        service's serving replicas
      chain vips        DNAT per service VIP, numgen random over its healthy replicas
      chain postrouting nat    srcnat   MASQUERADE out of the host; for loopback clients
                                        of published ports; for hairpin (same bridge) DNAT
      chain forward     filter          same bridge ok; bridge -> other bridge dropped
                                        (isolation); internal: nothing in or out;
                                        else out ok, in only replies and published ports
      chain input       filter          internal networks reach only their gateway; a
                                        service port with no serving replica is refused
    }
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import subprocess

from stackctl.net.model import BRIDGE_PREFIX, NetState, NetworkError, Network, ServicePorts
from stackctl.paths import NodePaths

DEFAULT_STATE_DIR = "/var/lib/stackctl"


def table_name(paths: NodePaths) -> str:
    """``stackctl`` for the default node; ``stackctl_<hash>`` for a node with another state
    dir (tests, several nodes on one machine), so that nodes never flush each other's rules."""
    state = os.path.realpath(paths.state)
    if state == DEFAULT_STATE_DIR:
        return "stackctl"
    return "stackctl_" + hashlib.sha256(state.encode()).hexdigest()[:8]


def _q(ifname: str) -> str:
    return f'"{ifname}"'


def _published_targets(state: NetState) -> list[tuple[str, str, object]]:
    """(container address, bridge, binding) for every published port of every sandbox.
    A container's ports go to its address on the first non-internal network it is on."""
    out = []
    for sb in sorted(state.sandboxes.values(), key=lambda s: s.container_id):
        target = None
        for nid in sb.networks:
            net = state.networks.get(nid)
            ep = state.endpoints.get(nid, {}).get(sb.container_id)
            if net is not None and ep is not None and not net.internal:
                target = (ep.address, net.bridge)
                break
        if target is None:
            continue
        for pb in sb.ports:
            out.append((target[0], target[1], pb))
    return out


def vip_backends(state: NetState, network_id: str, service: str) -> list[str]:
    """Addresses of the healthy replicas of ``service`` on a network, sorted."""
    eps = state.endpoints.get(network_id, {}).values()
    return sorted(
        (ep.address for ep in eps if ep.service == service and ep.healthy),
        key=lambda a: tuple(int(o) for o in a.split(".")),
    )


def _ip_key(address: str) -> tuple[int, ...]:
    return tuple(int(o) for o in address.split("."))


def service_backends(state: NetState, sp: ServicePorts) -> list[str]:
    """Addresses of the serving replicas of a service port, sorted: each container of
    ``sp.service`` counts once, at its address on the first of ``sp.networks`` it is on
    (internal networks skipped: nothing comes in there). Replicas on this node win: replicas
    on other nodes (overlay) are used only when this node has none serving, so a node with
    a local replica serves locally and its server sees the real client address."""
    chosen: dict[str, str] = {}
    remote: dict[str, str] = {}
    seen: set[str] = set()
    for nid in sp.networks:
        net = state.networks.get(nid)
        if net is None or net.internal:
            continue
        for cid, ep in sorted(state.endpoints.get(nid, {}).items()):
            if ep.service != sp.service or cid in seen:
                continue
            seen.add(cid)
            if ep.healthy:
                (remote if ep.remote else chosen)[cid] = ep.address
    return sorted((chosen or remote).values(), key=_ip_key)


def _service_port_rules(state: NetState) -> tuple[list[str], list[str]]:
    """(DNAT rules for the ``ports`` chain, refusals for the ``input`` chain) of every service
    port. Round robin (``numgen inc``) over the serving replicas; the counter restarts when the
    table is reloaded, which is harmless. Connections already DNAT'd keep their conntrack
    mapping when the set changes, so a replica being drained finishes what it has."""
    dnat: list[str] = []
    refuse: list[str] = []
    for key, sp in sorted(state.service_ports.items()):
        backends = service_backends(state, sp)
        for pb in sp.ports:
            match = f"ip daddr {pb.host_ip} " if pb.host_ip else ""
            what = f"{pb.host_ip or '0.0.0.0'}:{pb.host_port}/{pb.protocol}"
            if not backends:
                how = " with tcp reset" if pb.protocol == "tcp" else ""
                refuse.append(f"ct state new {match}{pb.protocol} dport {pb.host_port} reject{how}"
                              f' comment "service {key} {what}: no serving replica"')
                continue
            if len(backends) == 1:
                target = f"{backends[0]}:{pb.container_port}"
            else:
                pairs = ", ".join(f"{i} : {a}" for i, a in enumerate(backends))
                target = (f"numgen inc mod {len(backends)} map {{ {pairs} }}"
                          f" : {pb.container_port}")
            dnat.append(f"{match}{pb.protocol} dport {pb.host_port} dnat to {target}"
                        f' comment "service {key} {what}"')
    return dnat, refuse


VXLAN_PORT = 4789  # stackctl.net.overlay.VXLAN_PORT (not imported: overlay imports this)


def render(state: NetState, table: str) -> str:
    """The whole nft script that replaces ``table`` with what ``state`` needs."""
    nets: list[Network] = sorted(state.networks.values(), key=lambda n: n.bridge)
    lines = [f"table ip {table}", f"delete table ip {table}", f"table ip {table} {{"]

    def chain(name: str, hook: str | None, body: list[str]) -> None:
        lines.append(f"  chain {name} {{")
        if hook:
            lines.append(f"    {hook}")
        lines.extend(f"    {r}" for r in body)
        lines.append("  }")

    # --- raw: loopback stays the host's ---------------------------------------------------
    # route_localnet on a bridge (needed so that the host's 127.0.0.1 clients of published
    # ports can be routed out to a container) also makes the kernel accept packets from the
    # bridge addressed to 127.0.0.0/8: a container with NET_RAW could reach services bound to
    # the host's loopback. Docker leaves route_localnet off unless its userland proxy is off;
    # we drop such packets before routing instead. And as Docker 28 does
    # (filterPortMappedOnLoopback), a port published on a loopback address is reached from
    # lo only, not by a neighbour that routes 127.0.0.1 to this host.
    raw = []
    for net in nets:
        raw.append(f'iifname {_q(net.bridge)} ip daddr 127.0.0.0/8 drop comment "loopback from {net.name}"')
    loop = set()
    for _address, _bridge, pb in _published_targets(state):
        if pb.host_ip and ipaddress.ip_address(pb.host_ip).is_loopback:
            loop.add((pb.host_ip, pb.protocol, pb.host_port))
    for sp in state.service_ports.values():
        for pb in sp.ports:
            if pb.host_ip and ipaddress.ip_address(pb.host_ip).is_loopback:
                loop.add((pb.host_ip, pb.protocol, pb.host_port))
    for ip, proto, port in sorted(loop):
        raw.append(f'iifname != "lo" ip daddr {ip} {proto} dport {port} drop'
                   f' comment "published on {ip}:{port}/{proto}: from lo only"')
    # overlay networks: neither VXLAN between the nodes nor the frames bridged between
    # containers need connection tracking (no NAT, no state rule applies to them); with
    # br_netfilter on (as Docker leaves it) every bridged frame would otherwise be looked up
    # in conntrack on both nodes, and every outer UDP packet too (docs/networking.md,
    # "Overlay: measured"). What is routed — to the gateway, a VIP, the node's own overlay
    # address, published ports — is still tracked: its destination is no container address.
    vxlan = [n for n in nets if n.vni and not n.userspace_tunnel]
    if vxlan:
        raw.append(f'udp dport {VXLAN_PORT} notrack comment "VXLAN between nodes"')
    for net in vxlan:
        if net.macvlan:  # containers reach each other port to port: nothing here to skip
            continue
        containers = sorted({ep.address for ep in state.endpoints_of(net.id)}, key=_ip_key)
        if containers:
            raw.append(f"iifname {_q(net.bridge)} ip saddr {net.subnet} ip daddr "
                       f"{{ {', '.join(containers)} }} notrack"
                       f' comment "overlay {net.name}: bridged"')
    chain("raw", "type filter hook prerouting priority raw; policy accept;", raw)
    if vxlan:
        chain("raw_out", "type filter hook output priority raw; policy accept;",
              [f'udp dport {VXLAN_PORT} notrack comment "VXLAN between nodes"'])

    # --- NAT -----------------------------------------------------------------------------
    ports = []
    for address, _bridge, pb in _published_targets(state):
        match = f"ip daddr {pb.host_ip} " if pb.host_ip else ""
        ports.append(f"{match}{pb.protocol} dport {pb.host_port} dnat to {address}:{pb.container_port}"
                     f' comment "{pb}"')
    service_dnat, service_refuse = _service_port_rules(state)
    ports += service_dnat
    vips = []
    for net in nets:
        for service, vip in sorted(state.vips.get(net.id, {}).items()):
            backends = vip_backends(state, net.id, service)
            if not backends:
                continue  # nothing to balance to: the input rule below refuses the VIP
            if len(backends) == 1:
                target = backends[0]
            else:
                pairs = ", ".join(f"{i} : {a}" for i, a in enumerate(backends))
                target = f"numgen random mod {len(backends)} map {{ {pairs} }}"
            vips.append(f'ip daddr {vip} dnat to {target} comment "vip {service}@{net.name}"')

    chain("prerouting", "type nat hook prerouting priority dstnat; policy accept;",
          ["fib daddr type local jump ports", "jump vips"])
    chain("output", "type nat hook output priority -100; policy accept;",
          ["fib daddr type local jump ports", "jump vips"])
    chain("ports", None, ports)
    chain("vips", None, vips)

    post = []
    for net in nets:
        br = _q(net.bridge)
        if not net.internal:
            post.append(f"ip saddr {net.subnet} oifname != {br} masquerade")
        # clients on the host's loopback reach published ports (route_localnet on the bridge)
        post.append(f"oifname {br} ip saddr 127.0.0.0/8 masquerade")
        remotes = sorted({ep.address for ep in state.endpoints_of(net.id) if ep.remote},
                         key=_ip_key)
        if net.node_address and remotes:
            # overlay: what this node DNATs (or sends itself) to a replica on another node
            # leaves with this node's own overlay address, so that the reply comes back here
            dst = "{ " + ", ".join(remotes) + " }"
            post.append(f"oifname {br} ip daddr {dst} ct status dnat snat to {net.node_address}"
                        f' comment "overlay {net.name}: to other nodes"')
            post.append(f"oifname {br} ip daddr {dst} ip saddr {net.gateway} snat to "
                        f"{net.node_address}")
        # hairpin: a container reaching a VIP or published port that lands on its own bridge
        # (iifname is not known in postrouting, so: sourced from the subnet, DNAT'd, back in)
        post.append(f"oifname {br} ip saddr {net.subnet} ct status dnat masquerade")
    chain("postrouting", "type nat hook postrouting priority srcnat; policy accept;", post)

    # --- filter --------------------------------------------------------------------------
    fwd = []
    for net in nets:
        br = _q(net.bridge)
        fwd.append(f"iifname {br} oifname {br} accept")
        fwd.append(f'iifname {br} oifname "{BRIDGE_PREFIX}*" drop comment "isolation {net.name}"')
        if net.internal:
            fwd.append(f'iifname {br} drop comment "internal {net.name}"')
            fwd.append(f"oifname {br} drop")
        else:
            fwd.append(f"iifname {br} accept")
            fwd.append(f"oifname {br} ct state established,related accept")
            fwd.append(f"oifname {br} ct status dnat accept")
            fwd.append(f"oifname {br} drop")
    chain("forward", "type filter hook forward priority filter; policy accept;", fwd)

    inp = []
    for net in nets:
        br = _q(net.bridge)
        if net.internal:
            inp.append(f"iifname {br} ct state established,related accept")
            inp.append(f'iifname {br} ip daddr != {net.gateway} drop comment "internal {net.name}"')
        dead_vips = [v for s, v in sorted(state.vips.get(net.id, {}).items())
                     if not vip_backends(state, net.id, s)]
        for vip in dead_vips:
            inp.append(f"ip daddr {vip} reject")
    inp += service_refuse
    # (IPsec only: the userspace tunnel, stackctl/net/tunneld.py, sends no VXLAN at all)
    secret = [n for n in nets if n.encrypted and n.vni and not n.userspace_tunnel]
    for net in secret:
        # cleartext VXLAN for an encrypted network is dropped (stackctl/net/xfrm.py)
        inp.append(f"udp dport 4789 @th,96,24 {net.vni} meta ipsec missing drop"
                   f' comment "encrypted {net.name}: no cleartext"')
    chain("input", "type filter hook input priority filter; policy accept;", inp)
    if secret:
        # outgoing VXLAN of an encrypted network gets its mark; the xfrm policy matches it
        # (a route chain: the kernel looks the route, and so the policy, up again)
        from stackctl.net.xfrm import mark_of

        chain("xfrm_mark", "type route hook output priority mangle; policy accept;",
              [f"udp dport 4789 @th,96,24 {n.vni} meta mark set {mark_of(n.vni):#x}"
               for n in secret])

    lines.append("}")
    return "\n".join(lines) + "\n"


def render_delete(table: str) -> str:
    return f"table ip {table}\ndelete table ip {table}\n"


def _nft() -> str:
    nft = shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)
    if nft is None:
        raise NetworkError("the `nft` command is not installed",
                           hint="install Debian's nftables package (scripts/setup does)")
    return nft


class _LibNft:
    """libnftables (the library the ``nft`` command is a thin front end of), through ctypes:
    loading a script in-process takes ~0.2 ms where running ``nft -f`` takes ~16 ms (process
    start, library load), and a deploy reloads the table once per endpoint change. One
    context, used under a lock (a context is not thread-safe; the agent calls from worker
    threads). Same script, same atomic transaction as ``nft -f``."""

    def __init__(self) -> None:
        import ctypes
        import ctypes.util
        import threading

        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise OSError("nft_ctx_new failed")
        lib.nft_ctx_buffer_output(ctx)  # nothing goes to our stdout/stderr
        lib.nft_ctx_buffer_error(ctx)
        self._lib, self._ctx, self._lock = lib, ctx, threading.Lock()

    def run(self, script: str) -> tuple[int, str]:
        with self._lock:
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
            err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        return rc, err.decode(errors="replace")


_libnft: _LibNft | None = None
_libnft_failed = False


def _library() -> _LibNft | None:
    """The in-process loader, or None (no libnftables: fall back to the ``nft`` command)."""
    global _libnft, _libnft_failed
    if _libnft is None and not _libnft_failed and not os.environ.get("STACKCTL_NFT_COMMAND"):
        try:
            _libnft = _LibNft()
        except (OSError, AttributeError):
            _libnft_failed = True
    return _libnft


def run_nft(script: str) -> None:
    lib = _library()
    if lib is not None:
        rc, err = lib.run(script)
    else:
        proc = subprocess.run([_nft(), "-f", "-"], input=script, capture_output=True, text=True)
        rc, err = proc.returncode, proc.stderr
    if rc != 0:
        raise NetworkError(f"loading firewall rules failed: {err.strip()}",
                           hint="is the nf_tables kernel module available? (needs root)")


def apply(paths: NodePaths, state: NetState) -> None:
    """Make the node's table what ``state`` says; no table at all when there is nothing."""
    table = table_name(paths)
    if not state.networks:
        run_nft(render_delete(table))
    else:
        run_nft(render(state, table))


def list_tables() -> list[tuple[str, str]]:
    """(family, name) of every nftables table on this host."""
    proc = subprocess.run([_nft(), "list", "tables"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"listing firewall tables failed: {proc.stderr.strip()}")
    return parse_tables(proc.stdout)


def parse_tables(text: str) -> list[tuple[str, str]]:
    """Parse `nft list tables` output: lines ``table <family> <name>``."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table":
            out.append((parts[1], parts[2]))
    return out
