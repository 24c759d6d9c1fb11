"""The answer cache: encoded answers by question, served straight from a query's bytes on
the hot path, kept per name and dropped per name when the store changes what they depend on
(docs/design.md, docs/design-answers.md).

Sources: RFC 1035 4.1 (the packet read in place), RFC 6891 6.1 (the OPT record checked in
place), RFC 5452 9.1 and docs/behaviour.md 12 (the question echoed byte for byte).
"""

from __future__ import annotations

import ipaddress
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

CacheKey = bytes
"""Lower-cased qname wire bytes, qtype+qclass bytes, one byte for the size limit's bucket,
EDNS present and the DO bit (:func:`variant`)."""
Tags = tuple[Any, ...]
"""What a cached answer depends on (``store.Tag`` values: ``("svc", ns, name)``, ...)."""
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
    ``core.traffic``), None when the traffic view is off; ``memo``: what the fast path
    worked out once and reads again on this thread (bounded by its writer: see
    ``plugins.kubernetes.Kubernetes.from_wire``).
    """

    __slots__ = ("family", "hits", "served", "turn", "keep", "traffic", "memo")

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
        self.memo: dict[Any, Any] = {}


# The size limit, EDNS presence and DO bit of a kept answer, as one byte at the end of its
# key: the limit's bucket (0: 512, 1: 1232, 2: 4096, 3: TCP's 65535, 4: our own EDNS payload
# when it is none of those) plus 8 for EDNS and 16 for DO.
BUCKET_CODES = {512: 0, 1232: 1, 4096: 2, 65535: 3}
OURS_CODE = 4
EDNS_CODE = 8
DO_CODE = 16
# Code 0 (no EDNS, UDP: a stub's plain query, the commonest) is no byte at all: a key's
# name ends at its first zero byte, so keys with and without the byte cannot be equal.
VARIANTS = (b"", *(bytes((code,)) for code in range(1, 32)))
UDP_PLAIN = VARIANTS[0]  # no EDNS over UDP: 512 bytes
TCP_PLAIN = VARIANTS[3]  # no EDNS over TCP


PTR_IN = b"\x00\x0c\x00\x01"  # qtype PTR, qclass IN


def reverse_name(ip: str) -> bytes | None:
    """The reverse name of an address (``d.c.b.a.in-addr.arpa.`` or the 32 nibbles under
    ``ip6.arpa.``, RFC 1035 3.5, RFC 3596 2.5) in wire form, lower-cased: the only name whose
    PTR answer a ``("ip", ip)`` tag covers (``core.names.reverse_to_ip`` takes no other
    spelling). None for text that is not an address."""
    try:
        text = ipaddress.ip_address(ip).reverse_pointer
    except ValueError:
        return None
    return b"".join(bytes((len(label),)) + label.encode() for label in text.split(".")) + b"\0"


def variant(limit: int, edns: bool, do: bool) -> bytes:
    """The last byte of a kept answer's key: the size limit's bucket (``limit``, bytes: one
    of 512, 1232, 4096, 65535 or our own EDNS payload, see
    :func:`~clusterdns.dns.edns.udp_limit`), EDNS present, the DO bit (RFC 6891, RFC 3225)."""
    return VARIANTS[
        BUCKET_CODES.get(limit, OURS_CODE) | (EDNS_CODE if edns else 0) | (DO_CODE if do else 0)
    ]


class AnswerCache:
    """Encoded answers by question, kept per name and invalidated per name (docs/design.md,
    docs/design-answers.md).

    Key, one bytes object (:data:`CacheKey`): the question's name in wire form, lower-cased,
    its qtype and qclass bytes, and one byte for the size limit's bucket, EDNS present and
    the DO bit (:func:`variant`). Value, one bytes object: the whole reply but its ID: the
    flags (2 bytes, kept with QR and RD set), the four counts (8; the question count always
    1), the question in lower case, the encoded sections. A query with RD set, CD clear and
    its name in lower case (what stubs send) gets its ID and the value, two byte strings
    joined; any other gets its RD/CD and its question as sent (0x20 case) put in: owner
    names are compression pointers to the question, so they carry the client's case.

    Invalidation: :meth:`invalidate` (called by the store, see ``Store.listen``) drops the
    entries indexed under a touched tag; entries of other names survive. Cluster answers are
    never served stale. The index from tags to keys is written when an answer is kept and
    not cleaned when one is dropped for another reason (another tag, eviction): a stale key
    costs at most a later drop of an entry kept again under the same key (a miss, never a
    stale answer), and the index is rebuilt without them once it holds twice the keys it
    held at the last rebuild.

    Bounds: positive answers (the compiled part of the zone that is asked for) up to
    ``max_entries``; negative answers (NXDOMAIN, NODATA, SERVFAIL: what a flood of random
    names produces) up to ``max_negative`` on their own, so a flood never evicts a positive
    answer. Oldest first in each part.

    Memory (measured, docs/performance.md 2): the bytes of the key and the value plus a dict
    slot, about 300 bytes per answer (tracemalloc).
    """

    __slots__ = (
        "entries",
        "rotations",
        "max_entries",
        "max_negative",
        "by_tag",
        "refs",
        "compacted",
        "ptr_variants",
        "negatives",
        "tallies",
        "misses",
        "evictions",
        "seen",
        "_udp_size",
        "_ours",
        "__weakref__",
    )

    def __init__(
        self, max_entries: int = CACHE_SIZE, max_negative: int = CACHE_SIZE // NEGATIVE_SHARE
    ) -> None:
        self.entries: dict[CacheKey, bytes] = {}
        # loadbalance: further encodings of an entry's sections with its addresses rotated
        self.rotations: dict[CacheKey, tuple[bytes, ...]] = {}
        # tag -> the keys kept under it: the key itself while there is one (most tags: a
        # service's own name, a pod's reverse name), a list while few, a set beyond SMALL
        self.by_tag: dict[Any, CacheKey | list[CacheKey] | set[CacheKey]] = {}
        self.refs = 0  # keys written to by_tag since its last rebuild, stale ones included
        self.compacted = 0  # keys by_tag held after its last rebuild
        # The PTR answer of an address is not in by_tag: its key is computed from the tag
        # ("ip", ip) when the address changes (one name, PTR, IN, each variant kept so far),
        # which saves an index entry, a tag and an address string per reverse answer.
        self.ptr_variants: set[bytes] = set()
        # the negative entries in insertion order, for their own eviction (values unused);
        # the positive ones are the others, in the order of ``entries``
        self.negatives: dict[CacheKey, None] = {}
        self.max_entries = max_entries
        self.max_negative = max_negative
        self.tallies: list[Tally] = []  # every serving thread's counters (see :meth:`tally`)
        self.misses = 0  # written by the owner's thread only (:meth:`get`)
        self.evictions = 0  # entries dropped to stay within the bounds (owner's thread)
        # negative answers made from the template, seen once: kept only when they come again
        # (a flood of names asked once cannot evict the negatives real clients repeat)
        self.seen: set[bytes] = set()
        self._udp_size = DEFAULT_UDP_SIZE
        self._ours = VARIANTS[BUCKET_CODES.get(DEFAULT_UDP_SIZE, OURS_CODE) | EDNS_CODE]

    @property
    def udp_size(self) -> int:
        """Our EDNS payload (bytes): the largest UDP reply made (see
        :func:`~clusterdns.dns.edns.udp_limit`)."""
        return self._udp_size

    @udp_size.setter
    def udp_size(self, size: int) -> None:
        self._udp_size = size
        self._ours = VARIANTS[BUCKET_CODES.get(size, OURS_CODE) | EDNS_CODE]

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
    # (parse_header, udp_limit, variant) are inlined; literals stand for TCP_LIMIT,
    # PAYLOAD_BUCKETS, MIN_UDP and the variant codes (a constant is cheaper than a global).
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
            # udp_limit and variant inlined: the key holds a bucket, not the payload
            tail = (
                VARIANTS[11]  # TCP, EDNS
                if tcp
                else self._ours
                if payload >= self._udp_size
                else VARIANTS[10]  # 4096, EDNS
                if payload >= 4096
                else VARIANTS[9]  # 1232, EDNS
                if payload >= 1232
                else VARIANTS[8]  # 512, EDNS
            )
            if ttl & 0x8000:
                tail = VARIANTS[tail[0] | 16]  # DO
            name = data[12 : pos + 1]
            low = name.lower()
            key = low + data[pos + 1 : qend] + tail
        elif qend != end:
            return None
        else:
            name = data[12 : pos + 1]
            low = name.lower()
            # a stub's plain UDP query: the variant byte is left out (see variant)
            key = low + data[pos + 1 :] + TCP_PLAIN if tcp else low + data[pos + 1 :]
        hit = self.entries.get(key)
        if hit is None:
            return None
        if flags & 0x0110 == 0x0100 and name == low and not self.rotations:
            reply = data[:2] + hit  # RD set, CD clear, the name in lower case: as kept
        else:
            at = qend - 2  # the kept sections: after the header (10) and the question
            tail = self._rotated(key, hit, at, tally) if self.rotations else hit[at:]
            reply = (
                REPLY_HEAD.pack(ident, (((hit[0] << 8) | hit[1]) & 0xFEFF) | (flags & 0x0110), 1)
                + hit[4:10]
                + data[12:qend]
                + tail
            )
        tally.hits += 1
        served = tally.served
        if served is not None:
            qtype = (data[pos + 1] << 8) | data[pos + 2]
            served[(tcp, qtype, hit[1] & 0xF, end, len(reply))] += 1
        traffic = tally.traffic
        if traffic is not None:
            traffic.note(client, key[: pos - 11], hit[1] & 0xF, hit[4] | hit[5])
        return reply

    def _rotated(self, key: CacheKey, hit: bytes, at: int, tally: Tally) -> bytes:
        """loadbalance: the sections of the entry ``hit`` (from its byte ``at``) in the next
        of its orders, in the calling thread's turn (each thread rotates on its own
        counter: nothing shared is written)."""
        variants = self.rotations.get(key)
        if not variants:
            return hit[at:]
        tally.turn += 1
        pick = tally.turn % (len(variants) + 1)
        return variants[pick - 1] if pick else hit[at:]

    @staticmethod
    def key(query: Query, limit: int) -> CacheKey:
        """The cache key of a query answered within ``limit`` bytes: the lower-cased name,
        the qtype and qclass bytes as sent (0x41 is not 0x61), :func:`variant`."""
        edns = query.edns
        question = query.question
        return (
            question[:-4].lower()
            + question[-4:]
            + variant(limit, edns is not None, bool(edns and edns[2]))
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
        at = 10 + len(query.question)
        tail = self._rotated(key, hit, at, tally) if self.rotations else hit[at:]
        flags = (((hit[0] << 8) | hit[1]) & ~FLAG_RD) | (query.flags & (FLAG_RD | FLAG_CD))
        return REPLY_HEAD.pack(query.id, flags, 1) + hit[4:10] + query.question + tail

    def __len__(self) -> int:
        return len(self.entries)

    def _drop(self, key: CacheKey) -> None:
        """Forget one entry (its keys in ``by_tag`` stay until the next rebuild)."""
        if self.entries.pop(key, None) is None:
            return
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
            if self.ptr_variants and tag[0] == "ip":
                name = reverse_name(tag[1])
                if name is not None:
                    for code in self.ptr_variants:
                        self._drop(name + PTR_IN + code)
            keys = by_tag.pop(tag, None)
            if keys is None:
                continue
            if isinstance(keys, bytes):
                self._drop(keys)
            else:
                for key in keys:
                    self._drop(key)

    def clear(self) -> None:
        """Drop every entry."""
        self.seen.clear()
        self.entries.clear()
        self.rotations.clear()
        self.by_tag.clear()
        self.refs = self.compacted = 0
        self.ptr_variants.clear()
        self.negatives.clear()

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

    def _compact(self) -> None:
        """Rebuild ``by_tag`` without the keys of entries no longer kept (O(keys indexed);
        run when the index has doubled since the last rebuild: O(1) per answer kept)."""
        entries = self.entries
        rebuilt: dict[Any, CacheKey | list[CacheKey] | set[CacheKey]] = {}
        refs = 0
        for tag, keys in self.by_tag.items():
            if type(keys) is bytes:
                if keys in entries:
                    rebuilt[tag] = keys
                    refs += 1
                continue
            live = [key for key in keys if key in entries]
            if live:
                refs += len(live)
                rebuilt[tag] = (
                    live[0] if len(live) == 1 else (live if len(live) <= SMALL else set(live))
                )
        self.by_tag = rebuilt
        self.refs = self.compacted = refs

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
        :func:`~clusterdns.dns.encode.encode_answer`: 12 bytes, ``tail``: the sections after
        the question), and optionally ``rotations``: the same sections with their addresses
        in other orders, all with the same header counts, served in turn. ``tags``: what
        the answer depends on (the default, ``"any"``, drops it on every change of the
        cluster)."""
        key = self.key(query, limit)
        entries = self.entries
        if key in entries:
            self._drop(key)
        flags = struct.unpack_from("!H", header, 2)[0] & ~(FLAG_QR | FLAG_RD | FLAG_CD)
        question = query.question
        value = (
            struct.pack("!HH", flags | FLAG_QR | FLAG_RD, 1)
            + header[6:12]
            + question[:-4].lower()
            + question[-4:]
            + tail
        )
        if flags & 0xF != Rcode.NOERROR or header[6:8] == b"\x00\x00":
            if len(self.negatives) >= self.max_negative:
                self._evict_negative()
            self.negatives[key] = None
        elif len(entries) - len(self.negatives) >= self.max_entries:
            self._evict_positive()
        self.entries[key] = value
        if len(tags) == 1 and tags[0][0] == "ip" and PTR_IN in key[-5:]:
            name = reverse_name(tags[0][1])
            if name is not None and key[: len(name) + 4] == name + PTR_IN:
                # a reverse answer: found again from its tag (see ptr_variants)
                self.ptr_variants.add(key[len(name) + 4 :])
                tags = ()
        by_tag = self.by_tag
        for tag in tags:
            keys = by_tag.get(tag)
            if keys is None:  # the index's key is the one copy of the tag kept
                by_tag[tag] = key
            elif isinstance(keys, bytes):
                if keys != key:
                    by_tag[tag] = [keys, key]
            elif isinstance(keys, set):
                keys.add(key)
            elif key not in keys:
                keys.append(key)
                if len(keys) > SMALL:
                    by_tag[tag] = set(keys)
        self.refs += len(tags)
        if self.refs > 2 * self.compacted + 1024:
            self._compact()
        if rotations:
            self.rotations[key] = tuple(rotations)
