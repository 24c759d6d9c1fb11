"""Event-to-answer latency of the exposure kinds against Services (issue 15).

Runs the test API server of ``tests/kubeapi.py`` on 127.0.0.1 with N background Services,
starts ``clusterdns serve --kubeconfig ... --gateway-zone mlopshub.com --external-zone
example.org`` as a separate process, and for each of K rounds measures the time from the
API server accepting a change to the first UDP answer that shows it:

- Service:  a new ClusterIP Service -> ``<name>.ns-0.svc.cluster.local`` (the baseline);
- Ingress:  a new Ingress with an address -> its host in the gateway zone;
- Gateway:  a changed Gateway address -> an attached HTTPRoute's host follows;
- LB:       a new LoadBalancer Service -> ``<name>.ns-0.example.org`` (k8s_external).

Usage: python bench/exposed_events.py [--services 1000] [--rounds 200]
All traffic stays on 127.0.0.1; the run is bounded by its counts and stops by itself.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.query

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.kubeapi import KubeAPIServer  # noqa: E402

GW = "gateway.networking.k8s.io/v1"


def service(name: str, ip: str, lb: str = "") -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ns-0"},
        "spec": {"clusterIP": ip, "clusterIPs": [ip],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }
    if lb:
        obj["spec"]["type"] = "LoadBalancer"
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": lb}]}}
    return obj


def gateway(ip: str) -> dict[str, Any]:
    return {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "eg", "namespace": "ns-0"},
            "spec": {"gatewayClassName": "eg", "listeners": []},
            "status": {"addresses": [{"type": "IPAddress", "value": ip}]}}


def first_answer(port: int, name: str) -> str:
    msg = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
    return next((rr.to_text() for rrset in msg.answer for rr in rrset), "")


def timed(port: int, change: Callable[[Any], Any], obj: Any, name: str, want: str) -> float:
    """Seconds from ``change(obj)`` returning to ``name`` answering ``want`` first."""
    began = time.perf_counter()
    change(obj)
    deadline = began + 5
    while time.perf_counter() < deadline:
        if first_answer(port, name) == want:
            return time.perf_counter() - began
    return float("inf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    api = KubeAPIServer()
    api.start()
    route = {"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "ns-0"},
             "spec": {"hostnames": ["route.mlopshub.com"], "parentRefs": [{"name": "eg"}]}}
    api.load([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns-0"}}]
             + [service(f"svc-{i}", f"10.96.{i // 256}.{i % 256}") for i in range(args.services)]
             + [gateway("172.18.0.1"), route])
    results: dict[str, list[float]] = {"Service": [], "Ingress": [], "Gateway": [], "LB": []}
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = api.write_kubeconfig(Path(tmp) / "kubeconfig")
        process = subprocess.Popen(
            [sys.executable, "-m", "clusterdns", "serve", "--kubeconfig", str(kubeconfig),
             "--listen", "127.0.0.1:0", "--gateway-zone", "mlopshub.com",
             "--external-zone", "example.org"],
            stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert process.stderr is not None
        port = 0
        for line in process.stderr:
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        threading.Thread(target=process.stderr.read, daemon=True).start()
        try:
            for i in range(args.rounds):
                a, b = 100 + i // 250, i % 250
                ingress = {
                    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": f"ing-{i}", "namespace": "ns-0"},
                    "spec": {"rules": [{"host": f"h{i}.mlopshub.com"}]},
                    "status": {"loadBalancer": {"ingress": [{"ip": f"172.19.{a}.{b}"}]}},
                }
                for what, change, obj, name, want in [
                    ("Service", api.create, service(f"new-{i}", f"10.250.{a}.{b}"),
                     f"new-{i}.ns-0.svc.cluster.local.", f"10.250.{a}.{b}"),
                    ("Ingress", api.create, ingress, f"h{i}.mlopshub.com.", f"172.19.{a}.{b}"),
                    ("Gateway", api.update, gateway(f"172.20.{a}.{b}"), "route.mlopshub.com.",
                     f"172.20.{a}.{b}"),
                    ("LB", api.create, service(f"lb-{i}", f"10.251.{a}.{b}", f"172.21.{a}.{b}"),
                     f"lb-{i}.ns-0.example.org.", f"172.21.{a}.{b}"),
                ]:
                    results[what].append(timed(port, change, obj, name, want))
        finally:
            process.terminate()
            process.wait(10)
            api.stop()
    print(f"{args.services} background Services, {args.rounds} rounds")
    print("| change | event-to-answer p50 / p99 (ms) |")
    print("|---|---|")
    for what, values in results.items():
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        print(f"| {what} | {statistics.median(values) * 1000:.1f} / {p99 * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
