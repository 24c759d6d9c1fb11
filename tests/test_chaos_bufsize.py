"""chaos (CH TXT version/authors/hostname) and bufsize (the EDNS payload cap), on a real
server on loopback (CoreDNS plugin/chaos and plugin/bufsize READMEs)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import dns.flags
import dns.rcode
import pytest

from clusterdns import __version__
from clusterdns.core.errors import ConfigError
from clusterdns.corefile.config import load

from .corefile_server import serve
from .upstream import Upstream


def txt(reply: object) -> list[str]:
    return sorted(
        b"".join(rr.strings).decode() for rrset in reply.answer for rr in rrset  # type: ignore[attr-defined]
    )


@pytest.mark.parametrize(
    ("directive", "name", "expected"),
    [
        ("chaos", "version.bind.", [f"clusterdns-{__version__}"]),
        ("chaos", "VERSION.server.", [f"clusterdns-{__version__}"]),
        ("chaos CoreDNS-001 info@coredns.io", "version.bind.", ["CoreDNS-001"]),
        ("chaos CoreDNS-001 alice bob", "authors.bind.", ["alice", "bob"]),
        ("chaos", "hostname.bind.", [socket.gethostname()]),
        ("chaos", "id.server.", [socket.gethostname()]),
    ],
)
def test_chaos_answers(directive: str, name: str, expected: list[str]) -> None:
    with serve(f".:53 {{\n  {directive}\n  kubernetes cluster.local\n}}\n") as s:
        reply = s.ask(name, "TXT", rdclass="CH")
    assert reply.rcode() == dns.rcode.NOERROR
    assert txt(reply) == expected
    assert not reply.flags & dns.flags.AA
    assert reply.answer[0].rdclass == 3 and reply.answer[0].ttl == 0
    assert str(reply.question[0].name) == name


@pytest.mark.parametrize(
    ("directive", "name", "qtype", "rdclass"),
    [
        ("", "version.bind.", "TXT", "CH"),  # no chaos plugin: refused
        ("chaos", "version.bind.", "A", "CH"),  # only TXT
        ("chaos", "other.bind.", "TXT", "CH"),  # not a chaos name
    ],
)
def test_chaos_others_go_on(directive: str, name: str, qtype: str, rdclass: str) -> None:
    with serve(f".:53 {{\n  {directive}\n  kubernetes cluster.local\n}}\n") as s:
        reply = s.ask(name, qtype, rdclass=rdclass)
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


# Our OPT advertises the payload we honour (RFC 6891 6.2.5), whatever the client's:
# bufsize's value, or 1232 without it. CoreDNS echoes min(client's, bufsize) instead.
@pytest.mark.parametrize(
    ("bufsize", "payload", "advertised"),
    [("bufsize 1100", 4096, 1100), ("bufsize", 4096, 1232), ("bufsize 1232", 800, 1232), ("", 4096, 1232)],
)
def test_bufsize_caps_the_advertised_payload(bufsize: str, payload: int, advertised: int) -> None:
    with serve(f".:53 {{\n  {bufsize}\n  kubernetes cluster.local\n}}\n") as s:
        first = s.ask("web.shop.svc.cluster.local.", use_edns=0, payload=payload)
        hit = s.ask("web.shop.svc.cluster.local.", use_edns=0, payload=payload)
    assert first.payload == hit.payload == advertised
    assert first.answer and hit.answer


def test_bufsize_limits_udp_answers_cluster_and_forwarded(upstream: Upstream) -> None:
    text = f".:53 {{\n  bufsize 512\n  kubernetes cluster.local\n  forward . {upstream.address}\n}}\n"
    with serve(text) as s:
        big = s.ask("big.example.com.", use_edns=0, payload=4096)  # 60 A records: ~1 KB
        over_tcp = s.ask("big.example.com.", use_edns=0, payload=4096, tcp=True)
    assert big.flags & dns.flags.TC and not big.answer
    assert len(over_tcp.answer[0]) == 60


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("bufsize 100", "Corefile:2: bufsize: want a number from 512 to 4096, got '100'"),
        ("bufsize 1232 4096", "Corefile:2: bufsize: want [SIZE], got '1232 4096'"),
        ("chaos {\n    version x\n  }", "Corefile:3: chaos: unknown option 'version'"),
    ],
)
def test_bad_directives(body: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(".:53 {\n  " + body + "\n}\n")
    assert str(info.value) == error
