"""Forwarding to upstream resolvers, with health checks and a cache (CoreDNS forward, cache).

Names outside the cluster zones (and reverse names the cluster does not know, with
``fallthrough``) go to the upstreams of a ``forward`` directive: over UDP from a fresh
random source port, TCP when the reply is truncated (or ``force_tcp``), the reply's ID and
question checked, ``read_timeout`` seconds per try. An upstream failing ``max_fails`` times
in a row is marked down and probed with ``. IN NS`` every ``health_check`` seconds until it
answers. SERVFAIL when every upstream fails; REFUSED beyond ``max_concurrent`` queries in
flight. Forwarded answers are cached (cachetools), success and denial apart, TTL capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachetools import LRUCache
from dnslib import QTYPE, RCODE, DNSRecord

from ..core.errors import ConfigError
from ..core.names import canonical_ip, find_zone
from ..core.rr import Rcode
from ..dns.wire import FLAG_AA, FLAG_TC, Query, error_response

log = logging.getLogger("clusterdns.plugins.forward")

READ_TIMEOUT = 2.0  # seconds per upstream try (CoreDNS forward's read timeout)
DEADLINE = 5.0  # seconds for one forwarded query over every try

@dataclass
class ForwardConfig:
    """The ``forward`` directive (CoreDNS plugin/forward README). Times in seconds."""

    zone: str
    to: tuple[str, ...]
    except_zones: tuple[str, ...] = ()
    max_concurrent: int = 0  # 0: unlimited
    max_fails: int = 2
    expire: float = 10.0
    policy: str = "random"
    force_tcp: bool = False
    prefer_udp: bool = False
    health_check: float = 0.5
    health_check_recursion: bool = True
    health_check_domain: str = "."
    tls: tuple[str, ...] | None = None  # tls [CERT KEY] [CA]; None: not given
    tls_servername: str = ""  # the name the upstreams' certificates are checked against


@dataclass
class CacheConfig:
    """The ``cache`` directive (CoreDNS plugin/cache README). TTLs in seconds."""

    zones: tuple[str, ...]
    success_capacity: int = 9984
    success_ttl: int = 3600
    success_min_ttl: int = 5
    denial_capacity: int = 9984
    denial_ttl: int = 1800
    denial_min_ttl: int = 5
    disable_success: tuple[str, ...] = ()
    disable_denial: tuple[str, ...] = ()
    prefetch: int = 0  # AMOUNT of hits that make an entry popular; 0: no prefetch
    prefetch_duration: float = 60.0  # seconds: the longest gap between those hits
    prefetch_percentage: int = 10  # refresh when this % of the original TTL is left
    serve_stale: float = 0.0  # seconds an expired entry may still be served; 0: never
    serve_stale_verify: bool = False  # ask upstream first, stale only when it fails
    keepttl: bool = False  # serve the TTL as received, not decreased by the time cached



class UpstreamError(Exception):
    """An upstream did not give a usable reply (timeout, network error, bad reply)."""


def upstream_addresses(to: tuple[str, ...]) -> list[tuple[str, int]]:
    """Resolve ``forward``'s TO list: addresses (``1.2.3.4``, ``1.2.3.4:53``, ``[::1]:53``,
    ``dns://...``) or paths of resolv.conf files, whose ``nameserver`` lines are taken.

    Raises ConfigError for anything else, or when no upstream results.
    """
    out: list[tuple[str, int]] = []
    for item in to:
        text = item.removeprefix("dns://")
        if canonical_ip(text.strip("[]")) is not None:
            out.append((text.strip("[]"), 53))
            continue
        host, sep, port = text.rpartition(":")
        if sep and canonical_ip(host.strip("[]")) is not None and port.isdigit():
            out.append((host.strip("[]"), int(port)))
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


def _question_end(data: bytes) -> int:
    pos = 12
    while pos < len(data) and data[pos]:
        if data[pos] >= 0xC0:
            return pos + 2 + 4
        pos += 1 + data[pos]
    return pos + 1 + 4


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
    question = packet[12 : _question_end(packet)]
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
    question = packet[12 : _question_end(packet)]

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
        question = packet[12 : _question_end(packet)]
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


class ForwardMetrics:
    """What the forwarder reports; :class:`clusterdns.server.metrics.Metrics` implements it."""

    def proxy_request(self, to: str, rcode: str, seconds: float) -> None:
        """One upstream exchange finished with ``rcode`` (or an error name)."""

    def healthcheck_failure(self, to: str) -> None:
        """A health probe of ``to`` failed."""

    def healthcheck_broken(self) -> None:
        """Every upstream was down: a random one was tried anyway."""

    def max_concurrent_reject(self) -> None:
        """A query was refused because ``max_concurrent`` were in flight."""

    def cache_hit(self, kind: str) -> None:
        """A cache hit; ``kind`` is success or denial."""

    def cache_miss(self) -> None:
        """A cache miss."""


class CacheEntry:
    """A cached reply: when it expires and was stored (monotonic seconds), its TTL when
    stored, and the hits that make it popular for prefetch (count, time of the last)."""

    __slots__ = ("expires", "stored", "record", "ttl", "hits", "last")

    def __init__(self, expires: float, stored: float, record: DNSRecord, ttl: int) -> None:
        self.expires = expires
        self.stored = stored
        self.record = record
        self.ttl = ttl
        self.hits = 0
        self.last = stored


@dataclass
class CacheHit:
    """What :meth:`ForwardCache.get` found: which cache, the reply with TTLs aged,
    whether it is past its TTL (served under serve_stale, TTL 0), whether to prefetch."""

    kind: str
    record: DNSRecord
    stale: bool = False
    prefetch: bool = False


class ForwardCache:
    """Forwarded answers by (qname, qtype, qclass, DO, CD), success and denial apart.

    TTL of an entry: the smallest TTL of its answer records (success) or min(SOA TTL, SOA
    minimum) of a negative answer (denial, RFC 2308 5), capped at the configured TTL and
    raised to the minimum TTL. Replies served from it have their TTLs decreased by the
    time spent in the cache (not with ``keepttl``) and AA set (CoreDNS cache: some glibc
    versions drop non-AA). With ``serve_stale``, an expired entry is served (TTL 0) for
    that long after it expired; with ``prefetch AMOUNT``, an entry hit AMOUNT times without
    a gap of ``prefetch_duration`` asks to be refreshed once ``prefetch_percentage`` of its
    TTL is left (CoreDNS cache README). ``clock``: monotonic seconds.
    """

    def __init__(self, config: CacheConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.success: LRUCache[tuple[Any, ...], CacheEntry] = LRUCache(
            max(1, config.success_capacity)
        )
        self.denial: LRUCache[tuple[Any, ...], CacheEntry] = LRUCache(
            max(1, config.denial_capacity)
        )

    @staticmethod
    def key(query: Query) -> tuple[Any, ...]:
        """The cache key of a query: its name folded to lower case, type, class, DO, CD."""
        edns = query.edns
        return (
            query.qname,
            query.qtype,
            query.qclass,
            bool(edns and edns[2]),
            bool(query.flags & 0x0010),
        )

    def get(self, query: Query) -> CacheHit | None:
        """A cached reply for ``query`` with TTLs aged, or None."""
        key = self.key(query)
        config = self.config
        for kind, cache in (("success", self.success), ("denial", self.denial)):
            entry = cache.get(key)
            if entry is None:
                continue
            now = self.clock()
            stale = now >= entry.expires
            if stale and now >= entry.expires + config.serve_stale:
                del cache[key]
                return None
            aged = DNSRecord.parse(entry.record.pack())
            elapsed = 0 if config.keepttl else int(now - entry.stored)
            for rr in aged.rr + aged.auth + aged.ar:
                if rr.rtype != QTYPE.OPT:
                    rr.ttl = 0 if stale else max(0, rr.ttl - elapsed)
            prefetch = False
            if config.prefetch and not stale:
                entry.hits = entry.hits + 1 if now - entry.last < config.prefetch_duration else 1
                entry.last = now
                threshold = math.ceil(config.prefetch_percentage / 100 * entry.ttl)
                prefetch = entry.hits >= config.prefetch and entry.expires - now <= threshold
            return CacheHit(kind, aged, stale, prefetch)
        return None

    def put(self, query: Query, reply: bytes) -> None:
        """Cache an upstream reply if it may be: NOERROR or NXDOMAIN, not truncated, with
        a TTL, and not under a zone where that kind of caching is disabled."""
        try:
            record = DNSRecord.parse(reply)
        except Exception:  # an unreadable reply is just not cached
            return
        rcode = record.header.rcode
        if record.header.tc or rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
            return
        config = self.config
        if not find_zone(query.qname, config.zones):
            return
        answers = [rr for rr in record.rr if rr.rtype != QTYPE.OPT]
        if rcode == RCODE.NOERROR and answers:
            if find_zone(query.qname, config.disable_success):
                return
            ttl = min(rr.ttl for rr in answers)
            ttl = max(min(ttl, config.success_ttl), config.success_min_ttl)
            cache = self.success
        else:
            if find_zone(query.qname, config.disable_denial):
                return
            soas = [rr for rr in record.auth if rr.rtype == QTYPE.SOA]
            if not soas:
                return  # RFC 2308 5: no SOA, no negative caching
            ttl = min(soas[0].ttl, soas[0].rdata.times[4])
            ttl = max(min(ttl, config.denial_ttl), config.denial_min_ttl)
            cache = self.denial
        if ttl <= 0:
            return
        now = self.clock()
        cache[self.key(query)] = CacheEntry(now + ttl, now, record, ttl)

    def entries(self) -> dict[str, int]:
        """How many entries each cache holds (coredns_cache_entries)."""
        return {"success": len(self.success), "denial": len(self.denial)}


class Forwarder:
    """One ``forward`` directive: its upstreams, policy, limits, health checks and cache."""

    def __init__(
        self,
        config: ForwardConfig,
        *,
        cache: ForwardCache | None = None,
        metrics: ForwardMetrics | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.config = config
        self.upstreams: list[Upstream] = []
        context = None
        for item in config.to:
            tls = tls_upstream(item)
            if tls is None:
                self.upstreams.extend(Upstream(h, p) for h, p in upstream_addresses((item,)))
                continue
            if context is None:
                context = tls_context(config.tls)
            host, port, name = tls
            server_name = name or config.tls_servername
            self.upstreams.append(Upstream(host, port, tls=True, server_name=server_name))
        # TLS upstreams, and TCP ones with force_tcp, keep connections open for reuse
        self.pools = {
            id(u): StreamPool(u, config.expire, context if u.tls else None)
            for u in self.upstreams
            if u.tls or config.force_tcp
        }
        self.cache = cache
        self.metrics = metrics or ForwardMetrics()
        self.read_timeout = read_timeout
        self.in_flight = 0
        self._next = 0
        self._refreshing: set[tuple[Any, ...]] = set()  # cache keys being refreshed
        self._tasks: set[asyncio.Future[bytes | None]] = set()
        self._health_task: asyncio.Task[None] | None = None

    def handles(self, qname: str) -> bool:
        """Whether ``qname`` is under this forward's FROM zone and not under ``except``."""
        if not find_zone(qname, (self.config.zone,)):
            return False
        return not find_zone(qname, self.config.except_zones)

    # ---- health -------------------------------------------------------------------------

    def _down(self, upstream: Upstream) -> bool:
        return 0 < self.config.max_fails <= upstream.fails

    def start(self) -> None:
        """Start the health-check task (call from the event loop)."""
        if self._health_task is None and self.config.health_check > 0:
            self._health_task = asyncio.create_task(self._health_loop())

    async def stop(self) -> None:
        """Stop the health-check task and cache refreshes; close pooled connections."""
        for task in list(self._tasks):
            task.cancel()
        for pool in self.pools.values():
            pool.close()
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_check)
            down = [u for u in self.upstreams if self._down(u)]
            if down:
                await asyncio.gather(*(self._probe(u) for u in down))

    async def _probe(self, upstream: Upstream) -> None:
        """``. IN NS`` (RD per ``no_rec``): any reply makes the upstream healthy again."""
        probe = DNSRecord.question(self.config.health_check_domain, "NS")
        probe.header.rd = int(self.config.health_check_recursion)
        packet = probe.pack()
        try:
            pool = self.pools.get(id(upstream))
            if pool is not None:
                await pool.exchange(packet, self.read_timeout)
            else:
                await exchange_udp(upstream.host, upstream.port, packet, self.read_timeout)
        except UpstreamError:
            self.metrics.healthcheck_failure(upstream.label)
            return
        upstream.fails = 0

    def _order(self) -> list[Upstream]:
        """Upstreams in the order to try them: by policy, healthy ones first."""
        ups = list(self.upstreams)
        if self.config.policy == "random":
            random.shuffle(ups)
        elif self.config.policy == "round_robin":
            start = self._next % len(ups)
            self._next += 1
            ups = ups[start:] + ups[:start]
        healthy = [u for u in ups if not self._down(u)]
        if healthy:
            return healthy
        # Every upstream is down: health checking itself may be broken (CoreDNS tries a
        # random one anyway).
        self.metrics.healthcheck_broken()
        return [random.choice(ups)]

    # ---- exchange -----------------------------------------------------------------------

    async def exchange(self, packet: bytes) -> bytes:
        """Send a query (``packet``, any ID) to the upstreams; return the reply with the
        same ID. Tries upstreams by policy until one answers or :data:`DEADLINE` passes.
        Raises UpstreamError when none gave a usable reply.
        """
        client_id = struct.unpack_from("!H", packet)[0]
        ident = random.getrandbits(16)
        packet = struct.pack("!H", ident) + packet[2:]
        deadline = time.monotonic() + DEADLINE
        last: Exception | None = None
        for upstream in self._order():
            if time.monotonic() >= deadline:
                break
            began = time.monotonic()
            try:
                reply = await self._exchange_one(upstream, packet)
            except UpstreamError as exc:
                upstream.fails += 1  # only replies are timed (CoreDNS proxy.Connect)
                last = exc
                continue
            upstream.fails = 0
            rcode = reply[3] & 0xF
            self.metrics.proxy_request(
                upstream.label, RCODE.get(rcode, str(rcode)), time.monotonic() - began
            )
            return struct.pack("!H", client_id) + reply[2:]
        raise UpstreamError(str(last) if last else "no upstream tried")

    async def _exchange_one(self, upstream: Upstream, packet: bytes) -> bytes:
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

    async def forward(self, query: Query, packet: bytes, limit: int) -> bytes:
        """Answer a client's query through the cache and the upstreams.

        ``packet``: the query as the client sent it; ``limit``: the reply size allowed (UDP
        512/EDNS, TCP 65535): a larger reply goes back empty with TC set, and the client
        retries over TCP (RFC 2181 9). SERVFAIL if every upstream failed; REFUSED beyond
        ``max_concurrent``.
        """
        if self.cache is not None:
            hit = self.cache.get(query)
            if hit is not None:
                if hit.stale and self.cache.config.serve_stale_verify:
                    fresh = await self._ask(query, packet)  # stale only if this fails
                    if fresh is not None:
                        return _fit(fresh, query, limit)
                elif hit.stale or hit.prefetch:
                    self._refresh(query, packet)  # in the background: answer now
                self.metrics.cache_hit(hit.kind)
                return _fit(_reply_from_cache(query, hit.record), query, limit)
            self.metrics.cache_miss()
        limit_inflight = self.config.max_concurrent
        if limit_inflight and self.in_flight >= limit_inflight:
            self.metrics.max_concurrent_reject()
            return error_response(query, Rcode.REFUSED)
        self.in_flight += 1
        try:
            reply = await self.exchange(packet)
        except UpstreamError as exc:
            log.debug("forward %s: %s", query.qname, exc)
            return error_response(query, Rcode.SERVFAIL)
        finally:
            self.in_flight -= 1
        if self.cache is not None:
            self.cache.put(query, reply)
        return _fit(reply, query, limit)

    async def _ask(self, query: Query, packet: bytes) -> bytes | None:
        """Ask the upstreams and cache the reply; None when none answered usefully
        (SERVFAIL/REFUSED replies count as failures for serve_stale, RFC 8767 4)."""
        try:
            reply = await self.exchange(packet)
        except UpstreamError as exc:
            log.debug("refresh %s: %s", query.qname, exc)
            return None
        if reply[3] & 0xF not in (Rcode.NOERROR, Rcode.NXDOMAIN):
            return None
        if self.cache is not None:
            self.cache.put(query, reply)
        return reply

    def _refresh(self, query: Query, packet: bytes) -> None:
        """Refresh a cache entry in the background (prefetch, serve_stale immediate); at
        most one refresh per entry in flight."""
        assert self.cache is not None
        key = self.cache.key(query)
        if key in self._refreshing:
            return
        self._refreshing.add(key)
        task = asyncio.ensure_future(self._ask(query, packet))
        self._tasks.add(task)

        def done(finished: asyncio.Future[bytes | None]) -> None:
            self._refreshing.discard(key)
            self._tasks.discard(finished)

        task.add_done_callback(done)

    async def lookup(self, qname: str, qtype: int) -> DNSRecord | None:
        """Resolve ``qname``/``qtype`` upstream for an ExternalName target (SPEC.md 4);
        None when nothing usable came back."""
        question = DNSRecord.question(qname.rstrip(".") or ".", QTYPE.get(qtype, str(qtype)))
        try:
            reply = await self.exchange(question.pack())
            return DNSRecord.parse(reply)
        except UpstreamError as exc:  # the CNAME is answered even when the target is not
            log.debug("forward %s: %s", qname, exc)
            return None
        except Exception as exc:  # an unreadable reply, or a bug: said, then the CNAME alone
            log.warning("forward %s: unusable reply: %s: %s", qname, type(exc).__name__, exc)
            return None


def _reply_from_cache(query: Query, record: DNSRecord) -> bytes:
    """A cached reply re-addressed to ``query``: its ID, RD/CD, its question as sent."""
    data = bytearray(record.pack())
    end = _question_end(bytes(data))
    flags = struct.unpack_from("!H", data, 2)[0] & ~0x0110
    flags |= FLAG_AA | (query.flags & 0x0110)
    struct.pack_into("!HH", data, 0, query.id, flags)
    return bytes(data[:12]) + query.question + bytes(data[end:])


def _fit(reply: bytes, query: Query, limit: int) -> bytes:
    """``reply`` if it fits ``limit`` bytes, else an empty TC reply (the client uses TCP)."""
    if len(reply) <= limit:
        return reply
    tc = error_response(query, reply[3] & 0xF)
    flags = struct.unpack_from("!H", tc, 2)[0] | FLAG_TC
    return tc[:2] + struct.pack("!H", flags) + tc[4:]
