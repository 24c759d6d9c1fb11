"""One server block's query path: the fast path, then the chain of plugin steps.

The walk of one query, top-down (docs/design.md 4):

1. :meth:`Handler.fast` (every transport, every thread): a kept answer straight from the
   packet's bytes (``AnswerCache.lookup``), else the packet parsed once (FORMERR/NOTIMP or
   nothing for a bad one), else a certain NXDOMAIN from the SOA template (the kubernetes
   step's ``negative``), else the parsed :class:`~clusterdns.dns.message.Query` for the chain.
2. :meth:`Handler.answer` (the event loop's thread): the steps of this block, built from the
   plugin table (:mod:`.order`) in its order; the first that answers ends it. Steps use the
   handler only through the public :class:`~.plugin.Chain` face (forwarder, reply, encode,
   keep, autopath).
3. The encoder (``dns.encode``) and, apart, keeping the answer (``AnswerCache.put``).

Nothing a client sends escapes as an exception: a bad packet gets FORMERR/NOTIMP or no
reply, and an internal fault gets SERVFAIL. Counters are per serving thread
(``dns.cache.Tally``) and summed when read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..core import defaults
from ..core.depends import dependencies
from ..core.errors import ClusterDNSError
from ..core.names import find_zone
from ..core.resolver import Answer, ZoneConfig
from ..core.rr import QClass, QType, Rcode
from ..core.store import Store
from ..core.traffic import TrafficTally
from ..dns.cache import AnswerCache, Tags, Tally
from ..dns.edns import DEFAULT_UDP_SIZE, MIN_UDP, TCP_LIMIT, find_opt
from ..dns.encode import encode_answer, error_response, header_only_response
from ..dns.message import Drop, Query
from ..dns.wire import parse_header, parse_query
from . import order
from .plugin import Ask, Build, Outcome, Reply, Step, View
from .report import FAULTS, QueryMetrics

log = logging.getLogger("clusterdns.plugins.chain")

Fast = bytes | Query | None
"""What the fast path gives: reply bytes to send, None to send nothing, or the parsed query
for the chain (:meth:`Handler.answer`, on the event loop's thread)."""

Negative = Callable[[Query], tuple[bytes, bytes, Tags] | None]
"""A certain negative decided from the question alone: (header, tail, tags) or None."""

NOT_FAST = frozenset((QType.AXFR, QType.IXFR, QType.HINFO))  # transfers, loop probes

NOWHERE: tuple[str, int] = ("", 0)
"""An address not known (an in-process call): ``local``, the server's (ip, port) a query
came in on, read by ``view`` expressions (``server_ip()``, ``server_port()``)."""


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


def assemble(
    store: Store,
    zones: tuple[str, ...],
    configs: Mapping[str, Any],
    *,
    addresses: tuple[str, ...] = (),
    metrics: QueryMetrics | None = None,
    root: str = "",
    cache_size: int = defaults.CACHE_SIZE,
    negative_cache_size: int | None = None,
    udp_size: int = DEFAULT_UDP_SIZE,
    traffic: Callable[[], TrafficTally] | None = None,
) -> Handler:
    """One server block's handler: every plugin in ``configs`` (directive name -> its
    config, as ``corefile.config`` reads them) built in the plugin table's order, with the
    block's own zone check. The one place a block is wired (the server, the pytest plugin,
    ``clusterdns resolve`` and the tests all come here).

    ``addresses``: our own addresses (NS glue); ``cache_size``/``negative_cache_size``:
    positive and negative answers kept (default a tenth of ``cache_size``); ``udp_size``:
    our EDNS payload in bytes, 512-65535 (ValueError outside); ``traffic``: makes each serving
    thread's traffic tally (the traffic view; None: off). Raises ConfigError when a
    plugin's configuration cannot be built (e.g. k8s_external without kubernetes). Call on
    the thread that mutates ``store``: the answer cache listens to its changes.
    """
    if not MIN_UDP <= udp_size <= TCP_LIMIT:
        raise ValueError(f"udp_size: want {MIN_UDP} to {TCP_LIMIT} bytes, got {udp_size}")
    if negative_cache_size is None:
        negative_cache_size = max(1, cache_size // defaults.NEGATIVE_SHARE)
    cache = AnswerCache(cache_size, negative_cache_size)
    cache.udp_size = udp_size
    build = Build(store, zones, configs, addresses, cache, metrics, root)
    steps: list[Step] = []
    for name in order.NAMES:
        if name not in configs and name not in order.ALWAYS:
            continue
        plugin = order.plugin(name)
        assert plugin is not None
        step = plugin.build(configs.get(name), build) if plugin.build is not None else None
        if step is not None:
            step.name, step.in_class = name, plugin.in_class
            steps.append(step)
    store.listen(cache)
    return Handler(build, steps, udp_size, traffic)


class Handler:
    """Answers the queries of one server block (:func:`assemble` builds it).

    ``build``: what the plugins set up (store, zones, cluster zone configuration, answer
    cache, forwarders, metrics, rotations, autopath, query log); ``steps``: the chain in
    the plugin table's order; ``udp_size``: our EDNS payload in bytes (UDP replies are
    capped at the smaller of it and the client's; our OPT advertises it, RFC 6891 6.2.5).
    """

    def __init__(
        self,
        build: Build,
        steps: Sequence[Step],
        udp_size: int,
        traffic: Callable[[], TrafficTally] | None = None,
    ) -> None:
        self.store = build.store
        self.zones = build.zones
        self.config: ZoneConfig | None = build.config
        self.cache = build.cache
        self.metrics = build.metrics
        self.forwarders = build.forwarders
        self.rotations = build.rotations
        self.autopath_search = build.autopath
        self.querylog = build.querylog
        self.view: View | None = build.view  # picks this block on a shared port (Mux)
        self.udp_size = udp_size
        self.steps = list(steps)
        self.step_names = [step.name for step in self.steps]
        self.runs = [step.run for step in self.steps if step.run is not None]
        step = _fast_negative(self.steps) if self.querylog is None else None
        self.negative = step.negative if step is not None else None
        self.wire_negative = step.wire_negative if step is not None else None
        # the event loop's own counters, one per listener family (the cache's owner keeps
        # what it makes at once); serving threads ask for theirs with :meth:`tally`
        self.traffic = traffic
        served = self.metrics is not None
        self.loop_tallies = {
            family: self.cache.tally(family, traffic=traffic() if traffic else None, served=served)
            for family in ("1", "2")
        }
        if self.metrics is not None:
            self.metrics.tallies = self.cache.tallies
            self.metrics.answers = self.cache.stats

    def tally(self, family: str) -> Tally:
        """Counters for a serving thread other than the event loop's (call on the loop,
        before the thread starts); what it answers from the template is kept by the loop
        (:meth:`keep_made`)."""
        traffic = self.traffic
        return self.cache.tally(
            family,
            owner=False,
            traffic=traffic() if traffic else None,
            served=self.metrics is not None,
        )

    def drop_cache(self) -> None:
        """Forget every kept answer (hosts data changed)."""
        self.cache.clear()

    # ---- 1. the fast path -------------------------------------------------------------

    def fast(
        self,
        data: bytes,
        tcp: bool,
        tally: Tally,
        client: str = "",
        port: int = 0,
        local: tuple[str, int] = NOWHERE,
    ) -> Fast:
        """The one fast path, from any thread (docs/design.md 4): the reply when a kept
        answer or a certain NXDOMAIN serves the datagram, None to send nothing, else the
        parsed query for :meth:`answer`. Writes nothing but ``tally`` (the calling thread's):
        an NXDOMAIN made off the loop is left in ``tally.keep`` for the loop to keep.
        ``client``/``port``/``local``: who asked and where (the client's IP for the traffic
        view; all three for :meth:`Mux.fast`'s views; one signature for every transport)."""
        if self.querylog is None:  # the log sees every query: the chain answers and logs
            hit = self.cache.lookup(data, tcp, tally, client)
            if hit is not None:
                return hit
        return self.unkept(data, tcp, tally, client)

    def unkept(self, data: bytes, tcp: bool, tally: Tally, client: str = "") -> Fast:
        """The fast path past the kept answers (what :meth:`fast` does after
        ``AnswerCache.lookup`` found nothing; any thread, writes only ``tally``): a certain
        NXDOMAIN decided from the bytes (the flood's path), else parse once, then a certain
        NXDOMAIN from the parsed question, else the parsed query; None to send nothing."""
        wire = self.wire_negative
        if wire is not None:
            made = wire(data, tcp, self.udp_size, tally.memo)
            if made is not None:
                reply = made[0]
                keep = tally.keep
                if keep is not None and tally.served is None and tally.traffic is None:
                    keep.append((data, tcp))  # _made where nothing reads the question
                else:
                    self._made(data, tcp, tally, client, reply, None)
                return reply
        query = parse_or_reply(data, self.udp_size)
        negative = self.negative
        if negative is None or type(query) is not Query:
            return query
        edns = query.edns
        if (
            (edns is not None and edns[1] > 0)
            or query.qclass != QClass.IN
            or query.qtype in NOT_FAST
            or not find_zone(query.qname, self.zones)
        ):
            return query
        found = negative(query)
        if found is None:
            return query
        header, tail, tags = found
        reply = header + query.question + tail
        question = query.question
        self._made(data, tcp, tally, client, reply, question[:-4].lower() + question[-4:])
        return reply

    def _made(
        self, data: bytes, tcp: bool, tally: Tally, client: str, reply: bytes, key: bytes | None
    ) -> None:
        """Count a certain NXDOMAIN the fast path made, and keep it if its question came
        before (:meth:`AnswerCache.repeated`: a flood's names, asked once, are not kept);
        a thread other than the loop leaves that to the loop (:meth:`keep_made`). ``key``:
        the question's lower-cased name, type and class; None when the name is plain in
        ``data`` (``wire_negative`` took it): cut from there (:meth:`unkept` does not call
        this when nothing would read it)."""
        if key is None:
            pos = data.find(0, 12)
            key = data[12 : pos + 1].lower() + data[pos + 1 : pos + 5]
        if tally.served is not None:
            qtype = (key[-4] << 8) | key[-3]
            tally.served[(tcp, qtype, Rcode.NXDOMAIN, len(data), len(reply))] += 1
        if tally.traffic is not None:
            tally.traffic.note(client, key[:-4], Rcode.NXDOMAIN, 0)
        if tally.keep is not None:
            tally.keep.append((data, tcp))
        elif self.cache.repeated(key):
            self._keep_negative(data, tcp)

    def _keep_negative(self, data: bytes, tcp: bool) -> None:
        """Keep the certain NXDOMAIN of a datagram, decided afresh (the loop's thread)."""
        query = parse_or_reply(data, self.udp_size)
        negative = self.negative
        if type(query) is Query and negative is not None:
            made = negative(query)
            if made is not None:
                self.cache.put(query, query.limit(tcp), made[0], made[1], tags=made[2])

    def keep_made(self, tally: Tally) -> None:
        """On the loop: keep the NXDOMAINs a serving thread made whose questions came
        before (:meth:`AnswerCache.repeated`), each decided afresh from the store (it may
        have changed since the thread answered)."""
        keep, cache = tally.keep, self.cache
        while keep:
            data, tcp = keep.popleft()
            pos = data.find(0, 12)
            if pos > 0 and cache.repeated(data[12 : pos + 1].lower() + data[pos + 1 : pos + 5]):
                self._keep_negative(data, tcp)

    def handle(
        self,
        data: bytes,
        tcp: bool,
        family: str = "1",
        client: str = "",
        port: int = 0,
        local: tuple[str, int] = NOWHERE,
    ) -> Reply:
        """Answer one DNS message on the event loop's thread: :meth:`fast`, then
        :meth:`answer`. None means send nothing (RFC 1035 4.1.1, docs/behaviour.md 13).
        ``family``: "1" IPv4 or "2" IPv6 listener (metrics); ``client``/``port``: the
        client's address (autopath, log, view); ``local``: the server's (ip, port) the
        query came in on (view)."""
        if type(data) is not bytes:  # a bytearray or memoryview: keys must be bytes
            data = bytes(data)
        # Handler.fast, its first step inlined: a call less on the loop's every hit (~5%)
        tally = self.loop_tallies[family]
        if self.querylog is None:
            hit = self.cache.lookup(data, tcp, tally, client)
            if hit is not None:
                return hit
        out = self.unkept(data, tcp, tally, client)
        if type(out) is Query:
            return self.answer(out, data, tcp, family, client, port, local)
        return out  # type: ignore[return-value]

    # ---- 2. the chain -----------------------------------------------------------------

    def answer(
        self,
        query: Query,
        data: bytes,
        tcp: bool,
        family: str = "1",
        client: str = "",
        port: int = 0,
        local: tuple[str, int] = NOWHERE,
    ) -> Reply:
        """Answer a parsed query (``data``: the packet as received) on the event loop's
        thread: a kept answer, else the chain; counted in the metrics and logged.
        ``local``: as :meth:`handle` (read by :meth:`Mux.answer`)."""
        began = time.perf_counter()
        query.udp_size = self.udp_size
        if query.edns is not None and query.edns[0] > self.udp_size:
            data = _cap_payload(data, query, self.udp_size)  # forwarded: advertise our cap
        plugin = ""
        if query.edns is not None and query.edns[1] > 0:
            reply: Reply = error_response(query, Rcode.BADVERS)  # RFC 6891 6.1.3
        else:
            limit = query.limit(tcp)
            reply = self.cache.get(query, limit, self.loop_tallies[family])
            plugin = "kubernetes"
            if reply is None:
                try:
                    reply, plugin = self._chain(Ask(query, data, limit, client, port, tcp))
                except Exception:  # a bug must cost one query, not the server
                    log.exception("internal error answering %s type %d", query.qname, query.qtype)
                    reply, plugin = error_response(query, Rcode.SERVFAIL), ""
                if reply is not None and not isinstance(reply, bytes):
                    reply = _guarded(reply, query, plugin)
        if self.metrics is None and self.querylog is None and self.traffic is None:
            return reply
        if isinstance(reply, bytes) or reply is None:
            self._report(query, data, tcp, family, client, port, reply, plugin, began)
            return reply
        return self._report_later(reply, query, data, tcp, family, client, port, plugin, began)

    def _chain(self, ask: Ask) -> Outcome:
        """The steps in order: the first that answers ends it; else the answer a step fell
        through with, else SERVFAIL (no plugin handled it, docs/behaviour.md 14). A
        rewritten question's reply is turned back to the question asked."""
        query = ask.query
        for run in self.runs:
            out = run(self, ask)
            if out is not None:
                break
        else:
            if ask.passed is not None:  # fallthrough with nothing after it
                out = self.reply(ask.query, ask.passed, ask.limit, not ask.rewritten), "kubernetes"
            else:
                out = error_response(ask.query, Rcode.SERVFAIL), ""
        if ask.revert is not None:
            return ask.revert.reply(out[0], query, ask.limit), out[1]
        return out

    def _report(
        self,
        query: Query,
        data: bytes,
        tcp: bool,
        family: str,
        client: str,
        port: int,
        reply: bytes | None,
        plugin: str,
        began: float,
    ) -> None:
        """Count one answered query (the request's own length: RFC 1035 message size) and
        hand it to the query log."""
        seconds = time.perf_counter() - began
        if self.metrics is not None:
            do = bool(query.edns and query.edns[2])
            proto = "tcp" if tcp else "udp"
            self.metrics.observe(proto, family, query.qtype, len(data), reply, plugin, seconds, do)
        if self.querylog is not None:
            self.querylog.record(client, port, tcp, data, reply, seconds)
        traffic = self.loop_tallies[family].traffic
        if traffic is not None and reply is not None and len(reply) >= 12:
            name = query.question[:-4].lower()
            traffic.note(client, name, reply[3] & 0xF, reply[6] | reply[7])

    async def _report_later(
        self,
        pending: Awaitable[bytes | None],
        query: Query,
        data: bytes,
        tcp: bool,
        family: str,
        client: str,
        port: int,
        plugin: str,
        began: float,
    ) -> bytes | None:
        reply = await pending
        self._report(query, data, tcp, family, client, port, reply, plugin, began)
        return reply

    # ---- the public face the steps use (plugin.Chain) ---------------------------------

    def forwarder(self, qname: str) -> Any:
        """The first forwarder whose zone holds ``qname`` (CoreDNS forward ``FROM``), or
        None."""
        for forwarder in self.forwarders:
            if forwarder.handles(qname):
                return forwarder
        return None

    def encode(self, query: Query, answer: Answer, limit: int) -> tuple[bytes, int, bytes]:
        """``dns.encode.encode_answer``: (header, question length, tail) within ``limit``."""
        return encode_answer(query, answer, limit)

    def keep(
        self,
        query: Query,
        limit: int,
        header: bytes,
        tail: bytes,
        answer: Answer | None,
        tags: Tags | None = None,
    ) -> None:
        """Keep an encoded answer under the tags it read (computed from ``answer`` for the
        cluster zone; ``("any",)`` otherwise), with its loadbalance rotations."""
        if tags is None:
            tags = (
                dependencies(self.store, query.qname, self.config, answer)
                if self.config is not None and answer is not None
                else ("any",)
            )
        variants = (
            self.rotations(query, answer, limit)
            if self.rotations is not None and answer is not None
            else None
        )
        self.cache.put(query, limit, header, tail, variants, tags=tags)

    def reply(self, query: Query, answer: Answer, limit: int, keep: bool) -> Reply:
        """The reply for ``answer`` within ``limit`` bytes, kept when ``keep``; a CNAME to
        an outside name (ExternalName, a cloud load balancer) has its target's records
        appended through the forwarder (docs/behaviour.md 4), and is not kept."""
        if answer.chase:
            forwarder = self.forwarder(answer.chase)
            if forwarder is not None:
                return self._chase(forwarder, query, answer, limit)
            keep = False
        header, _, tail = encode_answer(query, answer, limit)
        if keep:
            self.keep(query, limit, header, tail, answer)
        return header + query.question + tail

    def autopath(self, ask: Ask, answer: Answer) -> Outcome | None:
        """autopath on an NXDOMAIN (docs/behaviour.md 16): the reply found along the
        client's search path, or None to answer the NXDOMAIN."""
        search = self.autopath_search
        if search is None or not ask.client:
            return None
        query, limit = ask.query, ask.limit
        found = search.search(
            query,
            limit,
            ask.client,
            store=self.store,
            config=self.config,
            forwarder=self.forwarder,
            counted=self._autopath_counted,
        )
        if isinstance(found, bytes):
            return found, "autopath"
        if found is not None:
            return self._autopath_or(found, query, answer, limit), "autopath"
        return None

    def _autopath_counted(self) -> None:
        if self.metrics is not None:
            self.metrics.autopath_success += 1

    async def _autopath_or(
        self, found: Awaitable[bytes | None], query: Query, answer: Answer, limit: int
    ) -> bytes | None:
        """The upstream part of autopath, or the asked name's own NXDOMAIN."""
        reply = await found
        if reply is not None:
            return reply
        header, _, tail = encode_answer(query, answer, limit)
        return header + query.question + tail

    async def _chase(self, forwarder: Any, query: Query, answer: Answer, limit: int) -> bytes:
        """The CNAME and, when the upstream has them, its target's records."""
        found = await forwarder.lookup(answer.chase, query.qtype)
        extra = [] if found is None else list(found.rr)
        header, _, tail = encode_answer(query, answer, limit, upstream=extra)
        return header + query.question + tail


def _fast_negative(steps: Sequence[Step]) -> Step | None:
    """The step whose certain negatives the fast path may serve: the first step that has
    them, when no step before it may answer a plain IN cluster name (``in_class``)."""
    for step in steps:
        if step.negative is not None:
            return step
        if step.in_class and step.run is not None:
            return None
    return None


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


def for_port(handlers: Sequence[Handler]) -> Handler | Mux:
    """What serves one port: the block's own handler when it is alone there and has no
    ``view`` (nothing to choose: the fast path as is), else a :class:`Mux`."""
    if len(handlers) == 1 and handlers[0].view is None:
        return handlers[0]
    return Mux(handlers)


class Mux:
    """Several server blocks on one port: each query goes to the block with the longest
    matching zone (CoreDNS core/dnsserver); a name no block serves is REFUSED.

    Without views the fast path is each block's own: a kept answer is only ever in the
    cache of the block that answered it. With views (CoreDNS plugin/view, server.go
    ``ServeDNS``) the zones are walked from the longest matching one to the root, and among
    each zone's blocks, in Corefile order, the first whose view matches the request (a
    block without a view matches all) answers; none: REFUSED. The view is evaluated on the
    parsed query before that block's kept answers are looked at, so the fast path never
    serves one view's kept answer to another view's client.
    """

    def __init__(self, handlers: Sequence[Handler]) -> None:
        self.handlers = list(handlers)
        self._zones = tuple(z for h in self.handlers for z in h.zones)
        self.udp_size = max(h.udp_size for h in self.handlers)
        self.traffic = next((h.traffic for h in self.handlers if h.traffic), None)
        self.views = any(h.view is not None for h in self.handlers)
        # with views: the zones longest first, each with its blocks in Corefile order
        by_zone: dict[str, list[int]] = {}
        for i, handler in enumerate(self.handlers):
            for zone in handler.zones:
                by_zone.setdefault(zone, []).append(i)
        self._walk = tuple(
            (zone, tuple(by_zone[zone]))
            for zone in sorted(by_zone, key=lambda z: (z == ".", -len(z)))
        )

    def tally(self, family: str) -> list[Tally]:
        """Counters for a serving thread: one per block."""
        return [handler.tally(family) for handler in self.handlers]

    def fast(
        self,
        data: bytes,
        tcp: bool,
        tally: list[Tally],
        client: str = "",
        port: int = 0,
        local: tuple[str, int] = NOWHERE,
    ) -> Fast:
        """:meth:`Handler.fast` for the block the query belongs to."""
        if not self.views:
            for handler, mine in zip(self.handlers, tally, strict=True):
                if handler.querylog is None:
                    hit = handler.cache.lookup(data, tcp, mine, client)
                    if hit is not None:
                        return hit
        query = parse_or_reply(data, self.handlers[0].udp_size)
        if type(query) is not Query:
            return query
        index = self._block(query, len(data), tcp, client, port, local)
        if index is None:
            return error_response(query, Rcode.REFUSED)
        return self.handlers[index].fast(data, tcp, tally[index], client)

    def _block(
        self, query: Query, size: int, tcp: bool, client: str, port: int, local: tuple[str, int]
    ) -> int | None:
        if not self.views:
            zone = find_zone(query.qname, self._zones)
            for i, handler in enumerate(self.handlers):
                if zone in handler.zones:
                    return i
            return None
        from .viewexpr import request_of  # only a Corefile with view loads the language

        qname, request = query.qname, None
        for zone, blocks in self._walk:
            if not (qname == zone or zone == "." or qname.endswith("." + zone)):
                continue
            for i in blocks:
                view = self.handlers[i].view
                if view is None:
                    return i
                if request is None:
                    request = request_of(query, size, tcp, (client, port), local)
                if view.matches(request):
                    return i
        return None

    def keep_made(self, tally: list[Tally]) -> None:
        """:meth:`Handler.keep_made` for each block."""
        for handler, mine in zip(self.handlers, tally, strict=True):
            handler.keep_made(mine)

    def answer(
        self,
        query: Query,
        data: bytes,
        tcp: bool,
        family: str = "1",
        client: str = "",
        port: int = 0,
        local: tuple[str, int] = NOWHERE,
    ) -> Reply:
        """:meth:`Handler.answer` of the block the query belongs to (its view evaluated
        again: the same request picks the same block)."""
        index = self._block(query, len(data), tcp, client, port, local)
        if index is None:
            return error_response(query, Rcode.REFUSED)
        return self.handlers[index].answer(query, data, tcp, family, client, port, local)

    def handle(
        self,
        data: bytes,
        tcp: bool,
        family: str = "1",
        client: str = "",
        port: int = 0,
        local: tuple[str, int] = NOWHERE,
    ) -> Reply:
        """As :meth:`Handler.handle`."""
        if type(data) is not bytes:
            data = bytes(data)
        if len(self.handlers) == 1 and not self.views:
            return self.handlers[0].handle(data, tcp, family, client, port, local)
        tallies = [h.loop_tallies[family] for h in self.handlers]
        out = self.fast(data, tcp, tallies, client, port, local)
        if type(out) is Query:
            return self.answer(out, data, tcp, family, client, port, local)
        return out  # type: ignore[return-value]
