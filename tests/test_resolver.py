"""Resolver tests: the pure resolver on stores built from real manifests, written like zone
files. Each table names the docs/behaviour.md section or the CoreDNS test case (D01, P-I03, R11 ...)
it pins; CoreDNS's cases run with CoreDNS's own settings (TTL 5, pods disabled)."""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.message
import pytest

from clusterdns.core.records import Endpoint, EndpointSlice, Namespace, Port, Service, ServiceKind
from clusterdns.core.resolver import PodMode, ZoneConfig, resolve
from clusterdns.core.rr import QTYPE_VALUES, RCODE_NAMES, RR, QType, Rcode, SOAData, SRVData
from clusterdns.core.store import Store
from tests.handlers import make_handler

from .conftest import MANIFESTS, NOW, ZONES, load_store

SERIAL = int(NOW)


def soa(zone: str = "cluster.local.", ttl: int = 5) -> str:
    """The zone SOA as text (docs/behaviour.md 8): own TTL min(ttl, 300), minimum = ttl."""
    return (
        f"{zone} {min(ttl, 300)} IN SOA ns.dns.{zone} hostmaster.{zone} "
        f"{SERIAL} 7200 1800 86400 {ttl}"
    )


def text(rr: RR) -> str:
    """One record in zone-file form with single spaces."""
    data = rr.rdata
    if isinstance(data, SRVData | SOAData):
        rdata = " ".join(str(x) for x in data)
    elif isinstance(data, tuple):
        rdata = " ".join(f'"{s}"' for s in data)
    else:
        rdata = data
    rtype = next(name for name, value in QTYPE_VALUES.items() if value == rr.rtype)
    return f"{rr.name} {rr.ttl} IN {rtype} {rdata}"


@dataclass
class Case:
    """A question and the whole expected answer. ``ns=None`` means: the zone SOA when the
    answer is negative (NXDOMAIN, or NOERROR with no answer), nothing otherwise."""

    qname: str
    qtype: str
    rcode: str
    answer: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    ns: list[str] | None = None
    zone: str = "cluster.local."

    def __str__(self) -> str:
        return f"{self.qname} {self.qtype}"


def check(store: Store, case: Case, config: ZoneConfig) -> None:
    qtype = QTYPE_VALUES.get(case.qtype) or int(case.qtype.removeprefix("TYPE"))
    got = resolve(store, case.qname, qtype, config)
    assert got is not None, "not in any zone"
    assert RCODE_NAMES[got.rcode] == case.rcode
    ns = case.ns
    if ns is None:
        negative = got.rcode == Rcode.NXDOMAIN or not case.answer
        ns = [soa(case.zone, config.ttl)] if negative and got.rcode != Rcode.SERVFAIL else []
    assert sorted(map(text, got.answer)) == sorted(case.answer)
    assert sorted(map(text, got.authority)) == sorted(ns)
    assert sorted(map(text, got.additional)) == sorted(case.extra)


def a(name: str, *ips: str, ttl: int = 5) -> list[str]:
    return [f"{name} {ttl} IN {'AAAA' if ':' in ip else 'A'} {ip}" for ip in ips]


def srv(name: str, weight: int, port: int, *targets: str, ttl: int = 5) -> list[str]:
    return [f"{name} {ttl} IN SRV 0 {weight} {port} {t}" for t in targets]


S = "testns.svc.cluster.local."
H = "hdls1." + S

# CoreDNS handler_test.go dnsTestCases (zone cluster.local, TTL 5, pods disabled).
COREDNS_CASES = [
    Case("svc1." + S, "A", "NOERROR", a("svc1." + S, "10.0.0.1")),  # D01
    Case("svcempty." + S, "A", "NOERROR", a("svcempty." + S, "10.0.0.1")),  # D02
    Case("svc1." + S, "SRV", "NOERROR", srv("svc1." + S, 100, 80, "svc1." + S),
         a("svc1." + S, "10.0.0.1")),  # D03
    Case("svc6." + S, "SRV", "NOERROR", srv("svc6." + S, 100, 80, "svc6." + S),
         a("svc6." + S, "1234:abcd::1")),  # D05
    Case("_http._tcp.svc1." + S, "SRV", "NOERROR",
         srv("_http._tcp.svc1." + S, 100, 80, "svc1." + S), a("svc1." + S, "10.0.0.1")),  # D06
    Case("_http._tcp.svcempty." + S, "SRV", "NOERROR",
         srv("_http._tcp.svcempty." + S, 100, 80, "svcempty." + S),
         a("svcempty." + S, "10.0.0.1")),  # D07
    Case(H, "A", "NOERROR", a(H, "172.0.0.2", "172.0.0.3", "172.0.0.4", "172.0.0.5")),  # D08
    Case("hdlsprtls." + S, "A", "NOERROR", a("hdlsprtls." + S, "172.0.0.20")),  # D09
    Case("172-0-0-20.hdlsprtls." + S, "A", "NOERROR",
         a("172-0-0-20.hdlsprtls." + S, "172.0.0.20")),  # D10
    Case("172-0-0-2." + H, "A", "NOERROR", a("172-0-0-2." + H, "172.0.0.2")),  # D11
    Case("dup-name." + H, "A", "NOERROR", a("dup-name." + H, "172.0.0.4", "172.0.0.5")),  # D13
    Case("_http._tcp." + H, "SRV", "NOERROR",
         srv("_http._tcp." + H, 16, 80, *(f"{n}.{H}" for n in (
             "172-0-0-2", "172-0-0-3", "5678-abcd--1", "5678-abcd--2", "dup-name"))),
         a("172-0-0-2." + H, "172.0.0.2") + a("172-0-0-3." + H, "172.0.0.3")
         + a("5678-abcd--1." + H, "5678:abcd::1") + a("5678-abcd--2." + H, "5678:abcd::2")
         + a("dup-name." + H, "172.0.0.4", "172.0.0.5")),  # D14
    Case("5678-abcd--2." + H, "AAAA", "NOERROR", a("5678-abcd--2." + H, "5678:abcd::2")),  # D16
    Case("external." + S, "CNAME", "NOERROR",
         [f"external.{S} 5 IN CNAME ext.interwebs.test."]),  # D17
    Case("external-to-service." + S, "A", "NOERROR",
         [f"external-to-service.{S} 5 IN CNAME svc1.{S}"] + a("svc1." + S, "10.0.0.1")),  # D19
    Case("svc1." + S, "AAAA", "NOERROR"),  # D20
    Case("svc0." + S, "AAAA", "NXDOMAIN"),  # D21
    Case("svc0." + S, "A", "NXDOMAIN"),  # D22
    Case("svc0.svc-nons.svc.cluster.local.", "A", "NXDOMAIN"),  # D23
    Case("dns-version.cluster.local.", "TXT", "NOERROR",
         ['dns-version.cluster.local. 28800 IN TXT "1.1.0"']),  # D24
    Case("svc1." + S, "TXT", "NOERROR"),  # D25
    Case("svc0.svc-nons.svc.cluster.local.", "TXT", "NXDOMAIN"),  # D26
    Case("bogusendpoint." + H, "A", "NXDOMAIN"),  # D27
    Case("bogusendpoint.svc0." + S, "A", "NXDOMAIN"),  # D28
    Case("svc6." + S, "AAAA", "NOERROR", a("svc6." + S, "1234:abcd::1")),  # D29
    Case("_http._tcp.svc6." + S, "SRV", "NOERROR",
         srv("_http._tcp.svc6." + S, 100, 80, "svc6." + S), a("svc6." + S, "1234:abcd::1")),  # D30
    Case(H, "AAAA", "NOERROR", a(H, "5678:abcd::1", "5678:abcd::2")),  # D31
    Case("svc.cluster.local.", "A", "NOERROR"),  # D33
    Case("pod.cluster.local.", "A", "NOERROR"),  # D34
    Case(S, "A", "NOERROR"),  # D35
    Case("svc.cluster.local.", "NS", "NOERROR"),  # D36
    Case(S, "NS", "NOERROR"),  # D37
    Case("foo.cluster.local.", "NS", "NXDOMAIN"),  # D38
    Case("foo.svc.cluster.local.", "NS", "NXDOMAIN"),  # D39
    Case("svc-dual-stack." + S, "A", "NOERROR", a("svc-dual-stack." + S, "10.0.0.3")),  # D40
    Case("svc-dual-stack." + S, "AAAA", "NOERROR", a("svc-dual-stack." + S, "10::3")),  # D41
    Case("svc-dual-stack." + S, "SRV", "NOERROR",
         srv("svc-dual-stack." + S, 50, 80, "svc-dual-stack." + S),
         a("svc-dual-stack." + S, "10.0.0.3", "10::3")),  # D42
    Case("svc1." + S, "SOA", "NOERROR"),  # D43
    Case("endpoint.external." + S, "CNAME", "NXDOMAIN"),  # D44
    Case("subdomain.subdomain.external." + S, "CNAME", "NXDOMAIN"),  # D45
    # kubernetes_apex_test.go (our own address injected as 127.0.0.1, as the test does)
    Case("cluster.local.", "SOA", "NOERROR", [soa()]),  # A01
    Case("cluster.local.", "HINFO", "NOERROR"),  # A02
    Case("cluster.local.", "NS", "NOERROR", ["cluster.local. 5 IN NS ns.dns.cluster.local."],
         a("ns.dns.cluster.local.", "127.0.0.1")),  # A03
    Case("cluster.local.", "A", "NOERROR"),  # A04
    Case("cluster.local.", "AAAA", "NOERROR"),  # A05
    Case("cluster.local.", "SRV", "NOERROR"),  # A06
    # handler_pod_disabled_test.go
    Case("10-240-0-1.podns.pod.cluster.local.", "A", "NXDOMAIN"),  # P-D01
    Case("172-0-0-2.podns.pod.cluster.local.", "A", "NXDOMAIN"),  # P-D02
]

COREDNS_CONFIG = ZoneConfig(
    zones=("cluster.local.",), ttl=5, pods=PodMode.DISABLED, ns_addresses=("127.0.0.1",)
)


@pytest.mark.parametrize("case", COREDNS_CASES, ids=str)
def test_coredns_handler_cases(coredns_store: Store, case: Case) -> None:
    check(coredns_store, case, COREDNS_CONFIG)


P = "podns.pod.cluster.local."
POD_CASES = {
    PodMode.INSECURE: [
        Case("10-240-0-1." + P, "A", "NOERROR", a("10-240-0-1." + P, "10.240.0.1")),  # P-I01
        Case("172-0-0-2." + P, "A", "NOERROR", a("172-0-0-2." + P, "172.0.0.2")),  # P-I02
        Case("blah." + P, "A", "NXDOMAIN"),  # P-I03
        Case("blah." + P, "AAAA", "NXDOMAIN"),  # P-I04
        Case("blah." + P, "HINFO", "NXDOMAIN"),  # P-I05
        Case("blah.pod-nons.pod.cluster.local.", "A", "NXDOMAIN"),  # P-I06
        Case(P, "A", "NOERROR"),  # P-I07
        # docs/behaviour.md 5: IPv6 labels, family must match the qtype, too many labels.
        Case("fd00-10-240--5." + P, "AAAA", "NOERROR", a("fd00-10-240--5." + P, "fd00:10:240::5")),
        Case("10-240-0-1." + P, "AAAA", "NOERROR"),
        Case("fd00-10-240--5." + P, "A", "NOERROR"),
        Case("10-240-0-1." + P, "TXT", "NOERROR"),
        Case("x.10-240-0-1." + P, "A", "NXDOMAIN"),
        Case("10-240-0-256." + P, "A", "NXDOMAIN"),
        Case("010-240-0-1." + P, "A", "NXDOMAIN"),
    ],
    PodMode.VERIFIED: [
        Case("10-240-0-1." + P, "A", "NOERROR", a("10-240-0-1." + P, "10.240.0.1")),  # P-V01
        Case(P, "A", "NOERROR"),  # P-V02
        Case("svcns.svc.cluster.local.", "A", "NOERROR"),  # P-V03
        Case("pod-nons.pod.cluster.local.", "A", "NXDOMAIN"),  # P-V04
        Case("172-0-0-2." + P, "A", "NXDOMAIN"),  # P-V05
        # the pod is in podns, not testns: verified means "in that namespace"
        Case("10-240-0-1.testns.pod.cluster.local.", "A", "NXDOMAIN"),
    ],
    PodMode.DISABLED: [
        Case(P, "A", "NXDOMAIN"),  # docs/behaviour.md 5 table
        Case("blah." + P, "A", "NXDOMAIN"),
        Case("pod.cluster.local.", "A", "NOERROR"),
    ],
}


@pytest.mark.parametrize(
    ("mode", "case"), [(m, c) for m, cases in POD_CASES.items() for c in cases], ids=str
)
def test_pod_modes(coredns_store: Store, mode: PodMode, case: Case) -> None:
    check(coredns_store, case, ZoneConfig(zones=("cluster.local.",), ttl=5, pods=mode))


def test_verified_ignores_pods_being_deleted() -> None:
    from clusterdns.core.records import Pod

    store = Store()
    store.add_source("t", synced=True)
    store.upsert("t", Namespace("podns"), NOW)
    store.upsert("t", Pod("podns", "foo", ("10.240.0.1",), deleting=True), NOW)
    config = ZoneConfig(zones=("cluster.local.",), ttl=5, pods=PodMode.VERIFIED)
    check(store, Case("10-240-0-1." + P, "A", "NXDOMAIN"), config)
    store.upsert("t", Pod("podns", "foo", ("10.240.0.1", "fd00::1")), NOW)
    check(store, Case("fd00--1." + P, "AAAA", "NOERROR", a("fd00--1." + P, "fd00::1")), config)


# handler_case_test.go and SPEC 12: names match case-insensitively. The pure resolver takes
# lower-cased names (the wire layer folds them), so the rule is pinned where a client's
# mixed-case name enters: the handler, each name on a fresh handler (no cached lower-case
# answer to fall back on), against the resolver's answer for the lower-cased name.
MIXED_CASE = [
    ("SVC1.TestNS.svc.Cluster.LOCAL.", "A"),
    ("_HTTP._Tcp.svc1.TESTNS.svc.cluster.local.", "SRV"),
    ("Hdls1.testns.SVC.cluster.local.", "A"),
    ("1-2-3-4.TestNS.Pod.cluster.local.", "A"),
    ("1.0.0.10.IN-ADDR.arpa.", "PTR"),
    ("NoSuch.TestNS.svc.cluster.local.", "A"),
]


@pytest.mark.parametrize(("qname", "qtype"), MIXED_CASE)
def test_mixed_case_names_answer_as_lower_case(
    coredns_store: Store, qname: str, qtype: str
) -> None:
    config = ZoneConfig(zones=("cluster.local.", "in-addr.arpa."), ttl=5, pods=PodMode.INSECURE)
    want = resolve(coredns_store, qname.lower(), QTYPE_VALUES[qtype], config)
    wire = make_handler(coredns_store, config).handle(
        dns.message.make_query(qname, qtype).to_wire(), False
    )
    assert wire is not None
    got = dns.message.from_wire(wire)
    assert got.rcode() == want.rcode
    assert sorted(rd.to_text().lower() for rrset in got.answer for rd in rrset) == sorted(
        _rdata_text(rr) for rr in want.answer
    )
    assert all(rrset.name.to_text() == qname for rrset in got.answer if rrset.rdtype != 5)
    assert want.answer or want.rcode == Rcode.NXDOMAIN  # each name tests something


def _rdata_text(rr: RR) -> str:
    data = rr.rdata
    if isinstance(data, SRVData):
        return f"{data.priority} {data.weight} {data.port} {data.target}"
    return str(data)


# docs/behaviour.md rules with the kubeadm configuration (TTL 30, pods insecure, reverse zones).
KUBEADM = ZoneConfig(ttl=30)
SPEC_CASES = [
    # 2.2 unnamed ports have no SRV; wrong protocol or unknown port name is NXDOMAIN
    Case("_dns._tcp.kubedns.kube-system.svc.cluster.local.", "SRV", "NXDOMAIN"),
    Case("_dns._udp.kube-dns.kube-system.svc.cluster.local.", "SRV", "NOERROR",
         srv("_dns._udp.kube-dns.kube-system.svc.cluster.local.", 100, 53,
             "kube-dns.kube-system.svc.cluster.local.", ttl=30),
         a("kube-dns.kube-system.svc.cluster.local.", "10.0.0.11", ttl=30)),
    # 2.2 protocol and port labels match case-insensitively; underscores are optional
    Case("http.tcp.svc1." + S, "SRV", "NOERROR", srv("http.tcp.svc1." + S, 100, 80, "svc1." + S,
         ttl=30), a("svc1." + S, "10.0.0.1", ttl=30)),
    Case("_http._udp.svc1." + S, "SRV", "NXDOMAIN"),
    Case("_nope._tcp.svc1." + S, "SRV", "NXDOMAIN"),
    # 2.2 SRV on the bare name: every port, identical (target, port) collapsed
    Case("kube-dns.kube-system.svc.cluster.local.", "SRV", "NOERROR",
         srv("kube-dns.kube-system.svc.cluster.local.", 33, 53,
             "kube-dns.kube-system.svc.cluster.local.", ttl=30)
         + srv("kube-dns.kube-system.svc.cluster.local.", 33, 9153,
               "kube-dns.kube-system.svc.cluster.local.", ttl=30),
         a("kube-dns.kube-system.svc.cluster.local.", "10.0.0.11", ttl=30)),
    # 2.2 A asked at an SRV name answers the service address (CoreDNS); never NXDOMAIN
    Case("_http._tcp.svc1." + S, "A", "NOERROR", a("_http._tcp.svc1." + S, "10.0.0.1", ttl=30)),
    Case("_http._tcp.svc1." + S, "TXT", "NOERROR"),
    # 2.3 endpoint names under a ClusterIP service
    Case("ep1a.svc1." + S, "A", "NOERROR", a("ep1a.svc1." + S, "172.0.0.1", ttl=30)),
    Case("ep1a.svc1." + S, "AAAA", "NOERROR"),
    Case("ep1b.svc1." + S, "A", "NXDOMAIN"),
    # 3.2 headless: not-ready (.6) and terminating (.7) endpoints are not served
    Case("172-0-0-6." + H, "A", "NXDOMAIN"),
    Case("172-0-0-7." + H, "A", "NXDOMAIN"),
    Case("hdlsempty." + S, "A", "NXDOMAIN"),
    Case("hdlsempty." + S, "AAAA", "NXDOMAIN"),
    Case("hdlsempty." + S, "SRV", "NXDOMAIN"),
    Case("_http._tcp.hdlsempty." + S, "SRV", "NXDOMAIN"),
    Case("hdls-pnra." + S, "A", "NOERROR", a("hdls-pnra." + S, "172.0.1.1", "172.0.1.2", ttl=30)),
    Case("web-1.hdls-pnra." + S, "A", "NOERROR", a("web-1.hdls-pnra." + S, "172.0.1.2", ttl=30)),
    # 3.2 a family with no addresses while the other has some is NODATA
    Case("hdlsprtls." + S, "AAAA", "NOERROR"),
    # 3.4 portless headless: A exists, SRV is NODATA, a named port is NXDOMAIN
    Case("hdlsprtls." + S, "SRV", "NOERROR"),
    Case("_http._tcp.hdlsprtls." + S, "SRV", "NXDOMAIN"),
    # 3.5 / 1: too many labels
    Case("a.b.c.svc1." + S, "A", "NXDOMAIN"),
    Case("kubernetes.default.svc.cluster.local.default.svc.cluster.local.", "A", "NXDOMAIN"),
    # 4 ExternalName: CNAME for every type (RFC 1034 3.6.2), trailing dot not doubled
    Case("external-to-service." + S, "CNAME", "NOERROR",
         [f"external-to-service.{S} 30 IN CNAME svc1.{S}"]),
    Case("external." + S, "A", "NOERROR", [f"external.{S} 30 IN CNAME ext.interwebs.test."]),
    Case("external." + S, "TXT", "NOERROR", [f"external.{S} 30 IN CNAME ext.interwebs.test."]),
    Case("external." + S, "SRV", "NOERROR", [f"external.{S} 30 IN CNAME ext.interwebs.test."]),
    Case("_http._tcp.external." + S, "SRV", "NXDOMAIN"),
    # 4 in-zone target without data of the type: the CNAME stays, the target's rcode + SOA
    Case("external-to-service." + S, "AAAA", "NOERROR",
         [f"external-to-service.{S} 30 IN CNAME svc1.{S}"], ns=[soa(ttl=30)]),
    # 6 PTR: ClusterIP wins and gives one record; endpoints of any service otherwise
    Case("1.0.0.10.in-addr.arpa.", "PTR", "NOERROR",
         ["1.0.0.10.in-addr.arpa. 30 IN PTR svc1.testns.svc.cluster.local."]),
    Case("3.0.0.10.in-addr.arpa.", "PTR", "NOERROR",
         ["3.0.0.10.in-addr.arpa. 30 IN PTR svc-dual-stack.testns.svc.cluster.local."]),
    Case("3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.ip6.arpa.", "PTR",
         "NOERROR", ["3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.ip6.arpa. "
                     "30 IN PTR svc-dual-stack.testns.svc.cluster.local."]),
    Case("2.0.0.172.in-addr.arpa.", "PTR", "NOERROR",
         ["2.0.0.172.in-addr.arpa. 30 IN PTR 172-0-0-2.hdls1.testns.svc.cluster.local."]),
    Case("1.0.0.172.in-addr.arpa.", "PTR", "NOERROR",
         ["1.0.0.172.in-addr.arpa. 30 IN PTR ep1a.svc1.testns.svc.cluster.local."]),
    Case("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.8.7.6.5.ip6.arpa.", "PTR",
         "NOERROR", ["2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.8.7.6.5.ip6.arpa. "
                     "30 IN PTR 5678-abcd--2.hdls1.testns.svc.cluster.local."]),
    # 6 not-ready endpoints and plain pod IPs have no PTR
    Case("6.0.0.172.in-addr.arpa.", "PTR", "NXDOMAIN", zone="in-addr.arpa."),
    Case("1.0.240.10.in-addr.arpa.", "PTR", "NXDOMAIN", zone="in-addr.arpa."),
    Case("0.10.in-addr.arpa.", "PTR", "NXDOMAIN", zone="in-addr.arpa."),
    Case("1.0.0.10.in-addr.arpa.", "A", "NOERROR", zone="in-addr.arpa."),
    Case("in-addr.arpa.", "SOA", "NOERROR", [soa("in-addr.arpa.", 30)], zone="in-addr.arpa."),
    Case("1.0.0.10.in-addr.arpa.", "PTR", "NOERROR",
         ["1.0.0.10.in-addr.arpa. 30 IN PTR svc1.testns.svc.cluster.local."]),
    # 7 dns-version: NODATA for other types (DIFFERS from CoreDNS, RFC 2308)
    Case("dns-version.cluster.local.", "A", "NOERROR"),
    Case("x.dns-version.cluster.local.", "TXT", "NXDOMAIN"),
    # 8 NS target and ns.dns: no own address known -> no NS; ns.dns exists
    Case("cluster.local.", "NS", "NOERROR"),
    Case("ns.dns.cluster.local.", "A", "NOERROR"),
    Case("dns.cluster.local.", "A", "NOERROR"),
    Case("x.dns.cluster.local.", "A", "NXDOMAIN"),
    # 9 NXDOMAIN vs NODATA for other types on existing names
    Case("svc1." + S, "MX", "NOERROR"),
    Case("svc1." + S, "CNAME", "NOERROR"),
    Case("svc1." + S, "PTR", "NOERROR"),
    Case("svc1." + S, "NS", "NOERROR"),
    Case("svc1." + S, "ANY", "NOERROR"),
    Case("svc1." + S, "HINFO", "NOERROR"),
    Case(H, "TXT", "NOERROR"),
    Case("unexposedns.svc.cluster.local.", "A", "NOERROR"),
    Case("nsnoexist.svc.cluster.local.", "A", "NXDOMAIN"),
    Case("foo.cluster.local.", "A", "NXDOMAIN"),
    Case("svc1.testns.foo.cluster.local.", "A", "NXDOMAIN"),
    # 10 no wildcards
    Case("*." + S, "A", "NXDOMAIN"),
    Case("any." + S, "A", "NXDOMAIN"),
    Case("svc1.*.svc.cluster.local.", "A", "NXDOMAIN"),
    Case("_http._tcp.*." + S, "SRV", "NXDOMAIN"),
    Case("*.svc1." + S, "A", "NXDOMAIN"),
]


@pytest.mark.parametrize("case", SPEC_CASES, ids=str)
def test_spec_rules_with_kubeadm_config(coredns_store: Store, case: Case) -> None:
    check(coredns_store, case, KUBEADM)


@pytest.fixture(scope="module")
def reverse_store() -> Store:
    return load_store(MANIFESTS / "coredns-reverse.yaml")


SIX = "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa."
SIX2 = "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.0.0.7.7.0.0.0.0.d.f.ip6.arpa."
REVERSE_CONFIG = ZoneConfig(
    zones=("cluster.local.", "0.10.in-addr.arpa.", "168.192.in-addr.arpa.",
           "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa.",
           "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.0.0.7.7.0.0.0.0.d.f.ip6.arpa."),
    ttl=5,
)
REVERSE_CASES = [
    Case("100.0.0.10.in-addr.arpa.", "PTR", "NOERROR",
         ["100.0.0.10.in-addr.arpa. 5 IN PTR ep1a.svc1.testns.svc.cluster.local."]),  # R01
    Case("100.1.168.192.in-addr.arpa.", "PTR", "NOERROR",
         ["100.1.168.192.in-addr.arpa. 5 IN PTR svc1.testns.svc.cluster.local."]),  # R02
    Case("1.0.0.0." + SIX, "PTR", "NOERROR",
         [f"1.0.0.0.{SIX} 5 IN PTR ep1b.svc1.testns.svc.cluster.local."]),  # R03
    Case("a." + SIX2, "PTR", "NOERROR",
         [f"a.{SIX2} 5 IN PTR ip6svc1ex.svc1.testns.svc.cluster.local."]),  # R04
    Case("6.a.b.9.2." + SIX2[8:], "PTR", "NOERROR",
         [f"6.a.b.9.2.{SIX2[8:]} 5 IN PTR ip6svc1in.svc1.testns.svc.cluster.local."]),  # R05
    Case("101.0.0.10.in-addr.arpa.", "PTR", "NXDOMAIN", zone="0.10.in-addr.arpa."),  # R06
    Case("example.org.cluster.local.", "PTR", "NXDOMAIN"),  # R07
    Case("svc1.testns.svc.cluster.local.", "PTR", "NOERROR"),  # R08
    Case("svc1.testns.svc.0.10.in-addr.arpa.", "A", "NXDOMAIN", zone="0.10.in-addr.arpa."),  # R09
    Case("100.0.0.10.cluster.local.", "PTR", "NXDOMAIN"),  # R10
    Case("99.0.0.10.in-addr.arpa.", "PTR", "NOERROR",
         ["99.0.0.10.in-addr.arpa. 5 IN PTR double-ep.svc1.testns.svc.cluster.local.",
          "99.0.0.10.in-addr.arpa. 5 IN PTR double-ep.svc2.testns.svc.cluster.local."]),  # R11
    Case("50.0.0.10.in-addr.arpa.", "PTR", "NOERROR",
         ["50.0.0.10.in-addr.arpa. 5 IN PTR 10-0-0-50.svcb.testns.svc.cluster.local.",
          "50.0.0.10.in-addr.arpa. 5 IN PTR pod-0.svca.testns.svc.cluster.local."]),  # R12
]


@pytest.mark.parametrize("case", REVERSE_CASES, ids=str)
def test_coredns_reverse_cases(reverse_store: Store, case: Case) -> None:
    check(reverse_store, case, REVERSE_CONFIG)


def test_ns_records_name_the_dns_service_in_a_cluster() -> None:
    # ns_test.go NS01: our address is an endpoint of a ClusterIP, a headless and an IPv6
    # service: one NS each, glue from the ClusterIP or, headless, the endpoint itself.
    store = load_store(MANIFESTS / "coredns-ns.yaml")
    z = "kube-system.svc.cluster.local."
    config = ZoneConfig(zones=("cluster.local.",), ttl=5, ns_addresses=("10.244.0.20",))
    check(store, Case("cluster.local.", "NS", "NOERROR",
                      [f"cluster.local. 5 IN NS {t}" for t in (
                          "dns-service." + z, "10-244-0-20.hdls-dns-service." + z,
                          "dns6-service." + z)],
                      a("dns-service." + z, "10.0.0.111") + a(
                          "10-244-0-20.hdls-dns-service." + z, "10.244.0.20")
                      + a("dns6-service." + z, "10::111")), config)


def test_endpoint_pod_names_option(coredns_store: Store) -> None:
    config = ZoneConfig(ttl=30, endpoint_pod_names=True)
    # hdls-pnra endpoints have hostnames: those win over the pod name
    check(coredns_store, Case("web-0.hdls-pnra." + S, "A", "NOERROR",
                              a("web-0.hdls-pnra." + S, "172.0.1.1", ttl=30)), config)


def _store(*records: object) -> Store:
    store = Store()
    store.add_source("t", synced=True)
    for record in records:
        store.upsert("t", record, NOW)  # type: ignore[arg-type]
    return store


def test_endpoint_pod_names_uses_target_ref_when_no_hostname() -> None:
    port = (Port("http", "tcp", 80),)
    store = _store(
        Namespace("ns"),
        Service("ns", "web", ServiceKind.HEADLESS, (), port),
        EndpointSlice("ns", "web-1", "web", 4,
                      (Endpoint(("10.1.0.1",), True, "", "web-7d9f-abcde"),), port),
    )
    z = "web.ns.svc.cluster.local."
    pod_names = ZoneConfig(ttl=30, endpoint_pod_names=True)
    check(store, Case("web-7d9f-abcde." + z, "A", "NOERROR",
                      a("web-7d9f-abcde." + z, "10.1.0.1", ttl=30)), pod_names)
    check(store, Case("10-1-0-1." + z, "A", "NXDOMAIN"), ZoneConfig(ttl=30, endpoint_pod_names=True))
    check(store, Case("10-1-0-1." + z, "A", "NOERROR", a("10-1-0-1." + z, "10.1.0.1", ttl=30)),
          KUBEADM)
    check(store, Case("1.0.1.10.in-addr.arpa.", "PTR", "NOERROR",
                      [f"1.0.1.10.in-addr.arpa. 30 IN PTR web-7d9f-abcde.{z}"]), pod_names)


def test_slices_merge_across_families_and_duplicates_collapse() -> None:
    port = (Port("http", "tcp", 80),)
    store = _store(
        Namespace("ns"),
        Service("ns", "db", ServiceKind.HEADLESS, (), port),
        EndpointSlice("ns", "db-a", "db", 4, (Endpoint(("10.1.0.1",), True, "db-0"),), port),
        EndpointSlice("ns", "db-b", "db", 4, (Endpoint(("10.1.0.1",), True, "db-0"),), port),
        EndpointSlice("ns", "db-c", "db", 6, (Endpoint(("fd00::1",), True, "db-0"),), port),
    )
    z = "db.ns.svc.cluster.local."
    check(store, Case(z, "A", "NOERROR", a(z, "10.1.0.1", ttl=30)), KUBEADM)
    check(store, Case("db-0." + z, "AAAA", "NOERROR", a("db-0." + z, "fd00::1", ttl=30)), KUBEADM)
    check(store, Case("_http._tcp." + z, "SRV", "NOERROR",
                      srv("_http._tcp." + z, 50, 80, "db-0." + z, ttl=30),
                      a("db-0." + z, "10.1.0.1", "fd00::1", ttl=30)), KUBEADM)
    check(store, Case("1.0.1.10.in-addr.arpa.", "PTR", "NOERROR",
                      [f"1.0.1.10.in-addr.arpa. 30 IN PTR db-0.{z}"]), KUBEADM)
    # deleting one duplicate keeps the address; deleting both removes it
    store.delete("t", "EndpointSlice", ("ns", "db-a"), NOW)
    check(store, Case(z, "A", "NOERROR", a(z, "10.1.0.1", ttl=30)), KUBEADM)
    store.delete("t", "EndpointSlice", ("ns", "db-b"), NOW)
    check(store, Case(z, "A", "NOERROR"), KUBEADM)
    store.delete("t", "EndpointSlice", ("ns", "db-c"), NOW)
    check(store, Case(z, "A", "NXDOMAIN"), KUBEADM)
    check(store, Case("1.0.1.10.in-addr.arpa.", "PTR", "NXDOMAIN", zone="in-addr.arpa."), KUBEADM)


def test_externalname_chain_loop_is_servfail_not_a_hang() -> None:
    store = _store(
        Namespace("ns"),
        Service("ns", "a", ServiceKind.EXTERNAL_NAME, external_name="b.ns.svc.cluster.local."),
        Service("ns", "b", ServiceKind.EXTERNAL_NAME, external_name="a.ns.svc.cluster.local."),
    )
    got = resolve(store, "a.ns.svc.cluster.local.", QType.A, KUBEADM)
    assert got is not None and got.rcode == Rcode.SERVFAIL
    assert got.answer[0].rtype == QType.CNAME  # the chain so far, CNAMEs first


def test_externalname_that_looks_like_an_ip_is_a_cname() -> None:
    # docs/behaviour.md 4 / 16: the specification's CNAME, not CoreDNS's NXDOMAIN.
    store = _store(Namespace("ns"),
                   Service("ns", "ip", ServiceKind.EXTERNAL_NAME, external_name="1.2.3.4."))
    check(store, Case("ip.ns.svc.cluster.local.", "A", "NOERROR",
                      ["ip.ns.svc.cluster.local. 30 IN CNAME 1.2.3.4."]), KUBEADM)


def test_externalname_out_of_zone_target_is_marked_for_chasing(coredns_store: Store) -> None:
    got = resolve(coredns_store, "external." + S, QType.A, KUBEADM)
    assert got is not None and got.chase == "ext.interwebs.test."


def test_not_synced_turns_nxdomain_into_servfail() -> None:
    store = Store()
    store.add_source("api")
    store.upsert("api", Namespace("testns"), NOW)
    store.upsert("api", Service("testns", "svc1", ServiceKind.CLUSTER_IP, ("10.0.0.1",)), NOW)
    got = resolve(store, "svc0." + S, QType.A, KUBEADM)  # S01
    assert got is not None and got.rcode == Rcode.SERVFAIL
    check(store, Case("svc1." + S, "A", "NOERROR", a("svc1." + S, "10.0.0.1", ttl=30)), KUBEADM)
    generation = store.generation
    store.mark_synced("api")
    assert store.generation > generation  # cached SERVFAILs must go
    check(store, Case("svc0." + S, "A", "NXDOMAIN"), KUBEADM)


def test_fallthrough_marks_reverse_nxdomain_only(coredns_store: Store) -> None:
    config = ZoneConfig(fallthrough=("in-addr.arpa.", "ip6.arpa."))
    rev = resolve(coredns_store, "9.9.9.9.in-addr.arpa.", QType.PTR, config)
    fwd = resolve(coredns_store, "svc0." + S, QType.A, config)
    assert rev is not None and rev.fallthrough
    assert fwd is not None and not fwd.fallthrough


def test_namespaces_option_exposes_only_those(coredns_store: Store) -> None:
    # CoreDNS's dnsTestCases run with `namespaces testns`: unexposedns exists but is hidden
    config = ZoneConfig(ttl=5, namespaces=frozenset({"testns"}))
    check(coredns_store, Case("svc1." + S, "A", "NOERROR", a("svc1." + S, "10.0.0.1")), config)
    check(coredns_store, Case("svc1.unexposedns.svc.cluster.local.", "A", "NXDOMAIN"), config)
    check(coredns_store, Case("unexposedns.svc.cluster.local.", "A", "NXDOMAIN"), config)
    check(coredns_store, Case("2.0.0.10.in-addr.arpa.", "PTR", "NXDOMAIN", zone="in-addr.arpa."),
          config)
    check(coredns_store, Case("10-0-0-9.unexposedns.pod.cluster.local.", "A", "NXDOMAIN"), config)
    # without the option the same names exist
    check(coredns_store, Case("svc1.unexposedns.svc.cluster.local.", "A", "NOERROR",
                              a("svc1.unexposedns.svc.cluster.local.", "10.0.0.2")),
          ZoneConfig(ttl=5))


def test_outside_the_zones_is_none(coredns_store: Store) -> None:
    assert resolve(coredns_store, "example.com.", QType.A, KUBEADM) is None
    assert resolve(coredns_store, "local.", QType.A, KUBEADM) is None


def test_ttl_is_configurable_and_soa_ttl_capped(coredns_store: Store) -> None:
    config = ZoneConfig(ttl=3600)
    check(coredns_store, Case("svc0." + S, "A", "NXDOMAIN", ns=[soa(ttl=3600)]), config)
    assert "cluster.local. 300 IN SOA" in soa(ttl=3600)


def test_zones_default_answers_every_record_kind() -> None:
    store = load_store(ZONES)
    shop = "shop.svc.cluster.local."
    for case in [
        Case("kubernetes.default.svc.cluster.local.", "A", "NOERROR",
             a("kubernetes.default.svc.cluster.local.", "10.96.0.1", ttl=30)),
        Case("web." + shop, "A", "NOERROR", a("web." + shop, "10.96.100.10", ttl=30)),
        Case("db." + shop, "A", "NOERROR", a("db." + shop, "10.244.1.20", "10.244.1.21", ttl=30)),
        Case("db-2.db." + shop, "A", "NXDOMAIN"),
        Case("gateway." + shop, "AAAA", "NOERROR", a("gateway." + shop, "fd00:10:96::100c", ttl=30)),
        Case("payments." + shop, "A", "NOERROR",
             [f"payments.{shop} 30 IN CNAME api.payments.example.com."]),
        Case("_metrics._tcp.metrics." + shop, "SRV", "NXDOMAIN"),
    ]:
        check(store, case, KUBEADM)
