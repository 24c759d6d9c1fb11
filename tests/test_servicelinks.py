"""Service links: the environment variables the kubelet gives a pod (clusterdns.tools.servicelinks).

Expected values are written out by hand from kubelet_pods.go getServiceEnvVarMap and
envvars.go FromServices; the stores are built from manifests as kubectl writes them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterdns.core.store import Store
from clusterdns.tools.servicelinks import env_name, service_env

from .conftest import ZONES, load_store

KUBERNETES = {
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "KUBERNETES_SERVICE_PORT_HTTPS": "443",
    "KUBERNETES_PORT": "tcp://10.96.0.1:443",
    "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
    "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
    "KUBERNETES_PORT_443_TCP_PORT": "443",
    "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
}


@pytest.fixture(scope="module")
def zones() -> Store:
    return load_store(ZONES)


def test_shop_namespace(zones: Store) -> None:
    # db (headless), payments and web-alias (ExternalName) have no ClusterIP: no variables.
    assert service_env(zones, "shop") == {
        **KUBERNETES,
        # web: two named ports
        "WEB_SERVICE_HOST": "10.96.100.10",
        "WEB_SERVICE_PORT": "80",
        "WEB_SERVICE_PORT_HTTP": "80",
        "WEB_SERVICE_PORT_HTTPS": "443",
        "WEB_PORT": "tcp://10.96.100.10:80",
        "WEB_PORT_80_TCP": "tcp://10.96.100.10:80",
        "WEB_PORT_80_TCP_PROTO": "tcp",
        "WEB_PORT_80_TCP_PORT": "80",
        "WEB_PORT_80_TCP_ADDR": "10.96.100.10",
        "WEB_PORT_443_TCP": "tcp://10.96.100.10:443",
        "WEB_PORT_443_TCP_PROTO": "tcp",
        "WEB_PORT_443_TCP_PORT": "443",
        "WEB_PORT_443_TCP_ADDR": "10.96.100.10",
        # gateway: dual-stack, the primary (IPv4) ClusterIP only
        "GATEWAY_SERVICE_HOST": "10.96.100.12",
        "GATEWAY_SERVICE_PORT": "8080",
        "GATEWAY_SERVICE_PORT_HTTP": "8080",
        "GATEWAY_PORT": "tcp://10.96.100.12:8080",
        "GATEWAY_PORT_8080_TCP": "tcp://10.96.100.12:8080",
        "GATEWAY_PORT_8080_TCP_PROTO": "tcp",
        "GATEWAY_PORT_8080_TCP_PORT": "8080",
        "GATEWAY_PORT_8080_TCP_ADDR": "10.96.100.12",
        # metrics: one unnamed port, so no METRICS_SERVICE_PORT_<NAME>
        "METRICS_SERVICE_HOST": "10.96.100.13",
        "METRICS_SERVICE_PORT": "9090",
        "METRICS_PORT": "tcp://10.96.100.13:9090",
        "METRICS_PORT_9090_TCP": "tcp://10.96.100.13:9090",
        "METRICS_PORT_9090_TCP_PROTO": "tcp",
        "METRICS_PORT_9090_TCP_PORT": "9090",
        "METRICS_PORT_9090_TCP_ADDR": "10.96.100.13",
    }


def test_default_namespace(zones: Store) -> None:
    assert service_env(zones, "default") == KUBERNETES


def test_kube_system_udp_first_port(zones: Store) -> None:
    # As in every kind pod in kube-system: the Docker link of the first port says udp.
    assert service_env(zones, "kube-system") == {
        **KUBERNETES,
        "KUBE_DNS_SERVICE_HOST": "10.96.0.10",
        "KUBE_DNS_SERVICE_PORT": "53",
        "KUBE_DNS_SERVICE_PORT_DNS": "53",
        "KUBE_DNS_SERVICE_PORT_DNS_TCP": "53",
        "KUBE_DNS_SERVICE_PORT_METRICS": "9153",
        "KUBE_DNS_PORT": "udp://10.96.0.10:53",
        "KUBE_DNS_PORT_53_UDP": "udp://10.96.0.10:53",
        "KUBE_DNS_PORT_53_UDP_PROTO": "udp",
        "KUBE_DNS_PORT_53_UDP_PORT": "53",
        "KUBE_DNS_PORT_53_UDP_ADDR": "10.96.0.10",
        "KUBE_DNS_PORT_53_TCP": "tcp://10.96.0.10:53",
        "KUBE_DNS_PORT_53_TCP_PROTO": "tcp",
        "KUBE_DNS_PORT_53_TCP_PORT": "53",
        "KUBE_DNS_PORT_53_TCP_ADDR": "10.96.0.10",
        "KUBE_DNS_PORT_9153_TCP": "tcp://10.96.0.10:9153",
        "KUBE_DNS_PORT_9153_TCP_PROTO": "tcp",
        "KUBE_DNS_PORT_9153_TCP_PORT": "9153",
        "KUBE_DNS_PORT_9153_TCP_ADDR": "10.96.0.10",
    }


def test_namespace_without_services_gets_the_master_service(zones: Store) -> None:
    assert service_env(zones, "kube-public") == KUBERNETES
    assert service_env(zones, "no-such-namespace") == KUBERNETES


def test_service_links_disabled_keeps_the_master_service(zones: Store) -> None:
    assert service_env(zones, "shop", enable_service_links=False) == KUBERNETES
    assert service_env(zones, "default", enable_service_links=False) == KUBERNETES


# ---- edge cases, from manifests written here ---------------------------------------------


def _store(tmp_path: Path, text: str) -> Store:
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return load_store(path)


def _service(namespace: str, name: str, spec: str) -> str:
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec: {spec}\n---\n"
    )


NAMESPACES = "".join(
    f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n"
    for ns in ("default", "team", "other")
)
MASTER = _service(
    "default",
    "kubernetes",
    "{clusterIP: 10.96.0.1, ports: [{name: https, port: 443, protocol: TCP, targetPort: 6443}]}",
)


def test_own_kubernetes_service_replaces_the_master_one(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        NAMESPACES
        + MASTER
        + _service("team", "kubernetes", "{clusterIP: 10.96.7.7, ports: [{port: 8080}]}"),
    )
    assert service_env(store, "team") == {
        "KUBERNETES_SERVICE_HOST": "10.96.7.7",
        "KUBERNETES_SERVICE_PORT": "8080",
        "KUBERNETES_PORT": "tcp://10.96.7.7:8080",
        "KUBERNETES_PORT_8080_TCP": "tcp://10.96.7.7:8080",
        "KUBERNETES_PORT_8080_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_8080_TCP_PORT": "8080",
        "KUBERNETES_PORT_8080_TCP_ADDR": "10.96.7.7",
    }
    # Nowhere else: other namespaces still see the master service.
    assert service_env(store, "other") == KUBERNETES
    # Without service links the namespace's own services are not considered at all.
    assert service_env(store, "team", enable_service_links=False) == KUBERNETES


def test_own_headless_kubernetes_service_does_not_hide_the_master_one(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        NAMESPACES
        + MASTER
        + _service("team", "kubernetes", "{clusterIP: None, ports: [{name: x, port: 1}]}"),
    )
    assert service_env(store, "team") == KUBERNETES


def test_master_namespace_is_configurable(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        NAMESPACES
        + MASTER
        + _service(
            "other", "kubernetes", "{clusterIP: 10.96.9.9, ports: [{name: https, port: 443}]}"
        ),
    )
    env = service_env(store, "team", master_namespace="other")
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.9.9"
    assert env["KUBERNETES_PORT"] == "tcp://10.96.9.9:443"
    # Only the service named kubernetes comes from the master namespace.
    assert set(env) == set(KUBERNETES)


def test_no_master_service_no_variables(tmp_path: Path) -> None:
    assert service_env(_store(tmp_path, NAMESPACES), "default") == {}


def test_dashes_in_service_and_port_names(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        NAMESPACES
        + _service(
            "team",
            "my-web-app",
            "{clusterIP: 10.96.5.5, ports: [{name: grpc-web, port: 9000, protocol: TCP},"
            " {name: dns-udp, port: 5353, protocol: UDP}, {name: sctp-x, port: 7777, protocol: SCTP}]}",
        ),
    )
    assert service_env(store, "team") == {
        "MY_WEB_APP_SERVICE_HOST": "10.96.5.5",
        "MY_WEB_APP_SERVICE_PORT": "9000",
        "MY_WEB_APP_SERVICE_PORT_GRPC_WEB": "9000",
        "MY_WEB_APP_SERVICE_PORT_DNS_UDP": "5353",
        "MY_WEB_APP_SERVICE_PORT_SCTP_X": "7777",
        "MY_WEB_APP_PORT": "tcp://10.96.5.5:9000",
        "MY_WEB_APP_PORT_9000_TCP": "tcp://10.96.5.5:9000",
        "MY_WEB_APP_PORT_9000_TCP_PROTO": "tcp",
        "MY_WEB_APP_PORT_9000_TCP_PORT": "9000",
        "MY_WEB_APP_PORT_9000_TCP_ADDR": "10.96.5.5",
        "MY_WEB_APP_PORT_5353_UDP": "udp://10.96.5.5:5353",
        "MY_WEB_APP_PORT_5353_UDP_PROTO": "udp",
        "MY_WEB_APP_PORT_5353_UDP_PORT": "5353",
        "MY_WEB_APP_PORT_5353_UDP_ADDR": "10.96.5.5",
        "MY_WEB_APP_PORT_7777_SCTP": "sctp://10.96.5.5:7777",
        "MY_WEB_APP_PORT_7777_SCTP_PROTO": "sctp",
        "MY_WEB_APP_PORT_7777_SCTP_PORT": "7777",
        "MY_WEB_APP_PORT_7777_SCTP_ADDR": "10.96.5.5",
    }


def test_ipv6_primary_cluster_ip_is_bracketed_in_urls_only(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        NAMESPACES
        + _service(
            "team",
            "api",
            "{clusterIP: 'fd00:10:96::a', clusterIPs: ['fd00:10:96::a', 10.96.3.3],"
            " ports: [{name: http, port: 80}]}",
        ),
    )
    assert service_env(store, "team") == {
        "API_SERVICE_HOST": "fd00:10:96::a",
        "API_SERVICE_PORT": "80",
        "API_SERVICE_PORT_HTTP": "80",
        "API_PORT": "tcp://[fd00:10:96::a]:80",
        "API_PORT_80_TCP": "tcp://[fd00:10:96::a]:80",
        "API_PORT_80_TCP_PROTO": "tcp",
        "API_PORT_80_TCP_PORT": "80",
        "API_PORT_80_TCP_ADDR": "fd00:10:96::a",
    }


def test_only_services_of_the_pods_namespace(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        NAMESPACES
        + MASTER
        + _service("other", "web", "{clusterIP: 10.96.1.1, ports: [{port: 80}]}")
        + _service("default", "web", "{clusterIP: 10.96.2.2, ports: [{port: 80}]}"),
    )
    assert service_env(store, "other")["WEB_SERVICE_HOST"] == "10.96.1.1"
    assert service_env(store, "default")["WEB_SERVICE_HOST"] == "10.96.2.2"
    assert "WEB_SERVICE_HOST" not in service_env(store, "team")


def test_env_name() -> None:
    assert env_name("kube-dns") == "KUBE_DNS"
    assert env_name("a-b-c") == "A_B_C"
