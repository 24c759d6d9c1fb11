"""The query handler and the chain a Corefile switches on (docs/design.md).

bytes in, bytes out: parse -> answer cache -> the chain -> encode. The chain is
:data:`CHAIN`, one row per plugin in CoreDNS's plugin.cfg order (loop, chaos, rewrite,
template, hosts, k8s_gateway, k8s_external, kubernetes with autopath, forward; loadbalance
on the way out, in :meth:`Handler.encode`). A cache hit never enters it. Nothing a client
sends escapes as an exception: a bad packet gets FORMERR/NOTIMP or no reply, and an
internal fault gets SERVFAIL.

:meth:`Handler.handle` returns the reply bytes at once for everything answered from
memory; only a forwarded query returns an awaitable, which the transport awaits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from ..core import defaults
from ..core.depends import dependencies
from ..core.errors import ClusterDNSError
from ..core.names import find_zone
from ..core.resolver import Answer, ZoneConfig
from ..core.rr import Rcode
from ..core.store import Store
from ..dns.cache import AnswerCache
from ..dns.edns import DEFAULT_UDP_SIZE, MIN_UDP, TCP_LIMIT, find_opt
from ..dns.encode import encode_answer, error_response, header_only_response
from ..dns.message import Drop, Query
from ..dns.wire import parse_header, parse_query
from . import steps
from .autopath import AutoPath
from .chaos import Chaos
from .forward import Forwarder
from .hosts import Hosts
from .k8s_external import ExternalConfig
from .k8s_gateway import GatewayConfig
from .kubernetes import Kubernetes
from .loadbalance import LOADBALANCE_VARIANTS, rotations
from .querylog import QueryLog
from .report import FAULT_LOG_INTERVAL, FAULTS, FaultLog, QueryMetrics
from .rewrite import Rewriter
from .steps import Ask, Outcome, Reply, Step
from .template import Template

log = logging.getLogger("clusterdns.plugins.chain")

CACHE_SIZE = defaults.CACHE_SIZE  # positive answers kept (docs/performance.md)
__all__ = ["CACHE_SIZE", "CHAIN", "FAULTS", "FAULT_LOG_INTERVAL", "LOADBALANCE_VARIANTS", "Ask"]
__all__ += ["FaultLog", "Handler", "Mux", "Outcome", "QueryMetrics", "Reply", "Step"]
__all__ += ["parse_or_reply"]


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


class Handler:
    """Answers queries for one server block.

    ``zones``: the server block's zones (a name under none of them is REFUSED);
    ``config``: the kubernetes zone configuration, or None without a kubernetes plugin;
    ``forwarders``: tried in order for names the zone does not answer;
    ``loadbalance``: rotate A/AAAA answers (CoreDNS loadbalance, CNAMEs stay first);
    ``metrics``: counted per query; ``autopath``: server-side search for pods (behaviour.md 16);
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
            negative_cache_size = max(1, cache_size // defaults.NEGATIVE_SHARE)
        self.cache = AnswerCache(cache_size, negative_cache_size)
        store.listen(self.cache)
        self.cache.udp_size = udp_size
        self.kubernetes = (
            Kubernetes(store, config, self.cache, quick=autopath is None) if config else None
        )
        self.autopath = autopath
        self.hosts = hosts
        if hosts is not None:
            hosts.on_change = self.drop_cache
        self.querylog = querylog
        # fixed at construction: _logged lends querylog out while it answers, and the UDP
        # thread must not read that moment as "no log"
        self.logs_queries = querylog is not None
        self.rewriter = rewriter
        self.templates = list(templates)
        self.chaos = chaos
        # qnames the loop detector sent, with how often each arrived: one arrival is our
        # own send; a forwarding loop brings the same name back again and again.
        self.loop_probes: dict[str, int] = {}
        self.on_loop: Callable[[str], None] | None = None
        built = [(name, make(self)) for name, make in CHAIN]
        self.step_names = [name for name, step in built if step is not None]
        self.steps: list[Step] = [step for _, step in built if step is not None]

    def drop_cache(self) -> None:
        """Forget every cached answer (hosts data changed)."""
        self.cache.clear()

    def handle(
        self, data: bytes, tcp: bool, family: str = "1", client: str = "", port: int = 0
    ) -> Reply:
        """Answer one DNS message; None means send nothing (RFC 1035 4.1.1, docs/behaviour.md 13).

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
        return self._log_later(querylog, reply, data, tcp, client, port, began)

    async def _log_later(
        self,
        querylog: QueryLog,
        pending: Awaitable[bytes | None],
        data: bytes,
        tcp: bool,
        client: str,
        port: int,
        began: float,
    ) -> bytes | None:
        reply = await pending
        querylog.record(client, port, tcp, data, reply, time.perf_counter() - began)
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
        size = TCP_LIMIT if tcp else (query.edns[0] if query.edns else MIN_UDP)
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

    def _miss(self, query: Query, data: bytes, limit: int, client: str) -> Outcome:
        """Run the chain (:data:`CHAIN`, this block's steps) for a query the answer cache
        did not have: the first step that answers ends it; else the answer a step fell
        through with, else SERVFAIL (no plugin handled it, docs/behaviour.md 14). A rewritten
        question's reply is turned back to the question asked."""
        ask = Ask(query, data, limit, client)
        for step in self.steps:
            out = step(self, ask)
            if out is not None:
                break
        else:
            if ask.passed is not None:  # fallthrough with nothing after it
                out = self.encode(ask.query, ask.passed, limit, not ask.rewritten), "kubernetes"
            else:
                out = error_response(ask.query, Rcode.SERVFAIL), ""
        if ask.revert is not None:
            return ask.revert.reply(out[0], query, limit), out[1]
        return out

    def _autopath(self, query: Query, answer: Answer, limit: int, client: str) -> Outcome | None:
        """autopath on an NXDOMAIN (docs/behaviour.md 16): the reply found along the client's
        search path, or None to answer the NXDOMAIN."""
        if not self.autopath or not client:
            return None
        found = self.autopath.search(
            query,
            limit,
            client,
            store=self.store,
            config=self.config,
            forwarder=self._forwarder,
            counted=self._autopath_counted,
        )
        if isinstance(found, bytes):
            return found, "autopath"
        if found is not None:
            return self._autopath_or(found, query, answer, limit), "autopath"
        return None

    def _answered(self, query: Query, answer: Answer, limit: int, cache: bool = True) -> Reply:
        """Encode an exposure plugin's answer; a CNAME to an outside host name (a cloud
        load balancer) has its target's records appended through the forwarder.
        ``cache``: False for the answer to a rewritten question (the client's key differs)."""
        if answer.chase:
            forwarder = self._forwarder(answer.chase)
            if forwarder is not None:
                return self._chase(forwarder, query, answer, limit)
        return self.encode(query, answer, limit, cache=cache and not answer.chase)

    def quick_reply(self, data: bytes) -> tuple[bytes, int] | None:
        """``(reply, qtype)`` for a UDP query that is certainly NXDOMAIN, made without
        writing anything, for ``server.UDPThread`` (``Kubernetes.quick_reply``); None when
        the query needs the chain: also whenever a step before kubernetes may answer a
        cluster name or the log sees every query."""
        if self.kubernetes is None or not self.kubernetes.quick or self._before_kubernetes():
            return None
        return self.kubernetes.quick_reply(data, self.zones)

    def _before_kubernetes(self) -> bool:
        """Whether a step that may answer a cluster name comes before kubernetes (any
        but :data:`NEVER_IN_CLASS`), or the log sees every query."""
        names = self.step_names
        before = names[: names.index("kubernetes")] if "kubernetes" in names else names
        return self.logs_queries or any(n not in NEVER_IN_CLASS for n in before)

    def cache_quick(self, data: bytes) -> None:
        """Cache the quick NXDOMAIN of a query :meth:`quick_reply` answered (on the loop
        thread, which owns the cache: the next asks are hits)."""
        if self.kubernetes is not None:
            self.kubernetes.cache_quick(data)

    def _autopath_counted(self) -> None:
        if self.metrics is not None:
            self.metrics.autopath_success += 1

    def _forwarder(self, qname: str) -> Forwarder | None:
        """The first forwarder whose zone holds ``qname`` (CoreDNS forward ``FROM``)."""
        for forwarder in self.forwarders:
            if forwarder.handles(qname):
                return forwarder
        return None

    def encode(self, query: Query, answer: Answer, limit: int, cache: bool) -> bytes:
        """The reply for ``answer`` within ``limit`` bytes; with ``cache`` kept in the answer
        cache under the names it depends on, with its loadbalance rotations."""
        header, _, tail = encode_answer(query, answer, limit)
        if cache:
            tags = (
                dependencies(self.store, query.qname, self.config, answer)
                if self.config is not None
                else ("any",)
            )
            variants = rotations(query, answer, limit) if self.loadbalance else None
            self.cache.put(query, limit, header, tail, variants, tags=tags)
        return header + query.question + tail

    async def _autopath_or(
        self, found: Awaitable[bytes | None], query: Query, answer: Answer, limit: int
    ) -> bytes | None:
        """The upstream part of autopath, or the asked name's own NXDOMAIN."""
        reply = await found
        return reply if reply is not None else self.encode(query, answer, limit, cache=False)

    async def _chase(
        self, forwarder: Forwarder, query: Query, answer: Answer, limit: int
    ) -> bytes | None:
        """An ExternalName CNAME to an outside name: the target's records follow it
        (docs/behaviour.md 4); the CNAME alone when the upstream has nothing."""
        found = await forwarder.lookup(answer.chase, query.qtype)
        extra = [] if found is None else list(found.rr)
        header, _, tail = encode_answer(query, answer, limit, upstream=extra)
        return header + query.question + tail


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


# The chain, in CoreDNS's plugin.cfg order: (name, the step for a handler or None when the
# Corefile does not switch the plugin on). Adding a plugin: a module with its step, a row
# here. Built once per Handler (``Handler.steps``); a cache hit never enters it.
CHAIN: tuple[tuple[str, Callable[[Handler], Step | None]], ...] = (
    ("loop", lambda h: steps.loop),  # first, not at its plugin.cfg place: it only counts
    # its probes, and must see them before any plugin answers
    ("chaos", lambda h: steps.chaos if h.chaos is not None else None),
    ("rewrite", lambda h: steps.rewrite if h.rewriter is not None else None),
    ("template", lambda h: steps.template if h.templates else None),
    ("zones", lambda h: steps.zones),
    ("hosts", lambda h: steps.hosts if h.hosts is not None else None),
    ("k8s_gateway", lambda h: steps.gateway if h.gateway is not None else None),
    ("k8s_external", lambda h: steps.external if h.external is not None else None),
    ("kubernetes", lambda h: h.kubernetes.step if h.kubernetes is not None else None),
    ("forward", lambda h: steps.forward if h.forwarders else None),
)
# steps before kubernetes that never answer a plain IN query with a cluster name: with only
# these before it, a certain NXDOMAIN may be decided outside the chain (Handler.quick_reply)
NEVER_IN_CLASS = ("loop", "chaos", "zones")


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
