"""A small, real authoritative DNS server for tests: the upstream a forwarder talks to.

Sized to what the forward, autopath, cache, rewrite, CoreDNS-compatibility and Corefile tests
ask of it. ``Upstream`` serves one zone (zone-file text, parsed by ``dns.zone.from_text``) on
127.0.0.1 over UDP and TCP on the same port, on plain threads and blocking sockets so it can
sit beside an asyncio server under test without sharing its event loop.

Answers follow an authoritative server (RFC 1034, RFC 2308, RFC 6604):

* AA NOERROR with the records; CNAMEs inside the zone are followed (CNAME, then the target's
  records; a dangling CNAME gives NXDOMAIN with the CNAME in the answer);
* NODATA (NOERROR, empty answer, SOA in authority) for an existing name without that type,
  including empty non-terminals; NXDOMAIN with the SOA for a missing name below the origin;
  the negative SOA carries TTL ``min(SOA TTL, SOA minimum)``; REFUSED outside the origin;
* the question is echoed exactly (0x20 case preserved) with the query's ID and RD bit;
  an OPT record is in the reply iff the query had one;
* over UDP a reply larger than 512 bytes (or the query's EDNS payload size) is replaced by one
  with TC set and no answer records; a TCP connection can carry several (pipelined) queries,
  and delayed replies may come back out of order. A query that does not parse is dropped.

Fault modes (``set_mode``) apply to UDP and TCP alike: ``normal``, ``timeout``, ``servfail``,
``garbage``, ``wrong_id``, ``wrong_question``, ``delay`` (``seconds=``) and ``loop``
(``target=(host, port)``), see ``Upstream.set_mode``.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone

DEFAULT_ZONE = (
    "$TTL 300\n"
    "@            3600 IN SOA   ns1 hostmaster 2024010101 7200 3600 1209600 60\n"
    "@            3600 IN NS    ns1\n"
    "ns1               IN A     192.0.2.53\n"
    "www          300  IN A     93.184.216.34\n"
    "www          300  IN AAAA  2606:2800:220:1:248:1893:25c8:1946\n"
    "alias             IN CNAME www\n"
    "chain             IN CNAME alias\n"
    "dangling          IN CNAME nowhere\n"
    "outside           IN CNAME www.example.net.\n"
    "short        5    IN A     1.2.3.4\n"
    + "".join(f"big               IN A     10.0.0.{i}\n" for i in range(1, 61))
    + 'txt               IN TXT   "hello"\n'
    "api.payments      IN A     203.0.113.10\n"
)
"""The default zone (origin ``example.com.``). ``big`` holds 60 A records (10.0.0.1-60), too
many for a 512-byte UDP reply; ``payments`` is an empty non-terminal (NODATA);
``dangling`` is a CNAME to a missing name and ``outside`` a CNAME leaving the zone."""

MODES = frozenset(
    {"normal", "timeout", "servfail", "garbage", "wrong_id", "wrong_question", "delay", "loop"}
)
LOOP_PROBE = re.compile(r"^\d+\.\d+\.")
MAX_CNAME_CHAIN = 16
OUR_PAYLOAD = 1232

Reply = Callable[[bytes], None]


class Upstream:
    """An authoritative DNS server for ``origin`` on 127.0.0.1 (UDP and TCP, one port).

    Use ``start()``/``stop()`` or ``with Upstream() as up:``. ``queries`` lists every query
    received as ``(transport, qname as sent, qtype, flags)``, where flags are the header flags
    followed by any EDNS flags (``"RD"``, ``"RD DO"``, ``""``)."""

    host: str = "127.0.0.1"

    def __init__(self, zone_text: str = DEFAULT_ZONE, origin: str = "example.com.") -> None:
        """Parse ``zone_text`` (zone-file syntax, names relative to ``origin``)."""
        self.origin = dns.name.from_text(origin)
        self.zone = dns.zone.from_text(zone_text, origin=self.origin, relativize=False)
        self.port = 0
        self._zone_lock = threading.RLock()
        self._queries: list[tuple[str, str, str, str]] = []
        self._queries_lock = threading.Lock()
        self._mode: tuple[str, dict[str, Any]] = ("normal", {})
        self._mode_lock = threading.Lock()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()  # guards _threads, _conns, _timers

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``."""
        return f"{self.host}:{self.port}"

    def start(self, port: int = 0) -> None:
        """Bind UDP and TCP on ``port`` (0: one free port for both) of :attr:`host` and
        start serving (returns once bound). OSError if a fixed ``port`` is taken."""
        if self._udp is not None:
            raise RuntimeError("already started")
        for _ in range(50):
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((self.host, port))
            bound = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind((self.host, bound))
            except OSError:
                tcp.close()
                udp.close()
                if port:
                    raise
                continue
            break
        else:
            raise RuntimeError("no free port for both UDP and TCP")
        tcp.listen(64)
        tcp.setblocking(False)
        udp.setblocking(False)
        self._tcp, self._udp, self.port = tcp, udp, bound
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping.clear()
        self._spawn(self._serve, "upstream-serve")

    def stop(self) -> None:
        """Stop serving: close the sockets, end connections and cancel delayed replies."""
        if self._udp is None:
            return
        self._stopping.set()
        assert self._wake_w is not None
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            threads = [t for t in self._threads if t.name != "upstream-loop"]
        for thread in threads:  # forwarding threads end by their own timeout
            if thread is not threading.current_thread():
                thread.join(timeout=3.0)
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = self._wake_r = self._wake_w = None
        with self._lock:
            self._threads.clear()
            self._timers.clear()

    def __enter__(self) -> Upstream:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- test controls -----------------------------------------------------------------------

    @property
    def queries(self) -> list[tuple[str, str, str, str]]:
        """A snapshot of every query received so far: (transport, qname, qtype, flags)."""
        with self._queries_lock:
            return list(self._queries)

    def set_mode(self, mode: str, **kw: Any) -> None:
        """Switch the fault mode for every later query (UDP and TCP):

        ``normal``; ``timeout`` (read the query, never answer); ``servfail``;
        ``garbage`` (64 random bytes); ``wrong_id`` (the right answer with another ID);
        ``wrong_question`` (the answer for ``www``, or ``txt`` when ``www`` is asked, under the
        origin); ``delay`` (answer after ``seconds=`` on a timer thread);
        ``loop`` (an HINFO query whose name matches ``^\\d+\\.\\d+\\.`` is forwarded byte for
        byte over the same transport to ``target=(host, port)`` and the reply relayed; other
        queries are answered normally; ``timeout=`` bounds the wait, default 2 s)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "delay" and "seconds" not in kw:
            raise ValueError("delay needs seconds=")
        if mode == "loop" and "target" not in kw:
            raise ValueError("loop needs target=(host, port)")
        with self._mode_lock:
            self._mode = (mode, dict(kw))

    def add(self, name: str, rtype: str, *rdata: str, ttl: int = 300) -> None:
        """Add records at run time (``name`` and names in ``rdata`` relative to the origin
        unless absolute). Adding to an existing RRset lowers its TTL to the smallest one."""
        owner = dns.name.from_text(name, self.origin)
        rdtype = dns.rdatatype.from_text(rtype)
        with self._zone_lock:
            rdataset = self.zone.find_rdataset(owner, rdtype, create=True)
            for text in rdata:
                rd = dns.rdata.from_text(
                    dns.rdataclass.IN, rdtype, text, origin=self.origin, relativize=False
                )
                rdataset.add(rd, ttl)

    # -- serving -----------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None and self._wake_r is not None
        udp, tcp = self._udp, self._tcp
        with selectors.DefaultSelector() as sel:
            sel.register(udp, selectors.EVENT_READ)
            sel.register(tcp, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is udp:
                        self._udp_ready(udp)
                    elif key.fileobj is tcp:
                        try:
                            conn, _addr = tcp.accept()
                        except OSError:
                            continue
                        conn.setblocking(True)
                        with self._lock:
                            self._conns.add(conn)
                        self._spawn(self._tcp_conn, "upstream-tcp", conn)

    def _udp_ready(self, udp: socket.socket) -> None:
        while True:
            try:
                wire, addr = udp.recvfrom(65535)
            except OSError:  # BlockingIOError: drained
                return

            def reply(data: bytes, addr: Any = addr) -> None:
                with contextlib.suppress(OSError):
                    udp.sendto(data, addr)

            self._dispatch(wire, "udp", reply)

    def _tcp_conn(self, conn: socket.socket) -> None:
        send_lock = threading.Lock()

        def reply(data: bytes) -> None:
            with send_lock, contextlib.suppress(OSError):
                conn.sendall(struct.pack("!H", len(data)) + data)

        try:
            while not self._stopping.is_set():
                header = _recv_exact(conn, 2)
                if header is None:
                    return
                wire = _recv_exact(conn, struct.unpack("!H", header)[0])
                if wire is None:
                    return
                self._dispatch(wire, "tcp", reply)
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _dispatch(self, wire: bytes, transport: str, reply: Reply) -> None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return  # clusterdns never sends one; dropped
        if query.flags & dns.flags.QR or len(query.question) != 1:
            return  # a response is never answered
        self._record(transport, query)
        with self._mode_lock:
            mode, kw = self._mode
        if mode == "timeout":
            return
        if mode == "garbage":
            reply(os.urandom(64))
            return
        if mode == "loop" and _is_loop_probe(query):
            self._spawn(self._forward, "upstream-loop", wire, transport, kw, reply)
            return
        if mode == "servfail":
            response = self._error(query, dns.rcode.SERVFAIL)
        elif mode == "wrong_question":
            response = self._wrong_question(query)
        else:
            response = self._answer(query)
        if mode == "wrong_id":
            response.id = (query.id + 1) & 0xFFFF
        data = self._render(query, response, transport)
        if mode == "delay":
            self._later(float(kw["seconds"]), reply, data)
        else:
            reply(data)

    def _record(self, transport: str, query: dns.message.Message) -> None:
        qname = query.question[0].name.to_text()
        qtype = dns.rdatatype.to_text(query.question[0].rdtype)
        flags = dns.flags.to_text(query.flags)
        if query.edns >= 0:
            flags = " ".join(f for f in (flags, dns.flags.edns_to_text(query.ednsflags)) if f)
        with self._queries_lock:
            self._queries.append((transport, qname, qtype, flags))

    def _later(self, seconds: float, reply: Reply, data: bytes) -> None:
        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            if not self._stopping.is_set():
                reply(data)

        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    def _forward(self, wire: bytes, transport: str, kw: dict[str, Any], reply: Reply) -> None:
        target = tuple(kw["target"])
        timeout = float(kw.get("timeout", 2.0))
        try:
            if transport == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(timeout)
                    sock.connect(target)
                    sock.send(wire)
                    data = sock.recv(65535)
            else:
                with socket.create_connection(target, timeout=timeout) as sock:
                    sock.sendall(struct.pack("!H", len(wire)) + wire)
                    header = _recv_exact(sock, 2)
                    if header is None:
                        return
                    got = _recv_exact(sock, struct.unpack("!H", header)[0])
                    if got is None:
                        return
                    data = got
        except OSError:
            return  # no answer from the target: the client times out
        if not self._stopping.is_set():
            reply(data)

    # -- answers -----------------------------------------------------------------------------

    def _render(
        self, query: dns.message.Message, response: dns.message.Message, transport: str
    ) -> bytes:
        if transport == "tcp":
            return response.to_wire(max_size=65535)
        limit = max(512, query.payload) if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer = []
            response.authority = []
            response.additional = []
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    @staticmethod
    def _error(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
        response = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
        response.set_rcode(rcode)
        return response

    def _wrong_question(self, query: dns.message.Message) -> dns.message.Message:
        name = dns.name.from_text("www", self.origin)
        if query.question[0].name == name:
            name = dns.name.from_text("txt", self.origin)
        other = dns.message.make_query(name, query.question[0].rdtype)
        other.id = query.id
        other.flags = query.flags
        if query.edns >= 0:
            other.use_edns(query.edns, query.ednsflags, query.payload)
        return self._answer(other)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN or not question.name.is_subdomain(self.origin):
            return self._error(query, dns.rcode.REFUSED)
        response = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
        response.flags |= dns.flags.AA
        rdtype = question.rdtype
        name = question.name
        with self._zone_lock:
            for _ in range(MAX_CNAME_CHAIN):
                if not name.is_subdomain(self.origin):
                    return response  # the chain left the zone: the client resolves the rest
                node = self.zone.get_node(name)
                if node is None:
                    if not self._empty_non_terminal(name):
                        response.set_rcode(dns.rcode.NXDOMAIN)
                    response.authority.append(self._negative_soa())
                    return response
                rdataset = node.get_rdataset(dns.rdataclass.IN, rdtype)
                if rdataset is not None:
                    response.answer.append(_rrset(name, rdataset))
                    return response
                cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
                if cname is None:
                    response.authority.append(self._negative_soa())
                    return response
                response.answer.append(_rrset(name, cname))
                name = cname[0].target
        return response

    def _empty_non_terminal(self, name: dns.name.Name) -> bool:
        return any(other != name and other.is_subdomain(name) for other in self.zone.nodes)

    def _negative_soa(self) -> dns.rrset.RRset:
        soa = self.zone.get_rdataset(self.origin, dns.rdatatype.SOA)
        assert soa is not None
        return dns.rrset.from_rdata_list(self.origin, min(soa.ttl, soa[0].minimum), list(soa))


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))


def _is_loop_probe(query: dns.message.Message) -> bool:
    if len(query.question) != 1 or query.question[0].rdtype != dns.rdatatype.HINFO:
        return False
    return LOOP_PROBE.match(query.question[0].name.to_text()) is not None


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """Read exactly ``n`` bytes; None on a clean or early end of stream."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)
