"""whoami (CoreDNS plugin/whoami), over real sockets: the additional section tells the
client its address and port; the answer section is empty; TTL 0; authoritative."""

from __future__ import annotations

import socket

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

from clusterdns.core.errors import ConfigError
from clusterdns.core.store import Store
from clusterdns.corefile.config import load
from clusterdns.plugins.chain import assemble
from tests.corefile_server import serve


@pytest.mark.parametrize("tcp", [False, True])
def test_whoami_tells_the_client_its_address_and_port(tcp: bool) -> None:
    with serve(". {\n  whoami\n}\n", zones=None) as s:
        port = s.ports[53]
        query = dns.message.make_query("Example.ORG.", "A")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            mine = sock.getsockname()[1]
            if tcp:
                sock.connect(("127.0.0.1", port))
                reply = dns.query.tcp(query, "127.0.0.1", port=port, sock=sock, timeout=5)
            else:
                reply = dns.query.udp(query, "127.0.0.1", port=port, sock=sock, timeout=5)
    assert reply.rcode() == 0 and reply.flags & dns.flags.AA
    assert reply.answer == []
    assert reply.question[0].name.to_text() == "Example.ORG."  # the client's case
    records = {(r.name.to_text().lower(), r.rdtype): r for r in reply.additional}
    a = records[("example.org.", dns.rdatatype.A)]
    assert a.ttl == 0 and [x.address for x in a] == ["127.0.0.1"]
    proto = "_tcp" if tcp else "_udp"
    srv = records[(f"{proto}.example.org.", dns.rdatatype.SRV)]
    assert srv.ttl == 0
    assert [(x.priority, x.weight, x.port, x.target.to_text()) for x in srv] == [(0, 0, mine, ".")]


def test_whoami_root_name_and_ipv6_client() -> None:
    """For ``.`` the SRV owner is ``_udp.``; an IPv6 client gets an AAAA (CoreDNS
    whoami.go)."""
    handler = assemble(Store(), (".",), {"whoami": True})
    wire = dns.message.make_query(".", "NS").to_wire()
    reply = handler.handle(wire, False, "2", "fd00::7", 5353)
    assert isinstance(reply, bytes)
    got = {(r.name.to_text(), r.rdtype, r[0].to_text()) for r in dns.message.from_wire(reply).additional}
    assert got == {(".", dns.rdatatype.AAAA, "fd00::7"), ("_udp.", dns.rdatatype.SRV, "0 0 5353 .")}


def test_whoami_takes_no_arguments() -> None:
    with pytest.raises(ConfigError, match="Corefile:2: whoami: want no arguments"):
        load(". {\n  whoami extra\n}\n")
