"""The one query path (docs/design.md 4): what every transport shares, and what it counts.

Real store from manifests, the real handler, real packets; a serving thread other than the
loop is represented by its own counters (``Handler.tally``), as the UDP thread has them.
"""

from __future__ import annotations

import socket
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


def test_the_udp_thread_serves_batches_on_the_one_fast_path() -> None:
    """``--udp-thread`` (recvmmsg/sendmmsg where available): kept answers and certain
    NXDOMAINs from the thread, misses answered by the loop's chain; every reply right; the
    thread counts into its own tally and its traffic tally names the client."""
    import asyncio
    import threading

    import dns.query
    import dns.rcode

    from clusterdns.plugins.chain import assemble
    from clusterdns.server.batch import available
    from clusterdns.server.traffic_page import TrafficView
    from clusterdns.server.transport import DNSServer

    store = _store()
    view = TrafficView(lambda: {}, "cluster.local.")
    handler = assemble(store, ZoneConfig().zones, {"kubernetes": ZoneConfig()}, traffic=view.tally)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    server = DNSServer(handler, "127.0.0.1", 0, udp_thread=True)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
    try:
        udp = server._udp
        assert udp is not None and (udp.batch is not None) == available()  # type: ignore[union-attr]

        def ask(name: str) -> dns.message.Message:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.3", 0))
                query = dns.message.make_query(name, "A")
                return dns.query.udp(query, "127.0.0.1", port=server.port, sock=sock, timeout=5)

        for _ in range(3):  # a miss (the loop), then kept answers (the thread)
            reply = ask("kubernetes.default.svc.cluster.local.")
            assert [r[0].address for r in reply.answer] == ["10.96.0.1"]
        assert ask("nosuch.default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
        thread = [t for t in handler.cache.tallies if t.keep is not None]
        assert len(thread) == 1 and thread[0].hits >= 2
        clients = {c["ip"]: c["queries"] for c in view.snapshot()["clients"]}
        assert clients == {"127.0.0.3": 4}
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)


def test_the_answer_table_is_exported() -> None:
    """clusterdns_answers_{hits,misses,evictions}_total and _entries by kind: what an
    operator reads to see the answer table's hit rate (coredns_cache_* count only the
    forward cache). A name asked once is answered from the template and not kept."""
    from clusterdns.server.metrics import Collector, registry

    metrics = Metrics("dns://:53", "cluster.local.")
    handler = make_handler(_store(), ZoneConfig(), metrics=metrics)
    collector = Collector()
    collector.add(metrics)
    reg = registry(collector)
    for name in ("kubernetes.default.svc.cluster.local.",) * 3 + ("nosuch.default.svc.cluster.local.",):
        handler.handle(dns.message.make_query(name, "A").to_wire(), False)
    server = {"server": "dns://:53"}

    def value(family: str, **labels: str) -> float | None:
        return reg.get_sample_value(family, {**server, **labels})

    assert value("clusterdns_answers_hits_total") == 2
    assert value("clusterdns_answers_misses_total") == 1  # the first ask, parsed
    assert value("clusterdns_answers_evictions_total") == 0
    assert value("clusterdns_answers_entries", kind="positive") == 1
    assert value("clusterdns_answers_entries", kind="negative") == 0  # asked once
