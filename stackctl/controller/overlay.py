"""Overlay networks, the manager's side: one network across the cluster's nodes.

The manager owns everything that must be the same (or never the same) on every node, and keeps
it in ``<state>/overlay.json`` (0600) so that a restarted manager hands out nothing twice:

- per network: its **VNI** (from 4096 up, as Swarm's ovmanager), its **subnet** (the stack's
  ``ipam`` subnet, else the next free /24 of 10.0.0.0/8 that holds no node address) and
  gateway, whether it is **encrypted**, and its keys (made here, rotated every
  :data:`KEY_ROTATION` seconds — Swarm's 12 h — and sent only over the agent connections,
  which run inside SSH);
- per network: every **address** it handed out — each node's own overlay address, and each
  task's (passed to the node in the container request, ``Attachment.ipv4_address``; the MAC
  follows from it, ``02:42:<ip>``), with the task's names, service and node.

It then pushes each node the whole view of each network (``node.overlay.sync``,
:mod:`stackctl.net.overlay`): the peers (every running replica on any node, with its serving
state) and the nodes. :func:`views` is the pure part: from the allocations and the cluster's
observed containers, what each node must hold. A view is sent only when it differs from what
the node last acknowledged — and again in full after the node's connection was replaced
(a reconnect) or a send failed.

Hooks (all no-ops without overlay networks): :meth:`Overlay.ensure_network` from
``deploy.ensure_resources``; :meth:`Overlay.prepare` from ``taskops.start_task`` (addresses
into the request); :meth:`Overlay.refresh` from ``taskops.sync_serving`` (deploy and
reconcile) and :meth:`Overlay.serving_changed` from ``taskops.stop_task`` (a replica taken
out: every node drops it from its DNS answers and VIPs at once); :meth:`Overlay.forget_stack`
after ``down``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlparse

import trio

from stackctl.errors import StackctlError
from stackctl.net.model import mac_for
from stackctl.scheduler.observed import ContainerInfo

log = logging.getLogger("stackctl.controller.overlay")

FIRST_VNI = 4096
MAX_VNI = 2 ** 24 - 1
DEFAULT_POOL = ipaddress.IPv4Network("10.0.0.0/8")
POOL_PREFIX = 24
#: seconds between key rotations of encrypted networks (Swarm: 12 h); STACKCTL_KEY_ROTATION
KEY_ROTATION = 12 * 3600.0
#: an address handed to a task that has no container yet is kept this long (the create runs)
ALLOC_GRACE = 120.0
STATE_FILE = "overlay.json"


class OverlayError(StackctlError):
    """An overlay network cannot be made as asked."""


def wants_overlay(net: Any, members: int) -> bool:
    """Whether a stack network is an overlay: ``driver: overlay``, or no driver on a cluster
    of several nodes (as ``docker stack deploy``). On one node it stays a bridge."""
    if getattr(net, "external", False):
        return False
    driver = getattr(net, "driver", None)
    return members > 1 and driver in (None, "overlay")


def is_encrypted(net: Any) -> bool:
    return "encrypted" in (getattr(net, "driver_opts", None) or {})


def _ip_key(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


# --------------------------------------------------------------------------------------------
# Pure parts


def pick_subnet(taken: Iterable[str], avoid: Iterable[str],
                pool: ipaddress.IPv4Network = DEFAULT_POOL) -> str:
    """The first /24 of ``pool`` (from 10.0.1.0) that overlaps no network of ``taken`` and
    holds no address of ``avoid`` (the nodes' own)."""
    used = [ipaddress.IPv4Network(t) for t in taken]
    addresses = [ipaddress.IPv4Address(a) for a in avoid if a]
    for i, sub in enumerate(pool.subnets(new_prefix=POOL_PREFIX)):
        if i == 0:
            continue
        if any(sub.overlaps(u) for u in used) or any(a in sub for a in addresses):
            continue
        return str(sub)
    raise OverlayError(f"no free /{POOL_PREFIX} left in {pool} for an overlay network",
                       hint="give the network an ipam subnet")


def next_address(subnet: str, gateway: str, used: Iterable[str],
                 requested: str | None = None) -> str:
    """The lowest free host address of ``subnet`` (``requested`` if given and free)."""
    net = ipaddress.IPv4Network(subnet)
    taken = set(used) | {gateway}
    if requested:
        if ipaddress.IPv4Address(requested) not in net:
            raise OverlayError(f"address {requested} is not in the overlay subnet {subnet}")
        if requested in taken:
            raise OverlayError(f"address {requested} is already in use on overlay {subnet}")
        return requested
    top = list(net.hosts())
    # the bottom half is the manager's; the third quarter is for standalone containers on
    # an attachable overlay (node-local), the top quarter for the nodes' VIPs (from the top)
    for addr in top[: max(1, len(top) // 2)]:
        if str(addr) not in taken:
            return str(addr)
    raise OverlayError(f"overlay subnet {subnet} is full")


def views(networks: Mapping[str, Mapping[str, Any]], containers: Iterable[ContainerInfo],
          serving: Callable[[ContainerInfo], bool], vteps: Mapping[str, str],
          nodes: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """What every node must hold: node -> the ``node.overlay.sync`` views of every overlay
    network (pure). Peers are the running containers whose task holds an address of the
    network; their serving state is ``serving(c)``."""
    by_task = {c.task_id: c for c in containers if c.task_id and c.running}
    node_list = [n for n in nodes if n in vteps]
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in node_list}
    for name, rec in sorted(networks.items()):
        addrs = rec.get("addresses") or {}
        node_addrs = [{"node": n, "vtep": vteps[n],
                       "address": next((ip for ip, a in addrs.items()
                                        if a.get("owner") == f"node:{n}"), "")}
                      for n in node_list]
        peers = []
        for ip, a in sorted(addrs.items(), key=lambda kv: _ip_key(kv[0])):
            owner = a.get("owner", "")
            c = by_task.get(owner)
            if c is None or c.node not in vteps:
                continue
            peers.append({"ip": ip, "node": c.node, "vtep": vteps[c.node],
                          "names": list(dict.fromkeys([c.name, *a.get("names", [])])),
                          "service": a.get("service", ""),
                          "endpoint_mode": a.get("endpoint_mode", "vip"),
                          "serving": bool(serving(c)), "container": c.id})
        keys = [{k: v for k, v in key.items() if k != "made"} for key in rec.get("keys", [])]
        for n in node_list:
            out[n].append({"network": name, "vni": rec["vni"], "subnet": rec["subnet"],
                           "gateway": rec["gateway"], "node": n,
                           "internal": bool(rec.get("internal")),
                           "attachable": bool(rec.get("attachable")),
                           "encrypted": bool(rec.get("encrypted")),
                           "labels": dict(rec.get("labels") or {}), "nodes": node_addrs,
                           "peers": peers, "keys": keys, "mtu": int(rec.get("mtu") or 0),
                           "datapath": rec.get("datapath") or "",
                           "datapath_reason": rec.get("datapath_reason") or ""})
    return out


def pick_datapath(name: str, caps: Mapping[str, Mapping[str, Any]]) -> tuple[str, str, str]:
    """(algorithm, data path, why) of encrypted network ``name`` from each node's
    ``node.overlay.caps`` (pure): IPsec ESP with AES-GCM, else with AES-CBC + HMAC-SHA256,
    when every node's kernel can; else the userspace AES-256-GCM tunnel
    (:mod:`stackctl.net.tunnel`) when every node can run it; else refused, naming the nodes
    — never plain VXLAN."""
    for algo, label in (("gcm", "AES-GCM"), ("cbc", "AES-CBC + HMAC-SHA256")):
        if all(c.get(algo) for c in caps.values()):
            return algo, "ipsec", f"every node's kernel does IPsec ESP with {label}"
    no_esp = sorted(n for n, c in caps.items() if not (c.get("gcm") or c.get("cbc")))
    why_esp = "; ".join(sorted({str(caps[n].get("esp_reason") or "no ESP in the kernel")
                                for n in no_esp})) or "the nodes share no ESP algorithm"
    if all(c.get("userspace") for c in caps.values()):
        return ("userspace", "userspace-aes-gcm",
                f"node(s) {', '.join(no_esp) or ', '.join(sorted(caps))} cannot do IPsec ESP "
                f"({why_esp}): AES-256-GCM in a userspace tunnel instead")
    bad = sorted(n for n, c in caps.items()
                 if not (c.get("gcm") or c.get("cbc") or c.get("userspace")))
    bad = bad or sorted(n for n, c in caps.items() if not c.get("userspace"))
    why_user = "; ".join(sorted({str(caps[n].get("userspace_reason") or "?") for n in bad
                                 if not caps[n].get("userspace")}))
    raise OverlayError(
        f"overlay network {name} is encrypted, but node(s) {', '.join(bad)} cannot do "
        f"IPsec ESP ({why_esp}) nor run the userspace tunnel ({why_user}); refusing to "
        "send it in clear",
        hint="load the esp4 and aes/gcm kernel modules there, or install `cryptography` and "
        "make /dev/net/tun available, or remove `encrypted` from the network's driver_opts")


def rotate_keys(keys: list[dict[str, Any]], now: float, every: float,
                algo: str) -> tuple[list[dict[str, Any]], bool]:
    """Swarm's scheme, simplified: a new key is first added (every node accepts it), made
    primary at the next push, and the oldest is dropped once three exist. Pure but for the
    random key bytes. Returns (keys, changed)."""
    from stackctl.net.xfrm import KEY_BYTES

    keys = [dict(k) for k in keys]
    changed = False
    if keys and not any(k.get("primary") for k in keys):
        keys[-1]["primary"] = True
        changed = True
    newest = keys[-1] if keys else None
    if newest is not None and not newest.get("primary"):
        for k in keys:
            k["primary"] = k is newest
        return keys, True
    if newest is None or now - float(newest.get("made", 0)) >= every:
        gen = int(newest["gen"]) + 1 if newest else 1
        keys.append({"gen": gen, "algo": algo, "key": secrets.token_hex(KEY_BYTES[algo]),
                     "primary": newest is None, "made": now})
        keys = keys[-3:]
        changed = True
    return keys, changed


# --------------------------------------------------------------------------------------------
# The manager's object


class Overlay:
    def __init__(self, state_dir: str | None, members: Any = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = os.path.join(state_dir, STATE_FILE) if state_dir else None
        self.members = members
        self.clock = clock
        self.rotation = float(os.environ.get("STACKCTL_KEY_ROTATION") or KEY_ROTATION)
        self.data: dict[str, Any] = {"next_vni": FIRST_VNI, "networks": {}}
        self._sent: dict[tuple[str, str], tuple[int, str]] = {}  # (node, net) -> (member id, json)
        self._containers: dict[str, list[ContainerInfo]] = {}  # stack -> last observed
        self._lock = trio.Lock()
        self._caps: dict[str, dict[str, Any]] = {}
        self._resolved: dict[str, str] = {}  # inventory host -> address
        self.load()

    # -- persistence -------------------------------------------------------------------------

    def load(self) -> None:
        if self.path and os.path.exists(self.path):
            with open(self.path) as f:
                self.data = json.load(f)

    def save(self) -> None:
        if not self.path:
            return
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    @property
    def networks(self) -> dict[str, dict[str, Any]]:
        return self.data.setdefault("networks", {})

    # -- the cluster -------------------------------------------------------------------------

    def vteps(self, ctx: Any) -> dict[str, str]:
        """node -> its VTEP: the address its inventory URL's host resolves to (the address
        the manager reaches it at, so on the path between the nodes)."""
        out: dict[str, str] = {}
        for entry in getattr(self.members, "entries", None) or []:
            name, url = entry.get("name"), entry.get("url") or ""
            host = urlparse(url).hostname if "://" in url else url.split("@")[-1]
            if not name or not host:
                continue
            if host not in self._resolved:  # resolved once per host (a push is frequent)
                try:
                    self._resolved[host] = socket.gethostbyname(host)
                except OSError:
                    continue
            out[name] = self._resolved[host]
        return {n: v for n, v in out.items() if n in ctx.node.members}

    def covers(self, stack: Any, ctx: Any) -> bool:
        """Whether every network of ``stack`` is an overlay here (no split warning then)."""
        members = len(ctx.node.members)
        return all(wants_overlay(n, members) or n.external for n in stack.networks.values())

    def everywhere(self, stack: Any, service: str, ctx: Any) -> bool:
        """Whether ``service``'s published ports answer on every node (its first network is
        an overlay: a node without a replica forwards across it)."""
        s = stack.services.get(service)
        if s is None or not s.networks:
            return False
        key = next(iter(s.networks))
        net = stack.networks.get(key)
        return net is not None and wants_overlay(net, len(ctx.node.members))

    # -- networks ----------------------------------------------------------------------------

    async def ensure_network(self, ctx: Any, stack: Any, key: str, net: Any,
                             name: str) -> bool | None:
        """Make overlay network ``name`` on every node; None when it is no overlay (the
        caller makes a bridge as before). True when it is new."""
        if not wants_overlay(net, len(ctx.node.members)):
            return None
        vteps = self.vteps(ctx)
        missing = [n for n in ctx.node.members if n not in vteps]
        if missing:
            raise OverlayError(f"overlay network {name}: no address known for node(s) "
                               f"{', '.join(missing)} (their inventory URL does not resolve)")
        async with self._lock:
            rec = self.networks.get(name)
            new = rec is None
            if rec is None:
                pool = net.ipam.config[0] if net.ipam and net.ipam.config else None
                subnet = str(ipaddress.IPv4Network(pool.subnet)) if pool and pool.subnet \
                    else pick_subnet([r["subnet"] for r in self.networks.values()],
                                     vteps.values())
                sub = ipaddress.IPv4Network(subnet)
                for n, vtep in sorted(vteps.items()):
                    if ipaddress.IPv4Address(vtep) in sub:
                        raise OverlayError(
                            f"overlay network {name}: subnet {subnet} holds node {n}'s own "
                            f"address {vtep}", hint="choose another ipam subnet")
                gateway = (pool.gateway if pool and pool.gateway
                           else str(next(sub.hosts())))
                vni = int(self.data.get("next_vni") or FIRST_VNI)
                used = {int(r["vni"]) for r in self.networks.values()}
                while vni in used:
                    vni += 1
                if vni > MAX_VNI:
                    raise OverlayError("no VNI left for another overlay network")
                self.data["next_vni"] = vni + 1
                rec = {"stack": stack.name, "key": key, "vni": vni, "subnet": subnet,
                       "gateway": gateway, "internal": bool(net.internal),
                       "attachable": bool(net.attachable), "encrypted": is_encrypted(net),
                       "labels": {**net.labels, "com.stackctl.stack": stack.name,
                                  "com.stackctl.network": key},
                       "addresses": {}, "keys": []}
                rec["datapath"] = "vxlan"
                if rec["encrypted"]:
                    algo, rec["datapath"], rec["datapath_reason"] = await self._algo(ctx, name)
                    from stackctl.net.overlay import overlay_mtu

                    rec["mtu"] = overlay_mtu(True, algo=algo)
                    rec["keys"], _ = rotate_keys([], self.clock(), self.rotation, algo)
                self.networks[name] = rec
                self._containers.setdefault(stack.name, [])  # a new network: no task yet
            for n in vteps:  # every node its own address (a node added later gets one too)
                if not any(a.get("owner") == f"node:{n}" for a in rec["addresses"].values()):
                    ip = next_address(rec["subnet"], rec["gateway"], rec["addresses"])
                    rec["addresses"][ip] = {"owner": f"node:{n}", "node": n}
            self.save()
        await self.push(ctx)
        return new

    async def _algo(self, ctx: Any, name: str) -> tuple[str, str, str]:
        """(algorithm, data path, why) of a new encrypted network, the same on every node
        (:func:`pick_datapath` over what each node can do, asked once per node)."""
        caps = {}
        for n, m in ctx.node.members.items():
            if n not in self._caps:
                self._caps[n] = await m.overlay_caps()
            caps[n] = self._caps[n]
        return pick_datapath(name, caps)

    def forget_stack(self, stack: str) -> None:
        gone = [n for n, r in self.networks.items() if r.get("stack") == stack]
        for n in gone:
            del self.networks[n]
            for key in [k for k in self._sent if k[1] == n]:
                del self._sent[key]
        self._containers.pop(stack, None)
        if gone:
            self.save()

    # -- tasks -------------------------------------------------------------------------------

    def prepare(self, stack: str, service: str, node: str | None, req: Any, *,
                oneoff: bool = False) -> None:
        """Give each overlay attachment of a task's request its address (recorded with the
        task's names), unless the stack asked for one (checked free). ``oneoff``: a
        ``run`` task — the reconcile loop does not observe those, so its address is kept
        until the stack goes (and other nodes get no entries for it: it reaches the
        replicas of its own node only)."""
        task_id = req.opts.labels.get("com.stackctl.task-id", "")
        changed = False
        for att in req.networks:
            rec = self.networks.get(att.network)
            if rec is None:
                continue
            mine = [ip for ip, a in rec["addresses"].items() if a.get("owner") == task_id]
            if mine:
                att.ipv4_address = mine[0]
                continue
            ip = next_address(rec["subnet"], rec["gateway"], rec["addresses"],
                              att.ipv4_address)
            rec["addresses"][ip] = {"owner": task_id, "node": node or "", "service": service,
                                    "names": list(att.aliases),
                                    "endpoint_mode": getattr(req, "endpoint_mode", "vip"),
                                    "at": self.clock(), **({"oneoff": True} if oneoff else {})}
            att.ipv4_address = ip
            changed = True
        if changed:
            self.save()

    def _release(self, stack: str, containers: list[ContainerInfo]) -> bool:
        """Addresses of tasks that have no container any more (past the grace of a create
        under way) go back to the pool."""
        tasks = {c.task_id for c in containers if c.task_id}
        now = self.clock()
        changed = False
        for rec in self.networks.values():
            if rec.get("stack") != stack:
                continue
            for ip, a in list(rec["addresses"].items()):
                owner = a.get("owner", "")
                if owner.startswith("node:") or owner in tasks or a.get("oneoff"):
                    continue
                if now - float(a.get("at", 0)) > ALLOC_GRACE:
                    del rec["addresses"][ip]
                    changed = True
        return changed

    # -- pushing views -----------------------------------------------------------------------

    def _serving(self, ctx: Any) -> Callable[[ContainerInfo], bool]:
        def serving(c: ContainerInfo) -> bool:
            if c.id in ctx.draining:
                return False
            return bool(ctx.serving.get(c.id, c.ready))
        return serving

    async def refresh(self, ctx: Any, containers: list[ContainerInfo]) -> None:
        """After serving states were synced: remember the stack's containers, rotate keys
        that are due, and push what changed."""
        if not self.networks:
            return
        stacks = {c.stack for c in containers if c.stack}
        for s in stacks:
            self._containers[s] = [c for c in containers if c.stack == s]
            if self._release(s, self._containers[s]):
                self.save()
        rotated = False
        for rec in self.networks.values():
            if rec.get("encrypted") and rec.get("keys"):
                algo = rec["keys"][-1].get("algo", "gcm")
                rec["keys"], changed = rotate_keys(rec["keys"], self.clock(), self.rotation,
                                                   algo)
                rotated = rotated or changed
        if rotated:
            self.save()
        await self.push(ctx)

    async def serving_changed(self, ctx: Any) -> None:
        """A replica's serving state changed (taken out before a stop): push at once."""
        if self.networks:
            await self.push(ctx)

    def _members_changed(self, vteps: Mapping[str, str]) -> bool:
        """A node that joined gets its own address on every network; a node that left the
        cluster gives its address back (every other node then drops its entries)."""
        changed = False
        for rec in self.networks.values():
            addrs = rec["addresses"]
            for ip, a in list(addrs.items()):
                owner = a.get("owner", "")
                if owner.startswith("node:") and owner[5:] not in vteps:
                    del addrs[ip]
                    changed = True
            for n in vteps:
                if not any(a.get("owner") == f"node:{n}" for a in addrs.values()):
                    addrs[next_address(rec["subnet"], rec["gateway"], addrs)] = {
                        "owner": f"node:{n}", "node": n}
                    changed = True
        return changed

    async def push(self, ctx: Any) -> None:
        """Send every node the views that differ from what it holds (all at once)."""
        async with self._lock:
            vteps = self.vteps(ctx)
            if self._members_changed(vteps):
                self.save()
            containers = [c for cs in self._containers.values() for c in cs]
            # only networks whose stack's containers are known (after a manager restart, a
            # stack not observed yet would otherwise be pushed without its peers)
            known = {n: r for n, r in self.networks.items() if r.get("stack") in self._containers}
            wanted = views(known, containers, self._serving(ctx), vteps,
                           list(ctx.node.members))
            todo: list[tuple[str, Any, dict[str, Any], str]] = []
            for node, vs in wanted.items():
                member = ctx.node.members.get(node)
                if member is None:
                    continue
                for v in vs:
                    text = json.dumps(v, sort_keys=True)
                    if self._sent.get((node, v["network"])) != (id(member), text):
                        todo.append((node, member, v, text))
            errors: list[StackctlError] = []

            async def one(node: str, member: Any, v: dict[str, Any], text: str) -> None:
                try:
                    await member.overlay_sync(v)
                    self._sent[(node, v["network"])] = (id(member), text)
                except StackctlError as exc:
                    self._sent.pop((node, v["network"]), None)
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                for item in todo:
                    nursery.start_soon(one, *item)
        if errors:  # one line naming every node that failed, with the first one's hint
            raise OverlayError("; ".join(sorted({e.message for e in errors})),
                               hint=next((e.hint for e in errors if e.hint), None))
