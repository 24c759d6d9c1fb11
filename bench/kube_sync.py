"""Live-source figures (issue 3): start-up from a large API, RSS, event-to-answer latency.

Runs the test API server of ``tests/kubeapi.py`` on 127.0.0.1 with N Services, N
EndpointSlices and M Pods, starts ``clusterdns serve --kubeconfig ... --pods verified`` as a
separate process, and measures:

- seconds from process start to synced (the listening line, printed after the first sync);
- peak RSS (VmHWM) and steady RSS (VmRSS once synced and settled), in MB;
- event-to-answer latency: for each of K new Services, the time from the API server
  accepting it to the first UDP answer carrying its address (polling over loopback);
- with ``--fill``: the cost of the answers kept, RSS once every service has been asked
  its A, its ``_http._tcp`` SRV and the PTR of its ClusterIP, and every pod IP its PTR
  (the whole compiled zone a client could ask for), in MB and bytes per answer kept.

With ``--realistic`` the objects are as a real cluster's API returns them
(:func:`realistic_objects`): labels, annotations (one a long kubectl
last-applied-configuration), ownerReferences, uids, managedFields, containers with ports,
env and resources, status conditions; every 10th service headless behind a StatefulSet
(pods with spec.hostname/subdomain, endpoints with hostname); EndpointSlices with nodeName,
zone, targetRef uid and ready/serving/terminating. The namespaces, service names,
ClusterIPs and pod IPs are those of the plain objects (the default), so ``--fill`` works
for both. The server's work per object is what changes: the JSON it decodes and throws away.

Usage: python bench/kube_sync.py [--services 10000] [--pods 100000] [--creations 1000] [--fill]
                                 [--realistic]
All traffic stays on 127.0.0.1; the run is bounded by its counts and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.reversename

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.kubeapi import KubeAPIServer  # noqa: E402

NAMESPACES = 100


def objects(services: int, pods: int) -> list[dict]:
    """Namespaces, ClusterIP Services, one EndpointSlice per Service and the Pods behind
    them (pods spread evenly over services), as the API would hold them."""
    out: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{n}"}}
        for n in range(NAMESPACES)
    ]
    per_service = max(1, pods // services)
    pod_index = 0
    for s in range(services):
        ns = f"ns-{s % NAMESPACES}"
        name = f"svc-{s}"
        ip = f"10.{96 + s // 65536}.{s // 256 % 256}.{s % 256}"
        out.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        })
        endpoints = []
        for _ in range(per_service if s < services - 1 else pods - pod_index):
            p = pod_index
            pod_index += 1
            pod_ip = f"10.{128 + p // 65536}.{p // 256 % 256}.{p % 256}"
            pod_name = f"{name}-{p}"
            out.append({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": ns},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                "status": {"phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}]},
            })
            endpoints.append({
                "addresses": [pod_ip], "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": pod_name, "namespace": ns},
            })
        out.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        })
    return out


# ---- --realistic: objects as a real cluster's API returns them -----------------------------

ZONES = ("europe-west1-b", "europe-west1-c", "europe-west1-d")
NODES = 200  # pods spread over this many nodes
STATEFUL_EVERY = 10  # every 10th service (s % 10 == 9) is headless, backed by a StatefulSet
CREATED = "2024-05-14T09:31:27Z"


def _uid(kind: int, n: int) -> str:
    """A deterministic UUID-shaped uid (kind: a small number per object kind)."""
    return str(uuid.UUID(int=(kind << 96) | (n * 2654435761 % 2**64)))


def _hash(n: int, width: int) -> str:
    """A pod-template-hash / generateName suffix look-alike: ``width`` of [b-z2-9]."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    out = []
    n = n * 2654435761 + 12345
    for _ in range(width):
        n, r = divmod(n, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)


def _headless(s: int) -> bool:
    return s % STATEFUL_EVERY == STATEFUL_EVERY - 1


def _last_applied(obj: dict) -> str:
    """kubectl's last-applied-configuration annotation: the manifest as JSON, one line."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True) + "\n"


def _managed(manager: str, fields: dict, subresource: str = "") -> dict:
    entry = {"manager": manager, "operation": "Update", "apiVersion": "v1",
             "time": CREATED, "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        entry["subresource"] = subresource
    return entry


def _realistic_namespace(n: int) -> dict:
    name = f"ns-{n}"
    return {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {
            "name": name, "uid": _uid(1, n), "creationTimestamp": CREATED,
            "labels": {"kubernetes.io/metadata.name": name, "team": f"team-{n % 7}",
                       "istio-injection": "enabled"},
            "annotations": {"scheduler.alpha.kubernetes.io/node-selector": "pool=general"},
            "managedFields": [_managed("kubectl-create", {
                "f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/metadata.name": {},
                                            "f:team": {}, "f:istio-injection": {}}}})],
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _realistic_service(s: int, ns: str, name: str, ip: str) -> dict:
    labels = {"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/instance": name,
              "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": f"{name}-1.4.2"}
    ports = [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
        {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": "metrics"},
        {"name": "grpc", "port": 9000, "protocol": "TCP", "targetPort": 9000,
         "appProtocol": "grpc"},
    ]
    spec: dict = {"ports": ports, "selector": {"app": name, "app.kubernetes.io/instance": name},
                  "sessionAffinity": "None", "ipFamilies": ["IPv4"],
                  "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"}
    if _headless(s):
        spec.update(clusterIP="None", clusterIPs=["None"], type="ClusterIP",
                    publishNotReadyAddresses=False)
    else:
        spec.update(clusterIP=ip, clusterIPs=[ip], type="ClusterIP")
    manifest = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {k: v for k, v in spec.items() if k not in ("clusterIP", "clusterIPs")}}
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": name, "namespace": ns, "uid": _uid(2, s), "creationTimestamp": CREATED,
            "labels": labels,
            "annotations": {"meta.helm.sh/release-name": name, "meta.helm.sh/release-namespace": ns,
                            "kubectl.kubernetes.io/last-applied-configuration":
                                _last_applied(manifest)},
            "managedFields": [_managed("helm", {
                "f:metadata": {"f:annotations": {".": {}, "f:meta.helm.sh/release-name": {},
                                                 "f:meta.helm.sh/release-namespace": {}},
                               "f:labels": {".": {}, **{f"f:{k}": {} for k in labels}}},
                "f:spec": {"f:internalTrafficPolicy": {}, "f:ports": {
                    ".": {}, **{f'k:{{"port":{p["port"]},"protocol":"TCP"}}': {
                        ".": {}, "f:name": {}, "f:port": {}, "f:protocol": {},
                        "f:targetPort": {}} for p in ports}},
                    "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}}})],
        },
        "spec": spec,
        "status": {"loadBalancer": {}},
    }


def _realistic_pod(s: int, p: int, ordinal: int, ns: str, service: str, pod_name: str,
                   pod_ip: str) -> dict:
    node = p % NODES
    host_ip = f"192.168.{node // 256}.{node % 256 + 1}"
    stateful = _headless(s)
    template_hash = _hash(s, 10)
    labels = {"app": service, "app.kubernetes.io/name": service,
              "app.kubernetes.io/instance": service, "app.kubernetes.io/version": "1.4.2",
              "security.istio.io/tlsMode": "istio"}
    if stateful:
        labels.update({"controller-revision-hash": f"{service}-{template_hash}",
                       "statefulset.kubernetes.io/pod-name": pod_name,
                       "apps.kubernetes.io/pod-index": str(ordinal)})
        owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": service,
                 "uid": _uid(3, s), "controller": True, "blockOwnerDeletion": True}
    else:
        labels["pod-template-hash"] = template_hash
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                 "name": f"{service}-{template_hash}", "uid": _uid(3, s), "controller": True,
                 "blockOwnerDeletion": True}
    container = {
        "name": "app", "image": f"registry.example.com/shop/{service}:1.4.2",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
        "env": [{"name": "LOG_LEVEL", "value": "info"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                "fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                              "fieldPath": "status.podIP"}}},
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "value": "http://otel-collector.observability.svc.cluster.local:4317"}],
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"},
                      "requests": {"cpu": "100m", "memory": "128Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                           "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                           "failureThreshold": 3},
        "volumeMounts": [{"name": f"kube-api-access-{_hash(p, 5)}", "readOnly": True,
                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    spec: dict = {
        "volumes": [{"name": f"kube-api-access-{_hash(p, 5)}", "projected": {
            "sources": [{"serviceAccountToken": {"expirationSeconds": 3607,
                                                 "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt",
                                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
            "defaultMode": 420}}],
        "containers": [container],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
        "serviceAccount": "default", "nodeName": f"node-{node}", "securityContext": {},
        "schedulerName": "default-scheduler",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300}],
        "priority": 0, "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    }
    if stateful:
        spec["hostname"] = pod_name
        spec["subdomain"] = service
    conditions = [{"type": t, "status": "True", "lastProbeTime": None,
                   "lastTransitionTime": CREATED}
                  for t in ("PodReadyToStartContainers", "Initialized", "Ready",
                            "ContainersReady", "PodScheduled")]
    status = {
        "phase": "Running", "conditions": conditions, "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": CREATED, "qosClass": "Burstable",
        "containerStatuses": [{
            "name": "app", "state": {"running": {"startedAt": CREATED}}, "lastState": {},
            "ready": True, "restartCount": 0, "started": True,
            "image": f"registry.example.com/shop/{service}:1.4.2",
            "imageID": f"registry.example.com/shop/{service}@sha256:{_uid(4, s).replace('-', '')}"
                       f"{_uid(5, s).replace('-', '')}",
            "containerID": f"containerd://{_uid(6, p).replace('-', '')}"
                           f"{_uid(7, p).replace('-', '')}"}],
    }
    meta = {
        "name": pod_name, "generateName": pod_name.rsplit("-", 1)[0] + "-", "namespace": ns,
        "uid": _uid(8, p), "creationTimestamp": CREATED, "labels": labels,
        "annotations": {"kubectl.kubernetes.io/restartedAt": CREATED,
                        "prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                        "sidecar.istio.io/status": json.dumps({
                            "initContainers": ["istio-init"], "containers": ["istio-proxy"],
                            "volumes": ["workload-socket", "credential-socket",
                                        "workload-certs", "istio-envoy", "istio-data",
                                        "istio-podinfo", "istio-token", "istiod-ca-cert"],
                            "imagePullSecrets": None,
                            "revision": "default"}, separators=(",", ":"))},
        "ownerReferences": [owner],
        "managedFields": [
            _managed("kube-controller-manager", {
                "f:metadata": {"f:generateName": {}, "f:labels": {
                    ".": {}, **{f"f:{k}": {} for k in labels}}, "f:ownerReferences": {
                    ".": {}, f'k:{{"uid":"{owner["uid"]}"}}': {}}},
                "f:spec": {"f:containers": {'k:{"name":"app"}': {
                    ".": {}, "f:env": {".": {}, 'k:{"name":"LOG_LEVEL"}': {
                        ".": {}, "f:name": {}, "f:value": {}}},
                    "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {
                        ".": {}, 'k:{"containerPort":8080,"protocol":"TCP"}': {
                            ".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}},
                    "f:readinessProbe": {".": {}, "f:failureThreshold": {}, "f:httpGet": {
                        ".": {}, "f:path": {}, "f:port": {}, "f:scheme": {}}},
                    "f:resources": {".": {}, "f:limits": {".": {}, "f:cpu": {},
                                                          "f:memory": {}}},
                    "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                    "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {},
                    "f:schedulerName": {}, "f:securityContext": {},
                    "f:terminationGracePeriodSeconds": {}}}),
            _managed("kubelet", {"f:status": {
                "f:conditions": {**{f'k:{{"type":"{c["type"]}"}}': {
                    ".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {},
                    "f:status": {}, "f:type": {}} for c in conditions}},
                "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {},
                "f:podIP": {}, "f:podIPs": {".": {}, f'k:{{"ip":"{pod_ip}"}}': {
                    ".": {}, "f:ip": {}}}, "f:startTime": {}}}, "status"),
        ],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": status}


def realistic_objects(services: int, pods: int) -> list[dict]:
    """:func:`objects` as a real cluster's API returns them: the same namespaces, service
    names, ClusterIPs and pod IPs, with the metadata, spec and status that come with them
    (labels, annotations with a long kubectl last-applied-configuration, ownerReferences,
    uids, managedFields, containers with ports, env and resources, conditions). Every
    10th service (``s % 10 == 9``) is headless and backed by a StatefulSet: its pods are
    ``<service>-<ordinal>`` with ``spec.hostname``/``spec.subdomain``, and its
    EndpointSlice endpoints carry ``hostname``. Other pods are named as a Deployment's
    (``<service>-<template hash>-<suffix>``). EndpointSlice endpoints carry nodeName, zone,
    targetRef uid and the ready/serving/terminating conditions; Services three ports
    (``http`` 80 -> 8080 first, as in the plain objects)."""
    out: list[dict] = [_realistic_namespace(n) for n in range(NAMESPACES)]
    per_service = max(1, pods // services)
    pod_index = 0
    for s in range(services):
        ns = f"ns-{s % NAMESPACES}"
        name = f"svc-{s}"
        ip = f"10.{96 + s // 65536}.{s // 256 % 256}.{s % 256}"
        out.append(_realistic_service(s, ns, name, ip))
        endpoints = []
        stateful = _headless(s)
        for ordinal in range(per_service if s < services - 1 else pods - pod_index):
            p = pod_index
            pod_index += 1
            pod_ip = f"10.{128 + p // 65536}.{p // 256 % 256}.{p % 256}"
            pod_name = (f"{name}-{ordinal}" if stateful
                        else f"{name}-{_hash(s, 10)}-{_hash(p, 5)}")
            pod = _realistic_pod(s, p, ordinal, ns, name, pod_name, pod_ip)
            out.append(pod)
            endpoint = {
                "addresses": [pod_ip],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": pod["spec"]["nodeName"], "zone": ZONES[p % len(ZONES)],
                "targetRef": {"kind": "Pod", "name": pod_name, "namespace": ns,
                              "uid": pod["metadata"]["uid"]},
            }
            if stateful:
                endpoint["hostname"] = pod_name
            endpoints.append(endpoint)
        labels = {"app": name, "app.kubernetes.io/name": name,
                  "app.kubernetes.io/instance": name,
                  "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                  "kubernetes.io/service-name": name}
        if stateful:
            labels["service.kubernetes.io/headless"] = ""
        out.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-{_hash(s, 5)}", "generateName": f"{name}-", "namespace": ns,
                "uid": _uid(9, s), "creationTimestamp": CREATED, "generation": 3,
                "labels": labels,
                "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": CREATED},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                                     "uid": _uid(2, s), "controller": True,
                                     "blockOwnerDeletion": True}],
                "managedFields": [{
                    "manager": "kube-controller-manager", "operation": "Update",
                    "apiVersion": "discovery.k8s.io/v1", "time": CREATED,
                    "fieldsType": "FieldsV1", "fieldsV1": {
                        "f:addressType": {}, "f:endpoints": {},
                        "f:metadata": {"f:annotations": {
                            ".": {}, "f:endpoints.kubernetes.io/last-change-trigger-time": {}},
                            "f:generateName": {}, "f:labels": {
                                ".": {}, **{f"f:{k}": {} for k in labels}},
                            "f:ownerReferences": {".": {}, f'k:{{"uid":"{_uid(2, s)}"}}': {}}},
                        "f:ports": {}}}],
            },
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "metrics", "port": 9090, "protocol": "TCP"},
                      {"name": "grpc", "port": 9000, "protocol": "TCP",
                       "appProtocol": "grpc"}],
        })
    return out


def rss_mb(pid: int, field: str) -> float:
    """VmRSS or VmHWM of a process, in MB (from /proc)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


def ask(port: int, name: str) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=2)


def fill_names(services: int, pods: int, realistic: bool = False) -> list[tuple[str, str]]:
    """Every positive name the cluster of :func:`objects` answers, with its qtype. With
    ``realistic``, a headless service has no ClusterIP PTR: its first pod's hostname A is
    asked instead (as many names either way)."""
    names: list[tuple[str, str]] = []
    for s in range(services):
        fqdn = f"svc-{s}.ns-{s % NAMESPACES}.svc.cluster.local."
        ip = f"10.{96 + s // 65536}.{s // 256 % 256}.{s % 256}"
        names += [(fqdn, "A"), ("_http._tcp." + fqdn, "SRV")]
        if realistic and _headless(s):
            names.append((f"svc-{s}-0.{fqdn}", "A"))
        else:
            names.append((dns.reversename.from_address(ip).to_text(), "PTR"))
    for p in range(pods):
        ip = f"10.{128 + p // 65536}.{p // 256 % 256}.{p % 256}"
        names.append((dns.reversename.from_address(ip).to_text(), "PTR"))
    return names


def blast(port: int, names: list[tuple[str, str]], window: int = 100) -> int:
    """Ask every name once over UDP, ``window`` in flight; return how many answered."""
    wires = [dns.message.make_query(n, t).to_wire() for n, t in names]
    answered = sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        while answered < len(wires):
            while sent < len(wires) and sent - answered < window:
                sock.sendto(wires[sent], ("127.0.0.1", port))
                sent += 1
            try:
                sock.recv(4096)
            except TimeoutError:
                answered = sent  # lost: go on
                continue
            answered += 1
    return answered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--pods", type=int, default=100000)
    parser.add_argument("--creations", type=int, default=1000)
    parser.add_argument("--realistic", action="store_true",
                        help="objects as a real cluster's API returns them "
                             "(realistic_objects: labels, managedFields, StatefulSets...)")
    parser.add_argument("--fill", action="store_true",
                        help="ask every positive name once and report the answers' memory")
    args = parser.parse_args()
    filled = ""

    api = KubeAPIServer()
    api.start()
    t = time.perf_counter()
    make = realistic_objects if args.realistic else objects
    api.load(make(args.services, args.pods))
    print(f"API server loaded in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = api.write_kubeconfig(Path(tmp) / "kubeconfig")
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "clusterdns", "serve", "--kubeconfig", str(kubeconfig),
             "--pods", "verified", "--listen", "127.0.0.1:0", "--startup-timeout", "120"],
            stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert process.stderr is not None
        port = 0
        for line in process.stderr:
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        synced = time.perf_counter() - start
        threading.Thread(target=process.stderr.read, daemon=True).start()
        try:
            assert ask(port, "svc-0.ns-0.svc.cluster.local.").answer, "no answer after sync"
            # Steady state: the smallest RSS over a few seconds once the list pages are freed.
            samples = []
            for _ in range(10):
                time.sleep(0.3)
                samples.append(rss_mb(process.pid, "VmRSS"))
            steady = min(samples)
            peak = rss_mb(process.pid, "VmHWM")
            if args.fill:
                names = fill_names(args.services, args.pods, args.realistic)
                t = time.perf_counter()
                blast(port, names)
                blast(port, names)  # a second pass: hits, nothing new kept
                time.sleep(1)
                full = rss_mb(process.pid, "VmRSS")
                filled = (f"\nanswers kept: {len(names)} names asked in "
                          f"{time.perf_counter() - t:.1f} s; RSS {steady:.0f} -> {full:.0f} MB "
                          f"(+{full - steady:.1f} MB, "
                          f"{(full - steady) * 2**20 / len(names):.0f} bytes per answer, "
                          f"{(full - steady) * 2**20 / args.services:.0f} bytes per service "
                          f"with its pods' PTRs); peak {rss_mb(process.pid, 'VmHWM'):.0f} MB")
            latencies = []
            for i in range(args.creations):
                name = f"new-{i}"
                ip = f"10.250.{i // 256}.{i % 256}"
                began = time.perf_counter()
                api.create({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": "ns-0"},
                    "spec": {"clusterIP": ip, "clusterIPs": [ip],
                             "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
                })
                deadline = began + 5
                while time.perf_counter() < deadline:
                    if ask(port, f"{name}.ns-0.svc.cluster.local.").answer:
                        latencies.append(time.perf_counter() - began)
                        break
                else:
                    latencies.append(float("inf"))
            latencies.sort()
        finally:
            process.terminate()
            process.wait(10)
            api.stop()
    budget = (args.pods + args.services) * 0.000858 + 49.1
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print("| services | pods | synced (s) | peak RSS (MB) | steady RSS (MB) "
          "| CoreDNS sizing (MB) | event-to-answer p50 / p99 (ms) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.services} | {args.pods} | {synced:.1f} | {peak:.0f} | {steady:.0f} "
          f"| {budget:.0f} | {p50:.1f} / {p99:.1f} |{filled}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
