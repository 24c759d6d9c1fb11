"""The one query path (docs/design.md 4): what every transport shares, and what it counts.

Real store from manifests, the real handler, real packets; a serving thread other than the
loop is represented by its own counters (``Handler.tally``), as the UDP thread has them.
"""

from __future__ import annotations

from pathlib import Path

import dns.message

from clusterdns.core.resolver import ZoneConfig
from clusterdns.core.store import Store
from clusterdns.server.metrics import Metrics
from clusterdns.sources.manifests import ManifestSource
from tests.handlers import make_handler

ZONES = Path(__file__).resolve().parent.parent / "zones"


def _store() -> Store:
    store = Store()
    ManifestSource(store, [ZONES]).load(0.0)
    return store


def test_request_size_histogram_observes_request_lengths() -> None:
    """coredns_dns_request_size_bytes observes each request's own length, on a miss (the
    chain), a kept answer and a template NXDOMAIN alike: not the EDNS or TCP limit."""
    metrics = Metrics("dns://:53", "cluster.local.")
    handler = make_handler(_store(), ZoneConfig(), metrics=metrics)
    sizes = []
    for name, payload in (
        ("kubernetes.default.svc.cluster.local.", 4096),  # a miss: the chain
        ("kubernetes.default.svc.cluster.local.", 4096),  # now kept: the fast path
        ("nosuch.default.svc.cluster.local.", 1232),  # a certain NXDOMAIN: the template
    ):
        wire = dns.message.make_query(name, "A", use_edns=0, payload=payload).to_wire()
        assert isinstance(handler.handle(wire, False), bytes)
        sizes.append(len(wire))
    folded = metrics.folded()
    buckets, total = folded.request_size["udp"].export()
    assert total == sum(sizes)
    assert buckets[-1] == ("+Inf", 3)
    assert sum(n for n in folded.requests.values()) == 3


def test_counters_are_per_thread_and_summed() -> None:
    """A hit served by another thread is counted in that thread's own counters and shows in
    the sum; the loop's are untouched (nothing is written by two threads)."""
    handler = make_handler(_store(), ZoneConfig())
    wire = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A").to_wire()
    handler.handle(wire, False)  # the loop answers and keeps it
    thread = handler.tally("1")
    before = handler.loop_tallies["1"].hits
    reply = handler.fast(wire, False, thread)
    assert isinstance(reply, bytes) and dns.message.from_wire(reply).answer
    assert (thread.hits, handler.loop_tallies["1"].hits) == (1, before)
    assert handler.cache.hits == before + 1


def test_a_miss_is_parsed_once_and_handed_on() -> None:
    """The fast path gives the chain the query it parsed; the chain answers it."""
    handler = make_handler(_store(), ZoneConfig())
    wire = dns.message.make_query("db.shop.svc.cluster.local.", "A").to_wire()
    out = handler.fast(wire, False, handler.tally("1"))
    assert not isinstance(out, bytes) and out is not None
    reply = handler.answer(out, wire, False)
    assert isinstance(reply, bytes)
    assert dns.message.from_wire(reply).rcode() == 0
