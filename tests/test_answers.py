"""Answers kept per name: which cached answers each kind of change drops (docs/design-answers.md).

Every case runs the real store (built from CoreDNS's test manifests) and the real Handler:
it asks every watched question once (filling the answer cache), applies one change to the
store, then checks that

- exactly the expected questions lost their cache entry;
- every other entry is the very same object as before (it survived the change);
- every watched question now answers what a handler with an empty cache answers (nothing
  stale), the SOA serial of negative answers aside (docs/design-answers.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from clusterdns.core.records import Endpoint, EndpointSlice, Namespace, Pod, Service, ServiceKind
from clusterdns.core.resolver import PodMode, ZoneConfig
from clusterdns.core.store import Store
from clusterdns.dns.cache import AnswerCache
from clusterdns.dns.wire import parse_query
from clusterdns.plugins.chain import Handler
from clusterdns.plugins.kubernetes import MEMO_MAX
from tests.handlers import make_handler

from .conftest import COREDNS, NOW, load_store

CONFIG = ZoneConfig(pods=PodMode.VERIFIED)
SOURCE = "zones"
LATER = NOW + 100

# The watched questions, by a short name used in the cases below.
WATCHED: dict[str, tuple[str, str]] = {
    "svc1": ("svc1.testns.svc.cluster.local.", "A"),
    "svc1-srv": ("_http._tcp.svc1.testns.svc.cluster.local.", "SRV"),
    "ep1a": ("ep1a.svc1.testns.svc.cluster.local.", "A"),
    "hdls1": ("hdls1.testns.svc.cluster.local.", "A"),
    "hdls1-srv": ("_http._tcp.hdls1.testns.svc.cluster.local.", "SRV"),
    "svc6": ("svc6.testns.svc.cluster.local.", "AAAA"),
    "ptr-svc1": ("1.0.0.10.in-addr.arpa.", "PTR"),
    "ptr-ep1a": ("1.0.0.172.in-addr.arpa.", "PTR"),
    "ptr-hdls1": ("2.0.0.172.in-addr.arpa.", "PTR"),
    "ptr-new-ep": ("9.0.0.172.in-addr.arpa.", "PTR"),
    "ptr-new-svc": ("5.9.0.10.in-addr.arpa.", "PTR"),
    "ext": ("external-to-service.testns.svc.cluster.local.", "A"),
    "nosuch": ("nosuch.testns.svc.cluster.local.", "A"),
    "search-nx": ("svc1.testns.svc.cluster.local.testns.svc.cluster.local.", "A"),
    "web": ("web.testns.svc.cluster.local.", "A"),
    "web-srv": ("_http._tcp.web.testns.svc.cluster.local.", "SRV"),
    "ns-testns": ("testns.svc.cluster.local.", "A"),
    "newns": ("newns.svc.cluster.local.", "A"),
    "web-newns": ("web.newns.svc.cluster.local.", "A"),
    "pod-foo": ("10-240-0-1.podns.pod.cluster.local.", "A"),
    "pod-foo-new": ("10-240-0-2.podns.pod.cluster.local.", "A"),
    "apex": ("cluster.local.", "SOA"),
    "version": ("dns-version.cluster.local.", "TXT"),
    "other-top": ("foo.bar.cluster.local.", "A"),
}


def _slice(store: Store, ns: str, name: str) -> EndpointSlice:
    found = store._merged["EndpointSlice"][(ns, name)]
    assert isinstance(found, EndpointSlice)
    return found


def _service(store: Store, ns: str, name: str) -> Service:
    return store.services[(ns, name)]


def _pod(store: Store, ns: str, name: str) -> Pod:
    found = store._merged["Pod"][(ns, name)]
    assert isinstance(found, Pod)
    return found


def _flip_ready(store: Store) -> None:
    s = _slice(store, "testns", "hdls1-slice1")
    eps = (replace(s.endpoints[0], ready=False), *s.endpoints[1:])
    store.upsert(SOURCE, replace(s, endpoints=eps), LATER)


def _move_address(store: Store) -> None:
    s = _slice(store, "testns", "svc1-slice1")
    eps = (replace(s.endpoints[0], packed_addresses="172.0.0.9"),)
    store.upsert(SOURCE, replace(s, endpoints=eps), LATER)


def _not_ready_only(store: Store) -> None:
    s = _slice(store, "testns", "hdls1-slice1")
    eps = (*s.endpoints[:-1], replace(s.endpoints[-1], hostname="renamed"))
    assert not s.endpoints[-1].ready
    store.upsert(SOURCE, replace(s, endpoints=eps), LATER)


def _new_service(store: Store) -> None:
    store.upsert(SOURCE, Service("testns", "web", ServiceKind.CLUSTER_IP, ("10.0.9.5",)), LATER)


def _pod_ip(store: Store) -> None:
    store.upsert(SOURCE, replace(_pod(store, "podns", "foo"), packed_ips="10.240.0.2"), LATER)


@dataclass
class Case:
    """One change and the watched questions whose cache entries it must drop."""

    what: str
    change: Callable[[Store], None]
    dropped: set[str] = field(default_factory=set)

    def __str__(self) -> str:
        return self.what


APEX = {"apex"}
CASES = [
    Case(
        "service ClusterIP changes",
        lambda s: store_upsert(
            s, replace(_service(s, "testns", "svc1"), cluster_ips=("10.0.9.5",))
        ),
        # every name under the service (the endpoint name too: it reads the Service), the
        # ExternalName pointing at it, the PTRs of the old and new IP
        {"svc1", "svc1-srv", "ep1a", "ext", "ptr-svc1", "ptr-new-svc"} | APEX,
    ),
    Case(
        "service deleted",
        lambda s: s.delete(SOURCE, "Service", ("testns", "svc6"), LATER),
        {"svc6"} | APEX,
    ),
    Case(
        "service created where NXDOMAIN was cached",
        _new_service,
        # every negative answer under the namespace goes: they are indexed by it
        {"web", "web-srv", "ptr-new-svc", "nosuch", "search-nx"} | APEX,
    ),
    Case(
        "identical service re-sent",
        lambda s: store_upsert(s, replace(_service(s, "testns", "svc1"))),
        set(),
    ),
    Case(
        "readiness flip in a headless service",
        _flip_ready,
        {"hdls1", "hdls1-srv", "ptr-hdls1"} | APEX,
    ),
    Case(
        "endpoint address moves under a ClusterIP service (its A and SRV survive)",
        _move_address,
        {"ep1a", "ptr-ep1a", "ptr-new-ep"} | APEX,
    ),
    Case("a not-ready endpoint's hostname changes", _not_ready_only, set()),
    Case(
        "slice deleted",
        lambda s: s.delete(SOURCE, "EndpointSlice", ("testns", "hdls1-slice1"), LATER),
        {"hdls1", "hdls1-srv", "ptr-hdls1"} | APEX,
    ),
    Case(
        "namespace created",
        lambda s: s.upsert(SOURCE, Namespace("newns"), LATER),
        {"newns", "web-newns"} | APEX,
    ),
    Case(
        "namespace deleted",
        lambda s: s.delete(SOURCE, "Namespace", "podns", LATER),
        {"pod-foo", "pod-foo-new"} | APEX,
    ),
    Case(
        "pod re-sent as it was (its phase, hostname, subdomain are not kept)",
        lambda s: store_upsert(s, replace(_pod(s, "podns", "foo"))),
        set(),
    ),
    Case("pod IP changes (verified pod names)", _pod_ip, {"pod-foo", "pod-foo-new"} | APEX),
    Case(
        "pod being deleted",
        lambda s: store_upsert(s, replace(_pod(s, "podns", "foo"), deleting=True)),
        {"pod-foo"} | APEX,
    ),
]


def store_upsert(store: Store, record: Service | Pod) -> None:
    store.upsert(SOURCE, record, LATER)


def _key(label: str) -> bytes:
    name, qtype = WATCHED[label]
    return AnswerCache.key(parse_query(dns.message.make_query(name, qtype).to_wire()), 512)


def _answer(handler: Handler, label: str) -> tuple[object, ...]:
    """The reply to a watched question, SOA serials set to 0, as comparable text."""
    name, qtype = WATCHED[label]
    wire = handler.handle(dns.message.make_query(name, qtype).to_wire(), False)
    assert isinstance(wire, bytes)
    msg = dns.message.from_wire(wire)
    sections = []
    for section in (msg.answer, msg.authority, msg.additional):
        texts = []
        for rrset in section:
            for rr in rrset:
                if rr.rdtype == dns.rdatatype.SOA:
                    rr = rr.replace(serial=0)
                texts.append(f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rr}")
        sections.append(tuple(texts))
    return (dns.rcode.to_text(msg.rcode()), *sections)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_change_drops_exactly_the_names_it_changes(case: Case) -> None:
    store = load_store(COREDNS)
    handler = make_handler(store, CONFIG)
    before = {label: _answer(handler, label) for label in WATCHED}
    for label in WATCHED:  # a certain NXDOMAIN is kept the second time its name comes
        assert _answer(handler, label) == before[label]
    cached = {label: handler.cache.entries[_key(label)] for label in WATCHED}
    serial = store.serial

    case.change(store)

    entries = handler.cache.entries
    gone = {label for label in WATCHED if _key(label) not in entries}
    assert gone == case.dropped
    for label in set(WATCHED) - gone:
        assert entries[_key(label)] is cached[label], label  # the same entry: it survived
    truth = make_handler(store, CONFIG)  # an empty cache: what the store says now
    changed = set()
    for label in WATCHED:
        now = _answer(handler, label)
        assert now == _answer(truth, label), label  # never stale
        if now != before[label]:
            changed.add(label)
    assert changed <= case.dropped
    assert (store.serial != serial) == bool(case.dropped)  # no answer changed: no new serial


def test_dropped_names_are_cached_again_and_unrelated_ones_never_left() -> None:
    store = load_store(COREDNS)
    handler = make_handler(store, CONFIG)
    for label in WATCHED:
        _answer(handler, label)
    kept = handler.cache.entries[_key("svc1")]
    for i in range(50):  # a rolling update of hdls1: 50 readiness flips
        s = _slice(store, "testns", "hdls1-slice1")
        eps = (replace(s.endpoints[0], ready=i % 2 == 0), *s.endpoints[1:])
        store.upsert(SOURCE, replace(s, endpoints=eps), LATER + i)
        assert _answer(handler, "hdls1") == _answer(make_handler(store, CONFIG), "hdls1")
    assert handler.cache.entries[_key("svc1")] is kept
    assert _key("hdls1") in handler.cache.entries


def test_reverse_answers_are_dropped_by_their_address_in_every_variant() -> None:
    """A PTR answer is kept with no index entry (its key is computed from the address's
    tag): an IPv6 ClusterIP's reverse name, asked in several spellings and sizes, is dropped
    in every one when the address goes, and answers what the store says after."""
    store = load_store(COREDNS)
    handler = make_handler(store, CONFIG)
    name = dns.reversename.from_address("1234:abcd::1").to_text()
    asks = [
        dns.message.make_query(name, "PTR"),
        dns.message.make_query(name.upper(), "PTR", use_edns=0, payload=4096),
        dns.message.make_query(name, "PTR", use_edns=0, payload=1232, want_dnssec=True),
    ]
    before = [handler.handle(q.to_wire(), False) for q in asks]
    for query, reply in zip(asks, before, strict=True):
        assert isinstance(reply, bytes)
        assert [rr.target.to_text() for rr in dns.message.from_wire(reply).answer[0]] == [
            "svc6.testns.svc.cluster.local."
        ]
        assert handler.handle(query.to_wire(), False)[2:] == reply[2:]  # type: ignore[index]
    kept = len(handler.cache.entries)
    assert kept >= 3 and not handler.cache.by_tag.get(("ip", "1234:abcd::1"))

    svc = _service(store, "testns", "svc6")
    store_upsert(store, replace(svc, cluster_ips=("1234:abcd::2",)))

    assert len(handler.cache.entries) == kept - 3
    truth = make_handler(store, CONFIG)
    for query in asks:
        mine = dns.message.from_wire(handler.handle(query.to_wire(), False))  # type: ignore[arg-type]
        theirs = dns.message.from_wire(truth.handle(query.to_wire(), False))  # type: ignore[arg-type]
        assert mine.rcode() == theirs.rcode() == dns.rcode.NXDOMAIN
        assert not mine.answer


def test_namespace_recreated_turns_cached_nxdomain_into_answers() -> None:
    store = load_store(COREDNS)
    handler = make_handler(store, CONFIG)
    assert _answer(handler, "web-newns")[0] == "NXDOMAIN"
    store.upsert(SOURCE, Namespace("newns"), LATER)
    assert _answer(handler, "web-newns")[0] == "NXDOMAIN"  # no such service yet
    assert _answer(handler, "newns")[0] == "NOERROR"  # the namespace name exists: NODATA
    slice_ = EndpointSlice("newns", "web-1", "web", 4, (Endpoint(("10.7.0.1",), True),))
    store.upsert(SOURCE, Service("newns", "web", ServiceKind.HEADLESS), LATER)
    store.upsert(SOURCE, slice_, LATER)
    assert _answer(handler, "web-newns")[1] == ("web.newns.svc.cluster.local. 30 A 10.7.0.1",)


def test_quick_negative_answers_equal_the_resolvers() -> None:
    """The NXDOMAIN made from the template after a few dict lookups is byte for byte the
    one the resolver and the general encoder give (0x20 case, EDNS, search-path names)."""
    store = load_store(COREDNS)
    quick = make_handler(store, CONFIG)
    slow = make_handler(store, CONFIG)
    slow.negative = slow.wire_negative = None
    next(s for s in slow.steps if s.name == "kubernetes").quick = False  # type: ignore[attr-defined]
    names = [
        "NoSuch.TestNs.svc.Cluster.Local.",
        "svc1.testns.svc.cluster.local.testns.svc.cluster.local.",
        "a.b.c.d.svc1.testns.svc.cluster.local.",
        "x.nons.svc.cluster.local.",
        "x.nons.pod.cluster.local.",
        "foo.bar.cluster.local.",
        "unexposed.unexposedns.svc.cluster.local.",
    ]
    for name in names:
        for edns in (-1, 0):
            query = dns.message.make_query(name, "A", use_edns=edns, payload=1232)
            query.id = 7
            wire = query.to_wire()
            mine = quick.handle(wire, False)
            theirs = slow.handle(wire, False)
            assert mine == theirs, name
            assert quick.handle(wire, False) == mine  # asked again: now kept
            assert isinstance(mine, bytes)
            assert dns.message.from_wire(mine).rcode() == dns.rcode.NXDOMAIN, name
    assert len(quick.cache.negatives) == len(names) * 2


def test_a_relist_is_applied_in_steps_and_later_events_wait_for_it() -> None:
    """KubeSource applies a relist a slice of loop time per turn; an event that arrives
    meanwhile (the watch after the relist) is applied after it, not overwritten by it."""
    import asyncio

    from clusterdns.sources import kube

    store = Store()
    records = [Pod("ns", f"p{i}", (f"10.1.{i // 256}.{i % 256}",)) for i in range(3000)]

    async def run() -> list[int]:
        loop = asyncio.get_running_loop()
        source = kube.KubeSource(store, None, loop, pods=True)
        turns = []
        source.replace("Pod", records)
        source.upsert(Pod("ns", "p0", ("10.9.9.9",)))  # the watch, after the list
        source.delete("Pod", ("ns", "p1"))
        while True:
            await asyncio.sleep(0)
            turns.append(store.count("Pod"))
            if source.idle():
                return turns

    old = kube.RELIST_SLICE, kube.RELIST_STEP
    kube.RELIST_SLICE, kube.RELIST_STEP = 0.0, 100  # one step per turn
    try:
        turns = asyncio.run(run())
    finally:
        kube.RELIST_SLICE, kube.RELIST_STEP = old
    assert len(turns) > 10  # many loop turns: queries were answered in between
    assert store.count("Pod") == 2999
    assert store.has_pod_ip("ns", "10.9.9.9") and not store.has_pod_ip("ns", "10.1.0.0")
    assert not store.has_pod_ip("ns", "10.1.0.1")


def test_udp_thread_serves_hits_and_sees_every_change(tmp_path: Path) -> None:
    """``--udp-thread``: hits from the thread, misses and TCP on the loop; a change made on
    the loop (a manifest rewritten) is what the next UDP query answers, hit after hit."""
    import dns.query

    from .conftest import start_server, stop_server

    (tmp_path / "ns.yaml").write_text(_NS)
    web = tmp_path / "web.yaml"
    web.write_text(_web("10.96.0.20"))
    server = start_server("--zones", str(tmp_path), "--zones-interval", "0.1", "--udp-thread")

    def ask_udp(name: str) -> tuple[str, list[str]]:
        msg = dns.query.udp(
            dns.message.make_query(name, "A"), "127.0.0.1", port=server.port, timeout=5
        )
        return dns.rcode.to_text(msg.rcode()), [rr.to_text() for s in msg.answer for rr in s]

    try:
        name = "web.shop.svc.cluster.local."
        for _ in range(5):  # the first is a miss (on the loop), the rest hits (the thread)
            assert ask_udp(name) == ("NOERROR", ["10.96.0.20"])
        for _ in range(5):  # NXDOMAIN from the thread, then cached by the loop: hits
            assert ask_udp("api.shop.svc.cluster.local.")[0] == "NXDOMAIN"
        (tmp_path / "api.yaml").write_text(_web("10.96.1.1").replace("name: web", "name: api"))
        end = time.monotonic() + 10
        while ask_udp("api.shop.svc.cluster.local.")[0] == "NXDOMAIN" and time.monotonic() < end:
            time.sleep(0.02)
        assert ask_udp("api.shop.svc.cluster.local.") == ("NOERROR", ["10.96.1.1"])
        tcp = dns.query.tcp(
            dns.message.make_query(name, "A"), "127.0.0.1", port=server.port, timeout=5
        )
        assert [rr.to_text() for s in tcp.answer for rr in s] == ["10.96.0.20"]
        for n in range(21, 26):
            before = web.stat().st_mtime_ns
            web.write_text(_web(f"10.96.0.{n}"))
            if web.stat().st_mtime_ns == before:
                os.utime(web, ns=(before + 1_000_000, before + 1_000_000))
            end = time.monotonic() + 10
            while ask_udp(name) != ("NOERROR", [f"10.96.0.{n}"]) and time.monotonic() < end:
                time.sleep(0.02)
            assert ask_udp(name) == ("NOERROR", [f"10.96.0.{n}"])
            assert ask_udp(name) == ("NOERROR", [f"10.96.0.{n}"])  # the new hit, not the old
    finally:
        assert stop_server(server) == 0


_NS = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"


def _web(ip: str) -> str:
    return (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
        f"spec: {{clusterIP: {ip}, ports: [{{name: http, port: 80}}]}}\n"
    )


def test_udp_thread_answers_hits_while_the_loop_is_busy() -> None:
    """The thread answers cached names by itself; a miss waits for the event loop."""
    import asyncio
    import threading

    import dns.exception
    import dns.query

    from clusterdns.server.transport import DNSServer, UDPThread

    handler = make_handler(load_store(COREDNS), CONFIG)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    server = DNSServer(handler, "127.0.0.1", 0, udp_thread=True)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)

    def ask_udp(name: str, timeout: float) -> dns.message.Message:
        query = dns.message.make_query(name, "A")
        return dns.query.udp(query, "127.0.0.1", port=server.port, timeout=timeout)

    try:
        assert isinstance(server._udp, UDPThread)
        assert ask_udp("svc1.testns.svc.cluster.local.", 5).answer  # a miss: on the loop
        busy = threading.Event()
        loop.call_soon_threadsafe(lambda: (busy.set(), time.sleep(1.5)))
        assert busy.wait(5)
        assert ask_udp("svc1.testns.svc.cluster.local.", 1).answer  # a hit: the thread
        # certainly NXDOMAIN: the thread answers it too, from the store, writing nothing
        nx = ask_udp("nosuch.testns.svc.cluster.local.", 1)
        assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority
        # asked again: a name that repeats is worth keeping (once the loop is free)
        assert ask_udp("nosuch.testns.svc.cluster.local.", 1).rcode() == dns.rcode.NXDOMAIN
        with pytest.raises(dns.exception.Timeout):
            ask_udp("svc6.testns.svc.cluster.local.", 0.3)  # a miss waits for the loop
        key = AnswerCache.key(
            parse_query(dns.message.make_query("nosuch.testns.svc.cluster.local.", "A").to_wire()),
            512,
        )
        assert key not in handler.cache.entries  # the thread wrote nothing
        end = time.monotonic() + 10
        while key not in handler.cache.entries and time.monotonic() < end:
            time.sleep(0.02)
        assert key in handler.cache.entries  # the loop cached it once free
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()


@pytest.mark.parametrize("udp_size", [1232, 4096])
def test_quick_nxdomain_off_the_loop_advertises_the_blocks_payload(udp_size: int) -> None:
    """The UDP thread's NXDOMAIN (and the entry the loop caches for it afterwards) carry the
    server block's EDNS payload (``bufsize``/``--udp-size``), as the loop's own replies do."""
    handler = make_handler(load_store(COREDNS), ZoneConfig(), udp_size=udp_size)
    query = dns.message.make_query("nosuch.testns.svc.cluster.local.", "A", use_edns=0, payload=4096)
    thread = handler.tally("1")  # a serving thread's counters: it keeps nothing itself
    made = handler.fast(query.to_wire(), False, thread)
    assert isinstance(made, bytes)
    reply = dns.message.from_wire(made)
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.payload == udp_size
    assert handler.cache.lookup(query.to_wire(), False, thread) is None
    handler.keep_made(thread)  # seen once: not kept (a flood's names are asked once)
    assert handler.cache.lookup(query.to_wire(), False, thread) is None
    assert handler.fast(query.to_wire(), False, thread) == made
    handler.keep_made(thread)  # the loop keeps it afterwards: the name came again
    hit = handler.cache.lookup(query.to_wire(), False, thread)
    assert hit is not None and dns.message.from_wire(hit).payload == udp_size


def test_udp_thread_leaves_every_query_to_the_log() -> None:
    """With ``log`` on, the thread answers nothing itself: every query, repeated hits too,
    is a log line (the log plugin sees every query; CoreDNS plugin/log)."""
    import asyncio
    import io
    import threading

    import dns.query

    from clusterdns.plugins.querylog import QueryLog, QueryLogConfig
    from clusterdns.server.transport import DNSServer

    out = io.StringIO()
    querylog = QueryLog(QueryLogConfig(), out)
    handler = make_handler(load_store(COREDNS), CONFIG, querylog=querylog)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    server = DNSServer(handler, "127.0.0.1", 0, udp_thread=True)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
    try:
        for _ in range(5):
            query = dns.message.make_query("svc1.testns.svc.cluster.local.", "A")
            assert dns.query.udp(query, "127.0.0.1", port=server.port, timeout=5).answer
        end = time.monotonic() + 10
        while out.getvalue().count("svc1.testns") < 5 and time.monotonic() < end:
            querylog.flush()
            time.sleep(0.05)
        assert out.getvalue().count("svc1.testns.svc.cluster.local.") == 5, out.getvalue()
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
        querylog.stop()


def test_wire_negatives_equal_the_parsed_ones() -> None:
    """The flood's path (NXDOMAIN decided and encoded from the datagram's bytes) gives byte
    for byte the reply of the parsing path, with and without EDNS and DO, in the client's
    case; and declines (None) what it must leave to the parser."""
    store = load_store(COREDNS)
    handler = make_handler(store, CONFIG)
    step = next(s for s in handler.steps if s.name == "kubernetes")
    assert step.wire_negative is not None and step.negative is not None
    names = [
        "NoSuch.TestNs.svc.Cluster.Local.",
        "svc1.testns.svc.cluster.local.testns.svc.cluster.local.",
        "a.b.c.d.svc1.testns.svc.cluster.local.",
        "x.nons.svc.cluster.local.",
        "foo.bar.cluster.local.",
        "api.github.com.cluster.local.",
    ]
    memo: dict[object, object] = {}  # a serving thread's: filled by the first pass
    for name in names * 2:
        for edns, flags in ((-1, 0), (0, 0), (0, dns.flags.DO)):
            query = dns.message.make_query(name, "AAAA", use_edns=edns, payload=4096,
                                           ednsflags=flags)
            query.flags |= dns.flags.CD
            wire = query.to_wire()
            for made in (step.wire_negative(wire, False, handler.udp_size, memo),
                         step.wire_negative(wire, False, handler.udp_size)):
                assert made is not None, name
                parsed = parse_query(wire)
                parsed.udp_size = handler.udp_size
                header, tail, tags = step.negative(parsed)
                assert made[0] == header + parsed.question + tail, name
                assert made[1] == tags
    assert memo
    serial = store.serial  # a change moves the serial: the memo's SOA must follow
    store.upsert(SOURCE, Namespace("another"), LATER + 5)
    assert store.serial != serial
    wire = dns.message.make_query("zzzzzz.testns.svc.cluster.local.", "A").to_wire()  # as long
    made = step.wire_negative(wire, False, handler.udp_size, memo)
    assert made is not None
    (soa,) = dns.message.from_wire(made[0]).authority[0]
    assert soa.serial == store.serial
    for i in range(5000):  # a flood of distinct suffixes: the memo stays bounded
        wire = dns.message.make_query(f"a.b{i}.testns.svc.cluster.local.", "A").to_wire()
        step.wire_negative(wire, False, handler.udp_size, memo)
        assert len(memo) <= MEMO_MAX
    declined = [
        dns.message.make_query("svc1.testns.svc.cluster.local.", "A"),  # exists
        dns.message.make_query("nosuch.testns.svc.cluster.local.", "AXFR"),  # a transfer
        dns.message.make_query("nosuch.testns.svc.cluster.local.", "A", rdclass="CH"),
        dns.message.make_query("cluster.local.", "A"),  # the apex
        dns.message.make_query("dns-version.cluster.local.", "TXT"),  # structural
        dns.message.make_query("10.0.0.10.in-addr.arpa.", "PTR"),  # reverse: the resolver
        dns.message.make_query("www.example.org.", "A"),  # outside the zone
    ]
    for query in declined:
        assert step.wire_negative(query.to_wire(), False, 1232) is None, query.question
    escaped = b"\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03a.b\x02ns\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01"
    assert step.wire_negative(escaped, False, 1232) is None  # a dot inside a label
    deeper = escaped[:12] + b"\x01x" + escaped[12:]  # the dot in a label below the first
    assert step.wire_negative(deeper, False, 1232, {}) is None
    assert step.wire_negative(escaped[:-6] + b"\xc0\x0c\x00\x01\x00\x01", False, 1232) is None
