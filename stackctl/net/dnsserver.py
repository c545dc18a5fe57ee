"""The embedded DNS server: one per node, on the host side, listening on every network's
gateway address (UDP and TCP, port 53). Containers' /etc/resolv.conf names their first
network's gateway. Names are answered from the networking state (:mod:`stackctl.net.names`),
which the server re-reads when the state file changes (and it binds/unbinds gateways to
match); everything else is forwarded to the container's own ``dns`` servers if it has any, else
to the host's resolvers (/etc/resolv.conf of the host).

Run it in a thread or a process: :func:`serve` blocks until ``stop`` is set and reports
readiness through ``ready``::

    stop = threading.Event()
    t = threading.Thread(target=serve, args=(paths,), kwargs={"stop": stop}, daemon=True)
"""

from __future__ import annotations

import itertools
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from stackctl.net import dns, names, store
from stackctl.net.model import NetState
from stackctl.paths import NodePaths

IP_FREEBIND = 15
FORWARD_TIMEOUT = 2.0
TCP_CONNECTIONS = 32  # served at once (a thread each); more are closed at accept

log = logging.getLogger("stackctl.dns")


def host_upstreams(path: str = "/etc/resolv.conf", exclude: set[str] = frozenset()) -> list[str]:
    try:
        with open(path) as f:
            servers, _, _ = dns.parse_resolv_conf(f.read())
    except OSError:
        servers = []
    return [s for s in servers if ":" not in s and s not in exclude]


@dataclass
class _Pending:
    client: socket.socket
    addr: tuple[str, int]
    query: dns.Query
    upstreams: list[str]
    deadline: float


class DNSServer:
    """The server's state; :func:`serve` is the usual entry point."""

    def __init__(self, paths: NodePaths, *, port: int = 53, listen: Callable[[NetState], dict[str, str]] | None = None,
                 resolv_conf: str = "/etc/resolv.conf", upstream_port: int = 53) -> None:
        self.paths = paths
        self.upstream_port = upstream_port
        self.port = port
        # address -> network id to listen on; by default every network's gateway
        self.listen = listen or (lambda st: {n.gateway: n.id for n in st.networks.values()})
        self.resolv_conf = resolv_conf
        self.sel = selectors.DefaultSelector()
        self.state = NetState()
        self.version: tuple[int, int] | None = None
        self.lock = threading.Lock()
        self.retry = False
        self.udp: dict[str, socket.socket] = {}
        self.tcp: dict[str, socket.socket] = {}
        self.via: dict[str, str] = {}  # listen address -> network id
        self.pending: dict[socket.socket, _Pending] = {}
        self.rr = itertools.count()
        self.tcp_slots = threading.BoundedSemaphore(TCP_CONNECTIONS)

    # --- sockets -------------------------------------------------------------------------

    def _reload(self) -> bool:
        """Re-read the state file if it changed (one stat); True when it did. Thread-safe."""
        try:
            st = os.stat(store.state_file(self.paths))
            version = (st.st_ino, st.st_mtime_ns)  # saved by rename: a new inode every time
        except FileNotFoundError:
            version = (0, 0)
        with self.lock:
            if version == self.version:
                return False
            self.state = store.load(self.paths)
            self.version = version
            return True

    def refresh(self) -> None:
        """Main loop only: reload the state and listen on exactly the addresses it needs."""
        self._reload()
        want = self.listen(self.state)
        if want == self.via and not self.retry:
            return
        self.via = dict(want)
        self.retry = False
        for addr in list(self.udp):
            if addr not in want:
                for table in (self.udp, self.tcp):
                    s = table.pop(addr)
                    self.sel.unregister(s)
                    s.close()
        for addr in want:
            if addr not in self.udp:
                try:
                    self._bind(addr)
                except OSError:
                    self.retry = True  # try again on the next refresh

    def _bind(self, addr: str) -> None:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            for s in (u, t):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
                s.bind((addr, self.port))
            t.listen(64)
            u.setblocking(False)
            t.setblocking(False)
        except OSError:
            u.close()
            t.close()
            raise
        self.udp[addr], self.tcp[addr] = u, t
        self.sel.register(u, selectors.EVENT_READ, ("udp", addr))
        self.sel.register(t, selectors.EVENT_READ, ("tcp", addr))

    def close(self) -> None:
        for s in [*self.udp.values(), *self.tcp.values(), *self.pending]:
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        self.sel.close()

    # --- answering -----------------------------------------------------------------------

    def respond(self, raw: bytes, client_ip: str, via: str | None, *, max_size: int) -> tuple[bytes | None, dns.Query | None, list[str]]:
        """(reply, None, []) when answered here; (None, query, upstreams) to forward."""
        self._reload()  # one stat(): answers never lag behind the state file
        try:
            q = dns.parse_query(raw)
        except dns.DNSFormatError:
            return dns.error_for_raw(raw, dns.FORMERR), None, []
        if q.opcode != 0:
            return dns.error(q, dns.NOTIMP), None, []
        if q.question.qtype not in (dns.TYPE_A, dns.TYPE_AAAA, dns.TYPE_PTR, dns.TYPE_ANY):
            d = names.decide(self.state, client_ip, q.question.name, via_network=via)
            if d.kind == "answer":
                return dns.answer(q), None, []  # a name of ours: no records of that type
        d = names.decide(self.state, client_ip, q.question.name, via_network=via, rotate=next(self.rr))
        if d.kind == "answer":
            if q.question.qtype == dns.TYPE_AAAA:
                return dns.answer(q), None, []  # NODATA: the name exists, IPv4 only
            return dns.answer(q, a=d.addresses, ptr=d.ptr, max_size=max_size), None, []
        if d.kind == "nxdomain":
            return dns.error(q, dns.NXDOMAIN), None, []
        if d.kind == "refuse":
            return dns.error(q, dns.SERVFAIL, authoritative=False), None, []
        ours = set(self.via)
        ups = [u for u in d.upstreams if u not in ours] or host_upstreams(self.resolv_conf, ours)
        if not ups:
            return dns.error(q, dns.SERVFAIL, authoritative=False), None, []
        return None, q, ups

    def answer_safely(self, raw: bytes, client_ip: str, via: str | None, *, max_size: int,
                      ) -> tuple[bytes | None, dns.Query | None, list[str]]:
        """:meth:`respond`, and whatever goes wrong answering one message costs only that
        message (SERVFAIL where a reply can be made, else nothing): one datagram must never
        take down the name service of every container on the node."""
        try:
            return self.respond(raw, client_ip, via, max_size=max_size)
        except Exception:  # noqa: BLE001 - a bug for one message; logged, the server goes on
            log.exception("DNS: cannot answer a %d-byte message from %s", len(raw), client_ip)
            return dns.error_for_raw(raw, dns.SERVFAIL), None, []

    def _on_udp(self, sock: socket.socket, listen_addr: str) -> None:
        try:
            raw, addr = sock.recvfrom(4096)
        except OSError:
            return
        reply, q, ups = self.answer_safely(raw, addr[0], self.via.get(listen_addr), max_size=dns.MAX_UDP)
        if reply is not None:
            self._sendto(sock, reply, addr)
        elif q is not None:
            self._forward_udp(_Pending(sock, addr, q, ups, 0.0))

    @staticmethod
    def _sendto(sock: socket.socket, data: bytes, addr) -> None:
        try:
            sock.sendto(data, addr)
        except OSError:
            pass

    def _forward_udp(self, p: _Pending) -> None:
        while p.upstreams:
            up = p.upstreams.pop(0)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.setblocking(False)
                s.connect((up, self.upstream_port))
                s.send(p.query.raw)
            except OSError:
                s.close()
                continue
            p.deadline = time.monotonic() + FORWARD_TIMEOUT
            self.pending[s] = p
            self.sel.register(s, selectors.EVENT_READ, ("up", None))
            return
        self._sendto(p.client, dns.error(p.query, dns.SERVFAIL, authoritative=False), p.addr)

    def _on_upstream(self, s: socket.socket) -> None:
        p = self.pending.pop(s)
        self.sel.unregister(s)
        try:
            data = s.recv(65535)
        except OSError:
            data = b""
        s.close()
        if len(data) >= 12 and data[:2] == p.query.raw[:2]:
            self._sendto(p.client, data, p.addr)
        else:
            self._forward_udp(p)

    def _expire(self) -> None:
        now = time.monotonic()
        for s, p in list(self.pending.items()):
            if p.deadline <= now:
                del self.pending[s]
                self.sel.unregister(s)
                s.close()
                self._forward_udp(p)

    def _on_tcp(self, lsock: socket.socket, listen_addr: str) -> None:
        try:
            conn, addr = lsock.accept()
        except OSError:
            return
        via = self.via.get(listen_addr)
        if not self.tcp_slots.acquire(blocking=False):
            conn.close()  # as many connections as we serve at once: a client retries
            return
        threading.Thread(target=self._tcp_conn, args=(conn, addr, via), daemon=True).start()

    def _tcp_conn(self, conn: socket.socket, addr, via) -> None:
        with conn:
            conn.settimeout(5)
            try:
                while True:
                    head = _recv_exact(conn, 2)
                    if not head:
                        return
                    raw = _recv_exact(conn, struct.unpack("!H", head)[0])
                    if raw is None:
                        return
                    reply, q, ups = self.answer_safely(raw, addr[0], via, max_size=0)
                    if reply is None and q is not None:
                        reply = _forward_tcp(q, ups, self.upstream_port)
                    if reply is None:
                        return
                    conn.sendall(dns.tcp_frame(reply))
            except OSError:
                return
            finally:
                self.tcp_slots.release()

    # --- loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, ready: Callable[[], None] | None = None, tick: float = 0.25) -> None:
        self.refresh()
        wake = getattr(stop, "fileno", None)
        if wake is not None:  # a WakeEvent: setting it ends the select at once, not after a tick
            self.sel.register(wake(), selectors.EVENT_READ, ("wake", None))
        if ready:
            ready()
        last = time.monotonic()
        while not stop.is_set():
            for key, _ in self.sel.select(timeout=tick):
                kind, addr = key.data
                if kind == "wake":
                    continue
                if kind == "udp":
                    self._on_udp(key.fileobj, addr)
                elif kind == "tcp":
                    self._on_tcp(key.fileobj, addr)
                elif key.fileobj in self.pending:
                    self._on_upstream(key.fileobj)
            self._expire()
            if time.monotonic() - last >= tick:
                self.refresh()
                last = time.monotonic()


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _forward_tcp(q: dns.Query, upstreams: list[str], port: int = 53) -> bytes:
    for up in upstreams:
        try:
            with socket.create_connection((up, port), timeout=FORWARD_TIMEOUT) as s:
                s.sendall(dns.tcp_frame(q.raw))
                head = _recv_exact(s, 2)
                if head:
                    data = _recv_exact(s, struct.unpack("!H", head)[0])
                    if data:
                        return data
        except OSError:
            continue
    return dns.error(q, dns.SERVFAIL, authoritative=False)


def serve(paths: NodePaths, *, stop: threading.Event, ready: Callable[[], None] | None = None,
          port: int = 53, listen: Callable[[NetState], dict[str, str]] | None = None,
          resolv_conf: str = "/etc/resolv.conf", upstream_port: int = 53) -> None:
    """Serve until ``stop`` is set (blocking; run it in a thread or process)."""
    server = DNSServer(paths, port=port, listen=listen, resolv_conf=resolv_conf,
                       upstream_port=upstream_port)
    try:
        server.run(stop, ready)
    finally:
        server.close()


class WakeEvent(threading.Event):
    """A ``threading.Event`` that also makes a pipe readable when set, so that the server's
    ``select`` returns at once: stopping the DNS server (``down`` ends the node's ``dnsd``)
    then takes no tick of ``run``'s loop. ``set`` is safe in a signal handler."""

    def __init__(self) -> None:
        super().__init__()
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._r

    def set(self) -> None:
        super().set()
        try:
            os.write(self._w, b"x")
        except OSError:  # full (already woken) or closed
            pass

    def __del__(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


def start_in_thread(paths: NodePaths, **kwargs) -> tuple[threading.Thread, threading.Event]:
    """Start :func:`serve` in a daemon thread; returns once it listens. Stop with
    ``stop.set(); thread.join()``."""
    stop = WakeEvent()
    ready = threading.Event()
    t = threading.Thread(target=serve, args=(paths,), kwargs={"stop": stop, "ready": ready.set, **kwargs},
                         name="stackctl-dns", daemon=True)
    t.start()
    if not ready.wait(10):
        stop.set()
        raise RuntimeError("the DNS server did not start")
    return t, stop
