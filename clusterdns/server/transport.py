"""asyncio transports: UDP and TCP on one address (RFC 1035 4.2, RFC 7766).

Thin shells around :class:`~clusterdns.plugins.chain.Handler`: they call it synchronously and
send what it returns. TCP carries several queries per connection, each with a 2-byte
length prefix; an idle connection is closed after ``idle_timeout`` seconds, and so is one
whose client does not read its replies within that time (RFC 7766 10; CoreDNS's 5 s write
timeout). A forwarded query does not hold the replies behind it: TCP answers go out in the
order they are ready (RFC 7766 7). A fault answering one query is SERVFAIL for that query,
never a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Awaitable
from typing import Any, cast

from ..core import defaults
from ..core.errors import listen_error
from ..core.rr import Rcode
from ..dns.wire import error_response, header_only_response, parse_header, parse_query
from ..plugins.chain import Handler, Mux
from ..plugins.plugin import Reply
from .batch import SLOT, BatchServer
from .batch import available as batch_available

log = logging.getLogger("clusterdns.server.transport")

# The defaults live in core.defaults; these names stay importable from here.
TCP_IDLE_TIMEOUT = defaults.TCP_IDLE_TIMEOUT  # seconds (RFC 7766 6.2.3)
MAX_TCP_CONNECTIONS = defaults.MAX_TCP_CONNECTIONS  # open at once; more are closed at accept
MAX_TCP_QUERIES = defaults.MAX_TCP_QUERIES  # per connection (RFC 7766 6.2.2)
MAX_TCP_PENDING = 100  # forwarded queries waiting at once per connection; then reading waits


def servfail(data: bytes) -> bytes | None:
    """SERVFAIL for a query that made us fail (RFC 1035 4.1.1): with its question when it
    parses, else the header only; None for a packet that gets no reply at all."""
    try:
        return error_response(parse_query(data), Rcode.SERVFAIL)
    except Exception:
        try:
            ident, flags = parse_header(data)
        except Exception:
            return None
        return header_only_response(ident, flags, Rcode.SERVFAIL)


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
        reply = self.server.handler.handle(
            data, False, self.family, str(addr[0]), int(addr[1]), self.server.local
        )
        self.send(reply, addr)

    def send(self, reply: Reply, addr: tuple[str | int, ...]) -> None:
        """Send ``reply`` now, or when a forwarded query's awaitable gives it."""
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


KEEP_INTERVAL = 0.01  # seconds: how often the loop keeps the NXDOMAINs the thread made


def _needs_addresses(handler: Handler | Mux) -> bool:
    """Whether the fast path reads the client's address: the traffic view counts by it,
    a view picks the block by it."""
    return handler.traffic is not None or bool(getattr(handler, "views", False))


class UDPThread:
    """UDP served by a dedicated thread: blocking ``recvfrom``, the one fast path
    (``handler.fast``: a kept answer, or a certain NXDOMAIN from the SOA template), ``sendto``.
    Every other datagram goes to the event loop (``call_soon_threadsafe``) already parsed,
    and is answered there by the chain, so the store, the resolver, forwarding and
    everything that writes the answer cache stay on the loop thread. The thread writes
    nothing but its own counters (``Tally``); a hit read while the loop applies a change
    is the answer from just before it. The NXDOMAINs it made are kept by the loop every
    :data:`KEEP_INTERVAL` (at most ``dns.cache.KEEP_MAX`` each time, decided afresh from the
    store), so a random-name flood cannot keep the loop busy. ``serve``'s default where
    recvmmsg exists (``--no-udp-thread``: the event loop alone).
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
        handler = server.handler
        # recvmmsg/sendmmsg where the platform has them (Linux): many datagrams per call;
        # the source address is decoded for the fast path only when the traffic view counts
        # or a view picks the block by it
        self.batch = (
            BatchServer(
                sock,
                self._fast,
                self._hand_off,
                slot=max(SLOT, handler.udp_size),
                addresses=_needs_addresses(handler),
                prepare=self._prepare,
            )
            if batch_available()
            else None
        )
        # this thread's counters, per handler (a reload swaps the handler): made on the loop
        self.tallies: dict[int, tuple[Handler | Mux, Any]] = {}
        self.keeper: asyncio.TimerHandle | None = None

    def tally(self, handler: Handler | Mux) -> Any:
        """This thread's counters for ``handler`` (made on the loop, where the cache is
        owned; the thread only reads this dict)."""
        found = self.tallies.get(id(handler))
        if found is None or found[0] is not handler:
            if self.batch is not None:  # a reload may bring views or the traffic view
                self.batch.addresses = _needs_addresses(handler)
            self.tallies = {id(handler): (handler, handler.tally(self.family))}
            found = self.tallies[id(handler)]
        return found[1]

    def begin(self) -> None:
        """On the loop: make this thread's counters, start it and the keeper."""
        self.tally(self.server.handler)
        self.thread.start()
        self.keeper = self.loop.call_later(KEEP_INTERVAL, self._keep)

    def run(self) -> None:
        """The serving loop (the thread's body): batched where it can be, else one
        ``recvfrom``/``sendto`` per datagram."""
        if self.batch is not None:
            self.batch.run()
            return
        recvfrom, sendto = self.sock.recvfrom, self.sock.sendto
        call = self.loop.call_soon_threadsafe
        on_loop = self._answer
        local = self.server.local  # the bound address: what view's server_ip() reads
        while not self.stopping:
            try:
                data, addr = recvfrom(65535)
            except OSError:
                if self.stopping:
                    return
                continue
            handler = self.server.handler
            mine = self.tallies.get(id(handler))
            if mine is None or mine[0] is not handler:  # reloaded: the loop answers
                out: Any = data  # until the keeper made this thread's counters
            else:
                out = handler.fast(data, False, mine[1], addr[0], addr[1], local)
                if type(out) is bytes:
                    with contextlib.suppress(OSError):
                        sendto(out, addr)
                    continue
                if out is None:
                    continue
            if self.stopping:
                return
            try:
                call(on_loop, out, data, addr)
            except RuntimeError:  # the loop is closed: shutting down
                return

    def _fast(self, data: bytes, addr: Any) -> Any:
        """The batch's answer callable, on this thread: the fast path's reply (``b""``:
        send nothing), else what the loop must answer (the parsed query; None while a
        reloaded handler has no counters here yet)."""
        handler = self.server.handler
        mine = self.tallies.get(id(handler))
        if mine is None or mine[0] is not handler:
            return None
        if addr is None:
            out = handler.fast(data, False, mine[1])
        else:
            out = handler.fast(data, False, mine[1], addr[0], addr[1], self.server.local)
        return b"" if out is None else out

    def _prepare(self) -> tuple[Any, Any, Any] | None:
        """Once per batch, on this thread: the current handler's kept-answer lookup, the
        rest of its fast path and this thread's counters, for the batch to call directly
        (no layers per datagram); None for what ``_fast`` must serve (a block with ``log``,
        which sees every query; several blocks; a reloaded handler without counters
        here yet)."""
        handler = self.server.handler
        mine = self.tallies.get(id(handler))
        if (
            mine is None
            or mine[0] is not handler
            or type(handler) is not Handler
            or handler.querylog is not None
        ):
            return None
        return handler.cache.lookup, handler.unkept, mine[1]

    def _hand_off(self, items: list[tuple[bytes, Any, Any]]) -> None:
        """The batch's datagrams the fast path left, to the loop in one call."""
        self.loop.call_soon_threadsafe(self._answer_all, items)

    def _answer_all(self, items: list[tuple[bytes, Any, Any]]) -> None:
        """On the loop: the chain answers each datagram the batch left."""
        if self.stopping:
            return
        for data, addr, out in items:
            self._answer(data if out is None else out, data, addr)

    def _answer(self, out: Any, data: bytes, addr: tuple[str | int, ...]) -> None:
        """On the loop: the chain answers a query the fast path left (``out``: the parsed
        query, or the raw datagram while a reloaded handler has no counters here yet)."""
        handler = self.server.handler
        if isinstance(out, bytes):
            self.protocol.datagram_received(data, addr)
            return
        reply = handler.answer(
            out, data, False, self.family, str(addr[0]), int(addr[1]), self.server.local
        )
        self.protocol.send(reply, addr)

    def _keep(self) -> None:
        """On the loop: keep the NXDOMAINs the thread made since the last round; make
        counters for a handler a reload brought."""
        handler = self.server.handler
        handler.keep_made(self.tally(handler))
        if not self.stopping:
            self.keeper = self.loop.call_later(KEEP_INTERVAL, self._keep)

    def stop(self) -> None:
        """Stop the thread: a flag, then a datagram to itself to end its ``recvfrom``."""
        self.stopping = True
        if self.batch is not None:
            self.batch.stopping = True
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
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        self.family = "2" if ":" in host else "1"
        # the UDP socket's own (ip, port) once bound: a view's server_ip()/server_port()
        # over UDP (CoreDNS: the listener's LocalAddr, the wildcard on a wildcard bind)
        self.local: tuple[str, int] = (host, port)

    async def start(self) -> None:
        """Bind UDP, then TCP on the same port (retrying ephemeral ports a few times).

        Raises ListenError (naming address, protocol and what to do) if it cannot bind."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for attempt in range(20):
            udp: asyncio.DatagramTransport | UDPThread
            try:
                if self.udp_thread:
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                    if self.reuse_port:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    try:
                        sock.bind((self.host, self.port))
                    except OSError:
                        sock.close()
                        raise
                    udp = UDPThread(self, sock, "2" if family == socket.AF_INET6 else "1")
                    port = sock.getsockname()[1]
                    self.local = (str(sock.getsockname()[0]), port)
                else:
                    udp, _ = await loop.create_datagram_endpoint(
                        lambda: UDPProtocol(self, "2" if family == socket.AF_INET6 else "1"),
                        local_addr=(self.host, self.port),
                        family=family,
                        reuse_port=self.reuse_port or None,
                    )
                    name = udp.get_extra_info("sockname")
                    port, self.local = name[1], (str(name[0]), int(name[1]))
            except OSError as exc:
                raise listen_error(exc, self.host, self.port, "udp") from None
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_tcp,
                    self.host,
                    port,
                    family=family,
                    reuse_address=True,
                    reuse_port=self.reuse_port or None,
                )
            except OSError as exc:
                if isinstance(udp, UDPThread):
                    udp.sock.close()
                else:
                    udp.close()
                if self.port != 0 or attempt == 19:
                    raise listen_error(exc, self.host, port, "tcp") from None
                continue
            self._udp = udp
            self.port = port
            if isinstance(udp, UDPThread):
                udp.begin()
            return

    async def stop(self) -> None:
        """Close the listeners and every open TCP connection (at once: replies not yet
        taken by a client are dropped, a stuck writer does not delay shutdown)."""
        if isinstance(self._udp, UDPThread):
            if self._udp.keeper is not None:
                self._udp.keeper.cancel()
            await asyncio.get_running_loop().run_in_executor(None, self._udp.stop)
        elif self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._connections):
                writer.transport.abort()
            if self._tcp_tasks:
                await asyncio.wait(list(self._tcp_tasks), timeout=1.0)
            await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.max_tcp_connections:
            self.tcp_refused += 1
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tcp_tasks.add(task)
        self._connections.add(writer)
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else ""
        peer_port = int(peername[1]) if peername else 0
        sockname = writer.get_extra_info("sockname")  # the address the client reached
        local = (str(sockname[0]), int(sockname[1])) if sockname else self.local
        pending: set[asyncio.Task[None]] = set()
        try:
            for _ in range(self.max_tcp_queries):
                # A whole message must arrive within the idle timeout: a client sending a
                # byte a second, or announcing more than it sends, is cut off.
                try:
                    prefix = await asyncio.wait_for(reader.readexactly(2), self.idle_timeout)
                except asyncio.IncompleteReadError as exc:
                    if not exc.partial and pending:  # closed after its last query:
                        await asyncio.wait(pending, timeout=self.idle_timeout)  # answer it
                    raise
                length = int.from_bytes(prefix, "big")
                data = await asyncio.wait_for(reader.readexactly(length), self.idle_timeout)
                try:
                    reply = self.handler.handle(data, True, self.family, peer, peer_port, local)
                except Exception:  # a bug costs this query, not the connection
                    log.exception("internal error answering a TCP query from %s", peer)
                    reply = servfail(data)
                if reply is None:
                    continue
                if isinstance(reply, bytes):
                    await self._send(writer, reply)
                    continue
                # Out of order (RFC 7766 7): the queries behind a forwarded one go on.
                if len(pending) >= MAX_TCP_PENDING:
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                later = asyncio.ensure_future(self._send_later(writer, reply, data))
                pending.add(later)
                later.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending, timeout=self.idle_timeout)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # the client closed, went quiet, sent less than it announced, or does not read
        finally:
            for later in pending:
                later.cancel()
            self._connections.discard(writer)
            if task is not None:
                self._tcp_tasks.discard(task)
            writer.transport.abort()  # no flush: what a client did not read is dropped
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _send(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        """Write one reply; TimeoutError when the client has not taken it within the idle
        timeout (RFC 7766 10: a client that does not read holds no slot for long).
        ConnectionError when the connection is already closed (uvloop raises RuntimeError
        on a write to a closed transport; asyncio's own loop drops the data)."""
        if writer.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        writer.write(len(reply).to_bytes(2, "big") + reply)
        await asyncio.wait_for(writer.drain(), self.idle_timeout)

    async def _send_later(
        self, writer: asyncio.StreamWriter, pending: Awaitable[bytes | None], data: bytes
    ) -> None:
        """Await a forwarded query's reply and send it when ready; SERVFAIL if it failed.
        A client that stops reading has its connection aborted."""
        try:
            reply = await pending
        except Exception:
            log.exception("internal error answering a TCP query")
            reply = servfail(data)
        if reply is None or writer.transport.is_closing():
            return
        try:
            await self._send(writer, reply)
        except (TimeoutError, ConnectionError):
            writer.transport.abort()  # the reading side sees it and ends the connection
