"""The exposure kinds through the live source: a real ``clusterdns serve --kubeconfig
--gateway-zone --external-zone`` process against the test API server (tests/kubeapi.py),
queried over UDP on loopback; create, change and delete each kind and see the answer
follow. Every wait polls with a deadline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .conftest import RunningServer
from .kubeapi import KubeAPIServer
from .test_kube import api, ask, eventually, serve, service  # noqa: F401 - fixtures

GW = "gateway.networking.k8s.io"
FLAGS = ("--gateway-zone", "mlopshub.com", "--external-zone", "example.org")


def ingress(name: str, *hosts: str, ip: str = "", ns: str = "shop") -> dict[str, Any]:
    status = {"loadBalancer": {"ingress": [{"ip": ip}]}} if ip else {"loadBalancer": {}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"rules": [{"host": h} for h in hosts]}, "status": status}


def gateway(name: str, *ips: str, ns: str = "shop") -> dict[str, Any]:
    return {"apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": name, "namespace": ns},
            "spec": {"gatewayClassName": "eg", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
            "status": {"addresses": [{"type": "IPAddress", "value": ip} for ip in ips]}}


def route(kind: str, name: str, *hosts: str, parent: str = "eg", ns: str = "shop") -> dict[str, Any]:
    version = "v1alpha2" if kind == "TLSRoute" else "v1"
    return {"apiVersion": f"{GW}/{version}", "kind": kind, "metadata": {"name": name, "namespace": ns},
            "spec": {"hostnames": list(hosts), "parentRefs": [{"name": parent}]}}


def lb_service(name: str, ip: str, ns: str = "shop") -> dict[str, Any]:
    obj = service(name, "10.96.0.50", ns=ns, type="LoadBalancer")
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
    return obj


def test_ingress_follows_create_change_delete(
    api: KubeAPIServer, serve: Callable[..., RunningServer]  # noqa: F811
) -> None:
    server = serve(*FLAGS)
    server.wait_for_log("synced with the API:")
    host = "shop.mlopshub.com."
    assert ask(server, host) == ("NXDOMAIN", [])
    api.create(ingress("shop", "shop.mlopshub.com"))  # no address yet
    api.create(ingress("marker", "marker.mlopshub.com", ip="172.18.255.209"))  # after it
    eventually(server, "marker.mlopshub.com.", ("NOERROR", ["172.18.255.209"]))
    assert ask(server, host) == ("NXDOMAIN", [])
    api.update(ingress("shop", "shop.mlopshub.com", ip="172.18.255.201"))
    eventually(server, host, ("NOERROR", ["172.18.255.201"]))
    api.update(ingress("shop", "www.mlopshub.com", ip="172.18.255.205"))
    eventually(server, "www.mlopshub.com.", ("NOERROR", ["172.18.255.205"]))
    eventually(server, host, ("NXDOMAIN", []))
    api.delete("Ingress", "shop", "shop")
    eventually(server, "www.mlopshub.com.", ("NXDOMAIN", []))


def test_routes_follow_their_gateway(
    api: KubeAPIServer, serve: Callable[..., RunningServer]  # noqa: F811
) -> None:
    server = serve(*FLAGS)
    server.wait_for_log("synced with the API:")
    api.create(route("HTTPRoute", "web", "web.mlopshub.com"))
    api.create(route("GRPCRoute", "rpc", "rpc.mlopshub.com"))
    api.create(route("TLSRoute", "tls", "*.tls.mlopshub.com"))
    eventually(server, "web.mlopshub.com.", ("NXDOMAIN", []))  # not attached to a Gateway yet
    api.create(gateway("eg", "172.18.255.202"))
    for name in ("web.mlopshub.com.", "rpc.mlopshub.com.", "a.tls.mlopshub.com."):
        eventually(server, name, ("NOERROR", ["172.18.255.202"]))
    api.update(gateway("eg", "172.18.255.203"))
    eventually(server, "rpc.mlopshub.com.", ("NOERROR", ["172.18.255.203"]))
    api.update(route("HTTPRoute", "web", "web2.mlopshub.com"))
    eventually(server, "web2.mlopshub.com.", ("NOERROR", ["172.18.255.203"]))
    eventually(server, "web.mlopshub.com.", ("NXDOMAIN", []))
    api.delete("TLSRoute", "shop", "tls")
    eventually(server, "a.tls.mlopshub.com.", ("NXDOMAIN", []))
    api.delete("Gateway", "shop", "eg")
    eventually(server, "rpc.mlopshub.com.", ("NXDOMAIN", []))
    api.delete("GRPCRoute", "shop", "rpc")
    api.delete("HTTPRoute", "shop", "web")
    api.create(gateway("eg", "172.18.255.204"))
    eventually(server, "rpc.mlopshub.com.", ("NXDOMAIN", []), deadline=1)


def test_loadbalancer_service_in_both_zones(
    api: KubeAPIServer, serve: Callable[..., RunningServer]  # noqa: F811
) -> None:
    server = serve(*FLAGS)
    server.wait_for_log("synced with the API:")
    api.create(lb_service("edge", "172.18.255.210"))
    eventually(server, "edge.shop.mlopshub.com.", ("NOERROR", ["172.18.255.210"]))
    eventually(server, "edge.shop.example.org.", ("NOERROR", ["172.18.255.210"]))
    api.update(lb_service("edge", "172.18.255.211"))
    eventually(server, "edge.shop.example.org.", ("NOERROR", ["172.18.255.211"]))
    eventually(server, "edge.shop.mlopshub.com.", ("NOERROR", ["172.18.255.211"]))
    api.delete("Service", "shop", "edge")
    eventually(server, "edge.shop.mlopshub.com.", ("NXDOMAIN", []))
    eventually(server, "edge.shop.example.org.", ("NXDOMAIN", []))


def test_missing_gateway_api_is_one_line_and_ready(
    api: KubeAPIServer, serve: Callable[..., RunningServer]  # noqa: F811
) -> None:
    api.missing_groups.add(GW)
    api.create(ingress("shop", "shop.mlopshub.com", ip="172.18.255.201"))
    server = serve(*FLAGS)
    server.wait_for_log("synced with the API:")
    assert ask(server, "shop.mlopshub.com.") == ("NOERROR", ["172.18.255.201"])
    assert ask(server, "web.mlopshub.com.") == ("NXDOMAIN", [])
    missing = [line for line in server.log_lines if "is not served" in line]
    assert len(missing) == 1 and GW in missing[0], missing
    assert not [line for line in server.log_lines if "ERROR" in line or "Traceback" in line]


def test_exposure_kinds_are_watched_only_when_asked(
    api: KubeAPIServer, serve: Callable[..., RunningServer]  # noqa: F811
) -> None:
    server = serve("--external-zone", "example.org")  # k8s_external reads Services only
    server.wait_for_log("synced with the API:")
    paths = {path for _, path, _ in list(api.requests)}
    assert not [p for p in paths if "ingresses" in p or GW in p or "serviceimports" in p], paths
    api.create(lb_service("edge", "172.18.255.210"))
    eventually(server, "edge.shop.example.org.", ("NOERROR", ["172.18.255.210"]))


def test_deploy_opt_in_rbac_block_grants_what_the_source_reads() -> None:
    """deploy/clusterdns.yaml: uncommenting the k8s_gateway and multicluster blocks gives
    list and watch on exactly the resources the live source reads for them, nothing else."""
    import yaml

    from clusterdns.sources.kube import EXPOSURE_RESOURCES, MULTICLUSTER_RESOURCES

    from .conftest import ROOT

    text = (ROOT / "deploy" / "clusterdns.yaml").read_text()
    lines = text.splitlines()
    start = lines.index("#- apiGroups:")
    block = [line[1:] for line in lines[start:] if line.startswith(("#-", "#  "))]
    rules = yaml.safe_load("\n".join(block))
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    wanted = [*EXPOSURE_RESOURCES.values(), *MULTICLUSTER_RESOURCES.values()]
    assert granted == {(r.group, r.plural, v) for r in wanted for v in ("list", "watch")}


class _Sink:
    """Records what a reflector hands over (called from its thread)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def replace(self, kind: str, records: list[Any]) -> None:
        self.calls.append(("replace", [r.name for r in records]))

    def upsert(self, record: Any) -> None:
        self.calls.append(("upsert", record.name))

    def delete(self, kind: str, key: Any) -> None:
        self.calls.append(("delete", key))


def test_crd_installed_later_is_picked_up(api: KubeAPIServer, tmp_path: Any) -> None:  # noqa: F811
    """A reflector for a missing CRD reports it listed and empty, then, once the group is
    served, lists and watches it like any kind."""
    import threading
    import time

    from clusterdns.sources.kube import EXPOSURE_RESOURCES, Reflector, api_client

    client = api_client(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
    api.missing_groups.add(GW)
    sink, listed = _Sink(), threading.Event()
    reflector = Reflector(client, EXPOSURE_RESOURCES["Gateway"], sink,
                          on_listed=lambda kind: listed.set(), missing_retry=0.1)
    thread = threading.Thread(target=reflector.run, daemon=True)
    thread.start()
    try:
        assert listed.wait(10)
        assert sink.calls[0] == ("replace", [])
        api.create(gateway("eg", "172.18.255.202"))
        api.missing_groups.clear()
        end = time.monotonic() + 10
        while ("replace", ["eg"]) not in sink.calls and time.monotonic() < end:
            time.sleep(0.02)
        assert ("replace", ["eg"]) in sink.calls
        api.update(gateway("eg", "172.18.255.203"))
        while ("upsert", "eg") not in sink.calls and time.monotonic() < end:
            time.sleep(0.02)
        assert ("upsert", "eg") in sink.calls
    finally:
        reflector.stop()
        thread.join(5)
