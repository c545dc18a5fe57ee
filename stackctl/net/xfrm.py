"""IPsec for encrypted overlay networks (``driver_opts: {encrypted: ""}``), as Swarm does it:
ESP in **transport mode** between the VTEPs, over the network's VXLAN packets only, with
``rfc4106(gcm(aes))`` (a 16-byte key and a 4-byte salt, a 64-bit ICV).

- The manager makes the keys (:mod:`stackctl.controller.overlay`: one per network and
  generation, rotated every 12 h by default) and sends them inside the SSH connection to the
  node's agent; they are never written to the node's disk.
- Per remote node and key generation: one outbound and one inbound security association; the
  SPI is an FNV-32a hash of (source, destination, VNI, generation), so both ends compute it.
- Only this network's VXLAN is encrypted: the firewall marks outgoing UDP 4789 packets of
  the VNI (``meta mark set``, a ``route`` chain so the kernel looks the route up again) and
  the outbound policy matches that mark (:func:`mark_of`); cleartext VXLAN arriving for the
  VNI is dropped (``meta ipsec missing``). So a node that lost its keys drops, never sends in
  clear.
- Without xfrm support (no ``ip xfrm``, no kernel module) an encrypted network is refused.

iproute2's ``ip xfrm`` does the work (pyroute2's IPRoute has no xfrm); :func:`plan` is the
pure part that computes the commands.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from typing import Any

from stackctl.net.model import Network, NetworkError

ALGO = "rfc4106(gcm(aes))"
ICV_BITS = 64
#: where the kernel has no GCM (some minimal kernels): AES-CBC with HMAC-SHA256 (128-bit ICV),
#: still encrypted and authenticated; the manager picks it only when a node lacks GCM
CBC_ENC, CBC_AUTH, CBC_ICV_BITS = "cbc(aes)", "hmac(sha256)", 128
#: ESP overhead: GCM 8 (SPI, seq) + 8 (IV) + 8 (ICV) + 2 (trailer); CBC 8 + 16 + 16 + 2 + 15
OVERHEAD = {"gcm": 26, "cbc": 57}
#: bytes of one key generation (the userspace tunnel's: stackctl/net/tunnel.py)
KEY_BYTES = {"gcm": 20, "cbc": 48, "userspace": 32}
MARK_BASE = 0x0E000000  # | VNI: the firewall's mark of one encrypted network's VXLAN


def mark_of(vni: int) -> int:
    return MARK_BASE | (vni & 0xFFFFFF)


def spi(src: str, dst: str, vni: int, gen: int) -> int:
    """FNV-32a of (src, dst, vni, generation), kept above the reserved range 0-255."""
    h = 0x811C9DC5
    for b in f"{src}>{dst}/{vni}#{gen}".encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h | 0x100 if h < 0x100 else h


def _ip() -> str:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    return ip


def check_available(network: str, algo: str = "gcm") -> None:
    """Refuse an encrypted network where IPsec cannot be set up (never fall back to clear)."""
    caps = capabilities()
    if caps.get(algo):
        return
    why = ("no `ip xfrm` / xfrm in the kernel" if not caps["xfrm"] else
           "the kernel has xfrm but no ESP with " + ("AES-GCM" if algo == "gcm" else
                                                    "AES-CBC/HMAC-SHA256") +
           " (esp4 and the cipher modules)")
    raise NetworkError(f"overlay network {network!r} is encrypted, but this node cannot do "
                       f"IPsec: {why}; refusing to send its traffic in clear",
                       hint="load the esp4 and gcm/aes kernel modules, or remove `encrypted` "
                       "from the network's driver_opts")


def kernel_gaps(config_text: str) -> list[str]:
    """The options ESP needs that a kernel's config (``/proc/config.gz``) lacks (pure)."""
    have = {}
    for line in config_text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, _, v = line.partition("=")
            have[k] = v.strip()
    return [k for k in ("CONFIG_XFRM", "CONFIG_INET_ESP", "CONFIG_CRYPTO_GCM")
            if have.get(k) not in ("y", "m")]


def esp_reason() -> str:
    """Why this kernel cannot do ESP, as far as its config says ("" if it cannot tell)."""
    import gzip

    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            gaps = kernel_gaps(f.read())
    except OSError:
        return ""
    return f"{', '.join(gaps)} not set in the kernel" if gaps else ""


def capabilities() -> dict[str, bool]:
    """What this node's kernel can do: xfrm at all, ESP with AES-GCM, ESP with AES-CBC +
    HMAC-SHA256 (probed by adding and removing a state between two unused addresses)."""
    caps = {"xfrm": False, "gcm": False, "cbc": False}
    try:
        caps["xfrm"] = subprocess.run([_ip(), "xfrm", "state", "count"],
                                      capture_output=True).returncode == 0
    except OSError:
        return caps
    if not caps["xfrm"]:
        return caps
    probe = ["src", "192.0.2.254", "dst", "192.0.2.253", "proto", "esp", "spi", "0xfffffff0"]
    for name, algo in (("gcm", ["aead", ALGO, "0x" + "00" * 20, str(ICV_BITS)]),
                       ("cbc", ["enc", CBC_ENC, "0x" + "00" * 16, "auth-trunc", CBC_AUTH,
                                "0x" + "00" * 32, str(CBC_ICV_BITS)])):
        p = subprocess.run([_ip(), "xfrm", "state", "add", *probe, "mode", "transport", *algo],
                           capture_output=True)
        if p.returncode == 0:
            caps[name] = True
            subprocess.run([_ip(), "xfrm", "state", "delete", *probe[:8]], capture_output=True)
    return caps


def plan(net: Network, local_vtep: str, remotes: Iterable[str],
         keys: list[dict[str, Any]]) -> list[list[str]]:
    """The ``ip xfrm`` argument lists that install the network's SAs and policies (pure).
    ``keys``: ``[{"gen": int, "key": hex (20 bytes), "primary": bool}]``; outbound policies
    use the primary key, inbound SAs exist for every key (a peer may still use the previous
    one while a rotation goes round)."""
    out: list[list[str]] = []
    if not keys:
        return out
    primary = next((k for k in keys if k.get("primary")), keys[-1])
    reqid = str(net.vni)
    mark = f"{mark_of(net.vni):#x}"
    for remote in sorted(set(remotes)):
        for k in keys:
            gen, key = int(k["gen"]), str(k["key"])
            if k.get("algo", "gcm") == "cbc":
                algo = ["enc", CBC_ENC, "0x" + key[:32], "auth-trunc", CBC_AUTH,
                        "0x" + key[32:96], str(CBC_ICV_BITS)]
            else:
                algo = ["aead", ALGO, "0x" + key[:40], str(ICV_BITS)]
            for src, dst in ((local_vtep, remote), (remote, local_vtep)):
                out.append(["state", "add", "src", src, "dst", dst, "proto", "esp", "spi",
                            f"{spi(src, dst, net.vni, gen):#x}", "reqid", reqid, "mode",
                            "transport", *algo])
        out.append(["policy", "update", "src", f"{local_vtep}/32", "dst", f"{remote}/32",
                    "proto", "udp", "dport", "4789", "dir", "out", "mark", mark, "mask",
                    "0xffffffff", "tmpl", "src", local_vtep, "dst", remote, "proto", "esp",
                    "spi", f"{spi(local_vtep, remote, net.vni, int(primary['gen'])):#x}",
                    "reqid", reqid, "mode", "transport"])
    return out


def _run(args: list[str], *, ok_exists: bool = False) -> subprocess.CompletedProcess:
    p = subprocess.run([_ip(), "xfrm", *args], capture_output=True, text=True)
    if p.returncode != 0 and not (ok_exists and "File exists" in p.stderr):
        raise NetworkError(f"ip xfrm {' '.join(a for a in args if not a.startswith('0x') or len(a) < 20)}"
                           f" failed: {p.stderr.strip()}",
                           hint="needs root and the esp4/xfrm kernel modules")
    return p


def parse_policies(text: str) -> list[dict[str, str]]:
    """``ip xfrm policy list`` output -> [{src, dst, dir, mark, reqid}] (pure)."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] | None = None
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if not line.startswith((" ", "\t")):
            cur = {}
            out.append(cur)
            for i, w in enumerate(words[:-1]):
                if w in ("src", "dst"):
                    cur[w] = words[i + 1].split("/")[0]
            continue
        assert cur is not None
        for i, w in enumerate(words[:-1]):
            if w in ("dir", "mark", "reqid") and w not in cur:
                cur[w] = words[i + 1].split("/")[0]
    return out


def apply(net: Network, me: Any, others: list[Any], keys: list[dict[str, Any]]) -> None:
    """Install the network's SAs and policies towards ``others`` (NodeAddress records), and
    remove those of nodes no longer in the view (idempotent)."""
    remotes = [n.vtep for n in others if n.vtep and n.vtep != me.vtep]
    wanted_gens = {int(k["gen"]) for k in keys}
    for args in plan(net, me.vtep, remotes, keys):
        _run(args, ok_exists=args[0] == "state")
    # stale: policies of this network to nodes that left, SAs of old generations
    text = _run(["policy", "list"]).stdout
    mark = f"{mark_of(net.vni):#x}"
    for pol in parse_policies(text):
        if pol.get("mark") == mark and pol.get("dir") == "out" and pol.get("dst") not in remotes:
            _run(["policy", "delete", "src", f"{pol['src']}/32", "dst", f"{pol['dst']}/32",
                  "proto", "udp", "dport", "4789", "dir", "out", "mark", mark, "mask",
                  "0xffffffff"])
    keep = {spi(a, b, net.vni, g) for r in remotes for g in wanted_gens
            for a, b in ((me.vtep, r), (r, me.vtep))}
    for src, dst, s in states_of(net.vni):
        if s not in keep:
            _run(["state", "delete", "src", src, "dst", dst, "proto", "esp", "spi", f"{s:#x}"])


def states_of(vni: int) -> list[tuple[str, str, int]]:
    """(src, dst, spi) of the SAs with the network's reqid."""
    p = subprocess.run([_ip(), "xfrm", "state", "list", "reqid", str(vni)], capture_output=True,
                       text=True)
    out = []
    for line in p.stdout.splitlines():
        w = line.split()
        if len(w) >= 2 and w[0] == "src" and "dst" in w:
            src, dst = w[1], w[w.index("dst") + 1]
            cur = (src, dst)
        elif w and w[0] == "proto" and "spi" in w:
            out.append((cur[0], cur[1], int(w[w.index("spi") + 1], 16)))
    return out


def remove(net: Network) -> None:
    """Every SA and policy of the network (idempotent; nothing if xfrm is unavailable)."""
    if not net.vni:
        return
    try:
        text = _run(["policy", "list"]).stdout
    except (NetworkError, OSError):
        return
    mark = f"{mark_of(net.vni):#x}"
    for pol in parse_policies(text):
        if pol.get("mark") == mark and pol.get("dir") == "out":
            _run(["policy", "delete", "src", f"{pol['src']}/32", "dst", f"{pol['dst']}/32",
                  "proto", "udp", "dport", "4789", "dir", "out", "mark", mark, "mask",
                  "0xffffffff"])
    for src, dst, s in states_of(net.vni):
        _run(["state", "delete", "src", src, "dst", dst, "proto", "esp", "spi", f"{s:#x}"])
