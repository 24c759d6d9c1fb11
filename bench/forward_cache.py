"""Forward-cache hit, in process: the time ``Forwarder.forward`` takes to answer a query
from the forward cache (no sockets: the answer is stored first, the upstream never asked).

Run from the repository root with the project's virtualenv::

    python bench/forward_cache.py [--count 50000] [--runs 5] [--answers 4]

Prints microseconds per hit (the best of ``--runs`` runs of ``--count`` hits each) for a
reply of ``--answers`` A records plus an OPT record, as an upstream would send it.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from dnslib import EDNS0, QTYPE, RR, A, DNSRecord

from clusterdns.dns.wire import parse_query
from clusterdns.plugins.forward import CacheConfig, ForwardCache, ForwardConfig, Forwarder


def packets(answers: int) -> tuple[bytes, bytes]:
    """(query, upstream reply) for ``www.example.org. A`` with EDNS."""
    query = DNSRecord.question("www.example.org", "A")
    query.add_ar(EDNS0(udp_len=1232))
    reply = query.reply()
    for i in range(answers):
        reply.add_answer(RR("www.example.org", QTYPE.A, ttl=300, rdata=A(f"192.0.2.{i + 1}")))
    return query.pack(), reply.pack()


async def run(count: int, runs: int, answers: int) -> float:
    """Best microseconds per hit over ``runs`` runs of ``count`` hits."""
    packet, reply = packets(answers)
    query = parse_query(packet)
    cache = ForwardCache(CacheConfig(zones=(".",)))
    forwarder = Forwarder(ForwardConfig(".", ("127.0.0.1:9",)), cache=cache)
    cache.put(query, reply)
    first = await forwarder.forward(query, packet, 1232)
    assert DNSRecord.parse(first).rr, "the hit answers"
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        for _ in range(count):
            await forwarder.forward(query, packet, 1232)
        best = min(best, (time.perf_counter() - began) / count)
    return best * 1e6


def main() -> None:
    """Parse the arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--answers", type=int, default=4)
    args = parser.parse_args()
    micros = asyncio.run(run(args.count, args.runs, args.answers))
    print(f"forward-cache hit: {micros:.2f} us ({args.answers} A records + OPT)")


if __name__ == "__main__":
    main()
