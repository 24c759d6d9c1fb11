"""The forward cache keeps the upstream's bytes: the wire walk that finds TTL fields, and
hits served with TTLs aged in place (CoreDNS cache README; RFC 1035 4.1, RFC 2308 5,
RFC 6891 6.1.3, RFC 8767)."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from clusterdns.dns.wire import parse_query
from clusterdns.plugins.forward_cache import CacheConfig, ForwardCache, walk


class Clock:
    """Monotonic seconds the test moves on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exchange(name: str = "www.example.org.", want_dnssec: bool = True) -> tuple[bytes, bytes]:
    """(query, upstream reply): two A records (TTL 300, 60), a CNAME, an OPT with DO."""
    query = dns.message.make_query(name, "A", use_edns=0, want_dnssec=want_dnssec)
    query.flags |= dns.flags.CD
    reply = dns.message.make_response(query)
    reply.use_edns(0, dns.flags.DO if want_dnssec else 0, 1232)
    reply.answer.append(dns.rrset.from_text(name, 120, "IN", "CNAME", "web.example.org."))
    reply.answer.append(dns.rrset.from_text("web.example.org.", 300, "IN", "A", "192.0.2.1"))
    reply.answer.append(dns.rrset.from_text("web.example.org.", 60, "IN", "AAAA", "2001:db8::1"))
    return query.to_wire(), reply.to_wire()


def test_walk_finds_every_record_through_compression() -> None:
    _, reply = exchange()
    parsed = dns.message.from_wire(reply)
    records = walk(reply)
    assert [(r.section, r.rtype, r.ttl) for r in records] == [
        (0, 5, 120), (0, 1, 300), (0, 28, 60), (2, 41, parsed.ednsflags)
    ]
    assert reply[records[0].rdata_at - 10 : records[0].rdata_at - 8] == b"\x00\x05"
    assert records[-1].ttl & 0x8000  # the OPT's DO bit: no TTL


@pytest.mark.parametrize(
    ("elapsed", "stale", "keepttl", "want"),
    [
        (10, False, False, [110, 290, 50]),
        (0, False, False, [120, 300, 60]),
        (30, False, True, [120, 300, 60]),  # keepttl: as received
        (61, True, False, [0, 0, 0]),  # serve_stale: TTL 0 (RFC 8767 says 30; CoreDNS 0)
    ],
)
def test_hit_ages_ttls_in_place(elapsed: int, stale: bool, keepttl: bool, want: list[int]) -> None:
    packet, reply = exchange()
    clock = Clock()
    cache = ForwardCache(CacheConfig((".",), keepttl=keepttl, serve_stale=3600), clock)
    cache.put(parse_query(packet), reply)
    # the client asks in another case and with another ID, RD off
    asked = dns.message.make_query("WWW.Example.ORG.", "A", use_edns=0, want_dnssec=True)
    asked.id, asked.flags = 4242, dns.flags.CD
    clock.now += elapsed
    hit = cache.get(parse_query(asked.to_wire()))
    assert hit is not None and hit.kind == "success" and hit.stale is stale
    served = dns.message.from_wire(hit.reply)
    assert [rrset.ttl for rrset in served.answer] == want
    assert served.id == 4242 and str(served.question[0].name) == "WWW.Example.ORG."
    assert served.flags & dns.flags.AA and served.flags & dns.flags.CD
    assert not served.flags & dns.flags.RD
    assert served.ednsflags & dns.flags.DO  # the OPT's TTL field left alone


def test_denial_ttl_from_soa_minimum() -> None:
    query = dns.message.make_query("gone.example.org.", "A")
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.NXDOMAIN)
    soa = "ns.example.org. host.example.org. 1 7200 900 1209600 45"
    reply.authority.append(dns.rrset.from_text("example.org.", 3600, "IN", "SOA", soa))
    clock = Clock()
    cache = ForwardCache(CacheConfig((".",), denial_min_ttl=0), clock)
    cache.put(parse_query(query.to_wire()), reply.to_wire())
    (entry,) = cache.denial.values()
    assert entry.expires - entry.stored == 45  # min(SOA TTL, SOA minimum), RFC 2308 5
    clock.now += 5
    hit = cache.get(parse_query(query.to_wire()))
    assert hit is not None and hit.kind == "denial"
    assert dns.message.from_wire(hit.reply).authority[0].ttl == 3595


@pytest.mark.parametrize(
    ("why", "cut"),
    [
        ("record cut short", lambda b: b[:-3]),
        ("answer count beyond the records", lambda b: b[:6] + b"\x00\x09" + b[8:]),
        ("reserved label type", lambda b: b[:12] + b"\x43" + b[13:]),
        ("shorter than a header", lambda b: b[:11]),
    ],
)
def test_unreadable_replies_are_not_cached(why: str, cut: object) -> None:
    packet, reply = exchange(want_dnssec=False)
    cache = ForwardCache(CacheConfig((".",)))
    assert callable(cut)
    cache.put(parse_query(packet), cut(reply))
    assert cache.entries() == {"success": 0, "denial": 0}, why
    cache.put(parse_query(packet), reply)
    assert cache.entries() == {"success": 1, "denial": 0}
