"""asyncio transports: UDP and TCP on one address (RFC 1035 4.2, RFC 7766).

Thin shells around :class:`~clusterdns.handler.Handler`: they call it synchronously and
send what it returns. TCP carries several queries per connection, each with a 2-byte
length prefix; an idle connection is closed after ``idle_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections import deque
from typing import cast

from .handler import Handler, Mux

log = logging.getLogger("clusterdns.server")

TCP_IDLE_TIMEOUT = 10.0  # seconds (RFC 7766 6.2.3: "on the order of seconds")
MAX_TCP_CONNECTIONS = 1000  # open at once; more are closed at accept
MAX_TCP_QUERIES = 10000  # per connection, then it is closed (RFC 7766 6.2.2)


class UDPProtocol(asyncio.DatagramProtocol):
    """Answers each datagram in the callback that received it; a forwarded query becomes a
    task that sends its reply when it has one."""

    def __init__(self, server: DNSServer, family: str) -> None:
        self.server = server
        self.family = family
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Future[bytes | None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport is not a registered DatagramTransport subclass
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self.server.handler.handle(data, False, self.family, str(addr[0]))
        if reply is None or self.transport is None:
            return
        if isinstance(reply, bytes):
            self.transport.sendto(reply, addr)
            return
        future = asyncio.ensure_future(reply)
        self.pending.add(future)
        future.add_done_callback(lambda done: self._send_later(done, addr))

    def _send_later(self, done: asyncio.Future[bytes | None], addr: tuple[str | int, ...]) -> None:
        self.pending.discard(done)
        if done.cancelled():
            return
        exc = done.exception()
        if exc is not None:
            log.error("forwarded query failed: %s", exc)
            return
        reply = done.result()
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away, and the like: not our fault.
        log.debug("UDP error: %s", exc)


class _SocketTransport:
    """What :class:`UDPProtocol` needs of a transport, over a plain socket that the
    :class:`UDPThread` reads (sendto is safe from any thread)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closing = False

    def sendto(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        with contextlib.suppress(OSError):  # a client gone away: as asyncio ignores it
            self.sock.sendto(data, addr)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


QUICK_BATCH = 100  # NXDOMAINs made by the UDP thread that the loop caches per round ...
QUICK_DELAY = 0.01  # ... one round at most this often (seconds)


class UDPThread:
    """UDP served by a dedicated thread: blocking ``recvfrom``, the answer-cache lookup,
    ``sendto`` (issue 11: 1.6x the queries per CPU second of the asyncio transport,
    bench/udp_loop.py). The thread answers cache hits, and names that are certainly
    NXDOMAIN (``Handler.quick_reply``: a few dict lookups, nothing written); every other
    datagram goes to the event loop (``call_soon_threadsafe``) and is handled there as the
    asyncio transport would, so the store, the resolver, forwarding and everything that
    writes the answer cache stay on the loop thread. A hit read while the loop applies a
    change is the answer from just before it: the store drops the entries a change touches
    in the same loop turn, and the thread never writes the cache. The NXDOMAINs the thread
    made are cached by the loop afterwards, at most :data:`QUICK_BATCH` per
    :data:`QUICK_DELAY` (a random-name flood cannot keep the loop busy). Opt-in
    (``--udp-thread``).
    """

    def __init__(self, server: DNSServer, sock: socket.socket, family: str) -> None:
        self.server = server
        self.sock = sock
        self.family = family
        self.loop = asyncio.get_running_loop()
        self.transport = _SocketTransport(sock)
        self.protocol = UDPProtocol(server, family)
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]
        self.stopping = False
        self.thread = threading.Thread(target=self.run, name="udp", daemon=True)
        # queries the thread answered NXDOMAIN, for the loop to cache (bounded: a flood
        # drops the oldest), and whether a round of caching them is scheduled
        self.quick: deque[bytes] = deque(maxlen=QUICK_BATCH)
        self.quick_pending = False

    def run(self) -> None:
        """The serving loop (the thread's body)."""
        recvfrom, sendto = self.sock.recvfrom, self.sock.sendto
        call = self.loop.call_soon_threadsafe
        on_loop = self.protocol.datagram_received
        family = self.family
        while not self.stopping:
            try:
                data, addr = recvfrom(65535)
            except OSError:
                if self.stopping:
                    return
                continue
            handler = self.server.handler
            if type(handler) is Handler:
                cache = handler.cache
                hit = cache.lookup(data, False)
                qtype = cache.last_qtype
                if hit is None:
                    quick = handler.quick_reply(data)
                    if quick is not None:
                        hit, qtype = quick
                        self.quick.append(data)
                        if not self.quick_pending:
                            self.quick_pending = True
                            with contextlib.suppress(RuntimeError):  # loop closed
                                call(self.loop.call_later, QUICK_DELAY, self._cache_quick)
                if hit is not None:
                    if handler.metrics is not None:
                        handler.metrics.hit(False, family, qtype, data, hit)
                    with contextlib.suppress(OSError):
                        sendto(hit, addr)
                    continue
            if self.stopping:
                return
            try:
                call(on_loop, data, addr)
            except RuntimeError:  # the loop is closed: shutting down
                return

    def _cache_quick(self) -> None:
        """On the loop: cache the NXDOMAINs the thread made since the last round."""
        self.quick_pending = False
        handler = self.server.handler
        quick = self.quick
        while quick:
            data = quick.popleft()
            if type(handler) is Handler:
                handler.cache_quick(data)

    def stop(self) -> None:
        """Stop the thread: a flag, then a datagram to itself to end its ``recvfrom``."""
        self.stopping = True
        self.transport.close()
        with contextlib.suppress(OSError):
            wake = socket.socket(self.sock.family, socket.SOCK_DGRAM)
            wake.sendto(b"", self.sock.getsockname()[:2])
            wake.close()
        self.thread.join(2.0)
        self.sock.close()


class DNSServer:
    """UDP and TCP listeners on ``host``:``port`` (port 0: one ephemeral port for both).

    TCP limits: ``idle_timeout`` seconds for each whole message (and between messages),
    ``max_tcp_connections`` open at once, ``max_tcp_queries`` per connection. After
    :meth:`start`, :attr:`port` is the bound port. Raises OSError if it cannot bind.
    """

    def __init__(
        self,
        handler: Handler | Mux,
        host: str,
        port: int,
        *,
        idle_timeout: float = TCP_IDLE_TIMEOUT,
        max_tcp_connections: int = MAX_TCP_CONNECTIONS,
        max_tcp_queries: int = MAX_TCP_QUERIES,
        reuse_port: bool = False,
        udp_thread: bool = False,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.max_tcp_connections = max_tcp_connections
        self.max_tcp_queries = max_tcp_queries
        self.tcp_refused = 0  # connections closed at accept: over max_tcp_connections
        self.reuse_port = reuse_port  # SO_REUSEPORT: several worker processes, one port
        self.udp_thread = udp_thread  # UDP from a dedicated thread (UDPThread)
        self._udp: asyncio.DatagramTransport | UDPThread | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.family = "2" if ":" in host else "1"

    async def start(self) -> None:
        """Bind UDP, then TCP on the same port (retrying ephemeral ports a few times)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for attempt in range(20):
            udp: asyncio.DatagramTransport | UDPThread
            if self.udp_thread:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                if self.reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((self.host, self.port))
                udp = UDPThread(self, sock, "2" if family == socket.AF_INET6 else "1")
                port = sock.getsockname()[1]
            else:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: UDPProtocol(self, "2" if family == socket.AF_INET6 else "1"),
                    local_addr=(self.host, self.port),
                    family=family,
                    reuse_port=self.reuse_port or None,
                )
                port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_tcp,
                    self.host,
                    port,
                    family=family,
                    reuse_address=True,
                    reuse_port=self.reuse_port or None,
                )
            except OSError:
                if isinstance(udp, UDPThread):
                    udp.sock.close()
                else:
                    udp.close()
                if self.port != 0 or attempt == 19:
                    raise
                continue
            self._udp = udp
            self.port = port
            if isinstance(udp, UDPThread):
                udp.thread.start()
            return

    async def stop(self) -> None:
        """Close the listeners and every open TCP connection."""
        if isinstance(self._udp, UDPThread):
            await asyncio.get_running_loop().run_in_executor(None, self._udp.stop)
        elif self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._connections):
                writer.close()
            await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.max_tcp_connections:
            self.tcp_refused += 1
            writer.close()
            return
        self._connections.add(writer)
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else ""
        try:
            for _ in range(self.max_tcp_queries):
                # A whole message must arrive within the idle timeout: a client sending a
                # byte a second, or announcing more than it sends, is cut off.
                prefix = await asyncio.wait_for(reader.readexactly(2), self.idle_timeout)
                length = int.from_bytes(prefix, "big")
                data = await asyncio.wait_for(reader.readexactly(length), self.idle_timeout)
                reply = self.handler.handle(data, True, self.family, peer)
                if reply is not None and not isinstance(reply, bytes):
                    reply = await reply
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # the client closed, went quiet, or sent less than it announced
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
