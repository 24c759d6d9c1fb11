"""Wire-layer tests: query parsing, bad packets, EDNS0, truncation, 0x20, the answer cache.

These run the real Handler on a store built from real manifests; packets are made and
read with dnspython, never by hand-written bytes where dnspython can make them.
"""

from __future__ import annotations

import struct
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from clusterdns.core.resolver import ZoneConfig
from clusterdns.core.store import Store
from clusterdns.dns.wire import FormatError, parse_query
from clusterdns.plugins.chain import Handler
from tests.handlers import make_handler

from .conftest import COREDNS, load_store


@pytest.fixture(scope="module")
def handler() -> Handler:
    return make_handler(load_store(COREDNS), ZoneConfig())


def ask(handler: Handler, query: dns.message.Message, tcp: bool = False) -> dns.message.Message:
    wire = handler.handle(query.to_wire(), tcp)
    assert wire is not None
    return dns.message.from_wire(wire)


def raw(handler: Handler, data: bytes, tcp: bool = False) -> bytes | None:
    return handler.handle(data, tcp)


def test_question_echoed_byte_for_byte_with_0x20_case(handler: Handler) -> None:
    query = dns.message.make_query("SvC1.TeStNs.SvC.cLuStEr.LoCaL.", "A")
    data = query.to_wire()
    reply = raw(handler, data)
    assert reply is not None
    assert reply[12 : 12 + len(data) - 12] == data[12:]
    msg = dns.message.from_wire(reply)
    assert [rrset.name.to_text() for rrset in msg.answer] == ["SvC1.TeStNs.SvC.cLuStEr.LoCaL."]
    # A second query in another case is served from the answer cache with its own case.
    again = dns.message.make_query("sVc1.tEsTnS.sVc.ClUsTeR.lOcAl.", "A")
    msg2 = ask(handler, again)
    assert msg2.answer[0].name.to_text() == "sVc1.tEsTnS.sVc.ClUsTeR.lOcAl."
    assert msg2.id == again.id
    assert handler.cache.hits >= 1


def test_srv_target_keeps_query_case_for_the_zone(handler: Handler) -> None:
    msg = ask(handler, dns.message.make_query("_http._tcp.svc1.testns.svc.cLuStEr.LoCaL.", "SRV"))
    targets = [rr.target.to_text() for rr in msg.answer[0]]
    assert targets == ["svc1.testns.svc.cLuStEr.LoCaL."]


def test_flags_rd_copied_aa_set_ra_clear(handler: Handler) -> None:
    query = dns.message.make_query("svc1.testns.svc.cluster.local.", "A")
    query.flags &= ~dns.flags.RD
    msg = ask(handler, query)
    assert msg.flags & dns.flags.AA and msg.flags & dns.flags.QR
    assert not msg.flags & dns.flags.RD and not msg.flags & dns.flags.RA
    query.flags |= dns.flags.RD
    assert ask(handler, query).flags & dns.flags.RD


@pytest.mark.parametrize("qname", ["svc1.testns.svc.cluster.local.", "SvC1.TestNs.svc.cluster.local."])
@pytest.mark.parametrize("flags", ["rd", "", "rd cd", "cd"])
@pytest.mark.parametrize("edns", [-1, 0])
def test_a_kept_answer_is_byte_for_byte_what_the_chain_gives(
    qname: str, flags: str, edns: int
) -> None:
    """A kept answer holds the reply but its ID, its question in lower case: a stub's query
    (RD set, CD clear, lower case) gets it as kept; mixed case (0x20), RD clear or CD set
    get their own flags and question put in. Each reply, served from the kept answer by
    the hot path, equals the chain's reply to the same query from an empty table."""
    store = load_store(COREDNS)
    warm = make_handler(store, ZoneConfig())
    query = dns.message.make_query("svc1.testns.svc.cluster.local.", "A", use_edns=edns)
    warm.handle(query.to_wire(), False)  # kept, asked as a stub asks
    asked = dns.message.make_query(qname, "A", use_edns=edns, payload=1232)
    asked.flags = dns.flags.from_text(flags) if flags else 0
    asked.id = 4242
    wire = asked.to_wire()
    kept = warm.cache.lookup(wire, False, warm.cache.tally())
    assert kept is not None  # served from the kept answer
    assert kept == make_handler(store, ZoneConfig()).handle(wire, False)


def test_edns_opt_iff_query_had_one(handler: Handler) -> None:
    plain = ask(handler, dns.message.make_query("svc1.testns.svc.cluster.local.", "A"))
    assert plain.edns == -1
    with_edns = ask(
        handler, dns.message.make_query("svc1.testns.svc.cluster.local.", "A", use_edns=0, payload=1232)
    )
    assert with_edns.edns == 0 and with_edns.payload >= 512


def test_edns_do_bit_echoed(handler: Handler) -> None:
    query = dns.message.make_query("svc1.testns.svc.cluster.local.", "A", want_dnssec=True)
    assert ask(handler, query).ednsflags & dns.flags.DO


def test_edns_version_1_is_badvers(handler: Handler) -> None:
    query = dns.message.make_query("svc1.testns.svc.cluster.local.", "A", use_edns=1)
    msg = ask(handler, query)
    assert msg.rcode() == dns.rcode.BADVERS
    assert msg.edns == 0 and not msg.answer


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
def test_zone_transfer_refused(handler: Handler, qtype: str) -> None:
    msg = ask(handler, dns.message.make_query("cluster.local.", qtype), tcp=True)
    assert msg.rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("qclass", ["CH", "HS", "ANY"])
def test_other_classes_refused(handler: Handler, qclass: str) -> None:
    msg = ask(handler, dns.message.make_query("svc1.testns.svc.cluster.local.", "A", rdclass=qclass))
    assert msg.rcode() == dns.rcode.REFUSED


def test_names_outside_the_zones_refused_without_forwarder(handler: Handler) -> None:
    msg = ask(handler, dns.message.make_query("example.com.", "A"))
    assert msg.rcode() == dns.rcode.REFUSED and not msg.flags & dns.flags.AA


def test_response_is_dropped(handler: Handler) -> None:
    reply = dns.message.make_response(dns.message.make_query("svc1.testns.svc.cluster.local.", "A"))
    assert raw(handler, reply.to_wire()) is None


@pytest.mark.parametrize("data", [b"", b"\x12", b"\x12\x34\x01\x00\x00\x01\x00"])
def test_short_packets_dropped(handler: Handler, data: bytes) -> None:
    assert raw(handler, data) is None


def _header(qdcount: int, flags: int = 0x0100) -> bytes:
    return struct.pack("!HHHHHH", 0xBEEF, flags, qdcount, 0, 0, 0)


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(_header(0), id="no-question"),
        pytest.param(_header(2) + b"\x01a\x00\x00\x01\x00\x01" * 2, id="two-questions"),
        pytest.param(_header(1) + b"\x05abc", id="name-past-end"),
        pytest.param(_header(1) + b"\x01a\x00\x00", id="question-past-end"),
        pytest.param(_header(1) + b"\xc0\x0c\x00\x01\x00\x01", id="pointer-in-question"),
        pytest.param(_header(1) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", id="label-64"),
        pytest.param(
            _header(1) + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", id="name-256"
        ),
        pytest.param(
            struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 1)
            + b"\x01a\x00\x00\x01\x00\x01\x00\x00\x29\x10",
            id="opt-past-end",
        ),
        pytest.param(
            struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 2)
            + b"\x01a\x00\x00\x01\x00\x01"
            + (b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00") * 2,
            id="two-opts",
        ),
    ],
)
def test_malformed_queries_get_formerr(handler: Handler, packet: bytes) -> None:
    reply = raw(handler, packet)
    assert reply is not None
    ident, flags = struct.unpack_from("!HH", reply)
    assert ident == 0xBEEF and flags & 0x8000 and flags & 0xF == dns.rcode.FORMERR


def test_name_of_255_octets_is_accepted() -> None:
    # 3 x 64-octet labels + 1 x 62 + root = 255 octets: the largest legal name.
    name = (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"b" * 61 + b"\x00"
    assert len(name) == 255
    query = parse_query(_header(1) + name + b"\x00\x01\x00\x01")
    assert query.qname.endswith("b" * 61 + ".")
    with pytest.raises(FormatError):
        parse_query(_header(1) + b"\x01c" + name + b"\x00\x01\x00\x01")


def test_opcode_other_than_query_is_notimp(handler: Handler) -> None:
    query = dns.message.make_query("svc1.testns.svc.cluster.local.", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    reply = raw(handler, query.to_wire())
    assert reply is not None
    assert struct.unpack_from("!H", reply, 2)[0] & 0xF == dns.rcode.NOTIMP


def test_label_with_a_dot_byte_never_matches_cluster_data(handler: Handler) -> None:
    # One label "svc1.testns" must not be read as the two labels of svc1.testns.
    qname = b"\x0bsvc1.testns\x03svc\x07cluster\x05local\x00"
    reply = raw(handler, _header(1) + qname + b"\x00\x01\x00\x01")
    assert reply is not None
    assert struct.unpack_from("!H", reply, 2)[0] & 0xF == dns.rcode.NXDOMAIN
    assert reply[12 : 12 + len(qname) + 4] == qname + b"\x00\x01\x00\x01"


def _big_store() -> Store:
    from clusterdns.core.records import (
        Endpoint,
        EndpointSlice,
        Namespace,
        Port,
        Service,
        ServiceKind,
    )

    store = Store()
    store.add_source("t", synced=True)
    store.upsert("t", Namespace("testns"), 1)
    store.upsert("t", Service("testns", "big", ServiceKind.HEADLESS, (), (Port("http", "tcp", 80),)), 1)
    endpoints = tuple(Endpoint((f"10.1.0.{i}",), True) for i in range(1, 101))
    store.upsert(
        "t", EndpointSlice("testns", "big-1", "big", 4, endpoints, (Port("http", "tcp", 80),)), 1
    )
    return store


def test_truncation_keeps_whole_records_and_sets_tc() -> None:
    handler = make_handler(_big_store(), ZoneConfig())
    query = dns.message.make_query("big.testns.svc.cluster.local.", "A")
    wire = handler.handle(query.to_wire(), False)
    assert wire is not None and len(wire) <= 512
    msg = dns.message.from_wire(wire)
    assert msg.flags & dns.flags.TC
    assert 0 < len(msg.answer[0]) < 100
    # EDNS 1232 still does not fit 100 records (~1.65 KB); 4096 does (if ours), and TCP does.
    small = dns.message.make_query("big.testns.svc.cluster.local.", "A", use_edns=0, payload=1232)
    wire = handler.handle(small.to_wire(), False)
    assert wire is not None and len(wire) <= 1232
    assert dns.message.from_wire(wire).flags & dns.flags.TC
    big = dns.message.make_query("big.testns.svc.cluster.local.", "A", use_edns=0, payload=4096)
    # our own payload is 1232 by default (issue 14): 4096 fits only when we allow it
    capped = dns.message.from_wire(handler.handle(big.to_wire(), False) or b"")
    assert capped.flags & dns.flags.TC and capped.payload == 1232
    wide = make_handler(_big_store(), ZoneConfig(), udp_size=4096)
    msg = dns.message.from_wire(wide.handle(big.to_wire(), False) or b"")
    assert not msg.flags & dns.flags.TC and len(msg.answer[0]) == 100
    msg = dns.message.from_wire(handler.handle(query.to_wire(), True) or b"")
    assert not msg.flags & dns.flags.TC and len(msg.answer[0]) == 100


def test_edns_payload_below_512_counts_as_512() -> None:
    handler = make_handler(_big_store(), ZoneConfig())
    query = dns.message.make_query("big.testns.svc.cluster.local.", "A", use_edns=0, payload=100)
    wire = handler.handle(query.to_wire(), False)
    assert wire is not None and 400 < len(wire) <= 512


def test_srv_glue_dropped_whole_without_tc() -> None:
    # 100 SRV records do not fit 4096 with their glue: the answer is cut and TC set.
    handler = make_handler(_big_store(), ZoneConfig())
    query = dns.message.make_query("_http._tcp.big.testns.svc.cluster.local.", "SRV")
    msg = dns.message.from_wire(handler.handle(query.to_wire(), False) or b"")
    assert msg.flags & dns.flags.TC and len(msg.answer[0]) < 100
    # Over EDNS 8192 every SRV fits but not all glue: glue is dropped by whole RRsets and,
    # RFC 2181 9, no TC since no required data is missing.
    handler = make_handler(_big_store(), ZoneConfig(), udp_size=8192)
    query = dns.message.make_query(
        "_http._tcp.big.testns.svc.cluster.local.", "SRV", use_edns=0, payload=8192
    )
    wire = handler.handle(query.to_wire(), False) or b""
    msg = dns.message.from_wire(wire)
    assert len(msg.answer[0]) == 100
    assert 0 < len(msg.additional) < 100 and not msg.flags & dns.flags.TC


def test_cache_follows_store_generation() -> None:
    from clusterdns.core.records import Service, ServiceKind

    store = _big_store()
    handler = make_handler(store, ZoneConfig())
    query = dns.message.make_query("web.testns.svc.cluster.local.", "A")
    assert ask(handler, query).rcode() == dns.rcode.NXDOMAIN
    assert ask(handler, query).rcode() == dns.rcode.NXDOMAIN  # cached
    store.upsert("t", Service("testns", "web", ServiceKind.CLUSTER_IP, ("10.9.9.9",)), 2)
    msg = ask(handler, query)
    assert [rr.address for rr in msg.answer[0]] == ["10.9.9.9"]


def test_cache_is_bounded_and_a_flood_of_negatives_keeps_the_positives() -> None:
    handler = make_handler(_big_store(), ZoneConfig(), cache_size=10, negative_cache_size=10)
    positive = dns.message.make_query("big.testns.svc.cluster.local.", "A")
    assert ask(handler, positive).answer
    key = next(iter(handler.cache.entries))
    for i in range(50):  # a flood of names asked once: answered, none kept
        ask(handler, dns.message.make_query(f"n{i}.testns.svc.cluster.local.", "A"))
    assert len(handler.cache.negatives) == 0 and len(handler.cache.entries) == 1
    for i in range(50):  # asked again: kept, within their own bound
        ask(handler, dns.message.make_query(f"n{i}.testns.svc.cluster.local.", "A"))
    assert len(handler.cache.negatives) == 10
    assert len(handler.cache.entries) == 11 and key in handler.cache.entries
    assert len(handler.cache.by_tag) <= 11 * 3  # no tag outlives its entries


def test_the_tag_index_holds_no_more_than_twice_its_live_keys() -> None:
    """Keys of entries dropped for another reason (eviction, another tag) stay in the tag
    index until it is rebuilt: 20,000 answers under distinct tags through a table of 100
    leave an index bounded by twice the live keys plus 1,024, and a tag still finds its
    entry after each rebuild."""
    from clusterdns.dns.cache import AnswerCache

    cache = AnswerCache(max_entries=100, max_negative=10)
    header = bytes.fromhex("0000 8580 0001 0001 0000 0000".replace(" ", ""))
    tail = bytes.fromhex("c00c 0001 0001 0000 0005 0004 0a000001".replace(" ", ""))
    for i in range(20_000):
        query = parse_query(dns.message.make_query(f"s{i}.ns.svc.cluster.local.", "A").to_wire())
        cache.put(query, 512, header, tail, tags=(("ns", "ns"), ("svc", "ns", f"s{i}")))
        assert len(cache.by_tag) <= 2 * 100 + 1024 + 1, i
    assert len(cache) == 100
    last = ("svc", "ns", "s19999")
    assert last in cache.by_tag
    cache.invalidate({last})
    assert len(cache) == 99
    cache.invalidate({("ns", "ns")})
    assert len(cache) == 0


def test_cache_key_folds_the_name_only() -> None:
    # qtype 65 (0x0041) and 97 (0x0061) differ by the bit that folds ASCII case.
    from clusterdns.dns.cache import AnswerCache

    def key(name: str, qtype: int) -> object:
        return AnswerCache.key(parse_query(dns.message.make_query(name, qtype).to_wire()), 512)

    assert key("Big.testns.svc.cluster.local.", 65) == key("big.testns.svc.cluster.local.", 65)
    assert key("big.testns.svc.cluster.local.", 65) != key("big.testns.svc.cluster.local.", 97)


def test_loadbalance_rotates_addresses_and_keeps_cnames_first() -> None:
    from clusterdns.core.records import Service, ServiceKind

    store = _big_store()
    store.upsert("t", Service("testns", "alias", ServiceKind.EXTERNAL_NAME,
                              external_name="big.testns.svc.cluster.local."), 1)
    handler = make_handler(store, ZoneConfig(), loadbalance=True, udp_size=4096)
    firsts = set()
    for _ in range(8):
        q = dns.message.make_query("alias.testns.svc.cluster.local.", "A", use_edns=0, payload=4096)
        msg = ask(handler, q)
        assert msg.answer[0].rdtype == dns.rdatatype.CNAME  # the CNAME stays first
        (addresses,) = [r for r in msg.answer if r.rdtype == dns.rdatatype.A]
        assert len(addresses) == 100
        firsts.add(next(iter(addresses)).address)
    assert len(firsts) > 1  # answers from the cache come in turn in other orders
    plain = make_handler(store, ZoneConfig(), udp_size=4096)
    q = dns.message.make_query("big.testns.svc.cluster.local.", "A", use_edns=0, payload=4096)
    assert len({next(iter(ask(plain, q).answer[0])).address for _ in range(4)}) == 1


@pytest.mark.parametrize(
    "name", ["x.shop.svc.cluster.local.", "NoSuCh.ShOp.svc.CLUSTER.local.", "cluster.local.",
             "9.9.9.9.in-addr.arpa.", "shop.svc.cluster.local.", "a.b.c.d.e.svc.cluster.local."])
@pytest.mark.parametrize("qtype", ["A", "TXT"])
def test_negative_answer_template_equals_the_general_writer(name: str, qtype: str) -> None:
    from clusterdns.core.resolver import resolve
    from clusterdns.dns import encode, wire

    store = load_store(Path(__file__).resolve().parent.parent / "zones")
    query = wire.parse_query(dns.message.make_query(name, qtype).to_wire())
    answer = resolve(store, query.qname, query.qtype, ZoneConfig())
    assert answer is not None and not answer.answer
    writer = encode._Writer(query, answer.zone)
    for rec in answer.authority:
        writer.record(rec)
    assert encode._negative(query, answer) == bytes(writer.data[12 + len(query.question):])
