"""kubernetes: the cluster zone's step in the chain (CoreDNS kubernetes plugin; behaviour.md 2-12).

The answers themselves come from the pure resolver (``core.resolver.resolve``); this step
decides what becomes of them: a quick NXDOMAIN from the SOA template after an existence
check (``core.depends.quick_negative``, docs/design.md), autopath on NXDOMAIN, an ExternalName
target chased upstream, ``fallthrough`` handed on to the next plugin, else the answer
encoded and cached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.depends import quick_negative
from ..core.errors import ClusterDNSError
from ..core.names import find_zone
from ..core.resolver import ZoneConfig, resolve
from ..core.rr import QClass, QType, Rcode
from ..core.store import Store, Tag
from ..dns.cache import AnswerCache
from ..dns.encode import negative_response
from ..dns.message import Drop, Query
from ..dns.wire import parse_query

if TYPE_CHECKING:
    from .chain import Ask, Handler, Outcome

QUICK_NEGATIVE_TTL = 300  # seconds at most, as resolver._Question.soa caps a negative TTL
SOA_TIMERS = (7200, 1800, 86400)  # refresh, retry, expire (seconds), as resolver._Question.soa


class Kubernetes:
    """The kubernetes step of one server block: ``store`` and ``config`` answer, ``cache``
    keeps quick NXDOMAINs. ``quick``: decide NXDOMAIN without the resolver; off with autopath
    (its NXDOMAIN may become another name's answer, per client)."""

    def __init__(
        self, store: Store, config: ZoneConfig, cache: AnswerCache, quick: bool = True
    ) -> None:
        self.store = store
        self.config = config
        self.cache = cache
        self.quick = quick

    def step(self, handler: Handler, ask: Ask) -> Outcome | None:
        """The chain step: the reply and ``"kubernetes"`` (or ``"autopath"``), or None to go
        on (not the zone, or ``fallthrough``: the answer is left in ``ask.passed``). An
        NXDOMAIN an exposure plugin fell through with (``ask.passed``) stands for a name
        outside the zone."""
        query, limit = ask.query, ask.limit
        if self.quick:
            quick = self.quick_negative(query, limit)
            if quick is not None:
                return quick, "kubernetes"
        answer = resolve(self.store, query.qname, query.qtype, self.config)
        if answer is None:
            answer = ask.passed
            if answer is None:
                return None
        if answer.rcode == Rcode.NXDOMAIN:
            found = handler._autopath(query, answer, limit, ask.client)
            if found is not None:
                return found
        if answer.fallthrough:
            ask.passed = answer
            return None
        if answer.chase:
            forwarder = handler._forwarder(answer.chase)
            if forwarder is not None:
                return handler._chase(forwarder, query, answer, limit), "kubernetes"
        cache = (
            not ask.rewritten
            and not answer.chase
            and not (
                handler.autopath and answer.rcode == Rcode.NXDOMAIN  # may differ per client
            )
        )
        return handler.encode(query, answer, limit, cache=cache), "kubernetes"

    def quick_negative(self, query: Query, limit: int) -> bytes | None:
        """NXDOMAIN from the SOA template after an existence check (depends.quick_negative),
        cached as the resolver's answer would be; None when the resolver must decide."""
        made = self.quick_made(query)
        if made is None:
            return None
        header, tail, tags = made
        self.cache.put(query, limit, header, tail, tags=tags)
        return header + query.question + tail

    def quick_made(self, query: Query) -> tuple[bytes, bytes, tuple[Tag, ...]] | None:
        """``(header, tail, tags)`` of the quick NXDOMAIN for ``query``, or None. Reads the
        store only (safe from ``server.UDPThread``)."""
        config = self.config
        found = quick_negative(self.store, query.qname, config)
        if found is None:
            return None
        zone, tags = found
        ttl = config.ttl
        times = (self.store.serial, *SOA_TIMERS, ttl)  # as resolver._Question.soa
        made = negative_response(query, Rcode.NXDOMAIN, zone, min(ttl, QUICK_NEGATIVE_TTL), times)
        if made is None:
            return None
        return made[0], made[1], tags

    def quick_reply(self, data: bytes, zones: tuple[str, ...]) -> tuple[bytes, int] | None:
        """``(reply, qtype)`` for a UDP query that is certainly NXDOMAIN, decided and built
        without writing anything (no cache entry, no counter): for ``server.UDPThread``,
        which may read but never write what the loop thread owns. None when the query needs
        anything else (the loop then answers it): not a plain IN query of version 0 EDNS, a
        transfer or loop probe, outside ``zones``, or not certainly NXDOMAIN."""
        try:
            query = parse_query(data)
        except (Drop, ClusterDNSError):
            return None
        query.udp_size = self.cache.udp_size  # the block's payload (bufsize), not the default
        if (
            (query.edns is not None and query.edns[1] > 0)
            or query.qclass != QClass.IN
            or query.qtype in (QType.AXFR, QType.IXFR, QType.HINFO)
            or not find_zone(query.qname, zones)
        ):
            return None
        made = self.quick_made(query)
        if made is None:
            return None
        return made[0] + query.question + made[1], query.qtype

    def cache_quick(self, data: bytes) -> None:
        """Put the quick NXDOMAIN of a query into the answer cache, decided afresh from the
        store (the loop thread, after :meth:`quick_reply` answered it on another)."""
        try:
            query = parse_query(data)
        except (Drop, ClusterDNSError):
            return
        query.udp_size = self.cache.udp_size
        if self.cache.lookup(data, False) is None and (query.edns is None or query.edns[1] == 0):
            self.quick_negative(query, query.limit(False))
