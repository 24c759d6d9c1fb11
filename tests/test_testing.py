r"""The pytest plugin (clusterdns.testing), as docs/testing.md describes it; that page's
example is run here as it is written."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from clusterdns.testing import DEFAULT_OBJECTS, ClusterDNS

from .conftest import ROOT, ZONES
from .test_servicelinks import KUBERNETES


def _entry_point_installed() -> bool:
    return any(
        ep.value == "clusterdns.testing" for ep in importlib.metadata.entry_points(group="pytest11")
    )


# The plugin loads by its entry point once clusterdns is installed with it; until then (an
# older editable install) load it by name. Both at once would register it twice.
PLUGIN_ARGS: tuple[str, ...] = () if _entry_point_installed() else ("-p", "clusterdns.testing")
pytest_plugins = ["pytester"] if not PLUGIN_ARGS else ["pytester", "clusterdns.testing"]

DOCS_EXAMPLE = re.search(  # type: ignore[union-attr]
    r"```python\n(.*?)```", (ROOT / "docs" / "testing.md").read_text(), re.S
).group(1)

SHOP = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
TEAM = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}


def service(namespace: str, name: str, ip: str, *ports: tuple[str, int]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "clusterIP": ip,
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
        },
    }


def addresses(resolver: dns.resolver.Resolver, name: str, qtype: str = "A") -> list[str]:
    return sorted(rr.to_text() for rr in resolver.resolve(name, qtype))


def ask(server: ClusterDNS, name: str, qtype: str = "A", tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, qtype)
    if tcp:
        return dns.query.tcp(query, server.host, timeout=2, port=server.port)
    return dns.query.udp(query, server.host, timeout=2, port=server.port)


# ---- the fixture, directly ---------------------------------------------------------------


def test_kubernetes_default_resolves(clusterdns: ClusterDNS) -> None:
    assert clusterdns.address == f"127.0.0.1:{clusterdns.port}" and clusterdns.port > 0
    answer = clusterdns.resolver().resolve("kubernetes.default", "A")
    assert answer.qname.to_text() == "kubernetes.default.svc.cluster.local."
    assert [rr.to_text() for rr in answer] == ["10.96.0.1"]
    assert answer.rrset is not None and answer.rrset.ttl == 30
    # TCP on the same port
    reply = ask(clusterdns, "kube-dns.kube-system.svc.cluster.local.", tcp=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rr.to_text() for rr in reply.answer[0]] == ["10.96.0.10"]


@pytest.fixture
def zones_dns(clusterdns_factory: Callable[..., ClusterDNS]) -> ClusterDNS:
    """zones/ served (the marker is tested through pytester, where the plugin is loaded
    before the test module, so the marker is known when the module is imported)."""
    return clusterdns_factory(manifests=[ZONES])


def test_short_names_from_the_zones_manifests(zones_dns: ClusterDNS) -> None:
    clusterdns = zones_dns
    shop = clusterdns.resolver("shop")
    answer = shop.resolve("web", "A")
    assert answer.qname.to_text() == "web.shop.svc.cluster.local."
    assert [rr.to_text() for rr in answer] == ["10.96.100.10"]
    assert addresses(shop, "gateway", "AAAA") == ["fd00:10:96::100c"]
    # another namespace's service needs its namespace in the name
    assert clusterdns.resolver("default").resolve("web.shop", "A").qname.to_text() == (
        "web.shop.svc.cluster.local."
    )
    # a headless service's pods by hostname: db-0.db (StatefulSet), ready endpoints only
    assert addresses(shop, "db-0.db") == ["10.244.1.20"]
    assert addresses(shop, "db") == ["10.244.1.20", "10.244.1.21"]


def test_apply_change_delete_a_service(clusterdns: ClusterDNS) -> None:
    team = clusterdns.resolver("team")
    with pytest.raises(dns.resolver.NXDOMAIN):
        team.resolve("api.team.svc.cluster.local.", "A")

    clusterdns.apply(TEAM, service("team", "api", "10.96.50.1", ("http", 80)))
    assert addresses(team, "api") == ["10.96.50.1"]
    assert clusterdns.env("team")["API_SERVICE_HOST"] == "10.96.50.1"

    clusterdns.apply(service("team", "api", "10.96.50.2", ("http", 80), ("grpc", 9000)))
    assert addresses(team, "api") == ["10.96.50.2"]
    assert addresses(team, "_grpc._tcp.api", "SRV") == ["0 100 9000 api.team.svc.cluster.local."]

    clusterdns.delete("Service", "team", "api")
    with pytest.raises(dns.resolver.NXDOMAIN):
        team.resolve("api.team.svc.cluster.local.", "A")
    assert "API_SERVICE_HOST" not in clusterdns.env("team")
    with pytest.raises(KeyError, match="Service team/api: not found"):
        clusterdns.delete("Service", "team", "api")


def test_headless_service_pod_hostname(clusterdns: ClusterDNS) -> None:
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "pg-abcde",
            "namespace": "team",
            "labels": {"kubernetes.io/service-name": "pg"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "postgres", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.2.10"], "hostname": "pg-0", "conditions": {"ready": True}},
            {"addresses": ["10.244.2.11"], "hostname": "pg-1", "conditions": {"ready": False}},
        ],
    }
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "pg", "namespace": "team"},
        "spec": {"clusterIP": "None", "ports": [{"name": "postgres", "port": 5432}]},
    }
    clusterdns.apply({"apiVersion": "v1", "kind": "List", "items": [TEAM, headless, slice_]})
    team = clusterdns.resolver("team")
    assert addresses(team, "pg-0.pg") == ["10.244.2.10"]
    assert addresses(team, "pg") == ["10.244.2.10"]  # ready endpoints only
    with pytest.raises(dns.resolver.NXDOMAIN):
        team.resolve("pg-1.pg.team.svc.cluster.local.", "A")
    # pg-1 becomes ready
    endpoints = [
        {"addresses": ["10.244.2.10"], "hostname": "pg-0", "conditions": {"ready": True}},
        {"addresses": ["10.244.2.11"], "hostname": "pg-1", "conditions": {"ready": True}},
    ]
    clusterdns.apply({**slice_, "endpoints": endpoints})
    assert addresses(team, "pg-1.pg") == ["10.244.2.11"]
    assert addresses(team, "pg") == ["10.244.2.10", "10.244.2.11"]
    # headless: no service links
    assert clusterdns.env("team") == KUBERNETES


def test_env(zones_dns: ClusterDNS) -> None:
    clusterdns = zones_dns
    assert clusterdns.env() == KUBERNETES
    shop = clusterdns.env("shop")
    assert shop["WEB_SERVICE_PORT_HTTPS"] == "443"
    assert shop["GATEWAY_PORT_8080_TCP_ADDR"] == "10.96.100.12"
    assert not any(name.startswith(("DB_", "PAYMENTS_")) for name in shop)
    assert clusterdns.env("kube-system")["KUBE_DNS_PORT"] == "udp://10.96.0.10:53"


def test_resolv_conf(clusterdns: ClusterDNS) -> None:
    assert clusterdns.resolv_conf("shop") == (
        "nameserver 127.0.0.1\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n"
    )
    assert clusterdns.resolv_conf("shop", searches=["corp.example"], options=["ndots:2"]) == (
        "nameserver 127.0.0.1\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "options ndots:2\n"
    )


def test_resolver_settings(clusterdns: ClusterDNS) -> None:
    resolver = clusterdns.resolver("team", search=["corp.example"], ndots=2)
    assert resolver.nameservers == ["127.0.0.1"] and resolver.port == clusterdns.port
    assert [n.to_text() for n in resolver.search] == [
        "team.svc.cluster.local.",
        "svc.cluster.local.",
        "cluster.local.",
        "corp.example.",
    ]
    assert resolver.ndots == 2 and resolver.use_search_by_default
    assert resolver.lifetime <= 5


def test_names_outside_the_zone_are_refused(clusterdns: ClusterDNS) -> None:
    # No upstream: the bare name, last in the search walk, is REFUSED (as documented).
    with pytest.raises(dns.resolver.NoNameservers):
        clusterdns.resolver().resolve("nosuch", "A")
    with pytest.raises(dns.resolver.NXDOMAIN):
        clusterdns.resolver().resolve("nosuch.default.svc.cluster.local.", "A")
    assert ask(clusterdns, "example.com.").rcode() == dns.rcode.REFUSED


def test_delete_namespace_takes_its_objects(clusterdns: ClusterDNS) -> None:
    clusterdns.apply(TEAM, service("team", "api", "10.96.50.1", ("http", 80)))
    clusterdns.delete("Namespace", "", "team")
    assert "API_SERVICE_HOST" not in clusterdns.env("team")
    clusterdns.apply(TEAM)  # the namespace again, without its old service
    with pytest.raises(dns.resolver.NXDOMAIN):
        clusterdns.resolver("team").resolve("api.team.svc.cluster.local.", "A")


def test_invalid_objects_name_the_object_and_change_nothing(clusterdns: ClusterDNS) -> None:
    good = service("default", "good", "10.96.50.9", ("http", 80))
    bad = service("team", "api", "10.96.50.1", ("http", "eighty"))  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"^Service team/api: spec.ports\[0\].port: not an integer$"
    ):
        clusterdns.apply(good, bad)
    with pytest.raises(dns.resolver.NXDOMAIN):  # all or nothing: good was not applied either
        clusterdns.resolver().resolve("good.default.svc.cluster.local.", "A")
    with pytest.raises(ValueError, match="kind: not one of"):
        clusterdns.apply({"metadata": {"name": "x"}})
    with pytest.raises(TypeError, match="not a Kubernetes object"):
        clusterdns.apply("Service")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind: not one of"):
        clusterdns.delete("Deployment", "team", "api")
    # kinds clusterdns does not serve are ignored, as in manifests
    clusterdns.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}})


def test_factory_with_options(clusterdns_factory: Callable[..., ClusterDNS]) -> None:
    one = clusterdns_factory(zone="example.local", ttl=5)
    two = clusterdns_factory(objects=[TEAM, service("team", "api", "10.96.50.1", ("http", 80))])
    assert one.port != two.port
    answer = one.resolver().resolve("kubernetes.default", "A")
    assert answer.qname.to_text() == "kubernetes.default.svc.example.local."
    assert answer.rrset is not None and answer.rrset.ttl == 5
    assert addresses(two.resolver("team"), "api") == ["10.96.50.1"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        one.resolver().resolve("api.team.svc.example.local.", "A")


def test_bad_options_and_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pods: want"):
        ClusterDNS(pods="yes")
    with pytest.raises(ValueError, match="ttl"):
        ClusterDNS(ttl=-1)
    with pytest.raises(FileNotFoundError):
        ClusterDNS(manifests=[tmp_path / "missing.yaml"])
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: x}]}\n"
    )
    with pytest.raises(ValueError, match=r"broken.yaml: Service shop/web: spec.ports\[0\].port"):
        ClusterDNS(manifests=[broken])


def test_lifecycle_without_pytest_fixtures() -> None:
    server = ClusterDNS(objects=[SHOP])
    with pytest.raises(RuntimeError, match="not running"):
        server.env()
    with server:
        assert server.running
        assert ask(server, "kubernetes.default.svc.cluster.local.").rcode() == dns.rcode.NOERROR
        with pytest.raises(RuntimeError, match="once"):
            server.start()
    assert not server.running
    server.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not running"):
        server.apply(SHOP)
    with pytest.raises(RuntimeError, match="not running"):
        server.resolver()
    with pytest.raises(RuntimeError, match="once"):
        server.start()


def test_objects_override_defaults(clusterdns_factory: Callable[..., ClusterDNS]) -> None:
    moved = service("default", "kubernetes", "10.0.0.1", ("https", 443))
    server = clusterdns_factory(objects=[moved])
    assert addresses(server.resolver(), "kubernetes") == ["10.0.0.1"]
    assert server.env()["KUBERNETES_PORT"] == "tcp://10.0.0.1:443"
    # everything else of the default cluster is still there
    kinds = sorted(obj["kind"] for obj in DEFAULT_OBJECTS)
    assert kinds == ["Namespace"] * 4 + ["Service"] * 2
    assert addresses(server.resolver("kube-system"), "kube-dns") == ["10.96.0.10"]


def test_import_is_light() -> None:
    code = (
        "import sys, clusterdns.testing\n"
        "heavy = [m for m in ('clusterdns.plugins.chain', 'clusterdns.core.store', 'dns', 'yaml',"
        " 'prometheus_client', 'kubernetes') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# ---- as a user project runs it -------------------------------------------------------------


def test_docs_example(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_dns=DOCS_EXAMPLE)
    result = pytester.runpytest(*PLUGIN_ARGS, "--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_marker_with_relative_manifests_and_factory(pytester: pytest.Pytester) -> None:
    (pytester.path / "k8s").mkdir()
    (pytester.path / "k8s" / "shop.yaml").write_text((ZONES / "shop.yaml").read_text())
    pytester.makepyfile(
        test_user="""
        import pytest

        pytestmark = pytest.mark.clusterdns(manifests=["k8s/"])

        def test_module_marker(clusterdns):
            assert clusterdns.resolver("shop").resolve("web", "A")[0].address == "10.96.100.10"

        @pytest.mark.clusterdns(zone="corp.local")
        def test_closest_marker_wins(clusterdns):
            answer = clusterdns.resolver().resolve("kubernetes.default", "A")
            assert answer.qname.to_text() == "kubernetes.default.svc.corp.local."

        def test_factory(clusterdns, clusterdns_factory):
            other = clusterdns_factory(manifests=["k8s/shop.yaml"], ttl=7)
            assert other.port != clusterdns.port
            assert other.resolver("shop").resolve("web", "A").rrset.ttl == 7

        @pytest.mark.clusterdns(objects=[{"kind": "Service", "metadata": {"name": "x"}, "spec": {"clusterIP": "nope"}}])
        def test_invalid_object_fails_the_setup(clusterdns):
            pass
        """
    )
    result = pytester.runpytest(*PLUGIN_ARGS, "--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*ValueError: Service default/x: spec.clusterIP: not an IP address*"]
    )
    result = pytester.runpytest(*PLUGIN_ARGS, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.clusterdns(manifests=(), objects=()*"])


def test_loaded_by_its_entry_point(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pyproject entry point, installed as pip would (a dist-info on the path), loads the
    plugin with no -p at all."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert table["pytest11"] == {"clusterdns": "clusterdns.testing"}
    site = pytester.mkdir("site")
    info = site / "clusterdns_plugin_check-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: clusterdns-plugin-check\nVersion: 0.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in table["pytest11"].items())
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.makepyfile(
        test_ep="""
        def test_fixture_is_there(clusterdns):
            assert clusterdns.resolver().resolve("kubernetes.default", "A")[0].address == "10.96.0.1"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)


def test_marker_serves_exposed_names(pytester: pytest.Pytester) -> None:
    """An application's test resolves its public host name (issue 15): the marker's
    gateway_zone/external_zone, and apply() of an Ingress, a Gateway and an HTTPRoute."""
    pytester.makepyfile(
        test_public="""
        import pytest

        GW = "gateway.networking.k8s.io/v1"
        INGRESS = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                   "metadata": {"name": "shop", "namespace": "default"},
                   "spec": {"rules": [{"host": "mlopshub.com"}]},
                   "status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.201"}]}}}
        GATEWAY = {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "eg", "namespace": "default"},
                   "status": {"addresses": [{"type": "IPAddress", "value": "172.18.255.202"}]}}
        ROUTE = {"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": "api", "namespace": "default"},
                 "spec": {"hostnames": ["api.mlopshub.com"], "parentRefs": [{"name": "eg"}]}}
        LB = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": "default"},
              "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.77"},
              "status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.203"}]}}}

        @pytest.mark.clusterdns(objects=[INGRESS], gateway_zone="mlopshub.com",
                                external_zone=["example.org"])
        def test_public_names(clusterdns):
            resolver = clusterdns.resolver()
            assert [r.address for r in resolver.resolve("mlopshub.com.", "A")] == ["172.18.255.201"]
            clusterdns.apply(GATEWAY, ROUTE, LB)
            assert [r.address for r in resolver.resolve("api.mlopshub.com.", "A")] == ["172.18.255.202"]
            assert [r.address for r in resolver.resolve("lb.default.example.org.", "A")] == ["172.18.255.203"]
            clusterdns.delete("HTTPRoute", "default", "api")
            with pytest.raises(Exception, match="does not exist"):
                resolver.resolve("api.mlopshub.com.", "A")
        """
    )
    result = pytester.runpytest(*PLUGIN_ARGS, "--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_clusterset_zone_serves_service_imports() -> None:
    """clusterset_zone= answers KEP-1645 names as the multicluster plugin; apply() and
    delete() of a ServiceImport are seen at once."""
    from clusterdns.testing import ClusterDNS

    imp = {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"type": "ClusterSetIP", "ips": ["10.112.0.20"],
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
    with ClusterDNS(objects=[imp], clusterset_zone="clusterset.local") as server:
        resolver = server.resolver()
        name = "web.default.svc.clusterset.local."
        assert [r.address for r in resolver.resolve(name, "A")] == ["10.112.0.20"]
        server.apply({**imp, "spec": {**imp["spec"], "ips": ["10.112.0.21"]}})
        assert [r.address for r in resolver.resolve(name, "A")] == ["10.112.0.21"]
        server.delete("ServiceImport", "default", "web")
        with pytest.raises(Exception, match="does not exist"):
            resolver.resolve(name, "A")
