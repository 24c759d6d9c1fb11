"""The answer cache: encoded answers by question, served straight from a query's bytes on
the hot path, kept per name and dropped per name when the store changes what they depend on
(docs/design.md, docs/design-answers.md).

Sources: RFC 1035 4.1 (the packet read in place), RFC 6891 6.1 (the OPT record checked in
place), RFC 5452 9.1 and docs/behaviour.md 12 (the question echoed byte for byte).
"""

from __future__ import annotations

import itertools
import struct
from collections import defaultdict, deque
from typing import Any

from ..core.defaults import CACHE_SIZE, NEGATIVE_SHARE
from ..core.errors import FormatError
from ..core.rr import Rcode
from ..core.traffic import TrafficTally
from . import edns, message
from .edns import DEFAULT_UDP_SIZE, check_options
from .message import FLAG_CD, FLAG_QR, FLAG_RD, Query

# Assigned from the module, not imported by name: CPython (3.11+) compiles ``NAME.method()``
# on a name bound by ``import`` without LOAD_METHOD, making a bound method on every call
# (measured: +0.09 us per cache hit, 7% of a hit).
OPT_HEAD = edns.OPT_HEAD
HEADER = message.HEADER
REPLY_HEAD = message.REPLY_HEAD

CacheKey = tuple[bytes, bytes, int, bool, bool]
"""Lower-cased qname wire bytes, qtype+qclass bytes, size limit, EDNS present, DO bit."""
Tags = tuple[Any, ...]
"""What a cached answer depends on (``store.Tag`` values: ``("svc", ns, name)``, ...)."""
INTERN_MAX = 4096  # shared copies of small repeated values (tags, counts, qtype bytes)
SMALL = 8  # keys under one tag kept in a list up to this many, then in a set
KEEP_MAX = 100  # answers another thread made, waiting for the owner of the cache to keep
SEEN_MAX = 10_000  # template negatives remembered as seen once (see AnswerCache.repeated)


Served = tuple[bool, int, int, int, int]
"""One kind of reply served without the chain: (TCP, qtype, rcode, request bytes, reply bytes)."""


class Tally:
    """The counters of one serving thread for one server block, written by that thread only
    and summed when read (a scrape, :attr:`AnswerCache.hits`): no attribute is written by two
    threads (docs/design.md 4).

    ``family``: "1" IPv4 or "2" IPv6 listener (metrics); ``hits``: replies served from kept
    answers; ``served``: how many replies of each :data:`Served` kind the fast path sent
    (folded into CoreDNS's metric families at scrape time); ``turn``: this thread's loadbalance
    turn; ``keep``: for a thread other than the cache's owner, the answers it made that the
    owner should keep (bounded by :data:`KEEP_MAX`, oldest dropped; None on the owner's thread,
    which keeps them at once); ``traffic``: this thread's traffic tally (who asked what,
    ``core.traffic``), None when the traffic view is off.
    """

    __slots__ = ("family", "hits", "served", "turn", "keep", "traffic")

    def __init__(
        self,
        family: str = "1",
        owner: bool = True,
        traffic: TrafficTally | None = None,
        served: bool = True,
    ) -> None:
        self.family = family
        self.hits = 0
        # None when nobody reads them (no metrics): one dict update less per reply
        self.served: defaultdict[Served, int] | None = defaultdict(int) if served else None
        self.turn = 0
        self.keep: deque[Any] | None = None if owner else deque(maxlen=KEEP_MAX)
        self.traffic = traffic


class AnswerCache:
    """Encoded answers by question, kept per name and invalidated per name (docs/design.md,
    docs/design-answers.md).

    Key: the lower-cased question bytes, the size limit (one of a few buckets: see
    :func:`~clusterdns.dns.edns.udp_limit`), EDNS present, DO bit.
    Value: header flags, counts, the encoded sections after the question, and the *tags*
    the answer depends on. A hit copies the query ID, RD/CD and the question as sent: owner
    names are compression pointers to the question, so they carry the client's case.

    Invalidation: :meth:`invalidate` (called by the store, see ``Store.listen``) drops
    exactly the entries indexed under a touched tag; entries of other names survive.
    Cluster answers are never served stale.

    Bounds: positive answers (the compiled part of the zone that is asked for) up to
    ``max_entries``; negative answers (NXDOMAIN, NODATA, SERVFAIL: what a flood of random
    names produces) up to ``max_negative`` on their own, so a flood never evicts a positive
    answer. Oldest first in each part.

    Memory (measured, docs/performance.md): about 500-700 bytes per entry, key, encoded
    answer and tag index included.
    """

    __slots__ = (
        "entries",
        "rotations",
        "max_entries",
        "max_negative",
        "by_tag",
        "negatives",
        "shared",
        "tallies",
        "misses",
        "evictions",
        "seen",
        "udp_size",
        "__weakref__",
    )

    def __init__(
        self, max_entries: int = CACHE_SIZE, max_negative: int = CACHE_SIZE // NEGATIVE_SHARE
    ) -> None:
        self.entries: dict[CacheKey, tuple[int, bytes, bytes, Tags]] = {}
        # loadbalance: further encodings of an entry with its addresses rotated
        self.rotations: dict[CacheKey, tuple[bytes, ...]] = {}
        # tag -> the keys of the entries that depend on it: a list while few (most tags
        # have one or two entries, and a set costs 216 bytes), a set beyond SMALL
        self.by_tag: dict[Any, list[CacheKey] | set[CacheKey]] = {}
        # the negative entries in insertion order, for their own eviction (values unused);
        # the positive ones are the others, in the order of ``entries``
        self.negatives: dict[CacheKey, None] = {}
        # one copy of each repeated small value (counts, qtype+qclass bytes, tag tuples):
        # about 150 bytes less per entry; emptied when it grows past INTERN_MAX
        self.shared: dict[Any, Any] = {}
        self.max_entries = max_entries
        self.max_negative = max_negative
        self.tallies: list[Tally] = []  # every serving thread's counters (see :meth:`tally`)
        self.misses = 0  # written by the owner's thread only (:meth:`get`)
        self.evictions = 0  # entries dropped to stay within the bounds (owner's thread)
        # negative answers made from the template, seen once: kept only when they come again
        # (a flood of names asked once cannot evict the negatives real clients repeat)
        self.seen: set[bytes] = set()
        self.udp_size = DEFAULT_UDP_SIZE  # our EDNS payload (bytes): see udp_limit

    def tally(
        self,
        family: str = "1",
        owner: bool = True,
        traffic: TrafficTally | None = None,
        served: bool = True,
    ) -> Tally:
        """New counters for one serving thread (``owner``: the thread that writes this
        cache, the event loop's; ``served``: count replies by kind for the metrics),
        registered so that :attr:`hits` and the metrics sum them. Call from the owner's
        thread, before the serving thread starts."""
        tally = Tally(family, owner, traffic, served)
        self.tallies.append(tally)
        return tally

    @property
    def hits(self) -> int:
        """Replies served from kept answers, summed over every serving thread."""
        return sum(t.hits for t in self.tallies)

    def stats(self) -> dict[str, int]:
        """The table's counts for the metrics (any thread: integers, a moment old): hits,
        misses, evictions, and the entries kept, positive and negative."""
        negative = len(self.negatives)
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "positive": len(self.entries) - negative,
            "negative": negative,
        }

    def repeated(self, key: bytes) -> bool:
        """Whether a negative answer for the question ``key`` (its lower-cased name and its
        type and class bytes) was made before (the owner's thread): True the second time a
        question comes, when it is worth keeping. The memory of questions seen once is
        bounded by :data:`SEEN_MAX` (forgotten all at once when full)."""
        seen = self.seen
        if key in seen:
            seen.discard(key)
            return True
        if len(seen) >= SEEN_MAX:
            seen.clear()
        seen.add(key)
        return False

    # One function of about 70 lines on purpose: this is the hot path (every cache hit runs
    # it and nothing else), and a call costs about as much as a tenth of it. Helpers
    # (parse_header, udp_limit, key) are inlined; literals stand for TCP_LIMIT,
    # PAYLOAD_BUCKETS and MIN_UDP (a constant is cheaper than a global).
    def lookup(self, data: bytes, tcp: bool, tally: Tally, client: str = "") -> bytes | None:
        """The hot path: the whole reply for a query packet straight from its bytes.

        No parsing into objects, no dnslib: the header, the question's labels and an OPT
        record are checked in place and the key is cut from the packet. Returns None on a
        miss and for anything out of the ordinary (a response, another opcode, several
        questions, records other than one OPT, EDNS version > 0, a bad or compressed
        name): the caller then takes the full, checking path. Writes nothing but
        ``tally`` (the calling thread's own counters, its traffic tally noting ``client``,
        the source IP): safe from any thread.
        """
        if len(data) < 17:
            return None
        ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
        if flags & 0xF800 or qdcount != 1 or ancount or nscount or arcount > 1:
            return None
        end = len(data)
        # The first zero byte ends the name when the name is well formed; when it is not
        # (a zero inside a label, a pointer), the bytes up to it cannot equal a cached key,
        # which always is a whole, checked name with its only zero at its end: a miss.
        pos = data.find(0, 12)
        if pos < 0:
            return None
        qend = pos + 5  # the root label, qtype, qclass
        if arcount:
            if qend + 11 > end:
                return None
            root, rtype, payload, ttl, rdlength = OPT_HEAD.unpack_from(data, qend)
            if root or rtype != 41 or ttl & 0x00FF0000 or qend + 11 + rdlength != end:
                return None
            if rdlength:
                try:
                    check_options(data, qend + 11, end)
                except FormatError:
                    return None  # the full path answers FORMERR
            ours = self.udp_size  # udp_limit inlined: the key holds a bucket, not the payload
            limit = (
                65535
                if tcp
                else ours
                if payload >= ours
                else 4096
                if payload >= 4096
                else 1232
                if payload >= 1232
                else 512
            )
            key = (data[12 : pos + 1].lower(), data[pos + 1 : qend], limit, True, ttl & 0x8000 != 0)
        else:
            if qend != end:
                return None
            key = (
                data[12 : pos + 1].lower(),
                data[pos + 1 : qend],
                65535 if tcp else 512,
                False,
                False,
            )
        hit = self.entries.get(key)
        if hit is None:
            return None
        cached_flags, counts, tail, _ = hit
        if self.rotations:
            tail = self._rotated(key, tail, tally)
        reply = (
            REPLY_HEAD.pack(ident, cached_flags | FLAG_QR | (flags & 0x0110), 1)
            + counts
            + data[12:qend]
            + tail
        )
        tally.hits += 1
        served = tally.served
        if served is not None:
            qtype = (data[pos + 1] << 8) | data[pos + 2]
            served[(tcp, qtype, cached_flags & 0xF, end, len(reply))] += 1
        traffic = tally.traffic
        if traffic is not None:
            traffic.note(client, key[0], cached_flags & 0xF, counts[0] | counts[1])
        return reply

    def _rotated(self, key: CacheKey, tail: bytes, tally: Tally) -> bytes:
        """loadbalance: the next of the entry's encodings, in the calling thread's turn
        (each thread rotates on its own counter: nothing shared is written)."""
        variants = self.rotations.get(key)
        if not variants:
            return tail
        tally.turn += 1
        pick = tally.turn % (len(variants) + 1)
        return variants[pick - 1] if pick else tail

    @staticmethod
    def key(query: Query, limit: int) -> CacheKey:
        """The cache key of a query answered within ``limit`` bytes.

        Only the name is lower-cased: qtype/qclass bytes must not be (0x41 is not 0x61).
        """
        edns = query.edns
        question = query.question
        return (
            question[:-4].lower(),
            question[-4:],
            limit,
            edns is not None,
            bool(edns and edns[2]),
        )

    def get(self, query: Query, limit: int, tally: Tally) -> bytes | None:
        """The full response for a parsed ``query`` if kept, else None (the owner's thread:
        it counts misses). ``tally`` counts the hit; the caller reports it to metrics."""
        key = self.key(query, limit)
        hit = self.entries.get(key)
        if hit is None:
            self.misses += 1
            return None
        tally.hits += 1
        flags, counts, tail, _ = hit
        if self.rotations:
            tail = self._rotated(key, tail, tally)
        flags |= FLAG_QR | (query.flags & (FLAG_RD | FLAG_CD))
        return REPLY_HEAD.pack(query.id, flags, 1) + counts + query.question + tail

    def __len__(self) -> int:
        return len(self.entries)

    def _drop(self, key: CacheKey) -> None:
        """Forget one entry and its place in every index."""
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        by_tag = self.by_tag
        for tag in entry[3]:
            keys = by_tag.get(tag)
            if keys is not None:
                if type(keys) is set:
                    keys.discard(key)
                elif key in keys:
                    keys.remove(key)
                if not keys:
                    del by_tag[tag]
        if self.rotations:
            self.rotations.pop(key, None)
        self.negatives.pop(key, None)

    def invalidate(self, tags: set[Any] | None) -> None:
        """Drop the entries that depend on any of ``tags`` (None: every entry).

        Called by the store after each change that alters answers (``Store.listen``);
        costs O(entries dropped), whatever the size of the cache.
        """
        if tags is None:
            self.clear()
            return
        by_tag = self.by_tag
        for tag in tags:
            keys = by_tag.get(tag)
            if keys:
                for key in list(keys):
                    self._drop(key)

    def clear(self) -> None:
        """Drop every entry."""
        self.seen.clear()
        self.entries.clear()
        self.rotations.clear()
        self.by_tag.clear()
        self.negatives.clear()
        self.shared.clear()

    def _share(self, value: Any) -> Any:
        """One shared copy of a small immutable value."""
        shared = self.shared
        if len(shared) >= INTERN_MAX:
            shared.clear()
        return shared.setdefault(value, value)

    def _evict_negative(self) -> None:
        """Drop the oldest tenth of the negative entries at once.

        Deleting the first key of a dict one at a time leaves dead slots at the front that
        every next ``iter`` walks again: the order dict is rebuilt instead (O(1) per insert
        over time).
        """
        victims = list(itertools.islice(self.negatives, max(1, self.max_negative // 10)))
        for key in victims:
            self._drop(key)
        self.evictions += len(victims)
        self.negatives = dict.fromkeys(self.negatives)

    def _evict_positive(self) -> None:
        """Drop the oldest tenth of the positive entries at once, and rebuild ``entries``
        (see :meth:`_evict_negative`)."""
        drop = max(1, self.max_entries // 10)
        negatives = self.negatives
        victims = list(itertools.islice((k for k in self.entries if k not in negatives), drop))
        for key in victims:
            self._drop(key)
        self.evictions += len(victims)
        self.entries = dict(self.entries)

    def put(
        self,
        query: Query,
        limit: int,
        header: bytes,
        tail: bytes,
        rotations: list[bytes] | None = None,
        tags: Tags = ("any",),
    ) -> None:
        """Store an encoded response (``header`` as made by
        :func:`~clusterdns.dns.encode.encode_answer`), and
        optionally ``rotations``: the same answer with its addresses in other orders, all
        with the same header counts, served in turn. ``tags``: what the answer depends on
        (the default, ``"any"``, drops it on every change of the cluster)."""
        name, qtail, size, edns, do = self.key(query, limit)
        key = (name, self._share(qtail), size, edns, do)
        if key in self.entries:
            self._drop(key)
        flags = struct.unpack_from("!H", header, 2)[0] & ~(FLAG_QR | FLAG_RD | FLAG_CD)
        if flags & 0xF != Rcode.NOERROR or header[6:8] == b"\x00\x00":
            if len(self.negatives) >= self.max_negative:
                self._evict_negative()
            self.negatives[key] = None
        elif len(self.entries) - len(self.negatives) >= self.max_entries:
            self._evict_positive()
        # namespace-wide tags are shared by many entries: one copy of each
        tags = tuple(self._share(t) if t[0] in ("ns", "nx") else t for t in tags)
        self.entries[key] = (self._share(flags), self._share(header[6:12]), tail, tags)
        by_tag = self.by_tag
        for tag in tags:
            keys = by_tag.get(tag)
            if keys is None:
                by_tag[tag] = [key]
            elif isinstance(keys, set):
                keys.add(key)
            elif key not in keys:
                keys.append(key)
                if len(keys) > SMALL:
                    by_tag[tag] = set(keys)
        if rotations:
            self.rotations[key] = tuple(rotations)
