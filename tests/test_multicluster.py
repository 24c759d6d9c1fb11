"""clusterset.local (KEP-1645 multi-cluster services DNS; CoreDNS's multicluster plugin):
the pure resolver on a store built from tests/manifests/multicluster.yaml, written like zone
files; conversion errors; changes and the tags they touch."""

from __future__ import annotations

import pytest

from clusterdns.core.convert import convert
from clusterdns.core.errors import ConvertError
from clusterdns.core.multicluster import clusterset_dependencies, resolve_clusterset
from clusterdns.core.records import ImportKind, Port, ServiceImport
from clusterdns.core.rr import QTYPE_VALUES, RCODE_NAMES, Rcode
from clusterdns.core.store import Store

from .conftest import MANIFESTS, NOW, ZONES, load_store
from .test_resolver import soa, text

Z = "clusterset.local."
WEB = "web.shop.svc." + Z
DB = "db.shop.svc." + Z
SOA = soa(Z, 5)

# (qname, qtype, rcode, answer, additional); negative answers carry the zone SOA
CASES = [
    # 2.3.1 ClusterSetIP: A/AAAA of spec.ips
    (WEB, "A", "NOERROR", [f"{WEB} 5 IN A 10.112.0.20"], []),
    (WEB, "AAAA", "NOERROR", [f"{WEB} 5 IN AAAA fd00:10:112::14"], []),
    (WEB, "TXT", "NOERROR", [], []),
    ("WEB.shop.svc." + Z, "A", "NXDOMAIN", [], []),  # callers lower-case qnames
    # 2.3.2 SRV: named ports by _port._proto, target the service name, glue of both families
    ("_https._tcp." + WEB, "SRV", "NOERROR", [f"_https._tcp.{WEB} 5 IN SRV 0 50 443 {WEB}"],
     [f"{WEB} 5 IN A 10.112.0.20", f"{WEB} 5 IN AAAA fd00:10:112::14"]),
    ("_https._tcp." + WEB, "A", "NOERROR", [f"_https._tcp.{WEB} 5 IN A 10.112.0.20"], []),
    ("_https._udp." + WEB, "SRV", "NXDOMAIN", [], []),
    ("_ftp._tcp." + WEB, "SRV", "NXDOMAIN", [], []),
    (WEB, "SRV", "NOERROR", [f"{WEB} 5 IN SRV 0 16 80 {WEB}", f"{WEB} 5 IN SRV 0 16 443 {WEB}",
                             f"{WEB} 5 IN SRV 0 16 9090 {WEB}"],
     [f"{WEB} 5 IN A 10.112.0.20", f"{WEB} 5 IN AAAA fd00:10:112::14"]),
    # 2.3.4: no name picks one cluster's backends of a ClusterSetIP service
    ("db-0.cluster-a." + WEB, "A", "NXDOMAIN", [], []),
    ("cluster-a." + WEB, "A", "NXDOMAIN", [], []),
    ("noips.shop.svc." + Z, "A", "NXDOMAIN", [], []),
    # 2.4.1 Headless: ready endpoints of every cluster; hostname.clusterid names
    (DB, "A", "NOERROR", [f"{DB} 5 IN A 10.245.1.20", f"{DB} 5 IN A 10.246.3.7"], []),
    (DB, "AAAA", "NOERROR", [f"{DB} 5 IN AAAA fd00:10:246::9"], []),
    ("db-0.cluster-a." + DB, "A", "NOERROR", [f"db-0.cluster-a.{DB} 5 IN A 10.245.1.20"], []),
    ("db-0.cluster-a." + DB, "AAAA", "NOERROR", [], []),
    ("db-1.cluster-a." + DB, "A", "NXDOMAIN", [], []),  # not ready
    ("db-0.cluster-b." + DB, "A", "NXDOMAIN", [], []),  # another cluster's hostname
    ("10-246-3-7.cluster-b." + DB, "A", "NOERROR",  # no hostname: the dashed IP
     [f"10-246-3-7.cluster-b.{DB} 5 IN A 10.246.3.7"], []),
    ("db-2.cluster-b." + DB, "AAAA", "NOERROR", [f"db-2.cluster-b.{DB} 5 IN AAAA fd00:10:246::9"], []),
    ("cluster-a." + DB, "A", "NXDOMAIN", [], []),  # parse.go: two labels or none
    ("x.db-0.cluster-a." + DB, "A", "NXDOMAIN", [], []),
    ("empty.shop.svc." + Z, "A", "NXDOMAIN", [], []),  # 2.4.1: no ready endpoints
    # 2.4.2 SRV: one per (ready endpoint, port), target the endpoint's name
    ("_postgres._tcp." + DB, "SRV", "NOERROR", [
        f"_postgres._tcp.{DB} 5 IN SRV 0 33 5432 db-0.cluster-a.{DB}",
        f"_postgres._tcp.{DB} 5 IN SRV 0 33 5432 10-246-3-7.cluster-b.{DB}",
        f"_postgres._tcp.{DB} 5 IN SRV 0 33 5432 db-2.cluster-b.{DB}",
    ], [
        f"db-0.cluster-a.{DB} 5 IN A 10.245.1.20",
        f"10-246-3-7.cluster-b.{DB} 5 IN A 10.246.3.7",
        f"db-2.cluster-b.{DB} 5 IN AAAA fd00:10:246::9",
    ]),
    # structure: apex, dns-version (2.2), svc, namespaces, unknown names
    (Z, "SOA", "NOERROR", [SOA], []),
    (Z, "NS", "NOERROR", [], []),
    ("dns-version." + Z, "TXT", "NOERROR", [f'dns-version.{Z} 28800 IN TXT "1.1.0"'], []),
    ("dns-version." + Z, "A", "NOERROR", [], []),
    ("svc." + Z, "A", "NOERROR", [], []),
    ("shop.svc." + Z, "A", "NOERROR", [], []),
    ("quiet.svc." + Z, "A", "NOERROR", [], []),
    ("nowhere.svc." + Z, "A", "NXDOMAIN", [], []),
    ("web.nowhere.svc." + Z, "A", "NXDOMAIN", [], []),
    ("other.shop.svc." + Z, "A", "NXDOMAIN", [], []),
    ("web.shop.pod." + Z, "A", "NXDOMAIN", [], []),
    ("foo." + Z, "A", "NXDOMAIN", [], []),
]


@pytest.fixture(scope="module")
def store() -> Store:
    return load_store(MANIFESTS / "multicluster.yaml")


@pytest.mark.parametrize(("qname", "qtype", "rcode", "answer", "extra"), CASES,
                         ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_clusterset_names(store: Store, qname: str, qtype: str, rcode: str,
                          answer: list[str], extra: list[str]) -> None:
    got = resolve_clusterset(store, qname, QTYPE_VALUES[qtype], Z)
    assert got is not None and got.zone == Z
    assert RCODE_NAMES[got.rcode] == rcode
    assert [text(rr) for rr in got.answer] == answer
    assert [text(rr) for rr in got.additional] == extra
    negative = not answer
    assert [text(rr) for rr in got.authority] == ([SOA] if negative else [])


def test_outside_the_zone_is_none_and_unsynced_nxdomain_is_servfail(store: Store) -> None:
    assert resolve_clusterset(store, "web.shop.svc.cluster.local.", 1) is None
    fresh = Store()
    fresh.add_source("api")
    fresh.replace("api", "Namespace", [], NOW)
    got = resolve_clusterset(fresh, "web.shop.svc." + Z, 1)
    assert got is not None and got.rcode == Rcode.SERVFAIL
    fresh.mark_synced("api")
    got = resolve_clusterset(fresh, "web.shop.svc." + Z, 1)
    assert got is not None and got.rcode == Rcode.NXDOMAIN


class Tags:
    def __init__(self) -> None:
        self.seen: list[set[object] | None] = []

    def invalidate(self, tags: set[object] | None) -> None:  # the store's Listener
        self.seen.append(tags)


def test_add_change_delete_and_the_tags_they_touch() -> None:
    store = load_store(MANIFESTS / "multicluster.yaml")
    tags = Tags()
    store.listen(tags)  # type: ignore[arg-type]
    name = "api.shop.svc." + Z
    assert clusterset_dependencies(name) == (("ns", "shop"), ("mcs", "shop", "api"))
    imp = ServiceImport("shop", "api", ImportKind.CLUSTERSET_IP, ("10.112.0.30",),
                        (Port("grpc", "tcp", 9000),))
    assert store.upsert("zones", imp, NOW + 1)
    assert tags.seen and ("mcs", "shop", "api") in tags.seen[-1]  # type: ignore[operator]
    got = resolve_clusterset(store, name, 1)
    assert got is not None and [rr.rdata for rr in got.answer] == ["10.112.0.30"]
    store.upsert("zones", ServiceImport("shop", "api", ImportKind.CLUSTERSET_IP, ("10.112.0.31",)),
                 NOW + 2)
    got = resolve_clusterset(store, name, 1)
    assert got is not None and [rr.rdata for rr in got.answer] == ["10.112.0.31"]
    # a multicluster slice going not-ready touches its import
    slice_ = convert({
        "kind": "EndpointSlice", "metadata": {"name": "imported-db-cluster-a-8x2kq", "namespace": "shop",
        "labels": {"multicluster.kubernetes.io/service-name": "db",
                   "multicluster.kubernetes.io/source-cluster": "cluster-a"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.245.1.20"], "conditions": {"ready": False}}],
    })
    assert slice_ is not None and store.upsert("zones", slice_, NOW + 3)
    assert ("mcs", "shop", "db") in tags.seen[-1]  # type: ignore[operator]
    got = resolve_clusterset(store, DB, 1)
    assert got is not None and [rr.rdata for rr in got.answer] == ["10.246.3.7"]
    assert store.delete("zones", "ServiceImport", ("shop", "api"), NOW + 4)
    got = resolve_clusterset(store, name, 1)
    assert got is not None and got.rcode == Rcode.NXDOMAIN
    assert clusterset_dependencies(Z) == ("apex",)
    assert clusterset_dependencies("shop.svc." + Z) == (("ns", "shop"),)
    assert clusterset_dependencies("web.shop.svc.cluster.local.") == ("any",)


@pytest.mark.parametrize(("spec", "error"), [
    ({"type": "LoadBalancer"}, "spec.type: want ClusterSetIP or Headless, got 'LoadBalancer'"),
    ({"ips": ["10.0.0.300"]}, "spec.ips[0]: not an IP address: '10.0.0.300'"),
    ({"ports": [{"port": "http"}]}, "spec.ports[0].port: not an integer"),
])
def test_invalid_imports_name_the_field(spec: dict[str, object], error: str) -> None:
    with pytest.raises(ConvertError, match=error.replace("[", r"\[").replace("]", r"\]")):
        convert({"kind": "ServiceImport", "metadata": {"name": "x", "namespace": "shop"},
                 "spec": spec})


def test_the_zones_example_answers() -> None:
    store = load_store(ZONES)
    got = resolve_clusterset(store, "web.shop.svc." + Z, 1)
    assert got is not None and [rr.rdata for rr in got.answer] == ["10.112.0.20"]
    got = resolve_clusterset(store, "db-0.kind-east.db.shop.svc." + Z, 1)
    assert got is not None and [rr.rdata for rr in got.answer] == ["10.245.1.20"]
