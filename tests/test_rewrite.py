"""The rewrite plugin (CoreDNS plugin/rewrite README): the rewritten question goes through
the rest of the chain (kubernetes, forward); the client sees its own question, and with
``answer auto``/``answer name``/``exact`` its own name in the answers."""

from __future__ import annotations

from collections.abc import Iterator

import dns.rcode
import pytest

from clusterdns.core.errors import ConfigError
from clusterdns.corefile.config import load

from .corefile_server import serve, texts
from .upstream import Upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


def corefile(rules: str, upstream: Upstream) -> str:
    return f""".:53 {{
    {rules}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        fallthrough in-addr.arpa ip6.arpa
    }}
    forward . {upstream.address}
}}
"""


WEB = "10.96.100.10"

CASES = [
    # exact: answers always rewritten back
    ("rewrite name web.corp.example web.shop.svc.cluster.local",
     "web.corp.example.", "A", "NOERROR", [f"web.corp.example. 5 IN A {WEB}"]),
    ("rewrite name exact web.corp.example web.shop.svc.cluster.local",
     "WEB.corp.example.", "A", "NOERROR", [f"web.corp.example. 5 IN A {WEB}"]),  # lower, as CoreDNS
    # suffix with answer auto: the suffix goes back
    ("rewrite name suffix .corp.example .shop.svc.cluster.local answer auto",
     "web.corp.example.", "A", "NOERROR", [f"web.corp.example. 5 IN A {WEB}"]),
    # suffix without answer rules: the answer shows the name that answered
    ("rewrite name suffix .corp.example .shop.svc.cluster.local",
     "web.corp.example.", "A", "NOERROR", [f"web.shop.svc.cluster.local. 5 IN A {WEB}"]),
    # prefix, substring
    ("rewrite name prefix staging-web web answer auto",
     "staging-web.shop.svc.cluster.local.", "A", "NOERROR",
     [f"staging-web.shop.svc.cluster.local. 5 IN A {WEB}"]),
    ("rewrite name substring .shop-legacy. .shop. answer auto",
     "web.shop-legacy.svc.cluster.local.", "A", "NOERROR",
     [f"web.shop-legacy.svc.cluster.local. 5 IN A {WEB}"]),
    # regex with groups and an explicit answer name rule (the README's shape)
    ("rewrite stop {\n      name regex (.*)-(shop)\\.corp\\.example {1}.{2}.svc.cluster.local\n"
     "      answer name (.*)\\.(shop)\\.svc\\.cluster\\.local {1}-{2}.corp.example\n    }",
     "web-shop.corp.example.", "A", "NOERROR", [f"web-shop.corp.example. 5 IN A {WEB}"]),
    # Gardener-style search-path fix: a doubled cluster suffix is cut back
    ("rewrite stop {\n      name regex (.*)\\.svc\\.cluster\\.local\\.svc\\.cluster\\.local {1}.svc.cluster.local\n"
     "      answer auto\n    }",
     "web.shop.svc.cluster.local.svc.cluster.local.", "A", "NOERROR",
     [f"web.shop.svc.cluster.local.svc.cluster.local. 5 IN A {WEB}"]),
    # the rewritten name goes on to forward, and answer values are rewritten too (CNAME)
    ("rewrite name exact site.corp.example alias.example.com",
     "site.corp.example.", "A", "NOERROR",
     ["site.corp.example. 300 IN CNAME www.example.com.",
      "www.example.com. 300 IN A 93.184.216.34"]),
    # a non-matching name is untouched
    ("rewrite name exact other.example web.shop.svc.cluster.local",
     "web.shop.svc.cluster.local.", "A", "NOERROR", [f"web.shop.svc.cluster.local. 5 IN A {WEB}"]),
    # type and class
    ("rewrite type AAAA A", "web.shop.svc.cluster.local.", "AAAA", "NOERROR",
     [f"web.shop.svc.cluster.local. 5 IN A {WEB}"]),
    # continue: both rules apply in order
    ("rewrite continue name suffix .corp.example .shop.svc.cluster.local answer auto\n"
     "    rewrite name prefix www. web. answer auto",
     "www.corp.example.", "A", "NOERROR", [f"www.corp.example. 5 IN A {WEB}"]),
    # stop: the second rule is not reached
    ("rewrite stop name suffix .corp.example .shop.svc.cluster.local answer auto\n"
     "    rewrite name prefix www. web. answer auto",
     "www.corp.example.", "A", "NXDOMAIN", []),
]


@pytest.mark.parametrize(("rules", "name", "qtype", "rcode", "answer"), CASES)
def test_rewrite(
    upstream: Upstream, rules: str, name: str, qtype: str, rcode: str, answer: list[str]
) -> None:
    with serve(corefile(rules, upstream)) as s:
        reply = s.ask(name, qtype)
        again = s.ask(name, qtype)  # nothing cached under the wrong key
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert texts(reply) == answer
    assert str(reply.question[0].name) == name and texts(again) == answer


def test_class_rewrite_reaches_the_cluster(upstream: Upstream) -> None:
    with serve(corefile("rewrite class CH IN", upstream)) as s:
        reply = s.ask("web.shop.svc.cluster.local.", rdclass="CH")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.question[0].rdclass == 3  # the client's class comes back
    assert [rr.to_text() for rrset in reply.answer for rr in rrset] == [WEB]


def test_invalid_rewritten_name_is_servfail(upstream: Upstream) -> None:
    rules = "rewrite name regex (.*)\\.corp\\.example {1}{1}{1}{1}{1}.example"
    with serve(corefile(rules, upstream)) as s:
        reply = s.ask("a" * 60 + ".corp.example.")
    assert reply.rcode() == dns.rcode.SERVFAIL


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("rewrite ttl example.com 30", "Corefile:2: rewrite: field 'ttl' is not supported by clusterdns"),
        ("rewrite name fuzzy a b", "Corefile:2: rewrite: name: want exact|prefix|suffix|substring|regex, got 'fuzzy'"),
        ("rewrite name regex ([ b", "Corefile:2: rewrite: bad regex '([': unterminated character set at position 1"),
        ("rewrite type AAAA BOGUS", "Corefile:2: rewrite: type: unknown type 'BOGUS'"),
        ("rewrite name regex a b answer name x", "Corefile:2: rewrite: answer name: want FROM TO"),
        ("rewrite name regex a b answer auto answer name x y",
         "Corefile:2: rewrite: auto name answer rule cannot be combined with explicit name answer rules"),
        ("rewrite name a", "Corefile:2: rewrite: name: too few arguments for a name rule"),
    ],
)
def test_bad_rewrite_rules(rule: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(".:53 {\n  " + rule + "\n}\n")
    assert str(info.value) == error
