"""The query handler: the fixed chain a Corefile switches on (DESIGN.md 1).

bytes in, bytes out: parse -> answer cache -> kubernetes zone (pure resolver) -> encode;
names the zone does not answer (outside it, or NXDOMAIN under ``fallthrough``) go to
``forward``. Order lives here, as CoreDNS keeps it in plugin.cfg. Nothing a client sends
escapes as an exception: a bad packet gets FORMERR/NOTIMP or no reply, and an internal
fault gets SERVFAIL.

:meth:`Handler.handle` returns the reply bytes at once for everything answered from
memory; only a forwarded query returns an awaitable, which the transport awaits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Union

from ..core.depends import dependencies, quick_negative
from ..core.errors import ClusterDNSError
from ..core.names import find_zone
from ..core.resolver import Answer, ZoneConfig, resolve
from ..core.rr import QClass, QType, Rcode
from ..core.store import Store, Tag
from ..dns.cache import AnswerCache
from ..dns.edns import DEFAULT_UDP_SIZE, MIN_UDP, TCP_LIMIT, find_opt
from ..dns.encode import encode_answer, error_response, header_only_response, negative_response
from ..dns.message import Drop, Query
from ..dns.wire import parse_header, parse_query
from .autopath import AutoPath
from .chaos import Chaos
from .forward import Forwarder, ForwardMetrics
from .hosts import Hosts
from .k8s_external import ExternalConfig, resolve_external
from .k8s_gateway import GatewayConfig, resolve_gateway
from .querylog import QueryLog
from .rewrite import InvalidName, Rewriter
from .template import Template

log = logging.getLogger("clusterdns.plugins.chain")

Reply = Union[bytes, None, Awaitable[Union[bytes, None]]]  # noqa: UP007 - a runtime alias
LOADBALANCE_VARIANTS = 4  # rotations of an A/AAAA answer kept in the answer cache
FAULT_LOG_INTERVAL = 10.0  # seconds: unexpected errors of one kind are logged this often
CACHE_SIZE = 100_000  # positive answers kept: about 60 MB when full (docs/performance.md)


class FaultLog:
    """Logs unexpected exceptions with their trace, at most one per ``interval`` seconds
    per message; the others are counted and reported with the next one logged (a failing
    upstream must not turn every query into a traceback)."""

    def __init__(self, interval: float = FAULT_LOG_INTERVAL) -> None:
        self.interval = interval
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def exception(self, message: str) -> None:
        """Log the exception being handled under ``message`` (or count it)."""
        now = time.monotonic()
        if now - self.last.get(message, -self.interval) < self.interval:
            self.suppressed[message] = self.suppressed.get(message, 0) + 1
            return
        self.last[message] = now
        more = self.suppressed.pop(message, 0)
        log.exception("%s%s", message, f" (and {more} more since last logged)" if more else "")


FAULTS = FaultLog()


def parse_or_reply(data: bytes, udp_size: int = DEFAULT_UDP_SIZE) -> Query | bytes | None:
    """The parsed query, or what to send instead: nothing (Drop), or FORMERR/NOTIMP with
    the header only (RFC 1035 4.1.1) and an OPT of ``udp_size`` bytes if the query had one
    (RFC 6891 6.1.1)."""
    try:
        query = parse_query(data)
    except Drop:
        return None
    except ClusterDNSError as exc:
        ident, flags = parse_header(data)
        return header_only_response(ident, flags, exc.rcode, find_opt(data), udp_size)
    query.udp_size = udp_size
    return query


class QueryMetrics(ForwardMetrics):
    """What the chain reports per query (no-ops here; :class:`clusterdns.server.metrics.Metrics`
    counts them), so the chain does not depend on the server layer."""

    autopath_success = 0  # answers autopath found

    def observe(
        self,
        proto: str,
        family: str,
        qtype: int,
        request_size: int,
        response: bytes | None,
        plugin: str,
        seconds: float,
        do: bool,
    ) -> None:
        """One query answered by ``plugin`` in ``seconds``; sizes in bytes."""

    def hit(self, tcp: bool, family: str, qtype: int, request: bytes, reply: bytes) -> None:
        """One query answered from the answer cache."""


class Handler:
    """Answers queries for one server block.

    ``zones``: the server block's zones (a name under none of them is REFUSED);
    ``config``: the kubernetes zone configuration, or None without a kubernetes plugin;
    ``forwarders``: tried in order for names the zone does not answer;
    ``loadbalance``: rotate A/AAAA answers (CoreDNS loadbalance, CNAMEs stay first);
    ``metrics``: counted per query; ``autopath``: server-side search for pods (SPEC.md 15.4);
    ``gateway``/``external``: the k8s_gateway and k8s_external zones (docs/exposed-names.md),
    asked before the kubernetes zone in that order (CoreDNS plugin.cfg puts k8s_external
    before kubernetes; k8s_gateway's README has it take their place).
    ``udp_size``: our EDNS payload in bytes, 512-65535 (default 1232, DNS Flag Day 2020;
    CoreDNS ``bufsize``): UDP replies are capped at the smaller of it and the client's, and
    our OPT advertises it (RFC 6891 6.2.5). ValueError outside that range.
    ``cache_size``: positive answers kept; ``negative_cache_size``: negative answers kept
    (default: a tenth of ``cache_size``; entries, each bound on its own, so a flood of
    random names never evicts a positive answer; docs/design-answers.md).
    Call from the thread that mutates ``store``: the answer cache listens to its changes.
    """

    def __init__(
        self,
        store: Store,
        config: ZoneConfig | None,
        *,
        zones: tuple[str, ...] | None = None,
        forwarders: Sequence[Forwarder] = (),
        metrics: QueryMetrics | None = None,
        loadbalance: bool = False,
        cache_size: int = CACHE_SIZE,
        autopath: AutoPath | None = None,
        gateway: GatewayConfig | None = None,
        external: ExternalConfig | None = None,
        hosts: Hosts | None = None,
        querylog: QueryLog | None = None,
        rewriter: Rewriter | None = None,
        templates: Sequence[Template] = (),
        chaos: Chaos | None = None,
        udp_size: int = DEFAULT_UDP_SIZE,
        negative_cache_size: int | None = None,
    ) -> None:
        if not MIN_UDP <= udp_size <= TCP_LIMIT:
            raise ValueError(f"udp_size: want {MIN_UDP} to {TCP_LIMIT} bytes, got {udp_size}")
        self.udp_size = udp_size
        self.store = store
        self.config = config
        self.gateway = gateway
        self.external = external
        self.zones = zones if zones is not None else (config.zones if config else (".",))
        self.forwarders = list(forwarders)
        self.metrics = metrics
        self.loadbalance = loadbalance
        if negative_cache_size is None:
            negative_cache_size = max(1, cache_size // 10)
        self.cache = AnswerCache(cache_size, negative_cache_size)
        store.listen(self.cache)
        # negative answers without the resolver: not with autopath (its NXDOMAIN may
        # become another name's answer, per client)
        self._quick = config is not None and autopath is None
        self.cache.udp_size = udp_size
        self.autopath = autopath
        self.hosts = hosts
        if hosts is not None:
            hosts.on_change = self.drop_cache
        self.querylog = querylog
        self.rewriter = rewriter
        self.templates = list(templates)
        self.chaos = chaos
        # qnames the loop detector sent, with how often each arrived: one arrival is our
        # own send; a forwarding loop brings the same name back again and again.
        self.loop_probes: dict[str, int] = {}
        self.on_loop: Callable[[str], None] | None = None

    def drop_cache(self) -> None:
        """Forget every cached answer (hosts data changed)."""
        self.cache.clear()

    def handle(
        self, data: bytes, tcp: bool, family: str = "1", client: str = "", port: int = 0
    ) -> Reply:
        """Answer one DNS message; None means send nothing (RFC 1035 4.1.1, SPEC.md 13).

        ``tcp``: the reply may use the 65535-byte TCP limit; ``family``: "1" IPv4 or
        "2" IPv6 client (metrics); ``client``: the client's IP (autopath, log);
        ``port``: the client's port (log).
        """
        if type(data) is not bytes:  # a bytearray or memoryview from a caller other
            data = bytes(data)  # than the transports: keys must be hashable bytes
        if self.querylog is not None:
            return self._logged(None, data, tcp, family, client, port)
        hit = self.cache.lookup(data, tcp)
        if hit is not None:
            if self.metrics is not None:
                self.metrics.hit(tcp, family, self.cache.last_qtype, data, hit)
            return hit
        query = parse_or_reply(data, self.udp_size)
        if not isinstance(query, Query):
            return query
        return self.handle_query(query, data, tcp, family, client)

    def _logged(
        self, query: Query | None, data: bytes, tcp: bool, family: str, client: str, port: int
    ) -> Reply:
        """:meth:`handle` (or :meth:`handle_query`) with the reply queued for the query log."""
        assert self.querylog is not None
        began = time.perf_counter()
        querylog, self.querylog = self.querylog, None
        try:
            if query is None:
                reply = self.handle(data, tcp, family, client)
            else:
                reply = self.handle_query(query, data, tcp, family, client)
        finally:
            self.querylog = querylog
        if isinstance(reply, bytes) or reply is None:
            querylog.record(client, port, tcp, data, reply, time.perf_counter() - began)
            return reply
        return self._log_later(reply, data, tcp, client, port, began)

    async def _log_later(
        self,
        pending: Awaitable[bytes | None],
        data: bytes,
        tcp: bool,
        client: str,
        port: int,
        began: float,
    ) -> bytes | None:
        reply = await pending
        if self.querylog is not None:
            self.querylog.record(client, port, tcp, data, reply, time.perf_counter() - began)
        return reply

    def handle_query(
        self,
        query: Query,
        data: bytes,
        tcp: bool,
        family: str = "1",
        client: str = "",
        port: int = 0,
    ) -> Reply:
        """Answer a parsed query (``data``: the packet as received)."""
        if self.querylog is not None:
            return self._logged(query, data, tcp, family, client, port)
        began = time.perf_counter()
        query.udp_size = self.udp_size
        if query.edns is not None and query.edns[0] > self.udp_size:
            data = _cap_payload(data, query, self.udp_size)  # forwarded: advertise our cap
        if query.edns is not None and query.edns[1] > 0:
            reply: Reply = error_response(query, Rcode.BADVERS)  # RFC 6891 6.1.3
            plugin = ""
        else:
            limit = query.limit(tcp)
            reply = self.cache.get(query, limit)
            plugin = "kubernetes"
            if reply is None:
                try:
                    reply, plugin = self._miss(query, data, limit, client)
                except Exception:  # a bug must cost one query, not the server
                    log.exception("internal error answering %s type %d", query.qname, query.qtype)
                    reply, plugin = error_response(query, Rcode.SERVFAIL), ""
                if reply is not None and not isinstance(reply, bytes):
                    reply = _guarded(reply, query, plugin)
        if self.metrics is None:
            return reply
        if isinstance(reply, bytes) or reply is None:
            self._count(query, data, tcp, family, reply, plugin, began)
            return reply
        return self._counted(reply, query, data, tcp, family, plugin, began)

    async def _counted(
        self,
        pending: Awaitable[bytes | None],
        query: Query,
        data: bytes,
        tcp: bool,
        family: str,
        plugin: str,
        began: float,
    ) -> bytes | None:
        reply = await pending
        self._count(query, data, tcp, family, reply, plugin, began)
        return reply

    def _count(
        self,
        query: Query,
        data: bytes,
        tcp: bool,
        family: str,
        reply: bytes | None,
        plugin: str,
        began: float,
    ) -> None:
        assert self.metrics is not None
        size = 65535 if tcp else (query.edns[0] if query.edns else 512)
        do = bool(query.edns and query.edns[2])
        self.metrics.observe(
            "tcp" if tcp else "udp",
            family,
            query.qtype,
            size,
            reply,
            plugin,
            time.perf_counter() - began,
            do,
        )

    def _miss(self, query: Query, data: bytes, limit: int, client: str) -> tuple[Reply, str]:
        """The chain in CoreDNS's plugin.cfg order: chaos, rewrite, template, hosts,
        kubernetes (autopath), forward."""
        if query.qtype == QType.HINFO and query.qname in self.loop_probes:
            self._loop_seen(query.qname)
        if self.chaos is not None and query.qclass == QClass.CH:
            found = self.chaos.answer(query, limit)
            if found is not None:
                return found, "chaos"
        if self.rewriter is not None:
            try:
                rewritten = self.rewriter.rewrite(query, data)
            except InvalidName:
                return error_response(query, Rcode.SERVFAIL), "rewrite"
            if rewritten is not None:
                inner, inner_data, revert = rewritten
                reply, plugin = self._chain(inner, inner_data, limit, client, rewritten=True)
                return revert.reply(reply, query, limit), plugin
        return self._chain(query, data, limit, client)

    def _chain(
        self, query: Query, data: bytes, limit: int, client: str, rewritten: bool = False
    ) -> tuple[Reply, str]:
        """The chain after rewrite. ``rewritten``: the question is a rewritten one: its
        answers stay out of the answer cache (the client's key is another) and it need not
        be under the block's zones (CoreDNS picks the block by the name as asked)."""
        cache = not rewritten
        for template in self.templates:
            built = template.answer(query, limit)
            if built is not None:
                return built, "template"
        if query.qclass != QClass.IN:
            return error_response(query, Rcode.REFUSED), ""  # not a class we serve (SPEC.md 13)
        if query.qtype in (QType.AXFR, QType.IXFR):
            return error_response(query, Rcode.REFUSED), ""  # no transfer plugin
        if not rewritten and not find_zone(query.qname, self.zones):
            return error_response(query, Rcode.REFUSED), ""  # not this server's zones
        if self.hosts is not None:
            listed = self.hosts.answer(query.qname, query.qtype)
            if listed is not None:
                return self._encode(query, listed, limit, cache=cache), "hosts"
        passed: Answer | None = None  # an NXDOMAIN an exposure plugin fell through with
        for name, exposed in self._exposed(query.qname, query.qtype):
            if exposed is None:
                continue
            if not exposed.fallthrough:
                return self._answered(query, exposed, limit), name
            passed = passed or exposed
        answer = None
        if self._quick:
            quick = self._quick_negative(query, limit)
            if quick is not None:
                return quick, "kubernetes"
        if self.config is not None:
            answer = resolve(self.store, query.qname, query.qtype, self.config)
        if answer is None and passed is not None:
            answer = passed
        if answer is not None and answer.rcode == Rcode.NXDOMAIN and self.autopath and client:
            found = self.autopath.search(self, query, limit, client)
            if isinstance(found, bytes):
                return found, "autopath"
            if found is not None:
                return self._autopath_or(found, query, answer, limit), "autopath"
        if answer is not None and not answer.fallthrough:
            if answer.chase:
                forwarder = self._forwarder(answer.chase)
                if forwarder is not None:
                    return self._chase(forwarder, query, answer, limit), "kubernetes"
            cache = cache and not answer.chase and not (
                self.autopath and answer.rcode == Rcode.NXDOMAIN  # may differ per client
            )
            return self._encode(query, answer, limit, cache=cache), "kubernetes"
        forwarder = self._forwarder(query.qname)
        if forwarder is not None:
            return forwarder.forward(query, data, limit), "forward"
        if answer is not None:  # fallthrough with nothing after it
            return self._encode(query, answer, limit, cache=cache), "kubernetes"
        return error_response(query, Rcode.SERVFAIL), ""  # no plugin handled it (SPEC.md 14)

    def _exposed(self, qname: str, qtype: int) -> Iterator[tuple[str, Answer | None]]:
        """The k8s_gateway and k8s_external answers, in chain order, each computed only
        when the one before did not answer (None: not their zone)."""
        if self.gateway is not None:
            yield "k8s_gateway", resolve_gateway(self.store, qname, qtype, self.gateway)
        if self.external is not None:
            yield "k8s_external", resolve_external(self.store, qname, qtype, self.external)

    def _answered(self, query: Query, answer: Answer, limit: int) -> Reply:
        """Encode an exposure plugin's answer; a CNAME to an outside host name (a cloud
        load balancer) has its target's records appended through the forwarder."""
        if answer.chase:
            forwarder = self._forwarder(answer.chase)
            if forwarder is not None:
                return self._chase(forwarder, query, answer, limit)
        return self._encode(query, answer, limit, cache=not answer.chase)

    def _quick_negative(self, query: Query, limit: int) -> bytes | None:
        """NXDOMAIN from the SOA template after an existence check (depends.quick_negative),
        cached as the resolver's answer would be; None when the resolver must decide."""
        made = self._quick_made(query)
        if made is None:
            return None
        header, tail, tags = made
        self.cache.put(query, limit, header, tail, tags=tags)
        return header + query.question + tail

    def _quick_made(self, query: Query) -> tuple[bytes, bytes, tuple[Tag, ...]] | None:
        """``(header, tail, tags)`` of the quick NXDOMAIN for ``query``, or None. Reads the
        store only."""
        config = self.config
        assert config is not None
        found = quick_negative(self.store, query.qname, config)
        if found is None:
            return None
        zone, tags = found
        ttl = config.ttl
        times = (self.store.serial, 7200, 1800, 86400, ttl)  # as resolver._Question.soa
        made = negative_response(query, Rcode.NXDOMAIN, zone, min(ttl, 300), times)
        if made is None:
            return None
        return made[0], made[1], tags

    def quick_reply(self, data: bytes) -> tuple[bytes, int] | None:
        """``(reply, qtype)`` for a UDP query that is certainly NXDOMAIN, decided and built without
        writing anything (no cache entry, no counter): for ``server.UDPThread``, which may
        read but never write what the loop thread owns. None when the query needs anything
        else (the loop then answers it): not a plain IN query of version 0 EDNS, a transfer
        or loop probe, outside the zones, or not certainly NXDOMAIN.
        """
        if not self._quick or self._before_kubernetes():
            return None
        try:
            query = parse_query(data)
        except (Drop, ClusterDNSError):
            return None
        if (
            (query.edns is not None and query.edns[1] > 0)
            or query.qclass != QClass.IN
            or query.qtype in (QType.AXFR, QType.IXFR, QType.HINFO)
            or not find_zone(query.qname, self.zones)
        ):
            return None
        made = self._quick_made(query)
        if made is None:
            return None
        return made[0] + query.question + made[1], query.qtype

    def _before_kubernetes(self) -> bool:
        """Whether a plugin that may answer a cluster name comes before kubernetes in the
        chain (rewrite, template, hosts, k8s_gateway, k8s_external) or sees every query
        (log): then no NXDOMAIN is decided outside the chain."""
        return bool(
            self.rewriter
            or self.templates
            or self.hosts
            or self.gateway
            or self.external
            or self.querylog
        )

    def cache_quick(self, data: bytes) -> None:
        """Put the quick NXDOMAIN of a query into the answer cache, decided afresh from the
        store (the loop thread: after ``server.UDPThread`` answered it with
        :meth:`quick_reply`, so the next asks are hits)."""
        query = parse_or_reply(data)
        if isinstance(query, Query) and self.cache.lookup(data, False) is None:
            limit = query.limit(False)
            if query.edns is None or query.edns[1] == 0:
                self._quick_negative(query, limit)

    def _forwarder(self, qname: str) -> Forwarder | None:
        for forwarder in self.forwarders:
            if forwarder.handles(qname):
                return forwarder
        return None

    def _encode(self, query: Query, answer: Answer, limit: int, cache: bool) -> bytes:
        header, _, tail = encode_answer(query, answer, limit)
        variants = [tail]
        if self.loadbalance:
            variants.extend(_rotations(query, answer, limit))
        if cache:
            tags = (
                dependencies(self.store, query.qname, self.config, answer)
                if self.config is not None
                else ("any",)
            )
            self.cache.put(query, limit, header, tail, variants[1:], tags=tags)
        return header + query.question + tail

    async def _autopath_or(
        self, found: Awaitable[bytes | None], query: Query, answer: Answer, limit: int
    ) -> bytes | None:
        """The upstream part of autopath, or the asked name's own NXDOMAIN."""
        reply = await found
        return reply if reply is not None else self._encode(query, answer, limit, cache=False)

    async def _chase(
        self, forwarder: Forwarder, query: Query, answer: Answer, limit: int
    ) -> bytes | None:
        """An ExternalName CNAME to an outside name: the target's records follow it
        (SPEC.md 4); the CNAME alone when the upstream has nothing."""
        found = await forwarder.lookup(answer.chase, query.qtype)
        extra = [] if found is None else list(found.rr)
        header, _, tail = encode_answer(query, answer, limit, upstream=extra)
        return header + query.question + tail

    def _loop_seen(self, qname: str) -> None:
        """CoreDNS loop: the same probe arriving a third time means it goes round."""
        self.loop_probes[qname] += 1
        if self.loop_probes[qname] > 2 and self.on_loop is not None:
            self.on_loop(qname)


def _cap_payload(data: bytes, query: Query, size: int) -> bytes:
    """``data`` with the UDP payload of its OPT lowered to ``size`` (CoreDNS bufsize: the
    query forwarded upstream advertises the cap too), when the OPT directly follows the
    question; else ``data`` unchanged."""
    opt = 12 + len(query.question)
    if len(data) >= opt + 11 and data[opt] == 0 and data[opt + 1 : opt + 3] == b"\x00\x29":
        return data[: opt + 3] + size.to_bytes(2, "big") + data[opt + 5 :]
    return data


async def _guarded(pending: Awaitable[bytes | None], query: Query, plugin: str) -> bytes | None:
    """A forwarded (or autopath, ExternalName) answer, or SERVFAIL when it raised: the
    fault is logged (rate-limited), never swallowed, never a silent non-answer."""
    try:
        return await pending
    except Exception:
        FAULTS.exception(f"internal error in {plugin or 'the handler'} answering a query")
        return error_response(query, Rcode.SERVFAIL)


def _rotations(query: Query, answer: Answer, limit: int) -> list[bytes]:
    """Up to :data:`LOADBALANCE_VARIANTS` - 1 further encodings of ``answer`` with its
    A/AAAA records rotated (CNAMEs first, the rest in place: CoreDNS loadbalance)."""
    records = answer.answer
    first = next((i for i, rr in enumerate(records) if rr.rtype in (QType.A, QType.AAAA)), None)
    if first is None or len(records) - first < 2:
        return []
    head, addresses = records[:first], records[first:]
    out = []
    step = max(1, len(addresses) // LOADBALANCE_VARIANTS)
    for shift in range(step, len(addresses), step)[: LOADBALANCE_VARIANTS - 1]:
        rotated = Answer(
            answer.rcode,
            answer.zone,
            head + addresses[shift:] + addresses[:shift],
            answer.authority,
            answer.additional,
        )
        out.append(encode_answer(query, rotated, limit)[2])
    return out


class Mux:
    """Several server blocks on one port: each query goes to the block with the longest
    matching zone (CoreDNS core/dnsserver); a name no block serves is REFUSED."""

    def __init__(self, handlers: Sequence[Handler]) -> None:
        self.handlers = list(handlers)
        self._zones = tuple(z for h in self.handlers for z in h.zones)

    def handle(
        self, data: bytes, tcp: bool, family: str = "1", client: str = "", port: int = 0
    ) -> Reply:
        """As :meth:`Handler.handle`."""
        if len(self.handlers) == 1:
            return self.handlers[0].handle(data, tcp, family, client, port)
        query = parse_or_reply(data, self.handlers[0].udp_size)
        if not isinstance(query, Query):
            return query
        zone = find_zone(query.qname, self._zones)
        for handler in self.handlers:
            if zone in handler.zones:
                return handler.handle_query(query, data, tcp, family, client, port)
        return error_response(query, Rcode.REFUSED)
