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

Usage: python bench/kube_sync.py [--services 10000] [--pods 100000] [--creations 1000] [--fill]
All traffic stays on 127.0.0.1; the run is bounded by its counts and stops by itself.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
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


def rss_mb(pid: int, field: str) -> float:
    """VmRSS or VmHWM of a process, in MB (from /proc)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


def ask(port: int, name: str) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=2)


def fill_names(services: int, pods: int) -> list[tuple[str, str]]:
    """Every positive name the cluster of :func:`objects` answers, with its qtype."""
    names: list[tuple[str, str]] = []
    for s in range(services):
        fqdn = f"svc-{s}.ns-{s % NAMESPACES}.svc.cluster.local."
        ip = f"10.{96 + s // 65536}.{s // 256 % 256}.{s % 256}"
        names += [(fqdn, "A"), ("_http._tcp." + fqdn, "SRV"),
                  (dns.reversename.from_address(ip).to_text(), "PTR")]
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
    parser.add_argument("--fill", action="store_true",
                        help="ask every positive name once and report the answers' memory")
    args = parser.parse_args()
    filled = ""

    api = KubeAPIServer()
    api.start()
    t = time.perf_counter()
    api.load(objects(args.services, args.pods))
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
                names = fill_names(args.services, args.pods)
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
