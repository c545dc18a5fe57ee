"""Find and remove what a crash left behind: sandboxes of containers that are gone, bridges and
veths of this node that no network or endpoint explains, netns files nobody records, service
ports whose service has no container left, and firewall rules (re-rendered from state). Safe to run at any time and twice (reconcile by
re-reading). Only objects tagged with this node's owner tag (ifalias) are touched, so another
stackctl node on the same machine, docker's and podman's links are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from stackctl.net import bridge, netns, store
from stackctl.net.model import NetState
from stackctl.net.networks import commit, tag
from stackctl.net.sandbox import _teardown
from stackctl.net.service_ports import stale as stale_service_ports
from stackctl.net.tunnel import tap_name
from stackctl.paths import NodePaths


@dataclass
class GCReport:
    sandboxes: list[str] = field(default_factory=list)  # container ids whose networking went
    links: list[str] = field(default_factory=list)
    netns_files: list[str] = field(default_factory=list)
    service_ports: list[str] = field(default_factory=list)  # keys of service ports dropped

    def __bool__(self) -> bool:
        return bool(self.sandboxes or self.links or self.netns_files or self.service_ports)


def stale_links(state: NetState, owner: str, links: Iterable[tuple[str, str, str]]) -> list[str]:
    """Pure: names of this node's links (by ifalias) that the state does not explain."""
    expected = {n.bridge for n in state.networks.values()}
    expected |= {n.vxlan for n in state.networks.values() if n.vni}
    expected |= {tap_name(n.id) for n in state.networks.values() if n.userspace_tunnel}
    expected |= {ep.host_ifname for eps in state.endpoints.values() for ep in eps.values()}
    prefix = bridge.owner_alias(owner, "")
    return sorted(name for name, _kind, alias in links
                  if alias.startswith(prefix) and name not in expected)


def gc_stale(paths: NodePaths, live_containers: Iterable[str] | None = None) -> GCReport:
    """Remove leftovers. A sandbox is stale when its netns file is no longer a live namespace
    (e.g. after a reboot), or — when ``live_containers`` is given — its container is not in it."""
    report = GCReport()
    live = set(live_containers) if live_containers is not None else None
    owner = tag(paths)
    with store.locked(paths) as state:
        for cid, sb in list(state.sandboxes.items()):
            if (live is not None and cid not in live) or not netns.is_netns_file(sb.netns):
                _teardown(paths, state, cid)
                report.sandboxes.append(cid)
        # endpoints without a sandbox (a crash between the two writes)
        for eps in state.endpoints.values():
            for cid in [c for c, ep in eps.items() if c not in state.sandboxes and not ep.remote]:
                if cid not in report.sandboxes:
                    _teardown(paths, state, cid)
                    report.sandboxes.append(cid)
        # service ports of services with no container left on their networks
        for key in stale_service_ports(state):
            del state.service_ports[key]
            report.service_ports.append(key)
        for name in stale_links(state, owner, bridge.links()):
            if bridge.remove_link(name):
                report.links.append(name)
        known = {os.path.basename(sb.netns) for sb in state.sandboxes.values()}
        ns_dir = store.netns_dir(paths)
        for entry in netns.listed(ns_dir):
            if entry not in known:
                netns.remove(os.path.join(ns_dir, entry))
                report.netns_files.append(entry)
        for net in state.networks.values():
            bridge.ensure_bridge(net, owner, state.vips.get(net.id, {}).values())
        commit(paths, state)
    return report
