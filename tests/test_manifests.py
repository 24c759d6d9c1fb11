"""The zones/ source: kubectl-style files, wrappers, errors that name file and object."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clusterdns.core.records import Endpoint, EndpointSlice, Pod, Port, Service, ServiceKind
from clusterdns.sources.manifests import load, load_file

from .conftest import ROOT, ZONES

SERVICE_LIST = {
    "apiVersion": "v1",
    "kind": "ServiceList",  # as the raw API writes it: items carry no kind
    "metadata": {"resourceVersion": "42"},
    "items": [
        {
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.0.20",
                "clusterIPs": ["10.96.0.20", "fd00:0:0::14"],
                "ports": [{"name": "HTTP", "port": 80, "protocol": "TCP"}, {"port": 81}],
            },
        }
    ],
}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_service_list_json_without_item_kinds(tmp_path: Path) -> None:
    result = load_file(write(tmp_path / "svc.json", json.dumps(SERVICE_LIST)))
    assert result.errors == []
    assert result.records == [
        Service(
            "shop", "web", ServiceKind.CLUSTER_IP, ("10.96.0.20", "fd00::14"),
            (Port("http", "tcp", 80), Port("", "tcp", 81)),
        )
    ]


def test_multi_document_yaml_and_list_and_skipped_kinds(tmp_path: Path) -> None:
    text = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
---
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: db-0, namespace: shop, deletionTimestamp: "2026-01-01T00:00:00Z"}
  spec: {hostname: db-0, subdomain: db}
  status: {phase: Running, podIP: 10.244.1.20, podIPs: [{ip: 10.244.1.20}, {ip: "fd00::20"}]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: x, namespace: shop}
"""
    result = load_file(write(tmp_path / "a.yml", text))
    assert result.errors == []
    assert result.skipped == {"Deployment": 1, "ConfigMap": 1}
    pod = result.records[1]
    assert pod == Pod("shop", "db-0", ("10.244.1.20", "fd00::20"), True)


def test_endpointslice_conditions(tmp_path: Path) -> None:
    text = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv6
endpoints:
- addresses: ["fd00:10:244:0:0:0:0:1"]
- addresses: ["fd00:10:244::2"]
  conditions: {ready: false, serving: true, terminating: true}
- addresses: ["fd00:10:244::3"]
  conditions: {ready: true, serving: false}
  hostname: web-3
  targetRef: {kind: Pod, name: web-3, namespace: shop}
ports:
- {name: http, port: 80, protocol: TCP}
- {name: any, port: null}
"""
    (record,) = load_file(write(tmp_path / "s.yaml", text)).records
    assert record == EndpointSlice(
        "shop", "web-abc12", "web", 6,
        (
            Endpoint(("fd00:10:244::1",), True),
            Endpoint(("fd00:10:244::2",), False),
            Endpoint(("fd00:10:244::3",), True, "web-3", "web-3"),
        ),
        (Port("http", "tcp", 80), Port("any", "tcp", -1)),
    )


def test_fqdn_slices_are_skipped_silently(tmp_path: Path) -> None:
    text = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: x, namespace: shop, labels: {kubernetes.io/service-name: x}}
addressType: FQDN
endpoints: [{addresses: [example.com]}]
"""
    result = load_file(write(tmp_path / "f.yaml", text))
    assert result.records == [] and result.errors == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "kind: Service\nmetadata: {name: web, namespace: shop}\n"
            "spec: {clusterIP: 10.0.0.1, ports: [{port: 80}, {port: eighty}]}",
            "Service shop/web: spec.ports[1].port: not an integer",
        ),
        (
            "kind: Service\nmetadata: {name: web, namespace: shop}\nspec: {clusterIP: 10.0.0.300}",
            "Service shop/web: spec.clusterIP: not an IP address: '10.0.0.300'",  # as written
        ),
        (
            "kind: Service\nmetadata: {name: web, namespace: shop}\n"
            "spec: {clusterIP: 10.0.0.1, clusterIPs: [10.0.0.1, 'fd00::x']}",
            "Service shop/web: spec.clusterIPs[1]: not an IP address: 'fd00::x'",
        ),
        (
            "kind: Service\nmetadata: {name: ext, namespace: shop}\nspec: {type: ExternalName}",
            "Service shop/ext: spec.externalName: missing for type ExternalName",
        ),
        (
            "kind: EndpointSlice\nmetadata: {name: s, namespace: shop}\naddressType: IPv4\n"
            "endpoints: [{addresses: ['fd00::1']}]",
            "EndpointSlice shop/s: endpoints[0].addresses[0]: fd00::1 is not IPv4",
        ),
        (
            "kind: EndpointSlice\nmetadata: {name: s, namespace: shop}\naddressType: IPvX",
            "EndpointSlice shop/s: addressType: unknown address type 'IPvX'",
        ),
        ("kind: Namespace\nmetadata: {}", "Namespace ?: metadata.name: missing"),
        ("- just\n- a list", "document 1: not a Kubernetes object (a mapping with a kind)"),
    ],
)
def test_invalid_object_names_file_and_object(tmp_path: Path, text: str, error: str) -> None:
    path = write(tmp_path / "bad.yaml", text)
    result = load_file(path)
    assert result.errors == [f"{path}: {error}"]


def test_bad_object_does_not_stop_the_rest(tmp_path: Path) -> None:
    text = """
kind: List
items:
- {kind: Namespace, metadata: {name: shop}}
- {kind: Service, metadata: {name: bad, namespace: shop}, spec: {ports: [{port: -1}]}}
- {kind: Service, metadata: {name: good, namespace: shop}, spec: {clusterIP: 10.0.0.2}}
"""
    write(tmp_path / "a.yaml", text)
    write(tmp_path / "b.yaml", "kind: [unclosed")
    result = load([tmp_path])
    assert [type(r).__name__ for r in result.by_kind()["Service"]] == ["Service"]
    assert len(result.by_kind()["Namespace"]) == 1
    assert len(result.errors) == 2
    assert result.errors[0].endswith("Service shop/bad: spec.ports[0].port: out of range: -1")
    assert "b.yaml:2:1: cannot be read:" in result.errors[1], result.errors[1]
    assert "<unicode string>" not in result.errors[1]


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        (
            "flow.yaml",
            "kind: Service\nmetadata: {name: x\n",
            ":3:1: cannot be read: did not find expected ',' or '}' (while parsing a flow "
            "mapping at line 2, column 11)",
        ),
        ("indent.yaml", "kind: Service\nmetadata:\n  name: x\n   bad: 1\n", ":4:7: cannot be read: "),
        ("alias.yaml", "a: *nope\n", ":1:4: cannot be read: found undefined alias"),
        ("bad.json", '{"kind": "Service",\n "x": [1,}\n', ":2:10: cannot be read: Expecting value"),
    ],
)
def test_unparsable_file_names_file_line_and_column(
    tmp_path: Path, name: str, text: str, error: str
) -> None:
    """PyYAML's own message says ``in "<unicode string>"`` (it was given text): the line
    names the file as editors do, ``FILE:LINE:COLUMN: cannot be read: PROBLEM``."""
    path = write(tmp_path / name, text)
    [line] = load_file(path).errors
    assert line.startswith(f"{path}{error}"), line
    assert "unicode string" not in line and "\n" not in line, line


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clusterdns", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )


def test_check_command_counts_and_fails_on_errors(tmp_path: Path) -> None:
    good = run_cli("check", str(ZONES))
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("Namespace ")
    write(tmp_path / "bad.yaml", "kind: Service\nmetadata: {name: web}\nspec: {clusterIP: x}")
    bad = run_cli("check", str(tmp_path))
    assert bad.returncode == 1
    assert "bad.yaml: Service default/web: spec.clusterIP: not an IP address" in bad.stderr
    assert "Service 0" in bad.stdout and "1 error" in bad.stdout


def test_zones_default_loads_without_errors() -> None:
    result = load([ZONES])
    assert result.errors == []
    counts = {kind: len(records) for kind, records in result.by_kind().items()}
    assert counts["Namespace"] >= 6 and counts["Service"] >= 7


def test_service_names_may_start_with_a_digit(tmp_path: Path) -> None:
    """KEP-5311 RelaxedServiceNameValidation: Service names are DNS-1123 labels; the e2e
    test asks ``1kubernetes.<ns>.svc.cluster.local``. Other DNS-1123 breaches stay errors."""
    from clusterdns.core.resolver import ZoneConfig, resolve
    from clusterdns.core.rr import QType, Rcode

    from .conftest import load_store

    text = """
kind: List
items:
- {kind: Namespace, metadata: {name: e2e}}
- {kind: Service, metadata: {name: 1kubernetes, namespace: e2e},
   spec: {clusterIP: 10.96.7.7, ports: [{name: https, port: 443}]}}
- {kind: Service, metadata: {name: "42", namespace: e2e}, spec: {clusterIP: None}}
- kind: EndpointSlice
  metadata: {name: 42-abc, namespace: e2e, labels: {kubernetes.io/service-name: "42"}}
  addressType: IPv4
  endpoints: [{addresses: [10.244.0.42]}]
"""
    write(tmp_path / "digits.yaml", text)
    store = load_store(tmp_path)
    got = resolve(store, "1kubernetes.e2e.svc.cluster.local.", QType.A, ZoneConfig())
    assert got is not None and got.rcode == Rcode.NOERROR
    assert [rr.rdata for rr in got.answer] == ["10.96.7.7"]
    got = resolve(store, "_https._tcp.1kubernetes.e2e.svc.cluster.local.", QType.SRV, ZoneConfig())
    assert got is not None and [rr.rdata.port for rr in got.answer] == [443]  # type: ignore[union-attr]
    got = resolve(store, "42.e2e.svc.cluster.local.", QType.A, ZoneConfig())
    assert got is not None and [rr.rdata for rr in got.answer] == ["10.244.0.42"]
    bad = write(tmp_path / "bad.yaml", "kind: Service\nmetadata: {name: -web, namespace: e2e}\n")
    assert load_file(bad).errors == [
        f"{bad}: Service e2e/-web: metadata.name: not a DNS-1123 label "
        "(at most 63 of a-z, 0-9 and '-'): '-web'"
    ]


def test_equal_ports_are_shared_and_the_sharing_is_bounded() -> None:
    """Services and slices that name the same ports share the Port objects and the tuple
    (issue 19: memory); past SHARED_LIMIT distinct values nothing more is kept, and every
    record still carries its own correct ports."""
    from clusterdns.core import convert

    def service(name: str, ports: list[dict]) -> Service:
        record = convert.to_service({
            "kind": "Service", "metadata": {"name": name, "namespace": "ns"},
            "spec": {"clusterIP": "10.96.0.1", "ports": ports},
        })
        assert isinstance(record, Service)
        return record

    http = [{"name": "HTTP", "port": 80}, {"name": "grpc", "port": 9000, "protocol": "TCP"}]
    a, b = service("a", http), service("b", [dict(p) for p in http])
    assert a.ports == (Port("http", "tcp", 80), Port("grpc", "tcp", 9000))
    assert a.ports is b.ports and a.ports[0] is b.ports[0]
    for i in range(convert.SHARED_LIMIT + 100):  # more distinct ports than are shared
        record = service(f"s{i}", [{"name": "p", "port": i % 65536}])
        assert record.ports == (Port("p", "tcp", i % 65536),)
    ports, lists = convert._SHARED["Service"]
    assert len(ports) <= convert.SHARED_LIMIT and len(lists) <= convert.SHARED_LIMIT
    assert service("c", http).ports is a.ports  # what was shared stays shared
