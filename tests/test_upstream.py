"""Tests of the upstream DNS server stand-in (tests/upstream.py), asked with dnspython: its
own contract, for what the forward, autopath, cache and Corefile tests use.

Answers are checked over UDP and TCP, and the raw wire is read where dnspython would hide
what matters (the exact question bytes, a missing OPT record, garbage replies). Fault modes
are driven with short client timeouts so the whole file runs in a few seconds.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.upstream import DEFAULT_ZONE, Upstream

SHORT = 0.3  # client timeout where no (acceptable) answer is expected


def wait_for_queries(up: Upstream, n: int, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while len(up.queries) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(up.queries) >= n


@pytest.fixture
def up() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


def query(name: str, rtype: str = "A", **kw: object) -> dns.message.Message:
    return dns.message.make_query(name, rtype, **kw)  # type: ignore[arg-type]


def ask(
    up: Upstream,
    name: str,
    rtype: str = "A",
    transport: str = "udp",
    timeout: float = 2.0,
    **kw: object,
) -> dns.message.Message:
    q = query(name, rtype, **kw)
    if transport == "udp":
        return dns.query.udp(q, up.host, port=up.port, timeout=timeout)
    return dns.query.tcp(q, up.host, port=up.port, timeout=timeout)


def raw_udp(up: Upstream, wire: bytes, timeout: float = 2.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(wire, (up.host, up.port))
        return sock.recv(65535)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "connection closed early"
        buf += chunk
    return buf


def tcp_send(sock: socket.socket, wire: bytes) -> None:
    sock.sendall(struct.pack("!H", len(wire)) + wire)


def tcp_recv(sock: socket.socket) -> bytes:
    return recv_exact(sock, struct.unpack("!H", recv_exact(sock, 2))[0])


def texts(response: dns.message.Message) -> list[str]:
    """The answer section as ``name ttl type rdata`` lines."""
    return [
        f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rd}"
        for rrset in response.answer
        for rd in rrset
    ]


def assert_negative(response: dns.message.Message, rcode: dns.rcode.Rcode) -> None:
    assert response.rcode() == rcode
    assert response.flags & dns.flags.AA
    assert response.answer == []
    [soa] = response.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.name == dns.name.from_text("example.com.")
    assert soa.ttl == 60  # min(SOA TTL 3600, minimum 60), RFC 2308


# -- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_aaaa_txt(up: Upstream, transport: str) -> None:
    r = ask(up, "www.example.com.", "A", transport)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert not r.flags & dns.flags.RA
    assert texts(r) == ["www.example.com. 300 A 93.184.216.34"]
    r = ask(up, "www.example.com.", "AAAA", transport)
    assert texts(r) == ["www.example.com. 300 AAAA 2606:2800:220:1:248:1893:25c8:1946"]
    r = ask(up, "txt.example.com.", "TXT", transport)
    assert texts(r) == ['txt.example.com. 300 TXT "hello"']
    assert texts(ask(up, "short.example.com.", "A", transport)) == [
        "short.example.com. 5 A 1.2.3.4"
    ]
    r = ask(up, "api.payments.example.com.", "A", transport)
    assert texts(r) == ["api.payments.example.com. 300 A 203.0.113.10"]


def test_cname_following(up: Upstream) -> None:
    assert texts(ask(up, "alias.example.com.", "A")) == [
        "alias.example.com. 300 CNAME www.example.com.",
        "www.example.com. 300 A 93.184.216.34",
    ]
    assert texts(ask(up, "chain.example.com.", "AAAA", "tcp")) == [
        "chain.example.com. 300 CNAME alias.example.com.",
        "alias.example.com. 300 CNAME www.example.com.",
        "www.example.com. 300 AAAA 2606:2800:220:1:248:1893:25c8:1946",
    ]
    # Asking for the CNAME itself does not follow it.
    assert texts(ask(up, "alias.example.com.", "CNAME")) == [
        "alias.example.com. 300 CNAME www.example.com."
    ]
    # The target exists but lacks the type: the CNAME, then NODATA.
    r = ask(up, "alias.example.com.", "TXT")
    assert texts(r) == ["alias.example.com. 300 CNAME www.example.com."]
    assert r.rcode() == dns.rcode.NOERROR and r.authority[0].rdtype == dns.rdatatype.SOA


def test_cname_to_missing_name_and_out_of_zone(up: Upstream) -> None:
    r = ask(up, "dangling.example.com.", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN  # RFC 6604: the rcode of the last name
    assert texts(r) == ["dangling.example.com. 300 CNAME nowhere.example.com."]
    assert r.authority[0].rdtype == dns.rdatatype.SOA
    r = ask(up, "outside.example.com.", "A")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert texts(r) == ["outside.example.com. 300 CNAME www.example.net."]
    assert r.authority == []


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_nodata_vs_nxdomain(up: Upstream, transport: str) -> None:
    assert_negative(ask(up, "www.example.com.", "TXT", transport), dns.rcode.NOERROR)
    assert_negative(ask(up, "txt.example.com.", "A", transport), dns.rcode.NOERROR)
    # An empty non-terminal (above api.payments) exists: NODATA, not NXDOMAIN.
    assert_negative(ask(up, "payments.example.com.", "A", transport), dns.rcode.NOERROR)
    assert_negative(ask(up, "missing.example.com.", "A", transport), dns.rcode.NXDOMAIN)
    assert_negative(ask(up, "a.b.missing.example.com.", "AAAA", transport), dns.rcode.NXDOMAIN)


@pytest.mark.parametrize("name", ["www.example.org.", "example.net.", "com.", "."])
def test_refused_outside_origin(up: Upstream, name: str) -> None:
    r = ask(up, name, "A")
    assert r.rcode() == dns.rcode.REFUSED
    assert not r.flags & dns.flags.AA
    assert r.answer == [] and r.authority == []
    assert r.question[0].name == dns.name.from_text(name)


def test_big_is_truncated_over_udp_and_complete_over_tcp(up: Upstream) -> None:
    q = query("big.example.com.", "A")
    wire = raw_udp(up, q.to_wire())
    assert len(wire) <= 512
    r = dns.message.from_wire(wire)
    assert r.flags & dns.flags.TC and r.flags & dns.flags.AA
    assert r.rcode() == dns.rcode.NOERROR and r.answer == [] and r.question == q.question
    r = dns.query.tcp(q, up.host, port=up.port, timeout=2)
    assert not r.flags & dns.flags.TC
    [rrset] = r.answer
    assert sorted(str(rd) for rd in rrset) == sorted(f"10.0.0.{i}" for i in range(1, 61))
    assert len(r.to_wire()) > 512
    r, used_tcp = dns.query.udp_with_fallback(q, up.host, port=up.port, timeout=2)
    assert used_tcp and len(r.answer[0]) == 60
    assert [t for t, *_ in up.queries] == ["udp", "tcp", "udp", "tcp"]


def test_udp_limit_follows_edns_payload(up: Upstream) -> None:
    r, used_tcp = dns.query.udp_with_fallback(
        query("big.example.com.", "A", use_edns=0, payload=4096), up.host, port=up.port, timeout=2
    )
    assert not used_tcp and len(r.answer[0]) == 60 and r.edns == 0
    # A payload below 512 still means 512; 600 bytes are not enough for 60 records.
    for payload in (400, 600):
        r = ask(up, "big.example.com.", "A", use_edns=0, payload=payload)
        assert r.flags & dns.flags.TC and r.answer == [] and r.edns == 0
    assert texts(ask(up, "www.example.com.", use_edns=0, payload=400))  # small: not truncated


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_0x20_question_and_id_echoed_exactly(up: Upstream, transport: str) -> None:
    q = query("wWw.ExAmPlE.cOm.", "A")
    q.id = 0xBEEF
    wire = q.to_wire()
    if transport == "udp":
        reply = raw_udp(up, wire)
    else:
        with socket.create_connection((up.host, up.port), timeout=2) as sock:
            tcp_send(sock, wire)
            reply = tcp_recv(sock)
    qname = b"\x03wWw\x07ExAmPlE\x03cOm\x00"
    assert reply[:2] == b"\xbe\xef"
    assert reply[12 : 12 + len(qname)] == qname  # the question, byte for byte
    r = dns.message.from_wire(reply)
    assert r.question[0].name.to_text() == "wWw.ExAmPlE.cOm."
    assert str(r.answer[0][0]) == "93.184.216.34"
    assert up.queries == [(transport, "wWw.ExAmPlE.cOm.", "A", "RD")]


def test_0x20_on_negative_and_refused_answers(up: Upstream) -> None:
    for name, rcode in [
        ("NoPe.ExAmPlE.cOm.", dns.rcode.NXDOMAIN),
        ("WwW.eXaMpLe.OrG.", dns.rcode.REFUSED),
    ]:
        r = ask(up, name, "A")
        assert r.rcode() == rcode and r.question[0].name.to_text() == name


def test_edns_present_iff_query_has_it(up: Upstream) -> None:
    wire = raw_udp(up, query("www.example.com.", "A").to_wire())
    assert struct.unpack("!H", wire[10:12])[0] == 0  # ARCOUNT: no OPT
    r = dns.message.from_wire(wire)
    assert r.edns == -1 and r.opt is None
    r = ask(up, "www.example.com.", "A", use_edns=0, payload=1232)
    assert r.edns == 0 and r.opt is not None and r.payload >= 512
    r = ask(up, "www.example.com.", "A", "tcp", use_edns=0, want_dnssec=True)
    assert r.edns == 0
    r = ask(up, "missing.example.com.", "A", use_edns=0)
    assert r.edns == 0 and r.rcode() == dns.rcode.NXDOMAIN
    r = ask(up, "www.example.org.", "A", use_edns=0)
    assert r.edns == 0 and r.rcode() == dns.rcode.REFUSED
    assert [flags for *_, flags in up.queries] == ["RD", "RD", "RD DO", "RD", "RD"]


def test_tcp_several_queries_per_connection(up: Upstream) -> None:
    names = ["www.example.com.", "txt.example.com.", "missing.example.com.", "big.example.com."]
    with socket.create_connection((up.host, up.port), timeout=2) as sock:
        # One at a time with dnspython ...
        for name in names:
            q = query(name, "A")
            dns.query.send_tcp(sock, q)
            r, _ = dns.query.receive_tcp(sock, time.time() + 2)
            assert q.is_response(r)
        # ... then pipelined: all sent before any reply is read.
        qs = [query(name, "A") for name in names]
        for q in qs:
            tcp_send(sock, q.to_wire())
        replies = [dns.message.from_wire(tcp_recv(sock)) for _ in qs]
    assert [r.id for r in replies] == [q.id for q in qs]
    assert [len(r.answer) for r in replies] == [1, 0, 0, 1]
    assert wait_for_queries(up, 8)
    assert {t for t, *_ in up.queries} == {"tcp"}


def test_custom_zone_and_origin() -> None:
    zone = "@ 60 IN SOA ns hm 1 2 3 4 30\n@ 60 IN NS ns\nns 60 IN A 10.9.9.9\n"
    with Upstream(zone, origin="corp.test.") as other:
        assert other.address == f"127.0.0.1:{other.port}" and other.port > 0
        assert texts(ask(other, "ns.corp.test.", "A")) == ["ns.corp.test. 60 A 10.9.9.9"]
        assert ask(other, "www.example.com.", "A").rcode() == dns.rcode.REFUSED
        r = ask(other, "x.corp.test.", "A", "tcp")
        assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].ttl == 30
    assert "big" in DEFAULT_ZONE


# -- run-time records and recorded queries --------------------------------------------------


def test_add_records_at_run_time(up: Upstream) -> None:
    assert ask(up, "new.example.com.", "A").rcode() == dns.rcode.NXDOMAIN
    up.add("new", "A", "192.0.2.1", "192.0.2.2", ttl=30)
    r = ask(up, "new.example.com.", "A")
    assert sorted(texts(r)) == [
        "new.example.com. 30 A 192.0.2.1",
        "new.example.com. 30 A 192.0.2.2",
    ]
    up.add("new.example.com.", "TXT", '"v=1"')
    assert texts(ask(up, "new.example.com.", "TXT", "tcp")) == ['new.example.com. 300 TXT "v=1"']
    up.add("www", "A", "93.184.216.35")
    assert len(ask(up, "www.example.com.", "A").answer[0]) == 2
    up.add("svc.payments", "CNAME", "api.payments")
    assert texts(ask(up, "svc.payments.example.com.", "A")) == [
        "svc.payments.example.com. 300 CNAME api.payments.example.com.",
        "api.payments.example.com. 300 A 203.0.113.10",
    ]


def test_queries_are_recorded(up: Upstream) -> None:
    assert up.queries == []
    ask(up, "WWW.example.com.", "AAAA")
    ask(up, "txt.example.com.", "TXT", "tcp", use_edns=0)
    q = query("www.example.org.", "MX")
    q.flags = 0  # no RD
    dns.query.udp(q, up.host, port=up.port, timeout=2)
    assert up.queries == [
        ("udp", "WWW.example.com.", "AAAA", "RD"),
        ("tcp", "txt.example.com.", "TXT", "RD"),
        ("udp", "www.example.org.", "MX", ""),
    ]


# -- fault modes ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_mode_timeout(up: Upstream, transport: str) -> None:
    up.set_mode("timeout")
    start = time.monotonic()
    with pytest.raises(dns.exception.Timeout):
        ask(up, "www.example.com.", "A", transport, timeout=SHORT)
    assert time.monotonic() - start >= SHORT * 0.9
    assert up.queries == [(transport, "www.example.com.", "A", "RD")]  # received, not answered
    up.set_mode("normal")
    assert texts(ask(up, "www.example.com.", "A", transport))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_mode_servfail(up: Upstream, transport: str) -> None:
    up.set_mode("servfail")
    for name in ("www.example.com.", "missing.example.com.", "www.example.org."):
        r = ask(up, name, "A", transport, use_edns=0)
        assert r.rcode() == dns.rcode.SERVFAIL and r.answer == [] and r.edns == 0
        assert not r.flags & dns.flags.AA


def test_mode_garbage(up: Upstream) -> None:
    up.set_mode("garbage")
    q = query("www.example.com.", "A")
    wire = raw_udp(up, q.to_wire())
    assert len(wire) == 64
    try:
        parsed: dns.message.Message | None = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        parsed = None
    assert parsed is None or not q.is_response(parsed)
    with pytest.raises(dns.exception.DNSException):
        dns.query.udp(q, up.host, port=up.port, timeout=2)
    with pytest.raises(dns.exception.Timeout):  # a client that skips bad datagrams times out
        dns.query.udp(q, up.host, port=up.port, timeout=SHORT, ignore_errors=True)
    with pytest.raises(dns.exception.DNSException):
        dns.query.tcp(q, up.host, port=up.port, timeout=2)


def test_mode_wrong_id(up: Upstream) -> None:
    up.set_mode("wrong_id")
    q = query("www.example.com.", "A")
    r = dns.message.from_wire(raw_udp(up, q.to_wire()))
    assert r.id != q.id and r.question == q.question and texts(r)
    with pytest.raises(dns.query.BadResponse):
        dns.query.udp(q, up.host, port=up.port, timeout=2)
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(q, up.host, port=up.port, timeout=SHORT, ignore_errors=True)
    with pytest.raises(dns.query.BadResponse):
        dns.query.tcp(q, up.host, port=up.port, timeout=2)


def test_mode_wrong_question(up: Upstream) -> None:
    up.set_mode("wrong_question")
    q = query("txt.example.com.", "A")
    r = dns.message.from_wire(raw_udp(up, q.to_wire()))
    assert r.id == q.id and r.question[0].name == dns.name.from_text("www.example.com.")
    assert texts(r) == ["www.example.com. 300 A 93.184.216.34"]
    # Asking for the default wrong name itself still gets another name.
    r = dns.message.from_wire(raw_udp(up, query("www.example.com.", "A").to_wire()))
    assert r.question[0].name == dns.name.from_text("txt.example.com.")
    with pytest.raises(dns.query.BadResponse):
        dns.query.udp(q, up.host, port=up.port, timeout=2)
    with pytest.raises(dns.query.BadResponse):
        dns.query.tcp(q, up.host, port=up.port, timeout=2)


def test_mode_delay_does_not_block_other_queries(up: Upstream) -> None:
    delay = 0.3
    up.set_mode("delay", seconds=delay)
    qs = [query(f"n{i}.example.com.", "A") for i in range(5)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        for q in qs:
            sock.sendto(q.to_wire(), (up.host, up.port))
        sock.settimeout(2.0)
        ids = {dns.message.from_wire(sock.recv(65535)).id for _ in qs}
        elapsed = time.monotonic() - start
    assert ids == {q.id for q in qs}
    assert delay * 0.9 <= elapsed < delay * 3  # concurrent, not 5 x delay
    # Over TCP too: pipelined queries on one connection all come back after one delay.
    with socket.create_connection((up.host, up.port), timeout=2) as sock:
        start = time.monotonic()
        for q in qs:
            tcp_send(sock, q.to_wire())
        ids = {dns.message.from_wire(tcp_recv(sock)).id for _ in qs}
        elapsed = time.monotonic() - start
    assert ids == {q.id for q in qs} and delay * 0.9 <= elapsed < delay * 3
    with pytest.raises(dns.exception.Timeout):
        ask(up, "www.example.com.", "A", timeout=0.1)


def test_mode_loop_udp_forwards_exact_bytes(up: Upstream) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as target:
        target.bind(("127.0.0.1", 0))
        target.settimeout(2.0)
        up.set_mode("loop", target=target.getsockname())
        probe = query("2916347852870583421.6457302584951427113.", "HINFO")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(2.0)
            client.sendto(probe.to_wire(), (up.host, up.port))
            forwarded, sender = target.recvfrom(65535)
            assert forwarded == probe.to_wire()
            answer = dns.message.make_response(probe)
            answer.set_rcode(dns.rcode.NXDOMAIN)
            target.sendto(answer.to_wire(), sender)
            assert client.recv(65535) == answer.to_wire()  # relayed unchanged
    assert up.queries == [("udp", "2916347852870583421.6457302584951427113.", "HINFO", "RD")]


def test_mode_loop_tcp_through_another_upstream(up: Upstream) -> None:
    with Upstream() as other:
        up.set_mode("loop", target=("127.0.0.1", other.port))
        r = ask(up, "1234.5678.ExAmPlE.com.", "HINFO", "tcp")
        assert r.rcode() == dns.rcode.NXDOMAIN  # other's answer, relayed
        assert other.queries == [("tcp", "1234.5678.ExAmPlE.com.", "HINFO", "RD")]
        r = ask(up, "12.34.", "HINFO")  # outside the origin: still forwarded
        assert r.rcode() == dns.rcode.REFUSED
        assert other.queries[-1] == ("udp", "12.34.", "HINFO", "RD")
        # Not a loop probe: answered here.
        assert texts(ask(up, "www.example.com.", "A"))
        assert ask(up, "www.example.com.", "HINFO").rcode() == dns.rcode.NOERROR
        assert ask(up, "1234.5678.example.com.", "A").rcode() == dns.rcode.NXDOMAIN
        assert ask(up, "a1.2.example.com.", "HINFO").rcode() == dns.rcode.NXDOMAIN
        assert len(other.queries) == 2
        assert len(up.queries) == 6


def test_mode_loop_without_answer_times_out(up: Upstream) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as target:
        target.bind(("127.0.0.1", 0))
        up.set_mode("loop", target=target.getsockname(), timeout=SHORT)
        with pytest.raises(dns.exception.Timeout):
            ask(up, "1.2.", "HINFO", timeout=SHORT)


def test_set_mode_validates(up: Upstream) -> None:
    for mode in ("flaky", "refused"):
        with pytest.raises(ValueError, match="unknown mode"):
            up.set_mode(mode)
    with pytest.raises(ValueError, match="seconds"):
        up.set_mode("delay")
    with pytest.raises(ValueError, match="target"):
        up.set_mode("loop")
    assert texts(ask(up, "www.example.com.", "A"))  # still normal


def test_stop_closes_the_port() -> None:
    server = Upstream()
    server.start()
    port = server.port
    assert texts(ask(server, "www.example.com.", "A", "tcp"))
    server.set_mode("delay", seconds=5)
    with socket.create_connection((server.host, port), timeout=2) as sock:
        tcp_send(sock, query("www.example.com.", "A").to_wire())
        assert wait_for_queries(server, 2)
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 2.0  # pending delayed replies are cancelled
        assert sock.recv(2) == b""  # the connection was closed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    server.stop()  # idempotent
