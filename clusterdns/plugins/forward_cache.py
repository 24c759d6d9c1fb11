"""The forward cache (CoreDNS cache plugin): upstream answers kept as the upstream's bytes.

An entry is the reply as received plus the offsets of its TTL fields, found once when it
is stored by a small walk over the message (:func:`walk`: names with compression
pointers, type, class, TTL, rdlength; RFC 1035 4.1). A hit copies the bytes, writes the
aged TTLs in place, and sets the client's ID, RD/CD, AA and question bytes: no message is
parsed or packed on the way out. The walk is general wire code and could move to
``clusterdns.dns`` (it sits here while that layer is being reworked).
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from ..core.names import find_zone
from ..core.rr import QType, Rcode
from ..dns.wire import FLAG_AA, Query

OPT = 41  # RFC 6891 6.1.1: its TTL field holds the extended rcode, version and DO: no TTL
_RD_CD = 0x0110  # the header bits a cached reply takes from the query asking (RD, CD)
_TTL = struct.Struct("!I")
_ZERO = b"\x00\x00\x00\x00"


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


# ---- the wire walk -------------------------------------------------------------------------


@dataclass(frozen=True)
class WireRecord:
    """One resource record of a message as :func:`walk` finds it: ``section`` 0 answer,
    1 authority, 2 additional; ``ttl_at``/``rdata_at``: byte offsets; ``rdlength``: bytes."""

    section: int
    rtype: int
    ttl: int
    ttl_at: int
    rdata_at: int
    rdlength: int


def skip_name(data: bytes, pos: int) -> int:
    """The offset after the (possibly compressed) name at ``pos`` (RFC 1035 4.1.4).
    Raises ValueError when it runs past the end or uses a reserved label type."""
    end = len(data)
    while pos < end:
        length = data[pos]
        if length >= 0xC0:
            if pos + 2 > end:
                break
            return pos + 2
        if length > 63:
            raise ValueError(f"reserved label type {length:#x} at {pos}")
        if length == 0:
            return pos + 1
        pos += 1 + length
    raise ValueError("name runs past the end of the message")


def question_end(data: bytes) -> int:
    """The offset after the first question (name, type, class). Raises ValueError."""
    end = skip_name(data, 12) + 4
    if end > len(data):
        raise ValueError("question runs past the end of the message")
    return end


def walk(data: bytes) -> list[WireRecord]:
    """Every resource record of the message ``data`` (RFC 1035 4.1), in order, with its
    type, TTL and the offsets of its TTL and RDATA. Raises ValueError when the message is
    shorter than its header and counts say."""
    if len(data) < 12:
        raise ValueError("shorter than a header")
    qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHH", data, 4)
    pos = 12
    for _ in range(qdcount):
        pos = skip_name(data, pos) + 4
    records: list[WireRecord] = []
    for section, count in enumerate((ancount, nscount, arcount)):
        for _ in range(count):
            pos = skip_name(data, pos)
            if pos + 10 > len(data):
                raise ValueError("record header runs past the end of the message")
            rtype, _cls, ttl, rdlength = struct.unpack_from("!HHIH", data, pos)
            rdata = pos + 10
            pos = rdata + rdlength
            if pos > len(data):
                raise ValueError("RDATA runs past the end of the message")
            records.append(WireRecord(section, rtype, ttl, rdata - 6, rdata, rdlength))
    return records


# ---- the cache -----------------------------------------------------------------------------


class CacheEntry:
    """A cached reply: when it expires and was stored (monotonic seconds), its TTL when
    stored, the upstream's bytes with (offset, TTL as received) of every TTL field, where
    the question ends, and the hits that make it popular for prefetch (count, last)."""

    __slots__ = ("expires", "stored", "data", "ttls", "qend", "ttl", "hits", "last")

    def __init__(
        self,
        expires: float,
        stored: float,
        data: bytes,
        ttls: tuple[tuple[int, int], ...],
        qend: int,
        ttl: int,
    ) -> None:
        self.expires = expires
        self.stored = stored
        self.data = data
        self.ttls = ttls
        self.qend = qend
        self.ttl = ttl
        self.hits = 0
        self.last = stored

    def reply(self, query: Query, elapsed: int, stale: bool) -> bytes:
        """The reply for ``query``: TTLs decreased by ``elapsed`` seconds (0 when
        ``stale``), the query's ID, RD and CD, AA set, the question as the client sent it
        (the same length: the cache key folds only its case)."""
        data = bytearray(self.data)
        if stale:
            for at, _ in self.ttls:
                data[at : at + 4] = _ZERO
        elif elapsed:
            pack = _TTL.pack_into
            for at, ttl in self.ttls:
                pack(data, at, ttl - elapsed if ttl > elapsed else 0)
        flags = ((data[2] << 8 | data[3]) & ~_RD_CD) | FLAG_AA | (query.flags & _RD_CD)
        struct.pack_into("!HH", data, 0, query.id, flags)
        data[12 : self.qend] = query.question
        return bytes(data)


@dataclass
class CacheHit:
    """What :meth:`ForwardCache.get` found: which cache, the reply ready to send (TTLs
    aged, re-addressed to the query), whether it is past its TTL (served under
    serve_stale, TTL 0), whether to prefetch."""

    kind: str
    reply: bytes
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
            elapsed = 0 if config.keepttl else int(now - entry.stored)
            prefetch = False
            if config.prefetch and not stale:
                entry.hits = entry.hits + 1 if now - entry.last < config.prefetch_duration else 1
                entry.last = now
                threshold = math.ceil(config.prefetch_percentage / 100 * entry.ttl)
                prefetch = entry.hits >= config.prefetch and entry.expires - now <= threshold
            return CacheHit(kind, entry.reply(query, elapsed, stale), stale, prefetch)
        return None

    def put(self, query: Query, reply: bytes) -> None:
        """Cache an upstream reply if it may be: NOERROR or NXDOMAIN, not truncated, with
        a TTL, and not under a zone where that kind of caching is disabled. An unreadable
        reply is not cached."""
        try:
            records = walk(reply)
            qend = question_end(reply)
        except ValueError:
            return
        rcode = reply[3] & 0xF
        if reply[2] & 0x02 or rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN):
            return
        config = self.config
        if not find_zone(query.qname, config.zones):
            return
        answers = [r for r in records if r.section == 0 and r.rtype != OPT]
        if rcode == Rcode.NOERROR and answers:
            if find_zone(query.qname, config.disable_success):
                return
            ttl = min(r.ttl for r in answers)
            ttl = max(min(ttl, config.success_ttl), config.success_min_ttl)
            cache = self.success
        else:
            if find_zone(query.qname, config.disable_denial):
                return
            soas = [r for r in records if r.section == 1 and r.rtype == QType.SOA]
            if not soas or soas[0].rdlength < 22:  # two names, five 32-bit numbers
                return  # RFC 2308 5: no SOA, no negative caching
            soa = soas[0]
            minimum = _TTL.unpack_from(reply, soa.rdata_at + soa.rdlength - 4)[0]
            ttl = min(soa.ttl, minimum)
            ttl = max(min(ttl, config.denial_ttl), config.denial_min_ttl)
            cache = self.denial
        if ttl <= 0:
            return
        ttls = tuple((r.ttl_at, r.ttl) for r in records if r.rtype != OPT)
        now = self.clock()
        cache[self.key(query)] = CacheEntry(now + ttl, now, bytes(reply), ttls, qend, ttl)

    def entries(self) -> dict[str, int]:
        """How many entries each cache holds (coredns_cache_entries)."""
        return {"success": len(self.success), "denial": len(self.denial)}

