"""Talking to upstream resolvers (CoreDNS forward): addresses, UDP/TCP/TLS exchanges,
reused connections, and :class:`Transport`, which picks the way for each upstream.

UDP goes from a fresh random source port and falls back to TCP when the reply is
truncated; TLS upstreams (RFC 7858), and TCP ones with ``force_tcp``, keep connections
open for reuse (:class:`StreamPool`). Every reply is checked against the query's ID and
question; anything else is an :class:`UpstreamError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.names import canonical_ip, split_hostport
from .forward_cache import question_end

DNS_PORT = 53  # RFC 1035 4.2


class UpstreamError(Exception):
    """An upstream did not give a usable reply (timeout, network error, bad reply)."""


def upstream_addresses(to: tuple[str, ...]) -> list[tuple[str, int]]:
    """Resolve ``forward``'s TO list: addresses (``1.2.3.4``, ``1.2.3.4:53``, ``[::1]:53``,
    ``dns://...``) or paths of resolv.conf files, whose ``nameserver`` lines are taken.

    Raises ConfigError for anything else, or when no upstream results.
    """
    out: list[tuple[str, int]] = []
    for item in to:
        try:
            host, port = split_hostport(item.removeprefix("dns://"), DNS_PORT)
        except ValueError:  # no address: a file, or nothing usable (said below)
            host, port = "", DNS_PORT
        if canonical_ip(host) is not None:
            out.append((host, port))
            continue
        path = Path(item)
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(
                f"forward: {item}: not an address nor a readable file: {exc}"
            ) from None
        for line in lines:
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                address = words[1].split("%")[0]
                if canonical_ip(address) is not None:
                    out.append((address, 53))
    if not out:
        raise ConfigError(f"forward: no upstream address in {' '.join(to)}")
    return out


def _check_reply(reply: bytes, ident: int, question: bytes) -> bool:
    """A reply matches when it is a response with our ID and our question (any case)."""
    if len(reply) < 12 + len(question):
        return False
    rid, flags, qdcount = struct.unpack_from("!HHH", reply)
    if rid != ident or not flags & 0x8000 or qdcount != 1:
        return False
    return reply[12 : 12 + len(question)].lower() == question.lower()


class _UDPExchange(asyncio.DatagramProtocol):
    def __init__(self, ident: int, question: bytes) -> None:
        self.ident = ident
        self.question = question
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # Anything that is not the reply to our question (a late reply, a spoof) is ignored.
        if not self.reply.done() and _check_reply(data, self.ident, self.question):
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def exchange_udp(host: str, port: int, packet: bytes, timeout: float) -> bytes:
    """Send ``packet`` over UDP from a fresh ephemeral port; return the matching reply.

    Raises UpstreamError on timeout or network error.
    """
    loop = asyncio.get_running_loop()
    ident = struct.unpack_from("!H", packet)[0]
    question = packet[12 : question_end(packet)]
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _UDPExchange(ident, question), remote_addr=(host, port)
        )
    except OSError as exc:
        raise UpstreamError(f"{host}:{port}: {exc}") from None
    try:
        transport.sendto(packet)
        return await asyncio.wait_for(protocol.reply, timeout)
    except (TimeoutError, OSError) as exc:
        raise UpstreamError(f"{host}:{port}: {type(exc).__name__} over UDP") from None
    finally:
        transport.close()


async def exchange_tcp(host: str, port: int, packet: bytes, timeout: float) -> bytes:
    """Send ``packet`` over TCP (RFC 7766) and return the reply; UpstreamError on failure."""
    ident = struct.unpack_from("!H", packet)[0]
    question = packet[12 : question_end(packet)]

    async def talk() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(len(packet).to_bytes(2, "big") + packet)
            await writer.drain()
            length = int.from_bytes(await reader.readexactly(2), "big")
            return await reader.readexactly(length)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    try:
        reply = await asyncio.wait_for(talk(), timeout)
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
        raise UpstreamError(f"{host}:{port}: {type(exc).__name__} over TCP") from None
    if not _check_reply(reply, ident, question):
        raise UpstreamError(f"{host}:{port}: reply does not match the query over TCP")
    return reply


@dataclass
class Upstream:
    """One upstream resolver and its consecutive failure count. ``tls``: a DNS-over-TLS
    upstream (RFC 7858); ``server_name``: the name its certificate must carry."""

    host: str
    port: int
    fails: int = 0
    tls: bool = False
    server_name: str = ""

    @property
    def label(self) -> str:
        """``host:port`` as metrics and logs name it (CoreDNS ``to`` label)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def tls_upstream(item: str) -> tuple[str, int, str] | None:
    """``tls://IP[%NAME][:PORT]`` -> (IP, port, per-endpoint server name); None when
    ``item`` is no tls:// upstream. Port 853 by default (RFC 7858 3.1). Raises ConfigError
    for a bad address."""
    if not item.startswith("tls://"):
        return None
    text = item.removeprefix("tls://")
    port = 853
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif text.count(":") == 1 or (":" in text and "%" in text and text.rsplit(":", 1)[1].isdigit()):
        host, _, tail = text.rpartition(":")
        if not tail.isdigit():
            raise ConfigError(f"forward: bad port in {item!r}")
        port = int(tail)
    else:
        host = text
    host, _, name = host.partition("%")
    if canonical_ip(host) is None:
        raise ConfigError(f"forward: want tls://IP[%NAME][:PORT], got {item!r}")
    return host, port, name


def tls_context(files: tuple[str, ...] | None) -> ssl.SSLContext:
    """The client TLS context of ``tls [CERT KEY] [CA]`` (CoreDNS forward): the server
    is verified with the CA file or the system CAs; CERT and KEY authenticate the client.
    TLS 1.2 at least. Raises ConfigError for unreadable files."""
    files = files or ()
    ca = files[0] if len(files) == 1 else (files[2] if len(files) == 3 else None)
    try:
        context = ssl.create_default_context(cafile=ca)
        if len(files) >= 2:
            context.load_cert_chain(files[0], files[1])
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"forward: tls {' '.join(files)}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class StreamPool:
    """Open TCP/TLS connections to one upstream, reused until idle ``expire`` seconds
    (CoreDNS forward ``expire``). One query at a time per connection; as many
    connections as queries in flight."""

    def __init__(
        self,
        upstream: Upstream,
        expire: float,
        context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstream = upstream
        self.expire = expire
        self.context = context
        self.clock = clock
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0  # connections opened so far (tests, metrics)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        up = self.upstream
        self.opened += 1
        if self.context is None:
            return await asyncio.open_connection(up.host, up.port)
        return await asyncio.open_connection(
            up.host, up.port, ssl=self.context, server_hostname=up.server_name or up.host
        )

    def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = self.clock()
        while self.idle:
            reader, writer, used = self.idle.pop()
            if now - used < self.expire and not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def exchange(self, packet: bytes, timeout: float) -> bytes:
        """Send ``packet`` and return the matching reply; a reused connection that turns
        out closed is replaced once. Raises UpstreamError."""
        ident = struct.unpack_from("!H", packet)[0]
        question = packet[12 : question_end(packet)]
        up = self.upstream
        transport = "TLS" if self.context is not None else "TCP"
        for attempt in range(2):
            conn = self._take() if attempt == 0 else None
            reused = conn is not None
            try:
                reader, writer = conn if conn is not None else await asyncio.wait_for(
                    self._connect(), timeout
                )
            except (TimeoutError, OSError, ssl.SSLError) as exc:
                raise UpstreamError(
                    f"{up.label}: {type(exc).__name__} over {transport}: {exc}"
                ) from None
            try:
                writer.write(len(packet).to_bytes(2, "big") + packet)
                await writer.drain()
                prefix = await asyncio.wait_for(reader.readexactly(2), timeout)
                reply = await asyncio.wait_for(
                    reader.readexactly(int.from_bytes(prefix, "big")), timeout
                )
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
                writer.close()
                if reused and not isinstance(exc, TimeoutError):
                    continue  # the upstream closed an idle connection: a fresh one
                raise UpstreamError(f"{up.label}: {type(exc).__name__} over {transport}") from None
            if not _check_reply(reply, ident, question):
                writer.close()
                raise UpstreamError(f"{up.label}: reply does not match the query over {transport}")
            if self.expire > 0:
                self.idle.append((reader, writer, self.clock()))
            else:
                writer.close()
            return reply
        raise UpstreamError(f"{up.label}: connection closed over {transport}")

    def close(self) -> None:
        """Close every idle connection."""
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


class Transport:
    """The ways to the upstreams of one ``forward``: a :class:`StreamPool` for TLS
    upstreams and, with ``force_tcp``, TCP ones; UDP (TCP when truncated) for the rest.
    ``read_timeout``: seconds per exchange."""

    def __init__(
        self,
        upstreams: Iterable[Upstream],
        *,
        expire: float,
        force_tcp: bool,
        context: ssl.SSLContext | None,
        read_timeout: float,
    ) -> None:
        self.read_timeout = read_timeout
        self.pools = {
            id(u): StreamPool(u, expire, context if u.tls else None)
            for u in upstreams
            if u.tls or force_tcp
        }

    async def exchange(self, upstream: Upstream, packet: bytes) -> bytes:
        """Send ``packet`` to ``upstream``; the matching reply. Raises UpstreamError."""
        timeout = self.read_timeout
        pool = self.pools.get(id(upstream))
        if pool is not None:  # TLS, or force_tcp: over a reused connection
            return await pool.exchange(packet, timeout)
        # UDP first, TCP when truncated, for every client: the cache gets whole answers.
        # (CoreDNS does this only with prefer_udp; otherwise it passes TC on to the
        # client, which then asks again over TCP.)
        reply = await exchange_udp(upstream.host, upstream.port, packet, timeout)
        if reply[2] & 0x02:
            reply = await exchange_tcp(upstream.host, upstream.port, packet, timeout)
        return reply

    def close(self) -> None:
        """Close every pooled connection."""
        for pool in self.pools.values():
            pool.close()
