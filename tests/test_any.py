"""any (CoreDNS plugin/any, RFC 8482): an ANY query gets one HINFO "RFC8482" "" with TTL
8482, over a real socket; other types are answered as without it."""

from __future__ import annotations

import dns.rdatatype
import pytest

from clusterdns.core.errors import ConfigError
from clusterdns.corefile.config import load
from tests.corefile_server import serve

COREFILE = """.:53 {
  any
  kubernetes cluster.local in-addr.arpa ip6.arpa
}
"""


@pytest.mark.parametrize("name", ["kubernetes.default.svc.cluster.local.", "nosuch.default.svc.cluster.local."])
def test_any_query_gets_one_hinfo(name: str) -> None:
    with serve(COREFILE) as s:
        reply = s.ask(name, "ANY")
        plain = s.ask("kubernetes.default.svc.cluster.local.", "A")
    assert reply.rcode() == 0
    assert [(r.name.to_text(), r.rdtype, r.ttl, r[0].to_text()) for r in reply.answer] == [
        (name, dns.rdatatype.HINFO, 8482, '"RFC8482" ""')
    ]
    assert [r[0].address for r in plain.answer] == ["10.96.0.1"]  # other types go on


def test_any_takes_no_arguments() -> None:
    with pytest.raises(ConfigError, match="Corefile:2: any: want no arguments"):
        load(". {\n  any x\n}\n")
