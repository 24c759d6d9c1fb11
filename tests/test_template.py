"""The template plugin (CoreDNS plugin/template README), with the supported subset of Go
template fields, on a real server on loopback."""

from __future__ import annotations

import dns.flags
import dns.rcode
import pytest

from clusterdns.core.errors import ConfigError
from clusterdns.corefile.config import load

from .corefile_server import serve, texts

# OpenShift on-prem (baremetal/vSphere) node Corefile shape: *.apps answered by a template
OPENSHIFT_APPS = """\
    template IN A apps.ostest.test.metalkube.org {
        match .*.apps.ostest.test.metalkube.org
        answer "{{ .Name }} 60 in a 192.168.111.4"
        fallthrough
    }
    template IN AAAA apps.ostest.test.metalkube.org {
        match .*.apps.ostest.test.metalkube.org
        fallthrough
    }
"""

README_EXAMPLE = """\
    template IN ANY example {
        match "^(?P<a>[0-9]*)[.](?P<b>[0-9]*)[.](?P<c>[0-9]*)[.](?P<d>[0-9]*)[.]ip[.]example[.]$"
        answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN ANY example {
        rcode NXDOMAIN
        authority "example. 60 {{ .Class }} SOA ns.example. hostmaster.example. (1 60 60 60 60)"
    }
"""


@pytest.mark.parametrize(
    ("templates", "name", "qtype", "rcode", "answer", "authority"),
    [
        (OPENSHIFT_APPS, "console.apps.ostest.test.metalkube.org.", "A", "NOERROR",
         ["console.apps.ostest.test.metalkube.org. 60 IN A 192.168.111.4"], []),
        (OPENSHIFT_APPS, "console.apps.ostest.test.metalkube.org.", "AAAA", "NOERROR", [], []),
        # other types and names go on to the cluster
        (OPENSHIFT_APPS, "web.shop.svc.cluster.local.", "A", "NOERROR",
         ["web.shop.svc.cluster.local. 5 IN A 10.96.100.10"], []),
        (README_EXAMPLE, "10.1.2.3.ip.example.", "A", "NOERROR", ["10.1.2.3.ip.example. 60 IN A 10.1.2.3"], []),
        (README_EXAMPLE, "other.example.", "A", "NXDOMAIN", [],
         ["example. 60 IN SOA ns.example. hostmaster.example. 1 60 60 60 60"]),
        # index .Match, .Type, .Zone; no fallthrough and no match: SERVFAIL
        ('    template IN TXT corp {\n      match ^(\\w+)\\.corp\\.$\n'
         '      answer "{{ .Name }} 30 IN TXT \\"{{ index .Match 1 }} {{ .Type }} {{ .Zone }}\\""\n    }\n',
         "hello.corp.", "TXT", "NOERROR", ['hello.corp. 30 IN TXT "hello TXT corp."'], []),
        ('    template IN TXT corp {\n      match ^(\\w+)\\.corp\\.$\n    }\n',
         "a.b.corp.", "TXT", "SERVFAIL", [], []),
    ],
)
def test_template(
    templates: str, name: str, qtype: str, rcode: str, answer: list[str], authority: list[str]
) -> None:
    text = f".:53 {{\n{templates}    kubernetes cluster.local\n}}\n"
    with serve(text) as s:
        reply = s.ask(name, qtype)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert texts(reply) == answer
    assert texts(reply, "authority") == authority
    if rcode != "SERVFAIL":
        assert reply.flags & dns.flags.AA


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ('template IN A {\n    answer "{{ .Message.Id }} 60 IN A 1.2.3.4"\n  }',
         "Corefile:3: template: {{ .Message.Id }} is not supported by clusterdns (supported: "
         ".Name, .Zone, .Class, .Type, .Group.NAME, index .Match N)"),
        ("template IN A {\n    expr incidr(client_ip(), '10.0.0.0/8')\n  }",
         "Corefile:3: template: option 'expr' is not supported by clusterdns"),
        ("template IN BOGUS", "Corefile:2: template: want CLASS TYPE, got 'IN' 'BOGUS'"),
        ("template IN A {\n    rcode MAYBE\n  }", "Corefile:3: template: rcode: unknown rcode 'MAYBE'"),
    ],
)
def test_bad_templates(body: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(".:53 {\n  " + body + "\n}\n")
    assert str(info.value) == error
