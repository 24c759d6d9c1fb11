"""The k8s_gateway and k8s_external zones (docs/exposed-names.md): converters, the pure
resolvers on the store built from zones/, Corefile parsing, and the serve flags end to end.

Tables name the upstream source each row pins: CoreDNS plugin/k8s_external (README,
apex.go, external.go, msg_to_dns.go) and the k8s_gateway plugin (gateway.go, apex.go,
kubernetes.go)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from clusterdns.core.convert import convert, convert_or_error
from clusterdns.core.errors import ConfigError
from clusterdns.core.records import Gateway, HTTPRoute, Ingress, Service
from clusterdns.core.rr import QTYPE_VALUES, RCODE_NAMES, QType, Rcode
from clusterdns.core.store import Store
from clusterdns.corefile.config import load
from clusterdns.plugins.k8s_external import ExternalConfig, resolve_external
from clusterdns.plugins.k8s_gateway import GatewayConfig, lookup, resolve_gateway

from .conftest import (
    NOW,
    ZONES,
    RunningServer,
    free_port,
    load_store,
    start_clusterdns,
    start_server,
    stop_server,
)
from .test_resolver import text

SERIAL = int(NOW)
GW_SOA = (
    f"mlopshub.com. 60 IN SOA dns1.kube-system.mlopshub.com. "
    f"hostmaster.dns1.kube-system.mlopshub.com. {SERIAL} 7200 1800 86400 60"
)
EXT_SOA = (
    f"example.org. 5 IN SOA ns1.dns.example.org. hostmaster.dns.example.org. "
    f"{SERIAL} 7200 1800 86400 5"
)


@pytest.fixture(scope="module")
def store() -> Store:
    return load_store(ZONES)


@dataclass
class Case:
    """A question and the whole answer; ``ns=None``: the SOA when negative."""

    qname: str
    qtype: str
    rcode: str
    answer: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    ns: list[str] | None = None
    chase: str = ""

    def __str__(self) -> str:
        return f"{self.qname} {self.qtype}"


def check(answer: object, case: Case, soa: str) -> None:
    assert answer is not None
    got_rcode = RCODE_NAMES[answer.rcode]  # type: ignore[attr-defined]
    got = sorted(text(rr) for rr in answer.answer)  # type: ignore[attr-defined]
    extra = sorted(text(rr) for rr in answer.additional)  # type: ignore[attr-defined]
    ns = [text(rr) for rr in answer.authority]  # type: ignore[attr-defined]
    negative = answer.rcode == Rcode.NXDOMAIN or not answer.answer  # type: ignore[attr-defined]
    want_ns = case.ns if case.ns is not None else ([soa] if negative else [])
    assert (got_rcode, got, extra, ns) == (case.rcode, sorted(case.answer), sorted(case.extra), want_ns)
    assert answer.chase == case.chase  # type: ignore[attr-defined]


# ---- converters ------------------------------------------------------------------------------

def test_converters_keep_what_answers_need() -> None:
    svc = convert({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "Lb", "namespace": "x"},
        "spec": {"type": "LoadBalancer", "clusterIP": "None", "externalIPs": ["fd00:0::1", "192.0.2.1"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1", "hostname": "ignored.example"},
                                                {"hostname": "LB.Example.COM."}]}},
    })
    assert isinstance(svc, Service) and svc.load_balancer and svc.name == "lb"
    assert svc.exposed == ("fd00::1", "192.0.2.1", "198.51.100.1", "lb.example.com.")
    ing = convert({
        "kind": "Ingress", "metadata": {"name": "i"},
        "spec": {"rules": [{"host": "A.example.com"}, {"http": {}}, {"host": "*.apps.example.com"}],
                 "tls": [{"hosts": ["a.example.com", "b.example.com"]}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}},
    })
    assert ing == Ingress("default", "i", ("a.example.com.", "*.apps.example.com.", "b.example.com."),
                          ("192.0.2.9",))
    gw = convert({"kind": "Gateway", "metadata": {"name": "g", "namespace": "n"},
                  "status": {"addresses": [{"value": "192.0.2.1"}, {"type": "Hostname", "value": "gw.example"},
                                           {"type": "NamedAddress", "value": "pool-1"}]}})
    assert gw == Gateway("n", "g", ("192.0.2.1", "gw.example."))
    route = convert({"kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "n"},
                     "spec": {"hostnames": ["Shop.example.com"],
                              "parentRefs": [{"name": "g"}, {"name": "h", "namespace": "infra"},
                                             {"kind": "Service", "name": "mesh"}]}})
    assert route == HTTPRoute("n", "r", ("shop.example.com.",), (("n", "g"), ("infra", "h")))


@pytest.mark.parametrize(("obj", "error"), [
    ({"kind": "Ingress", "metadata": {"name": "i", "namespace": "n"}, "spec": {"rules": [{"host": "a..b"}]}},
     "Ingress n/i: spec.rules[0].host: not a DNS name: 'a..b'"),
    ({"kind": "Ingress", "metadata": {"name": "i", "namespace": "n"}, "spec": {"rules": [{"host": "a.*.b"}]}},
     "Ingress n/i: spec.rules[0].host: not a DNS name: 'a.*.b'"),
    ({"kind": "Gateway", "metadata": {"name": "g", "namespace": "n"},
      "status": {"addresses": [{"type": "IPAddress", "value": "300.1.1.1"}]}},
     "Gateway n/g: status.addresses[0].value: not an IP address: '300.1.1.1'"),
    ({"kind": "TLSRoute", "metadata": {"name": "t", "namespace": "n"}, "spec": {"parentRefs": [{}]}},
     "TLSRoute n/t: spec.parentRefs[0].name: missing"),
    ({"kind": "Service", "metadata": {"name": "s", "namespace": "n"}, "spec": {"externalIPs": ["x"]}},
     "Service n/s: spec.externalIPs[0]: not an IP address: 'x'"),
])
def test_bad_objects_name_the_field(obj: dict[str, object], error: str) -> None:
    assert convert_or_error(obj) == (None, error)


# ---- k8s_gateway on zones/ -------------------------------------------------------------------

GATEWAY = GatewayConfig(zones=("mlopshub.com.",), ns_addresses=("192.0.2.53",))

GATEWAY_CASES = [
    # Ingress rules[].host and tls[].hosts -> the Ingress's status.loadBalancer.ingress
    Case("mlopshub.com.", "A", "NOERROR", ["mlopshub.com. 60 IN A 172.18.255.201"]),
    Case("www.mlopshub.com.", "A", "NOERROR", ["www.mlopshub.com. 60 IN A 172.18.255.201"]),
    Case("www.mlopshub.com.", "AAAA", "NOERROR"),  # RFC 4074 3: the name exists
    Case("www.mlopshub.com.", "MX", "NOERROR"),
    # HTTPRoute hostnames -> the parent Gateway's status.addresses
    Case("api.mlopshub.com.", "A", "NOERROR", ["api.mlopshub.com. 60 IN A 172.18.255.202"]),
    # a wildcard host matches exactly one label (gateway.go toWildcardQName)
    Case("x.apps.mlopshub.com.", "A", "NOERROR", ["x.apps.mlopshub.com. 60 IN A 172.18.255.202"]),
    Case("a.b.apps.mlopshub.com.", "A", "NXDOMAIN"),
    Case("apps.mlopshub.com.", "A", "NXDOMAIN"),
    # claimed but no address: Ingress not yet programmed, route whose Gateway is gone
    Case("staging.mlopshub.com.", "A", "NXDOMAIN"),
    Case("old.mlopshub.com.", "A", "NXDOMAIN"),
    Case("nothing.mlopshub.com.", "TXT", "NXDOMAIN"),
    # LoadBalancer Services as name.namespace.ZONE; ClusterIP ones have no name
    Case("ingress-nginx-controller.ingress-nginx.mlopshub.com.", "A", "NOERROR",
         ["ingress-nginx-controller.ingress-nginx.mlopshub.com. 60 IN A 172.18.255.201"]),
    Case("gateway.shop.mlopshub.com.", "A", "NOERROR", ["gateway.shop.mlopshub.com. 60 IN A 172.18.255.200"]),
    Case("web.shop.mlopshub.com.", "A", "NXDOMAIN"),
    # a load balancer that reports a host name: CNAME, chased by the handler
    Case("edge.public.mlopshub.com.", "A", "NOERROR",
         ["edge.public.mlopshub.com. 60 IN CNAME a1b2c3d4e5-1234567890.eu-west-1.elb.amazonaws.com."],
         chase="a1b2c3d4e5-1234567890.eu-west-1.elb.amazonaws.com."),
    # the apex (apex.go): SOA, NS to <apex>.ZONE with the server's address as glue
    Case("mlopshub.com.", "SOA", "NOERROR", [GW_SOA], ns=[]),
    Case("mlopshub.com.", "NS", "NOERROR", ["mlopshub.com. 60 IN NS dns1.kube-system.mlopshub.com."],
         ["dns1.kube-system.mlopshub.com. 60 IN A 192.0.2.53"]),
    Case("mlopshub.com.", "TXT", "NOERROR"),
    Case("dns1.kube-system.mlopshub.com.", "A", "NOERROR", ["dns1.kube-system.mlopshub.com. 60 IN A 192.0.2.53"]),
    Case("x.dns1.kube-system.mlopshub.com.", "A", "NXDOMAIN"),
]


@pytest.mark.parametrize("case", GATEWAY_CASES, ids=str)
def test_gateway_zone(store: Store, case: Case) -> None:
    check(resolve_gateway(store, case.qname, QTYPE_VALUES[case.qtype], GATEWAY), case, GW_SOA)


def test_gateway_resources_order_secondary_and_fallthrough(store: Store) -> None:
    # Only Service: the Ingress host is not answered; order of resources is lookup order
    only_svc = GatewayConfig(zones=("mlopshub.com.",), resources=("Service",), secondary="dns2.kube-system",
                             fallthrough=(".",))
    nx = resolve_gateway(store, "mlopshub.com.", QType.A, only_svc)
    assert nx is not None and nx.rcode == Rcode.NOERROR and not nx.answer  # apex: NODATA
    www = resolve_gateway(store, "www.mlopshub.com.", QType.A, only_svc)
    assert www is not None and www.rcode == Rcode.NXDOMAIN and www.fallthrough
    ns = resolve_gateway(store, "mlopshub.com.", QType.NS, only_svc)
    assert ns is not None and sorted(text(rr) for rr in ns.answer) == [
        "mlopshub.com. 60 IN NS dns1.kube-system.mlopshub.com.",
        "mlopshub.com. 60 IN NS dns2.kube-system.mlopshub.com."]
    assert resolve_gateway(store, "web.shop.svc.cluster.local.", QType.A, only_svc) is None
    # the first resource with an address wins: an Ingress and a route on one host
    both = load_store(ZONES)
    both.upsert("zones", Ingress("shop", "dup", ("api.mlopshub.com.",), ("192.0.2.77",)), NOW)
    got = resolve_gateway(both, "api.mlopshub.com.", QType.A, GATEWAY)
    assert got is not None and [rr.rdata for rr in got.answer] == ["172.18.255.202"]
    ingress_first = GatewayConfig(zones=("mlopshub.com.",), resources=("Ingress", "HTTPRoute"))
    got = resolve_gateway(both, "api.mlopshub.com.", QType.A, ingress_first)
    assert got is not None and [rr.rdata for rr in got.answer] == ["192.0.2.77"]


def test_gateway_lookup_explains_missing_addresses(store: Store) -> None:
    (staging,) = lookup(store, "staging.mlopshub.com.", "mlopshub.com.", GATEWAY)
    assert (staging.kind, staging.objects, staging.reason) == (
        "Ingress", ("shop/staging",), "Ingress shop/staging has no address yet")
    (old,) = lookup(store, "old.mlopshub.com.", "mlopshub.com.", GATEWAY)
    assert old.reason == "HTTPRoute shop/legacy: its parent Gateway shop/eg-retired does not exist"
    assert lookup(store, "nothing.mlopshub.com.", "mlopshub.com.", GATEWAY) == []


def test_unsynced_store_is_servfail_not_nxdomain() -> None:
    store = Store()
    store.add_source("api")
    answer = resolve_gateway(store, "www.mlopshub.com.", QType.A, GATEWAY)
    assert answer is not None and answer.rcode == Rcode.SERVFAIL
    ext = resolve_external(store, "web.shop.example.org.", QType.A, EXTERNAL)
    assert ext is not None and ext.rcode == Rcode.SERVFAIL


# ---- k8s_external on zones/ ------------------------------------------------------------------

EXTERNAL = ExternalConfig(zones=("example.org.",), ns_addresses=("192.0.2.53",))
HEADLESS = ExternalConfig(zones=("example.org.",), headless=True)

EXTERNAL_CASES = [
    # spec.externalIPs (README example) and status.loadBalancer.ingress
    Case("ftp.public.example.org.", "A", "NOERROR", ["ftp.public.example.org. 5 IN A 192.0.2.10"]),
    Case("ftp.public.example.org.", "AAAA", "NOERROR"),
    Case("ftp.public.example.org.", "TXT", "NOERROR"),
    Case("gateway.shop.example.org.", "A", "NOERROR", ["gateway.shop.example.org. 5 IN A 172.18.255.200"]),
    # SRV for every port, and for one named port (external.go, msg_to_dns.go srv)
    Case("ftp.public.example.org.", "SRV", "NOERROR", ["ftp.public.example.org. 5 IN SRV 0 100 21 ftp.public.example.org."],
         ["ftp.public.example.org. 5 IN A 192.0.2.10"]),
    Case("_ftp._tcp.ftp.public.example.org.", "SRV", "NOERROR",
         ["_ftp._tcp.ftp.public.example.org. 5 IN SRV 0 100 21 ftp.public.example.org."],
         ["ftp.public.example.org. 5 IN A 192.0.2.10"]),
    Case("_ftp._tcp.ftp.public.example.org.", "A", "NOERROR", ["_ftp._tcp.ftp.public.example.org. 5 IN A 192.0.2.10"]),
    Case("_http._tcp.ftp.public.example.org.", "SRV", "NXDOMAIN"),
    Case("_ftp._udp.ftp.public.example.org.", "SRV", "NXDOMAIN"),
    # a host name from the cloud load balancer: CNAME (msg_to_dns.go a), SRV targets it
    Case("edge.public.example.org.", "A", "NOERROR",
         ["edge.public.example.org. 5 IN CNAME a1b2c3d4e5-1234567890.eu-west-1.elb.amazonaws.com."],
         chase="a1b2c3d4e5-1234567890.eu-west-1.elb.amazonaws.com."),
    Case("edge.public.example.org.", "SRV", "NOERROR",
         ["edge.public.example.org. 5 IN SRV 0 100 443 a1b2c3d4e5-1234567890.eu-west-1.elb.amazonaws.com."]),
    # services without an external address have no name; nor do unknown namespaces
    Case("web.shop.example.org.", "A", "NXDOMAIN"),
    Case("db.shop.example.org.", "A", "NXDOMAIN"),  # headless, option off
    Case("nope.shop.example.org.", "A", "NXDOMAIN"),
    Case("shop.example.org.", "A", "NOERROR"),
    Case("nope.example.org.", "A", "NXDOMAIN"),
    Case("a.b.c.ftp.public.example.org.", "A", "NXDOMAIN"),
    Case("x.ftp.public.example.org.", "A", "NXDOMAIN"),
    # the apex and its dns subdomain (apex.go)
    Case("example.org.", "SOA", "NOERROR", [EXT_SOA], ns=[]),
    Case("example.org.", "NS", "NOERROR", ["example.org. 5 IN NS ns1.dns.example.org."],
         ["ns1.dns.example.org. 5 IN A 192.0.2.53"]),
    Case("example.org.", "A", "NOERROR"),
    Case("dns.example.org.", "A", "NOERROR"),
    Case("ns1.dns.example.org.", "A", "NOERROR", ["ns1.dns.example.org. 5 IN A 192.0.2.53"]),
    Case("ns1.dns.example.org.", "AAAA", "NOERROR"),
    Case("ns2.dns.example.org.", "A", "NXDOMAIN"),
    Case("x.ns1.dns.example.org.", "A", "NXDOMAIN"),
]


@pytest.mark.parametrize("case", EXTERNAL_CASES, ids=str)
def test_external_zone(store: Store, case: Case) -> None:
    check(resolve_external(store, case.qname, QTYPE_VALUES[case.qtype], EXTERNAL), case, EXT_SOA)


HEADLESS_CASES = [
    # headless: ready endpoints of a headless service without external IPs
    Case("db.shop.example.org.", "A", "NOERROR",
         ["db.shop.example.org. 5 IN A 10.244.1.20", "db.shop.example.org. 5 IN A 10.244.1.21"]),
    Case("db-0.db.shop.example.org.", "A", "NOERROR", ["db-0.db.shop.example.org. 5 IN A 10.244.1.20"]),
    Case("db-2.db.shop.example.org.", "A", "NXDOMAIN"),  # not ready
    Case("_postgres._tcp.db.shop.example.org.", "SRV", "NOERROR",
         ["_postgres._tcp.db.shop.example.org. 5 IN SRV 0 50 5432 db-0.db.shop.example.org.",
          "_postgres._tcp.db.shop.example.org. 5 IN SRV 0 50 5432 db-1.db.shop.example.org."],
         ["db-0.db.shop.example.org. 5 IN A 10.244.1.20", "db-1.db.shop.example.org. 5 IN A 10.244.1.21"]),
    Case("web.shop.example.org.", "A", "NXDOMAIN"),
]


@pytest.mark.parametrize("case", HEADLESS_CASES, ids=str)
def test_external_zone_headless(store: Store, case: Case) -> None:
    check(resolve_external(store, case.qname, QTYPE_VALUES[case.qtype], HEADLESS), case, EXT_SOA)


def test_external_fallthrough_ttl_apex(store: Store) -> None:
    config = ExternalConfig(zones=("example.org.",), ttl=60, apex="k8s", fallthrough=(".",))
    nx = resolve_external(store, "web.shop.example.org.", QType.A, config)
    assert nx is not None and nx.rcode == Rcode.NXDOMAIN and nx.fallthrough
    soa = resolve_external(store, "example.org.", QType.SOA, config)
    assert soa is not None and text(soa.answer[0]) == (
        f"example.org. 60 IN SOA ns1.k8s.example.org. hostmaster.k8s.example.org. {SERIAL} 7200 1800 86400 60")
    ok = resolve_external(store, "ftp.public.example.org.", QType.A, config)
    assert ok is not None and [text(rr) for rr in ok.answer] == ["ftp.public.example.org. 60 IN A 192.0.2.10"]


def test_changes_reach_the_indexes() -> None:
    store = load_store(ZONES)
    generation = store.generation
    store.upsert("zones", HTTPRoute("shop", "api", ("new.mlopshub.com.",), (("shop", "eg"),)), NOW + 1)
    assert store.generation > generation
    gone = resolve_gateway(store, "api.mlopshub.com.", QType.A, GATEWAY)
    new = resolve_gateway(store, "new.mlopshub.com.", QType.A, GATEWAY)
    assert gone is not None and gone.rcode == Rcode.NXDOMAIN
    assert new is not None and [rr.rdata for rr in new.answer] == ["172.18.255.202"]
    store.delete("zones", "Gateway", ("shop", "eg"), NOW + 2)
    new = resolve_gateway(store, "new.mlopshub.com.", QType.A, GATEWAY)
    assert new is not None and new.rcode == Rcode.NXDOMAIN
    assert not store.exposure.claimed("api.mlopshub.com.")


# ---- Corefile --------------------------------------------------------------------------------

def test_corefile_directives() -> None:
    (server,) = load(
        ".:53 {\n"
        "  kubernetes cluster.local\n"
        "  k8s_external example.org {\n    apex k8s\n    ttl 60\n    headless\n    fallthrough\n  }\n"
        "  k8s_gateway mlopshub.com example.net {\n    resources Ingress HTTPRoute\n    ttl 30\n"
        "    apex exdns-1.kube-system\n    secondary exdns-2.kube-system\n"
        "    kubeconfig /k.yaml ctx\n    fallthrough example.net\n  }\n"
        "}\n")
    e, g = server.plugins.get("k8s_external"), server.plugins.get("k8s_gateway")
    assert e is not None and (e.zones, e.apex, e.ttl, e.headless, e.fallthrough) == (
        ("example.org.",), "k8s", 60, True, (".",))  # fallthrough with no zones: every zone
    assert g is not None and (g.zones, g.resources, g.ttl, g.apex, g.secondary, g.kubeconfig, g.context,
                              g.fallthrough) == (
        ("mlopshub.com.", "example.net."), ("Ingress", "HTTPRoute"), 30, "exdns-1.kube-system",
        "exdns-2.kube-system", "/k.yaml", "ctx", ("example.net.",))
    assert not server.warnings
    (defaults,) = load("example.org {\n  k8s_external\n  k8s_gateway\n}\n")
    assert defaults.plugins.get("k8s_external") is not None and defaults.plugins.get("k8s_external").zones == ("example.org.",)
    assert defaults.plugins.get("k8s_gateway") is not None and defaults.plugins.get("k8s_gateway").ttl == 60


@pytest.mark.parametrize(("body", "error"), [
    ("k8s_external example.org {\n ttl 3601\n}", "Corefile:3: k8s_external: want a number from 0 to 3600"),
    ("k8s_external example.org {\n bogus\n}", "Corefile:3: k8s_external: unknown option 'bogus'"),
    ("k8s_gateway x.org {\n resources Ingress Pod\n}", "Corefile:3: k8s_gateway: resources: want some of"),
    ("k8s_gateway x.org {\n apex a..b\n}", "Corefile:3: k8s_gateway: want a relative DNS name"),
    ("k8s_gateway x.org {\n ingressClasses nginx\n}",
     "Corefile:3: k8s_gateway: option 'ingressClasses' is not supported by clusterdns"),
])
def test_corefile_errors_name_the_line(body: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace(".", r"\.")):
        load(".:53 {\n" + body + "\n}\n")


# ---- end to end: the serve flags on zones/ ----------------------------------------------------

def ask(server: RunningServer, name: str, qtype: str = "A") -> tuple[str, list[str]]:
    msg = dns.query.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=server.port, timeout=5)
    return dns.rcode.to_text(msg.rcode()), sorted(rr.to_text() for s in msg.answer for rr in s)


def test_serve_flags_answer_exposed_names() -> None:
    server = start_server("--zones", str(ZONES), "--gateway-zone", "mlopshub.com",
                          "--external-zone", "example.org")
    try:
        for name, qtype, want in [
            ("mlopshub.com.", "A", ("NOERROR", ["172.18.255.201"])),
            ("api.mlopshub.com.", "A", ("NOERROR", ["172.18.255.202"])),
            ("staging.mlopshub.com.", "A", ("NXDOMAIN", [])),
            ("ftp.public.example.org.", "A", ("NOERROR", ["192.0.2.10"])),
            ("_ftp._tcp.ftp.public.example.org.", "SRV", ("NOERROR", ["0 100 21 ftp.public.example.org."])),
            ("web.shop.svc.cluster.local.", "A", ("NOERROR", ["10.96.100.10"])),
            ("example.com.", "A", ("REFUSED", [])),
        ]:
            assert ask(server, name, qtype) == want, name
    finally:
        assert stop_server(server) == 0


def test_serve_without_flags_does_not_answer_them() -> None:
    server = start_server("--zones", str(ZONES))
    try:
        assert ask(server, "mlopshub.com.") == ("REFUSED", [])
    finally:
        assert stop_server(server) == 0


# ---- clusterdns resolve: which object answered, or why not ------------------------------------

EXPLAIN_CASES = [
    ("mlopshub.com.", ["k8s_gateway zone mlopshub.com.: answered by Ingress shop/mlopshub: 172.18.255.201"]),
    ("x.apps.mlopshub.com.", ["k8s_gateway zone mlopshub.com.: answered by HTTPRoute shop/api through the "
                              "wildcard host *.apps.mlopshub.com.: 172.18.255.202"]),
    ("staging.mlopshub.com.", ["k8s_gateway zone mlopshub.com.: no address: Ingress shop/staging has no address yet",
                               "k8s_gateway zone mlopshub.com.: NXDOMAIN: nothing that claims "
                               "staging.mlopshub.com. has an address"]),
    ("old.mlopshub.com.", ["k8s_gateway zone mlopshub.com.: no address: HTTPRoute shop/legacy: its parent "
                           "Gateway shop/eg-retired does not exist",
                           "k8s_gateway zone mlopshub.com.: NXDOMAIN: nothing that claims old.mlopshub.com. "
                           "has an address"]),
    ("nope.mlopshub.com.", ["k8s_gateway zone mlopshub.com.: NXDOMAIN: no HTTPRoute, TLSRoute, GRPCRoute, "
                            "Ingress, Service claims nope.mlopshub.com."]),
    ("web.shop.mlopshub.com.", ["k8s_gateway zone mlopshub.com.: NXDOMAIN: no HTTPRoute, TLSRoute, GRPCRoute, "
                                "Ingress, Service claims web.shop.mlopshub.com. (Service shop/web exists but is "
                                "not of type LoadBalancer)"]),
    ("ftp.public.example.org.", ["k8s_external zone example.org.: answered by Service public/ftp: "
                               "spec.externalIPs 192.0.2.10"]),
    ("web.shop.example.org.", ["k8s_external zone example.org.: NXDOMAIN: Service shop/web has no external "
                               "address; only Services with spec.externalIPs or status.loadBalancer.ingress "
                               "have names here"]),
    ("nope.shop.example.org.", ["k8s_external zone example.org.: NXDOMAIN: no Service shop/nope"]),
    ("web.shop.svc.cluster.local.", []),
]


@pytest.mark.parametrize(("qname", "lines"), EXPLAIN_CASES, ids=[c[0] for c in EXPLAIN_CASES])
def test_explanations(store: Store, qname: str, lines: list[str]) -> None:
    from clusterdns.plugins.k8s_external import explain as external_explain
    from clusterdns.plugins.k8s_gateway import explain as gateway_explain

    got = gateway_explain(store, qname, GATEWAY) + external_explain(store, qname, EXTERNAL)
    assert got == lines


def test_resolve_command_explains(capsys: pytest.CaptureFixture[str]) -> None:
    from clusterdns.__main__ import main

    code = main(["resolve", "staging.mlopshub.com", "--zones", str(ZONES), "--type", "A",
                 "--gateway-zone", "mlopshub.com"])
    out = capsys.readouterr().out
    assert code == 2
    assert "why: k8s_gateway zone mlopshub.com.: no address: Ingress shop/staging has no address yet" in out
    code = main(["resolve", "api.mlopshub.com", "--zones", str(ZONES), "--type", "A",
                 "--gateway-zone", "mlopshub.com"])
    out = capsys.readouterr().out
    assert code == 0 and "resolved: api.mlopshub.com. -> 172.18.255.202" in out
    assert "why: k8s_gateway zone mlopshub.com.: answered by HTTPRoute shop/api: 172.18.255.202" in out


def test_corefile_serves_both_zones(tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f".:{free_port()} {{\n  bind 127.0.0.1\n  kubernetes cluster.local\n"
        "  k8s_external example.org {\n    ttl 10\n  }\n"
        "  k8s_gateway mlopshub.com {\n    resources Ingress\n    ttl 20\n  }\n}\n")
    server = start_clusterdns("-conf", str(corefile), "--zones", str(ZONES))
    try:
        for name, qtype, want in [
            ("mlopshub.com.", "A", ("NOERROR", ["172.18.255.201"])),
            ("api.mlopshub.com.", "A", ("NXDOMAIN", [])),  # HTTPRoute not in resources
            ("gateway.shop.example.org.", "A", ("NOERROR", ["172.18.255.200"])),
        ]:
            assert ask(server, name, qtype) == want, name
        msg = dns.query.udp(dns.message.make_query("mlopshub.com.", "A"), "127.0.0.1",
                            port=server.port, timeout=5)
        assert msg.answer[0].ttl == 20
        assert not [line for line in server.log_lines if "unknown directive" in line]
    finally:
        assert stop_server(server) == 0


# ---- the handler chain: k8s_gateway, k8s_external, kubernetes ---------------------------------

def test_chain_order_and_fallthrough(store: Store) -> None:
    """The plugins are asked in plugin.cfg order; an NXDOMAIN with fallthrough goes on to the
    next one, without it the first zone that holds the name answers."""
    from clusterdns.core.resolver import ZoneConfig
    from clusterdns.plugins.chain import Handler
    from tests.handlers import make_handler

    def rcode_and_answer(handler: Handler, name: str) -> tuple[str, list[str]]:
        wire = handler.handle(dns.message.make_query(name, "A").to_wire(), False)
        assert isinstance(wire, bytes)
        msg = dns.message.from_wire(wire)
        return dns.rcode.to_text(msg.rcode()), sorted(rr.to_text() for s in msg.answer for rr in s)

    web = "web.shop.svc.cluster.local."
    overlap = GatewayConfig(zones=("cluster.local.",))
    handler = make_handler(store, ZoneConfig(), gateway=overlap)
    assert rcode_and_answer(handler, web) == ("NXDOMAIN", [])  # k8s_gateway holds the zone
    through = GatewayConfig(zones=("cluster.local.",), fallthrough=(".",))
    external = ExternalConfig(zones=("cluster.local.",), fallthrough=(".",))
    handler = make_handler(store, ZoneConfig(), gateway=through, external=external)
    assert rcode_and_answer(handler, web) == ("NOERROR", ["10.96.100.10"])  # kubernetes answers
    handler = make_handler(store, None, zones=("cluster.local.",), gateway=through)
    assert rcode_and_answer(handler, web) == ("NXDOMAIN", [])  # nothing after it: its NXDOMAIN


def test_name_server_addresses_come_from_the_service_in_front() -> None:
    """k8s_external ns1.dns.ZONE: the external IPs of the Service whose endpoint is this
    server (CoreDNS nsAddrs with external=true); k8s_gateway <apex>.ZONE: the LoadBalancer
    Service named by the apex (SelfAddress)."""
    from clusterdns.core.records import ServiceKind

    store = load_store(ZONES)
    kube_dns = store.services[("kube-system", "kube-dns")]
    store.upsert("zones", Service(kube_dns.namespace, kube_dns.name, kube_dns.kind, kube_dns.cluster_ips,
                                  kube_dns.ports, external_ips=("203.0.113.53",)), NOW)
    config = ExternalConfig(zones=("example.org.",), ns_addresses=("10.244.0.2",))
    ns1 = resolve_external(store, "ns1.dns.example.org.", QType.A, config)
    assert ns1 is not None and [rr.rdata for rr in ns1.answer] == ["203.0.113.53"]
    store.upsert("zones", Service("kube-system", "dns1", ServiceKind.CLUSTER_IP, ("10.96.0.53",),
                                  lb_ingress=("198.51.100.1",), load_balancer=True), NOW)
    store.upsert("zones", Service("kube-system", "dns2", ServiceKind.CLUSTER_IP, ("10.96.0.54",),
                                  lb_ingress=("203.0.113.11",), load_balancer=True), NOW)
    pair = GatewayConfig(zones=("mlopshub.com.",), secondary="dns2.kube-system", ns_addresses=("127.0.0.1",))
    ns = resolve_gateway(store, "mlopshub.com.", QType.NS, pair)
    assert ns is not None and sorted(text(rr) for rr in ns.additional) == [
        "dns1.kube-system.mlopshub.com. 60 IN A 198.51.100.1",
        "dns2.kube-system.mlopshub.com. 60 IN A 203.0.113.11"]
    own = resolve_gateway(store, "dns1.kube-system.mlopshub.com.", QType.A, pair)
    assert own is not None and [rr.rdata for rr in own.answer] == ["198.51.100.1"]
