"""Forwarding to upstream resolvers, with health checks and a cache (CoreDNS forward, cache).

Names outside the cluster zones (and reverse names the cluster does not know, with
``fallthrough``) go to the upstreams of a ``forward`` directive: over UDP from a fresh
random source port, TCP when the reply is truncated (or ``force_tcp``), the reply's ID and
question checked, ``read_timeout`` seconds per try. An upstream failing ``max_fails`` times
in a row is marked down and probed with ``. IN NS`` every ``health_check`` seconds until it
answers. SERVFAIL when every upstream fails; REFUSED beyond ``max_concurrent`` queries in
flight. Forwarded answers are cached, success and denial apart, TTL capped.

:class:`Forwarder` ties together the jobs kept in their own modules: which upstream next
(:mod:`.policy`), the exchanges (:mod:`.upstream`), the cache (:mod:`.cache`); the
ExternalName lookup is :meth:`Forwarder.lookup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dnslib import QTYPE, RCODE, DNSRecord

from ..core.names import absolute, find_zone
from ..core.rr import Rcode
from ..dns.wire import FLAG_TC, Query, error_response
from .forward_cache import CacheConfig, CacheEntry, CacheHit, ForwardCache
from .plugin import Ask, Build, Chain, Outcome, Plugin, Started, Step
from .policy import DEADLINE, Policy
from .report import ForwardMetrics
from .upstream import (
    StreamPool,
    Transport,
    Upstream,
    UpstreamError,
    exchange_tcp,
    exchange_udp,
    tls_context,
    tls_upstream,
    upstream_addresses,
)

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup

__all__ = [
    "DEADLINE",
    "READ_TIMEOUT",
    "CacheConfig",
    "CacheEntry",
    "CacheHit",
    "ForwardCache",
    "ForwardConfig",
    "ForwardMetrics",
    "Forwarder",
    "StreamPool",
    "Upstream",
    "UpstreamError",
    "exchange_tcp",
    "exchange_udp",
    "tls_context",
    "tls_upstream",
    "upstream_addresses",
]

log = logging.getLogger("clusterdns.plugins.forward")

READ_TIMEOUT = 2.0  # seconds per upstream try (CoreDNS forward's read timeout)


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


def upstreams_of(config: ForwardConfig) -> tuple[list[Upstream], Any]:
    """The upstreams of ``forward``'s TO list and the TLS client context when any is a
    ``tls://`` one (None otherwise). Raises ConfigError."""
    upstreams: list[Upstream] = []
    context = None
    for item in config.to:
        tls = tls_upstream(item)
        if tls is None:
            upstreams.extend(Upstream(h, p) for h, p in upstream_addresses((item,)))
            continue
        if context is None:
            context = tls_context(config.tls)
        host, port, name = tls
        server_name = name or config.tls_servername
        upstreams.append(Upstream(host, port, tls=True, server_name=server_name))
    return upstreams, context


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
        self.upstreams, context = upstreams_of(config)
        self.policy = Policy(self.upstreams, config.policy, config.max_fails)
        # TLS upstreams, and TCP ones with force_tcp, keep connections open for reuse
        self.transport = Transport(
            self.upstreams,
            expire=config.expire,
            force_tcp=config.force_tcp,
            context=context,
            read_timeout=read_timeout,
        )
        self.cache = cache
        self.metrics = metrics or ForwardMetrics()
        self.read_timeout = read_timeout
        self.in_flight = 0
        self._refreshing: set[tuple[Any, ...]] = set()  # cache keys being refreshed
        self._tasks: set[asyncio.Future[bytes | None]] = set()
        self._health_task: asyncio.Task[None] | None = None

    @property
    def pools(self) -> dict[int, StreamPool]:
        """The reused connections per upstream (by ``id``), as the transport keeps them."""
        return self.transport.pools

    def handles(self, qname: str) -> bool:
        """Whether ``qname`` is under this forward's FROM zone and not under ``except``."""
        if not find_zone(qname, (self.config.zone,)):
            return False
        return not find_zone(qname, self.config.except_zones)

    # ---- health -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the health-check task (call from the event loop)."""
        if self._health_task is None and self.config.health_check > 0:
            self._health_task = asyncio.create_task(self._health_loop())

    async def stop(self) -> None:
        """Stop the health-check task and cache refreshes; close pooled connections."""
        for task in list(self._tasks):
            task.cancel()
        self.transport.close()
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_check)
            down = [u for u in self.upstreams if self.policy.down(u)]
            if down:
                await asyncio.gather(*(self._probe(u) for u in down))

    async def _probe(self, upstream: Upstream) -> None:
        """``. IN NS`` (RD per ``no_rec``): any reply makes the upstream healthy again."""
        probe = DNSRecord.question(self.config.health_check_domain, "NS")
        probe.header.rd = int(self.config.health_check_recursion)
        try:
            await self.transport.exchange(upstream, probe.pack())
        except UpstreamError:
            self.metrics.healthcheck_failure(upstream.label)
            return
        self.policy.answered(upstream)

    # ---- exchange -----------------------------------------------------------------------

    async def exchange(self, packet: bytes) -> bytes:
        """Send a query (``packet``, any ID) to the upstreams; return the reply with the
        same ID. Tries upstreams by policy until one answers or :data:`DEADLINE` passes.
        Raises UpstreamError when none gave a usable reply.
        """
        client_id = struct.unpack_from("!H", packet)[0]
        packet = struct.pack("!H", self.policy.ids()) + packet[2:]
        began = time.monotonic()
        last: Exception | None = None
        order, broken = self.policy.order()
        if broken:  # every upstream down: health checking itself may be broken
            self.metrics.healthcheck_broken()
        for upstream in order:
            now = time.monotonic()
            if self.policy.expired(began, now):
                break
            try:
                reply = await self.transport.exchange(upstream, packet)
            except UpstreamError as exc:
                self.policy.failed(upstream)  # only replies are timed (CoreDNS proxy.Connect)
                last = exc
                continue
            self.policy.answered(upstream)
            rcode = reply[3] & 0xF
            self.metrics.proxy_request(
                upstream.label, RCODE.get(rcode, str(rcode)), time.monotonic() - now
            )
            return struct.pack("!H", client_id) + reply[2:]
        raise UpstreamError(str(last) if last else "no upstream tried")

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
                return _fit(hit.reply, query, limit)
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

    # ---- ExternalName ---------------------------------------------------------------------

    async def lookup(self, qname: str, qtype: int) -> DNSRecord | None:
        """Resolve ``qname``/``qtype`` upstream for an ExternalName target (docs/behaviour.md 4);
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


def _fit(reply: bytes, query: Query, limit: int) -> bytes:
    """``reply`` if it fits ``limit`` bytes, else an empty TC reply (the client uses TCP)."""
    if len(reply) <= limit:
        return reply
    tc = error_response(query, reply[3] & 0xF)
    flags = struct.unpack_from("!H", tc, 2)[0] | FLAG_TC
    return tc[:2] + struct.pack("!H", flags) + tc[4:]


class _ForwardStep(Step):
    """forward in the chain (the first forwarder whose zone holds the name), and the
    forwarders' health checks beside it."""

    def __init__(self, forwarders: list[Forwarder]) -> None:
        super().__init__(self.answer)
        self.forwarders = forwarders

    def answer(self, chain: Chain, ask: Ask) -> Outcome | None:
        forwarder = chain.forwarder(ask.query.qname)
        if forwarder is None:
            return None
        return forwarder.forward(ask.query, ask.data, ask.limit), "forward"

    def start(self, started: Started) -> None:
        for forwarder in self.forwarders:
            forwarder.start()

    async def stop(self) -> None:
        for forwarder in self.forwarders:
            await forwarder.stop()


def parse_forward(r: Reader) -> ForwardConfig:
    """``forward FROM TO... { options }`` -> ForwardConfig. Raises ConfigError naming
    ``file:line`` for a bad argument or an option clusterdns does not implement."""
    if len(r.d.args) < 2:
        raise r.error(f"want FROM TO..., got {' '.join(r.d.args) or 'nothing'!r}")
    f = ForwardConfig(absolute(r.d.args[0]), tuple(r.d.args[1:]))
    for to in f.to:
        if "://" in to and not to.startswith(("dns://", "tls://")):
            raise r.error(f"only dns:// and tls:// upstreams are supported, got {to!r}")
    for sub in r.d.block:
        args, line = sub.args, sub.line
        if sub.name == "except":
            r.count(args, 1, 1000, "except ZONE...", line)
            f.except_zones = tuple(absolute(a) for a in args)
        elif sub.name == "max_concurrent":
            r.count(args, 1, 1, "max_concurrent N", line)
            f.max_concurrent = r.integer(args[0], 1, 10**9, line)
        elif sub.name == "max_fails":
            r.count(args, 1, 1, "max_fails N", line)
            f.max_fails = r.integer(args[0], 0, 10**6, line)
        elif sub.name == "expire":
            r.count(args, 1, 1, "expire DURATION", line)
            f.expire = r.duration(args[0], line)
        elif sub.name == "policy":
            r.count(args, 1, 1, "random|round_robin|sequential", line)
            if args[0] not in ("random", "round_robin", "sequential"):
                raise r.error(f"policy: want random|round_robin|sequential, got {args[0]!r}", line)
            f.policy = args[0]
        elif sub.name in ("force_tcp", "prefer_udp"):
            setattr(f, sub.name, True)
        elif sub.name == "health_check":
            r.count(args, 1, 4, "health_check DURATION [no_rec] [domain NAME]", line)
            f.health_check = r.duration(args[0], line)
            rest = args[1:]
            while rest:
                if rest[0] == "no_rec":
                    f.health_check_recursion = False
                    rest = rest[1:]
                elif rest[0] == "domain" and len(rest) > 1:
                    f.health_check_domain = absolute(rest[1])
                    rest = rest[2:]
                else:
                    raise r.error(f"health_check: unknown option {rest[0]!r}", line)
        elif sub.name == "tls":
            r.count(args, 0, 3, "tls [CERT KEY] [CA]", line)
            for path in args:
                if not os.path.isfile(path):
                    raise r.error(f"tls: no such file {path!r}", line)
            f.tls = tuple(args)
        elif sub.name == "tls_servername":
            r.count(args, 1, 1, "tls_servername NAME", line)
            f.tls_servername = args[0]
        elif sub.name in ("next", "failfast_all_unhealthy_upstreams"):
            raise r.error(f"option {sub.name!r} is not supported by clusterdns", line)
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    if f.force_tcp and f.prefer_udp:
        raise r.error("force_tcp and prefer_udp exclude each other")
    return f


def _parse(r: Reader, setup: Setup) -> ForwardConfig:
    return parse_forward(r)


def _build(configs: list[ForwardConfig | Forwarder], build: Build) -> Step:
    """The block's forwarders (one per directive), sharing the block's ``cache``. Raises
    ConfigError when an upstream list cannot be resolved."""
    cache_config: CacheConfig | None = build.configs.get("cache")
    cache = ForwardCache(cache_config) if cache_config is not None else None
    metrics = build.metrics
    if cache is not None and metrics is not None:
        metrics.cache_entries = cache.entries
        metrics.cache_zones = ",".join(cache.config.zones)
    forwarders = [
        f if isinstance(f, Forwarder) else Forwarder(f, cache=cache, metrics=metrics)
        for f in configs
    ]
    build.forwarders.extend(forwarders)
    return _ForwardStep(forwarders)


PLUGIN = Plugin("forward", _parse, _build, repeatable=True)
"""CoreDNS plugin/forward: upstreams over UDP, TCP or TLS, with the forward cache."""
