"""The ``multicluster`` directive (github.com/coredns/multicluster; KEP-1645): parsing and
its errors, answers from zones/multicluster.yaml over real sockets, ``noendpoints``,
``fallthrough``, kept answers; and from the test API server (tests/kubeapi.py): a
ServiceImport added, changed and deleted, seen within a second; a cluster without the CRD
is one log line. The pure resolver: tests/test_multicluster.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from clusterdns.core.errors import ConfigError
from clusterdns.corefile.config import load
from clusterdns.plugins.multicluster import MulticlusterConfig

from .conftest import RunningServer, start_clusterdns, stop_server
from .corefile_server import serve, texts
from .kubeapi import KubeAPIServer
from .test_kube import ask, endpointslice, namespace, service

Z = "clusterset.local."
WEB = f"web.shop.svc.{Z}"
DB = f"db.shop.svc.{Z}"
MCS = "multicluster.x-k8s.io"


def test_parse_options_and_defaults() -> None:
    servers = load(
        "clusterset.local cluster.local {\n  multicluster {\n    kubeconfig /k.conf ctx\n"
        "    noendpoints\n    fallthrough\n  }\n}\n.:53 {\n  multicluster clusterset.local\n}\n"
    )
    assert servers[0].plugins["multicluster"] == MulticlusterConfig(
        ("clusterset.local.", "cluster.local."), (".",), False, "/k.conf", "ctx")
    assert servers[1].plugins["multicluster"] == MulticlusterConfig(("clusterset.local.",))


@pytest.mark.parametrize(("body", "error"), [
    ("multicluster {\n  noendpoints x\n}", "Corefile:3: multicluster: want noendpoints, got 'x'"),
    ("multicluster {\n  kubeconfig\n}",
     "Corefile:3: multicluster: want kubeconfig KUBECONFIG [CONTEXT], got 'nothing'"),
    ("multicluster {\n  ttl 5\n}", "Corefile:3: multicluster: unknown property 'ttl'"),
])
def test_errors_name_the_line(body: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(f".:53 {{\n{body}\n}}\n")
    assert str(info.value) == error


CLUSTERSET = """\
.:53 {
    multicluster clusterset.local%s
    kubernetes cluster.local
    whoami
}
"""


def test_answers_from_zones() -> None:
    """zones/multicluster.yaml: web is a ClusterSetIP import, db a Headless one with
    endpoints in kind-east and kind-west; asked twice (the second from the kept answer)."""
    with serve(CLUSTERSET % "") as s:
        for _ in range(2):
            assert texts(s.ask(WEB)) == [f"{WEB} 5 IN A 10.112.0.20"]
            assert texts(s.ask(DB)) == [f"{DB} 5 IN A 10.245.1.20", f"{DB} 5 IN A 10.246.1.20"]
            assert texts(s.ask(f"db-0.kind-east.{DB}")) == [
                f"db-0.kind-east.{DB} 5 IN A 10.245.1.20"]
            srv = s.ask(f"_http._tcp.{WEB}", "SRV")
            assert texts(srv) == [f"_http._tcp.{WEB} 5 IN SRV 0 100 80 {WEB}"]
            missing = s.ask(f"nothing.shop.svc.{Z}")
            assert missing.rcode() == dns.rcode.NXDOMAIN
            assert [r.name.to_text() for r in missing.authority] == [Z]
        # the cluster zone is the kubernetes plugin's, untouched
        assert texts(s.ask("web.shop.svc.cluster.local.")) == [
            "web.shop.svc.cluster.local. 5 IN A 10.96.100.10"]


def test_noendpoints_and_fallthrough() -> None:
    with serve(CLUSTERSET % " {\n      noendpoints\n      fallthrough\n    }") as s:
        assert texts(s.ask(WEB)) == [f"{WEB} 5 IN A 10.112.0.20"]
        # noendpoints: the Headless import is NXDOMAIN, which falls through to whoami
        reply = s.ask(DB)
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
        assert [r.rdtype for r in reply.additional][:2] == [1, 33]  # whoami: A and SRV


# ---- the live source ------------------------------------------------------------------------


def service_import(name: str, *ips: str, ns: str = "shop", headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "Headless" if headless else "ClusterSetIP",
                            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    if not headless:
        spec["ips"] = list(ips)
    return {"apiVersion": f"{MCS}/v1alpha1", "kind": "ServiceImport",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def imported_slice(name: str, cluster: str, ip: str, ns: str = "shop") -> dict[str, Any]:
    obj = endpointslice(name, (ip, True), name=f"imported-{name}-{cluster}", ns=ns)
    obj["metadata"]["labels"] = {"multicluster.kubernetes.io/service-name": name,
                                 "multicluster.kubernetes.io/source-cluster": cluster}
    return obj


def within_a_second(server: RunningServer, name: str, want: tuple[str, list[str]]) -> None:
    end = time.monotonic() + 1.0
    got = ask(server, name)
    while got != want and time.monotonic() < end:
        time.sleep(0.01)
        got = ask(server, name)
    assert got == want, f"{name}: {got} != {want}"


@pytest.fixture
def api() -> Iterator[KubeAPIServer]:
    server = KubeAPIServer(token="s3cret")
    server.start()
    server.load([namespace("default"), namespace("shop"), service("web")])
    yield server
    server.stop()


@pytest.fixture
def conf(api: KubeAPIServer, tmp_path: Path) -> Iterator[Callable[[], RunningServer]]:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f".:0 {{\n  bind 127.0.0.1\n  multicluster clusterset.local {{\n"
        f"    kubeconfig {kubeconfig}\n  }}\n  kubernetes cluster.local\n}}\n")
    started: list[RunningServer] = []

    def run() -> RunningServer:
        server = start_clusterdns("-conf", str(corefile))
        started.append(server)
        return server

    yield run
    for server in started:
        assert stop_server(server) == 0


def test_live_imports_follow_add_change_delete(
    api: KubeAPIServer, conf: Callable[[], RunningServer]
) -> None:
    server = conf()
    server.wait_for_log("synced with the API:")
    assert any(p.endswith("/serviceimports") for _, p, _ in list(api.requests))
    assert ask(server, WEB) == ("NXDOMAIN", [])  # kept: the add must drop it
    api.create(service_import("web", "10.112.0.20"))
    within_a_second(server, WEB, ("NOERROR", ["10.112.0.20"]))
    api.update(service_import("web", "10.112.0.21"))
    within_a_second(server, WEB, ("NOERROR", ["10.112.0.21"]))
    api.create(service_import("db", headless=True))
    within_a_second(server, DB, ("NXDOMAIN", []))  # Headless without endpoints (2.4.1)
    api.create(imported_slice("db", "east", "10.245.1.20"))
    within_a_second(server, DB, ("NOERROR", ["10.245.1.20"]))
    api.delete("ServiceImport", "shop", "web")
    within_a_second(server, WEB, ("NXDOMAIN", []))
    assert ask(server, "web.shop.svc.cluster.local.") == ("NOERROR", ["10.96.0.20"])


def test_a_cluster_without_the_crd_is_one_log_line(
    api: KubeAPIServer, conf: Callable[[], RunningServer]
) -> None:
    api.missing_groups.add(MCS)
    server = conf()
    server.wait_for_log("synced with the API:")
    missing = [line for line in server.log_lines if "is not served" in line]
    assert len(missing) == 1 and MCS in missing[0], missing
    assert ask(server, WEB) == ("NXDOMAIN", [])
    assert ask(server, "web.shop.svc.cluster.local.") == ("NOERROR", ["10.96.0.20"])


# ---- clusterdns resolve: which import answered, or why not -----------------------------------


@pytest.mark.parametrize(("qname", "why"), [
    (WEB, f"{WEB} (multicluster {Z}): ServiceImport shop/web (ClusterSetIP): spec.ips 10.112.0.20"),
    (DB, f"{DB} (multicluster {Z}): ServiceImport shop/db (Headless): ready endpoints 10.245.1.20 "
         "(kind-east), 10.246.1.20 (kind-west) from EndpointSlices labelled "
         "multicluster.kubernetes.io/service-name=db"),
    (f"nope.shop.svc.{Z}", f"nope.shop.svc.{Z} (multicluster {Z}): NXDOMAIN: no ServiceImport shop/nope"),
    (f"web.nowhere.svc.{Z}", f"web.nowhere.svc.{Z} (multicluster {Z}): NXDOMAIN: no namespace nowhere"),
])
def test_resolve_command_explains(capsys: pytest.CaptureFixture[str], qname: str, why: str) -> None:
    from clusterdns.__main__ import main

    from .corefile_server import ZONES

    code = main(["resolve", qname, "--zones", str(ZONES), "--type", "A",
                 "--clusterset-zone", "clusterset.local"])
    out = capsys.readouterr().out
    assert code == (0 if "NXDOMAIN" not in why else 2)
    assert f"why: {why}" in out.splitlines()
