"""What one kept answer costs in dns/cache.py's AnswerCache, and in two compact layouts
(issue 19, part 3: research only, dns/cache.py is not changed here).

One command (from the repository root, with the project's virtualenv)::

    python bench/answer_memory.py [--answers 100000] [--namespaces 100] [--lookups 300000]

The answers are what a cluster's most common kept answer is: a ClusterIP service's A
record asked by glibc's stub (no EDNS, limit 512), one A record in the answer section (a
pointer to the question, TTL 5, 4 bytes of address: a 16-byte tail), tagged as
core/depends.py tags it: ``("ns", namespace)`` and ``("svc", namespace, name)``, the
strings being the store's (made before measuring, as the store holds them already). The
tag tuples themselves are measured both ways: made per answer (as core/depends.py does
today, so each answer keeps its own ``("svc", ns, name)``), and made once per service
(a store that hands out one tuple per service and namespace).

Layouts, each filled with ``--answers`` answers under tracemalloc (bytes per answer =
traced bytes after minus before, over the count; everything the layout allocates,
indexes included):

- ``today``: ``AnswerCache.put`` as it is: key ``(name, qtype+qclass, limit, edns, do)``,
  entry ``(flags, counts, tail, tags)`` with interned flags/counts, ``by_tag`` of lists
  (sets past 8 keys).
- ``blob``: key one bytes object (lower-cased name wire + qtype/qclass + a limit-bucket
  byte + an EDNS/DO byte); value one bytes object (flags 2 + counts 6 + tail); tags
  interned to small ints (tag -> id, id -> tag), each entry's tag ids packed in front of
  its blob (1 count byte + 4 per tag), ``by_tag`` by id, lists then sets.
- ``blob-single``: ``blob``, and a tag with one key holds the key itself, not a list of
  one (most ``svc`` tags: one answer per service name and type).

Lookup cost: a loop of hits over the same packets through ``AnswerCache.lookup`` and
through a ``blob`` lookup written the same way (header check, name cut, key, reply).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

Tags = tuple[Any, ...]
Work = list[tuple[bytes, bytes, bytes, Tags]]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clusterdns.dns.cache import AnswerCache  # noqa: E402
from clusterdns.dns.wire import parse_query  # noqa: E402

HEADER = struct.Struct("!HHHHHH")
REPLY_HEAD = struct.Struct("!HHH")
BUCKETS = {512: 0, 1232: 1, 4096: 2, 65535: 3}  # the limit as one byte (ours: 4)


def packet(name: str, qid: int = 0x1234) -> bytes:
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return HEADER.pack(qid, 0x0100, 1, 0, 0, 0) + wire + b"\x00\x01\x00\x01"


def workload(answers: int, namespaces: int) -> Work:
    """(query packet, reply header, tail, tags) per answer; tag strings made here (the
    store's, not the cache's)."""
    ns_names = [f"ns{i}" for i in range(namespaces)]
    work = []
    for i in range(answers):
        ns = ns_names[i % namespaces]
        name = f"svc{i}"
        data = packet(f"{name}.{ns}.svc.cluster.local.")
        header = HEADER.pack(0, 0x8500, 1, 1, 0, 0)
        tail = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + bytes([10, 96, i >> 8 & 255,
                                                                     i & 255])
        work.append((data, header, tail, (("ns", ns), ("svc", ns, name))))
    return work


# --- the compact layout -------------------------------------------------------------------


class BlobCache:
    """The ``blob`` layouts: bytes keys, one bytes value per key, tags as ints."""

    def __init__(self, single: bool) -> None:
        self.entries: dict[bytes, bytes] = {}
        self.by_tag: dict[int, Any] = {}
        self.tag_ids: dict[Any, int] = {}
        self.tags: list[Any] = []
        self.single = single

    def tag_id(self, tag: Any) -> int:
        found = self.tag_ids.get(tag)
        if found is None:
            found = self.tag_ids[tag] = len(self.tags)
            self.tags.append(tag)
        return found

    def put(self, data: bytes, limit: int, header: bytes, tail: bytes, tags: Tags) -> None:
        query = parse_query(data)
        edns = query.edns
        key = (query.question[:-4].lower() + query.question[-4:]
               + bytes([BUCKETS.get(limit, 4), (edns is not None) | bool(edns and edns[2]) << 1]))
        ids = [self.tag_id(t) for t in tags]
        flags = struct.unpack_from("!H", header, 2)[0] & ~0x8110
        self.entries[key] = (bytes([len(ids)]) + b"".join(struct.pack("!I", i) for i in ids)
                             + struct.pack("!H", flags) + header[6:12] + tail)
        by_tag = self.by_tag
        for i in ids:
            keys = by_tag.get(i)
            if keys is None:
                by_tag[i] = key if self.single else [key]
            elif type(keys) is bytes:
                by_tag[i] = [keys, key]
            elif type(keys) is set:
                keys.add(key)
            else:
                keys.append(key)
                if len(keys) > 8:
                    by_tag[i] = set(keys)

    def lookup(self, data: bytes, tcp: bool) -> bytes | None:
        """As AnswerCache.lookup, no-EDNS branch only (what is measured)."""
        if len(data) < 17:
            return None
        ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
        if flags & 0xF800 or qdcount != 1 or ancount or nscount or arcount > 1:
            return None
        pos = data.find(0, 12)
        if pos < 0:
            return None
        qend = pos + 5
        if arcount or qend != len(data):
            return None
        # only the name is lower-cased: qtype/qclass bytes must not be (0x41 is not 0x61)
        blob = self.entries.get(data[12 : pos + 1].lower() + data[pos + 1 : qend]
                                + (b"\x03\x00" if tcp else b"\x00\x00"))
        if blob is None:
            return None
        at = 1 + 4 * blob[0]
        return (REPLY_HEAD.pack(ident, ((blob[at] << 8 | blob[at + 1]) | 0x8000
                                        | (flags & 0x0110)), 1)
                + blob[at + 2 : at + 8] + data[12:qend] + blob[at + 8 :])


# --- measuring ----------------------------------------------------------------------------


def measure(fill: Callable[[], Any]) -> tuple[int, Any]:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = fill()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, kept


def fresh(tags: Tags, owned: bool) -> Tags:
    """The tags as the cache gets them: new tuples per answer, as core/depends.py makes
    them today (``owned`` False), or the same tuples every time (a store that keeps one
    tag tuple per service and namespace)."""
    return tags if owned else tuple((t[0], *t[1:]) for t in tags)


def fill_today(work: Work, owned: bool) -> AnswerCache:
    cache = AnswerCache(max_entries=len(work) + 1)
    for data, header, tail, tags in work:
        cache.put(parse_query(data), 512, header, tail, tags=fresh(tags, owned))
    return cache


def fill_blob(work: Work, single: bool, owned: bool) -> BlobCache:
    cache = BlobCache(single)
    for data, header, tail, tags in work:
        cache.put(data, 512, header, tail, fresh(tags, owned))
    return cache


def time_lookups(lookup: Callable[[bytes, bool], bytes | None], packets: list[bytes],
                 rounds: int) -> float:
    """Microseconds per hit over ``rounds`` lookups."""
    count = 0
    began = time.perf_counter()
    while count < rounds:
        for data in packets:
            lookup(data, False)
        count += len(packets)
    return (time.perf_counter() - began) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--answers", type=int, default=100_000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--lookups", type=int, default=300_000)
    args = parser.parse_args()
    work = workload(args.answers, args.namespaces)
    rows = []
    for owned in (False, True):
        how = "one tag tuple per service, the store's" if owned else "tags made per answer"
        size, today = measure(partial(fill_today, work, owned))
        rows.append((f"today (AnswerCache), {how}", size))
        size, blob = measure(partial(fill_blob, work, False, owned))
        rows.append((f"blob, {how}", size))
        size, single = measure(partial(fill_blob, work, True, owned))
        rows.append((f"blob-single, {how}", size))
    n = args.answers
    print(f"{n:,} ClusterIP A answers over {args.namespaces} namespaces (no EDNS, 16-byte "
          f"tail), Python {sys.version.split()[0]}\n")
    print("| layout | bytes per answer | MB for these answers |")
    print("|---|---|---|")
    for label, size in rows:
        print(f"| {label} | {size / n:,.0f} | {size / 1e6:.1f} |")

    # what today's bytes are made of, one answer taken apart (sys.getsizeof, shallow)
    key, entry = next(iter(today.entries.items()))
    parts = {
        "key tuple (5)": sys.getsizeof(key),
        "key name bytes": sys.getsizeof(key[0]),
        "entry tuple (4)": sys.getsizeof(entry),
        "tail bytes": sys.getsizeof(entry[2]),
        "tags tuple (2) + svc tag tuple (3)": sys.getsizeof(entry[3]) + sys.getsizeof(entry[3][1]),
        "by_tag list for the svc tag": sys.getsizeof(today.by_tag[entry[3][1]]),
    }
    print("\ntoday, one answer's objects (shallow sizes, bytes): "
          + ", ".join(f"{k} {v}" for k, v in parts.items())
          + "; the rest is dict and set slots (entries, by_tag, the ns tag's set)")

    packets = [w[0] for w in work[: min(n, 1000)]]
    for data in packets:  # both answer the same
        a, b = today.lookup(data, False), blob.lookup(data, False)
        assert a == b, (a, b)
    t_today = time_lookups(today.lookup, packets, args.lookups)
    t_blob = time_lookups(blob.lookup, packets, args.lookups)
    print(f"\nlookup, hit, in-process: today {t_today:.3f} us, blob {t_blob:.3f} us "
          f"({t_blob / t_today:.2f}x); replies identical on {len(packets)} packets")
    del single
    return 0


if __name__ == "__main__":
    sys.exit(main())
