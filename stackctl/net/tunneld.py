"""The userspace encrypted tunnel of an encrypted overlay network (:mod:`stackctl.net.tunnel`
has the format and the pure parts): its TAP device, its process, and the process itself.

One process per node and encrypted network, started detached (like the DNS daemon,
:mod:`stackctl.net.dnsd`) so that it outlives an agent restart, in the node's network
namespace. Its files are in ``<run>/net/tunnel/`` (the run directory: tmpfs):

- ``<id>.json`` (0600): its :class:`~stackctl.net.tunnel.TunnelConfig` — peers, MAC and ARP
  tables, keys. :func:`ensure` writes it and sends ``SIGHUP``; the process reloads it.
- ``<id>.pid``: written by the process once its TAP and socket are open.
- ``<id>.ctr``: the highest datagram counter it reserved (a restart starts above it).
- ``<id>.stats``: datagrams sent, received, and dropped (forged, replayed, unknown sender).

Two threads move frames: TAP -> seal -> UDP, and UDP -> open -> TAP. The main thread waits
for ``SIGHUP`` (reload) and ``SIGTERM`` (exit). :func:`stop` ends it and removes its files;
:func:`ensure_all` (the agent's periodic check) starts again a tunnel that died and ends those
of networks that are gone.

Run as ``python3 -m stackctl.net.tunneld CONFIG READY_FD``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from stackctl.net import tunnel
from stackctl.net.model import Network
from stackctl.net.tunnel import TunnelConfig, TunnelError
from stackctl.paths import NodePaths

MODULE = "stackctl.net.tunneld"
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
#: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN: the kernel hands over (and takes)
#: TCP segments of up to 64 KB with a virtio_net_hdr, checksums left to the receiver's kernel
OFFLOADS = 0x01 | 0x02 | 0x04 | 0x08
#: what the TAP may hand over at once: the largest UDP payload (65507) less our 30 bytes and the
#: virtio header, rounded down (larger segments the kernel cuts before the TAP)
GSO_MAX_SIZE = 65000
SOCK_BUFFER = 4 << 20
STATS_EVERY = 1.0

_available: tuple[bool, str] | None = None


def available() -> tuple[bool, str]:
    """Whether this node can run the userspace tunnel (a TAP device, the ``cryptography``
    package), and why not. Probed once per process."""
    global _available
    if _available is None:
        try:
            import cryptography.hazmat.primitives.ciphers.aead  # noqa: F401
        except ImportError:
            _available = (False, "the Python package `cryptography` is not installed")
        else:
            try:
                os.close(os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC))
                _available = (True, "")
            except OSError as exc:
                _available = (False, f"/dev/net/tun cannot be opened ({exc.strerror})")
    return _available


# --------------------------------------------------------------------------------------------
# Files


def tunnel_dir(paths: NodePaths) -> str:
    return os.path.join(paths.run, "net", "tunnel")


def _file(paths: NodePaths, network_id: str, ext: str) -> str:
    return os.path.join(tunnel_dir(paths), f"{network_id}.{ext}")


@contextlib.contextmanager
def _locked(paths: NodePaths) -> Iterator[None]:
    os.makedirs(tunnel_dir(paths), mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(tunnel_dir(paths), "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def is_tunnel_cmdline(cmdline: bytes, config: str) -> bool:
    """Whether ``/proc/PID/cmdline`` is the tunnel of ``config`` (pure; pid reuse guard)."""
    args = cmdline.split(b"\0")
    return MODULE.encode() in args and config.encode() in args


def running_pid(paths: NodePaths, network_id: str) -> int | None:
    try:
        with open(_file(paths, network_id, "pid")) as f:
            text = f.read().strip()
        pid = int(text) if text.isdigit() else 0
        if pid <= 0:
            return None
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            ok = is_tunnel_cmdline(f.read(), _file(paths, network_id, "json"))
        return pid if ok and _alive(pid) else None
    except OSError:
        return None


def stats(paths: NodePaths, network_id: str) -> dict[str, int]:
    try:
        with open(_file(paths, network_id, "stats")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


# --------------------------------------------------------------------------------------------
# The TAP device


def _tap_fd(name: str, *, offload: bool = False) -> int:
    """A file descriptor on TAP ``name``; ``offload``: frames carry a virtio_net_hdr and may
    be TCP segments of up to 64 KB (as a VM's virtio-net: one read, one seal, one datagram
    for up to 45 frames' worth)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
        if offload:
            fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS)
    except OSError:
        os.close(fd)
        raise
    return fd


def ensure_tap(net: Network, tag: str) -> None:
    """The network's TAP device (persistent; the tunnel process attaches to it), on the
    network's bridge in place of a VXLAN device, with the network's MTU, up (idempotent)."""
    from stackctl.net.bridge import _ipr, link_index, owner_alias

    name = tunnel.tap_name(net.id)
    try:
        with _ipr() as ipr:
            if link_index(ipr, name) is None:
                fd = _tap_fd(name)
                try:
                    fcntl.ioctl(fd, TUNSETPERSIST, 1)
                finally:
                    os.close(fd)
            idx = link_index(ipr, name)
            ipr.link("set", index=idx, ifalias=owner_alias(tag, f"tunnel {net.name}"))
            ipr.link("set", index=idx, master=link_index(ipr, net.bridge), mtu=net.mtu)
            try:
                ipr.link("set", index=idx, gso_max_size=GSO_MAX_SIZE)
            except Exception:  # noqa: BLE001 - an older kernel: segments stay <= 64 KB anyway
                pass
            ipr.link("set", index=idx, state="up")
    except OSError as exc:
        raise TunnelError(f"cannot set up TAP device {name} of encrypted network "
                          f"{net.name!r}: {exc}", hint="needs root and /dev/net/tun "
                          "(CONFIG_TUN)") from None


# --------------------------------------------------------------------------------------------
# Starting and stopping


def ensure(paths: NodePaths, cfg: TunnelConfig, timeout: float = 10.0) -> int:
    """Write the tunnel's configuration; tell a running tunnel to reload it, else start one.
    Returns its pid. A tunnel that cannot start (its UDP port taken) is one clear error."""
    with _locked(paths):
        config = _file(paths, cfg.network_id, "json")
        _write(config, json.dumps(cfg.to_json(), sort_keys=True))
        pid = running_pid(paths, cfg.network_id)
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
            return pid
        return _start(paths, cfg, config, timeout)


def _start(paths: NodePaths, cfg: TunnelConfig, config: str, timeout: float) -> int:
    from stackctl.net.spawn import spawn_daemon

    report = spawn_daemon(MODULE, [config], timeout)
    if report is None:
        raise TunnelError(f"the tunnel of encrypted network {cfg.network!r} did not "
                          f"start within {timeout:g} s")
    text = report.strip()
    if not text.isdigit():
        raise TunnelError(f"the tunnel of encrypted network {cfg.network!r} could not start: "
                          f"{text or 'it exited without a word'}",
                          hint=f"is UDP port {cfg.port} free on {cfg.local}?")
    return int(text)


def stop(paths: NodePaths, network_id: str, timeout: float = 5.0) -> None:
    """End the network's tunnel and remove its files (idempotent); its TAP device is removed
    with the network's other links."""
    with _locked(paths):
        pid = running_pid(paths, network_id)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)  # another process's exit: nothing to wait on but polling
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for ext in ("json", "pid", "ctr", "stats"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_file(paths, network_id, ext))


def ensure_all(paths: NodePaths, network_ids: set[str]) -> list[str]:
    """Start again the tunnels of ``network_ids`` that died (from their configuration), end
    those of other networks. Returns the ids acted on."""
    try:
        names = os.listdir(tunnel_dir(paths))
    except FileNotFoundError:
        return []
    done = []
    for name in sorted(names):
        if not name.endswith(".json"):
            continue
        nid = name[:-5]
        if nid not in network_ids:
            stop(paths, nid)
            done.append(nid)
            continue
        if running_pid(paths, nid) is None:
            with open(os.path.join(tunnel_dir(paths), name)) as f:
                cfg = TunnelConfig.from_json(json.load(f))
            ensure(paths, cfg)
            done.append(nid)
    return done


def check(paths: NodePaths) -> list[str]:
    """:func:`ensure_all` for the networks of this node's state (the agent's periodic check)."""
    from stackctl.net import store

    if not os.path.isdir(tunnel_dir(paths)):
        return []
    if not os.path.exists(store.state_file(paths)):
        return ensure_all(paths, set())
    # under the network state's lock: a sync that is making a tunnel holds it until its
    # network is recorded, so a new tunnel is never taken for one of a removed network
    with store.locked(paths) as state:
        return ensure_all(paths, {n.id for n in state.networks.values()
                                  if n.userspace_tunnel})


# --------------------------------------------------------------------------------------------
# The process


class _Tunnel:
    def __init__(self, config: str) -> None:
        self.config_path = config
        self.base = config[:-len(".json")]
        self.cfg = self._load()
        self.tap = _tap_fd(self.cfg.ifname, offload=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # bursts of a TCP window arrive faster than one thread opens them: a deep queue
        # (the FORCE options, as root, go past net.core.rmem_max)
        for force, opt in ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, force, SOCK_BUFFER)  # SO_*BUFFORCE
            except OSError:
                with contextlib.suppress(OSError):
                    self.sock.setsockopt(socket.SOL_SOCKET, opt, SOCK_BUFFER)
        self.sock.bind((self.cfg.local, self.cfg.port))
        self.me = socket.inet_aton(self.cfg.local)
        self._apply(self.cfg)
        self.windows: dict[bytes, tunnel.ReplayWindow] = {}
        self.stats = {"sent": 0, "received": 0, "arp_answered": 0, "forged": 0,
                      "replayed": 0, "unknown_sender": 0, "too_big": 0, "refused": 0}
        floor = 0
        with contextlib.suppress(OSError, ValueError):
            with open(self.base + ".ctr") as f:
                floor = int(f.read().strip() or 0)
        # used by the sending thread only
        self.counter = tunnel.Counter(floor, lambda v: _write(self.base + ".ctr", f"{v}\n"))

    def _load(self) -> TunnelConfig:
        with open(self.config_path) as f:
            return TunnelConfig.from_json(json.load(f))

    def _apply(self, cfg: TunnelConfig) -> None:
        # one tuple, swapped at once: the threads read it per frame
        self.live = (tunnel.Sealer(cfg.vni, cfg.keys), tunnel.Router(cfg),
                     {socket.inet_aton(p): p for p in cfg.peers})

    def reload(self) -> None:
        self.cfg = self._load()
        self._apply(self.cfg)

    def tx(self) -> None:
        """TAP -> peers. What is sealed is the TAP's read as is: virtio_net_hdr + frame."""
        hdr = tunnel.VNET_HDR
        while True:
            data = os.read(self.tap, 65536 + hdr)
            if len(data) < hdr + 14:
                continue
            sealer, router, _ = self.live
            frame = data[hdr:hdr + 42]  # what routing and ARP look at
            reply = router.arp_reply(frame)
            if reply is not None:
                os.write(self.tap, bytes(hdr) + reply)
                self.stats["arp_answered"] += 1
                continue
            for vtep, packed in router.route(frame):
                sealed = sealer.seal(data, self.me, packed, self.counter.next())
                if len(sealed) > tunnel.MAX_DATAGRAM:
                    self.stats["too_big"] += 1
                    continue
                try:
                    self.sock.sendto(sealed, (vtep, self.cfg.port))
                    self.stats["sent"] += 1
                except OSError:
                    pass  # a peer unreachable for a moment: as a lost frame on a wire

    def rx(self) -> None:
        """peers -> TAP."""
        from cryptography.exceptions import InvalidTag

        while True:
            data, (src, _port) = self.sock.recvfrom(65536)
            sealer, _, peers = self.live
            sender = data[2:6]
            if len(data) < 6 or peers.get(sender) != src:
                self.stats["unknown_sender"] += 1
                continue
            window = self.windows.setdefault(sender, tunnel.ReplayWindow())
            counter = int.from_bytes(data[6:14], "big")
            if not window.fresh(counter):
                self.stats["replayed"] += 1
                continue
            try:
                frame, counter, _ = sealer.open(data, self.me)
            except (InvalidTag, KeyError, ValueError):
                self.stats["forged"] += 1
                continue
            window.accept(counter)  # only now: a forgery moves no window
            if len(frame) >= tunnel.VNET_HDR + 14:
                try:
                    os.write(self.tap, frame)
                    self.stats["received"] += 1
                except OSError:  # a header the kernel refuses (EINVAL): that frame only
                    self.stats["refused"] += 1

    def write_stats(self) -> None:
        _write(self.base + ".stats", json.dumps(self.stats, sort_keys=True))


def serve(config: str, ready_w: int) -> None:
    try:
        t = _Tunnel(config)
    except BaseException as exc:  # noqa: BLE001 - reported to the starter, one line
        os.write(ready_w, f"{type(exc).__name__}: {exc}\n".encode())
        return
    wake = threading.Event()
    flags = {"stop": False, "hup": False}

    def on(flag: str):
        def handler(*_: Any) -> None:
            flags[flag] = True
            wake.set()
        return handler

    def thread(fn) -> None:
        try:
            fn()
        except BaseException:  # noqa: BLE001 - the TAP or socket went away: end, and let the
            flags["stop"] = True  # agent's check start a new tunnel if the network remains
            wake.set()

    signal.signal(signal.SIGTERM, on("stop"))
    signal.signal(signal.SIGINT, on("stop"))
    signal.signal(signal.SIGHUP, on("hup"))
    for fn in (t.tx, t.rx):
        threading.Thread(target=thread, args=(fn,), daemon=True).start()
    _write(t.base + ".pid", f"{os.getpid()}\n")
    os.write(ready_w, f"{os.getpid()}\n".encode())
    os.close(ready_w)
    last: dict[str, int] = {}
    while not flags["stop"]:
        wake.wait(STATS_EVERY)
        wake.clear()
        if flags["hup"]:
            flags["hup"] = False
            try:
                t.reload()
            except (OSError, ValueError, TypeError, TunnelError):
                pass  # keep the last good configuration; the next sync writes it again
        if t.stats != last:
            last = dict(t.stats)
            with contextlib.suppress(OSError):
                t.write_stats()
    with contextlib.suppress(OSError):
        t.write_stats()
    with contextlib.suppress(FileNotFoundError):
        if running_pid_file(t.base) == os.getpid():
            os.unlink(t.base + ".pid")


def running_pid_file(base: str) -> int | None:
    try:
        with open(base + ".pid") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def main(argv: list[str]) -> None:
    config, fd = argv
    ready_w = int(fd)
    if os.fork() != 0:  # the starter waits for this process; the tunnel is its child
        os._exit(0)
    serve(config, ready_w)
    os._exit(0)  # the frame threads are blocked in read(): end without joining them


def summary(paths: NodePaths, net: Network) -> dict[str, Any]:
    """What ``network inspect`` shows of the tunnel on this node."""
    return {"pid": running_pid(paths, net.id), "tap": tunnel.tap_name(net.id),
            "port": tunnel.port_for(net.vni), **stats(paths, net.id)}


if __name__ == "__main__":
    main(sys.argv[1:])
