"""Query speed: clusterdns against Knot DNS and a dnslib.server baseline, measured with dnsperf.

One command (run it from the repository root with the project's virtualenv)::

    python bench/speed.py [--services 10000] [--pods 100000] [--runs 3] [--duration 10]
                          [--workers 1 2] [--clients 16] [--keep]

What it does, step by step (everything on 127.0.0.1, bounded in time and count):

1. Checks its tools: without ``dnsperf`` or ``knotd`` it says which apt packages to
   install (``apt-get install dnsperf knot``) and exits 2. It installs nothing.
2. Generates a cluster into a temp dir: 100 namespaces, N Services with a named port
   ``http`` (every 10th headless, with 4 pods whose endpoints have hostnames, the last one
   not ready; the other pods spread evenly over the ClusterIP services), one EndpointSlice
   per Service, M Pods, as JSON manifests (``kind: List``, as ``kubectl get -o json``
   writes them), checked with ``clusterdns check``. From the same cluster, the equivalent
   static zones for Knot: ``cluster.local`` (service A records, headless A per ready
   endpoint, an A per endpoint name, ``_http._tcp`` SRV with clusterdns's targets and
   weights, SOA/NS at the apex) and ``in-addr.arpa`` (PTR of every ClusterIP and ready
   endpoint address), checked with ``knotc conf-check`` and ``knotc zone-check``. Every
   answer fits 512 bytes: dnsperf sends no EDNS, and the servers truncate differently.
3. Writes two dnsperf query files: the cache-hit mix (70% ClusterIP A, 10% headless A,
   5% SRV, 5% PTR, 10% search-path NXDOMAIN such as ``svc-3.ns-3.ns-7.svc.cluster.local``,
   drawn from 5,000 distinct names) and the miss-heavy mix (1,000,000 distinct names:
   every existing name of the cluster once, the rest distinct non-existent
   ``<random>.<ns>.svc.cluster.local``). Before measuring, a sample of both mixes is asked
   of every server and the answers compared (rcode, TC, answer and additional records).
4. Runs each server alone, one after the other, on a free port: clusterdns
   (``python -m clusterdns serve --zones DIR --listen 127.0.0.1:PORT --cache-size 100000``,
   plus ``--workers N`` for each ``--workers`` value when the server has that flag), Knot
   (``knotd -c knot.conf``: one UDP, one TCP and one background worker) and, for the
   miss-heavy mix, a Python server on ``dnslib.server`` answering with clusterdns's pure
   resolver. Each run: queries/s at full load (``dnsperf -c 16 -T 1 -l 10 -t 2 -q 500``;
   16 clients, i.e. source ports, so that SO_REUSEPORT's hash has flows to spread over
   workers) with the server's CPU seconds over it (utime+stime of the whole process tree,
   children included, from /proc; per worker too) and RSS after it; latency at a fixed
   20,000 queries/s (``-Q 20000 -v``: dnsperf 2.10 has no percentile output, so p50/p99
   come from its per-query lines); queries lost at 50,000 queries/s (``-Q 50000``). The
   hit mix is warmed with one pass over its distinct names; for the miss mix the server is
   restarted before every dnsperf run and each run reads the file at most once (``-n 1``),
   so no name is ever asked twice of one server process. The median of ``--runs`` runs is
   reported.
5. Prints a markdown table (server x mix: queries/s, queries per server CPU second,
   p50/p99 at 20k qps, lost at 50k qps, RSS) with the ratios clusterdns/Knot,
   clusterdns/dnslib.server, N workers/1 worker and how the CPU split between the workers,
   the machine and the exact command. Progress goes to stderr.

A full run at the default size takes about 11 minutes (14 with ``--workers 1 2``) on
2 CPUs. dnsperf itself needs about one core: on a small machine a fast server's queries/s
is bound by the client, which is why queries per server CPU second is reported. The CPU
used by every other process during each full-load run is measured: a run where it is over
0.2 cores is repeated (twice at most) and the report warns about what remains. Every
process the bench starts is in its own process group and is killed on exit, on errors and
on Ctrl-C or SIGTERM; ``--keep`` leaves the temp dir (manifests, zones, query files,
knot.conf, server logs) in place and says where.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

ROOT = Path(__file__).resolve().parent.parent
ZONE = "cluster.local."
TTL = 30
NAMESPACES = 100
HEADLESS_EVERY = 10  # every 10th service is headless (a StatefulSet's governing service)
HEADLESS_PODS = 4  # with 4 pods, the last one not ready: its SRV answer fits 512 bytes
SERVICE_NET = ipaddress.IPv4Address("10.96.0.0")
POD_NET = ipaddress.IPv4Address("10.244.0.0")
SERVICE_PORT = 80
TARGET_PORT = 8080
HIT_NAMES = 5000  # distinct names of the cache-hit mix
HIT_LINES = 100_000  # lines of its query file (dnsperf loops over it)
HIT_WEIGHTS = {"cluster_ip": 70, "headless": 10, "srv": 5, "ptr": 5, "search_nx": 10}
MISS_NAMES = 1_000_000
LATENCY_QPS = 20_000
LOSS_QPS = 50_000
TIMEOUT = 2  # dnsperf -t: seconds before a query counts as lost
OUTSTANDING = 500  # dnsperf -q
CACHE_SIZE = 100_000
CHECK_SAMPLE = 300  # names of the hit mix whose answers are compared between the servers
NOISE_CORES = 0.2  # other processes' CPU during a run above which it is repeated ...
NOISE_RETRIES = 2  # ... at most this many times, and the report warns if still above
START_DEADLINE = 300.0  # seconds for a server to load and answer
APT_PACKAGES = {"dnsperf": "dnsperf", "knotd": "knot"}
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- 1. tools ---------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """The path of ``name`` on PATH or in the sbin directories (knotd lives in /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN:
        path = Path(directory) / name
        if os.access(path, os.X_OK):
            return str(path)
    return None


@dataclass
class Tools:
    dnsperf: str
    knotd: str
    knotc: str | None

    def versions(self) -> str:
        perf = run_text([self.dnsperf, "-h"])
        knot = run_text([self.knotd, "-V"])
        perf_version = re.search(r"Version (\S+)", perf)
        knot_version = re.search(r"version (\S+)", knot)
        return (
            f"dnsperf {perf_version.group(1) if perf_version else '?'}, "
            f"Knot DNS {knot_version.group(1) if knot_version else '?'}"
        )


def check_tools() -> Tools | None:
    """The tools, or None after saying which packages to install."""
    paths = {name: find_tool(name) for name in APT_PACKAGES}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        packages = " ".join(APT_PACKAGES[name] for name in missing)
        print(f"bench/speed.py needs dnsperf and Knot DNS; missing: {', '.join(missing)}.\n"
              f"Install with: apt-get install {packages}", file=sys.stderr)
        return None
    return Tools(str(paths["dnsperf"]), str(paths["knotd"]), find_tool("knotc"))


def run_text(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


# ---- 2. the cluster: manifests and zones ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    pod: str
    hostname: str  # "" for endpoints of ClusterIP services
    ready: bool

    @property
    def label(self) -> str:
        """The endpoint's DNS label as clusterdns names it: hostname, else the dashed IP."""
        return self.hostname or self.ip.replace(".", "-")


@dataclass(frozen=True, slots=True)
class Svc:
    name: str
    namespace: str
    cluster_ip: str  # "" for a headless service
    endpoints: tuple[Endpoint, ...]

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{ZONE}"

    @property
    def ready(self) -> list[Endpoint]:
        return [ep for ep in self.endpoints if ep.ready]


@dataclass
class Cluster:
    namespaces: list[str]
    services: list[Svc]

    @property
    def pods(self) -> int:
        return sum(len(svc.endpoints) for svc in self.services)


def is_headless(index: int) -> bool:
    return index % HEADLESS_EVERY == HEADLESS_EVERY - 1


def make_cluster(services: int, pods: int) -> Cluster:
    """N services in 100 namespaces; each headless service has 4 pods (the last not ready),
    the other pods are spread evenly over the ClusterIP services (at least one each)."""
    headless_count = sum(1 for s in range(services) if is_headless(s))
    rest = max(0, pods - headless_count * HEADLESS_PODS)
    clusterip_count = max(1, services - headless_count)
    pod_index = 0
    out = []
    for s in range(services):
        name = f"svc-{s}"
        headless = is_headless(s)
        if headless:
            count = HEADLESS_PODS
        else:  # an even share, the remainder going to the first services
            k = s - (s + 1) // HEADLESS_EVERY  # index among the ClusterIP services
            count = max(1, rest // clusterip_count + (k < rest % clusterip_count))
        endpoints = []
        for i in range(count):
            endpoints.append(Endpoint(
                ip=str(POD_NET + 1 + pod_index),
                pod=f"{name}-{i}",
                hostname=f"{name}-{i}" if headless else "",
                ready=not headless or i < count - 1,
            ))
            pod_index += 1
        cluster_ip = "" if headless else str(SERVICE_NET + 1 + s)
        out.append(Svc(name, f"ns-{s % NAMESPACES}", cluster_ip, tuple(endpoints)))
    return Cluster([f"ns-{n}" for n in range(min(NAMESPACES, services))], out)


def service_objects(svc: Svc) -> list[dict]:
    """The Service, its EndpointSlice and its Pods, as the API serialises them."""
    ports = [{"name": "http", "port": SERVICE_PORT, "protocol": "TCP",
              "targetPort": TARGET_PORT}]
    spec: dict = {"type": "ClusterIP", "ports": ports, "selector": {"app": svc.name}}
    spec["clusterIP"] = svc.cluster_ip or "None"
    spec["clusterIPs"] = [svc.cluster_ip or "None"]
    objects: list[dict] = [{
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": svc.name, "namespace": svc.namespace},
        "spec": spec,
    }]
    endpoints = []
    for ep in svc.endpoints:
        endpoint: dict = {
            "addresses": [ep.ip], "conditions": {"ready": ep.ready},
            "targetRef": {"kind": "Pod", "name": ep.pod, "namespace": svc.namespace},
        }
        pod_spec: dict = {"containers": [{"name": "app", "image": "app:1"}]}
        if ep.hostname:
            endpoint["hostname"] = ep.hostname
            pod_spec.update(hostname=ep.hostname, subdomain=svc.name)
        endpoints.append(endpoint)
        objects.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": ep.pod, "namespace": svc.namespace,
                         "labels": {"app": svc.name}},
            "spec": pod_spec,
            "status": {"phase": "Running", "podIP": ep.ip, "podIPs": [{"ip": ep.ip}]},
        })
    objects.append({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{svc.name}-abcde", "namespace": svc.namespace,
                     "labels": {"kubernetes.io/service-name": svc.name}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "http", "port": TARGET_PORT, "protocol": "TCP"}],
    })
    return objects


def write_manifests(cluster: Cluster, directory: Path) -> None:
    """One ``kind: List`` JSON file per namespace."""
    directory.mkdir(parents=True)
    by_namespace: dict[str, list[dict]] = {
        ns: [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
        for ns in cluster.namespaces
    }
    for svc in cluster.services:
        by_namespace[svc.namespace].extend(service_objects(svc))
    for ns, items in by_namespace.items():
        text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        (directory / f"{ns}.json").write_text(text)


def reverse_name(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa."


def apex_lines(zone: str) -> list[str]:
    """SOA and NS as clusterdns gives them (``ns.dns.<zone>``, hostmaster, TTL 30), with the
    glue clusterdns adds to the NS answer (its own listen address)."""
    return [
        f"{zone} {TTL} IN SOA ns.dns.{zone} hostmaster.{zone} 1 7200 1800 86400 {TTL}",
        f"{zone} {TTL} IN NS ns.dns.{zone}",
        f"ns.dns.{zone} {TTL} IN A 127.0.0.1",
    ]


def cluster_zone(cluster: Cluster) -> Iterator[str]:
    """``cluster.local``: what clusterdns answers for the names the mixes ask."""
    yield from apex_lines(ZONE)
    yield f'dns-version.{ZONE} 28800 IN TXT "1.1.0"'
    for svc in cluster.services:
        srv = f"_http._tcp.{svc.fqdn} {TTL} IN SRV"
        ready = svc.ready
        if svc.cluster_ip:
            yield f"{svc.fqdn} {TTL} IN A {svc.cluster_ip}"
            yield f"{srv} 0 100 {SERVICE_PORT} {svc.fqdn}"
        weight = 100 // max(1, len(ready))  # clusterdns/CoreDNS: 100 / candidates
        for ep in ready:
            target = f"{ep.label}.{svc.fqdn}"
            yield f"{target} {TTL} IN A {ep.ip}"
            if not svc.cluster_ip:
                yield f"{svc.fqdn} {TTL} IN A {ep.ip}"
                yield f"{srv} 0 {weight} {TARGET_PORT} {target}"


def reverse_zone(cluster: Cluster) -> Iterator[str]:
    """``in-addr.arpa``: PTR of each ClusterIP and of each ready endpoint address."""
    yield from apex_lines("in-addr.arpa.")
    for svc in cluster.services:
        if svc.cluster_ip:
            yield f"{reverse_name(svc.cluster_ip)} {TTL} IN PTR {svc.fqdn}"
        for ep in svc.ready:
            yield f"{reverse_name(ep.ip)} {TTL} IN PTR {ep.label}.{svc.fqdn}"


def write_zones(cluster: Cluster, directory: Path) -> int:
    """The zone files Knot loads; returns the number of records written."""
    directory.mkdir(parents=True)
    count = 0
    zones = {
        "cluster.local": cluster_zone(cluster),
        "in-addr.arpa": reverse_zone(cluster),
        "ip6.arpa": iter(apex_lines("ip6.arpa.")),
    }
    for zone, lines in zones.items():
        with open(directory / f"{zone}.zone", "w") as out:
            for line in lines:
                out.write(line + "\n")
                count += 1
    return count


def check_manifests(directory: Path) -> str:
    """``clusterdns check DIR``; raises with its output if anything is wrong."""
    done = subprocess.run([sys.executable, "-m", "clusterdns", "check", str(directory)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"clusterdns check failed:\n{done.stdout}{done.stderr}")
    return (done.stdout + done.stderr).strip().splitlines()[-1]


# ---- 3. query mixes ---------------------------------------------------------------------

Query = tuple[str, str]  # (name, type) as a dnsperf line has them


@dataclass
class Names:
    """Every name of the cluster the mixes ask, by kind."""

    cluster_ip: list[Query]
    headless: list[Query]
    endpoint: list[Query]
    srv: list[Query]
    ptr: list[Query]

    def existing(self) -> list[Query]:
        return self.cluster_ip + self.headless + self.endpoint + self.srv + self.ptr


def cluster_names(cluster: Cluster) -> Names:
    names = Names([], [], [], [], [])
    for svc in cluster.services:
        (names.cluster_ip if svc.cluster_ip else names.headless).append((svc.fqdn, "A"))
        names.srv.append((f"_http._tcp.{svc.fqdn}", "SRV"))
        if svc.cluster_ip:
            names.ptr.append((reverse_name(svc.cluster_ip), "PTR"))
        for ep in svc.ready:
            names.endpoint.append((f"{ep.label}.{svc.fqdn}", "A"))
            names.ptr.append((reverse_name(ep.ip), "PTR"))
    return names


def search_nx_names(cluster: Cluster, count: int, rng: random.Random) -> list[Query]:
    """Names a pod's search list makes (ndots:5) that do not exist, e.g. for ``svc-3.ns-3``
    asked in ns-7: ``svc-3.ns-3.ns-7.svc.cluster.local``, and for the full service name:
    ``svc-3.ns-3.svc.cluster.local.ns-7.svc.cluster.local`` and so on."""
    out: set[Query] = set()
    for _ in range(count * 20):
        if len(out) >= count:
            break
        svc = rng.choice(cluster.services)
        client = rng.choice(cluster.namespaces)
        short = f"{svc.name}.{svc.namespace}"
        name = rng.choice([
            f"{short}.{client}.svc.{ZONE}",
            f"{svc.fqdn}{client}.svc.{ZONE}",
            f"{svc.fqdn}svc.{ZONE}",
            f"{svc.fqdn}{ZONE}",
        ])
        out.add((name, "A"))
    return sorted(out)


@dataclass
class Mix:
    key: str  # "hit" | "miss"
    title: str
    path: Path  # the dnsperf data file
    distinct: int
    lines: int
    warm: Path | None  # the distinct names, sent once before measuring (the hit mix)
    fresh: bool  # restart the server before every dnsperf run, read the file once
    sample: list[Query]  # names whose answers are compared between servers
    existing: int = 0  # names that exist (the miss mix: the others are NXDOMAIN)


def write_queries(path: Path, queries: list[Query]) -> None:
    with open(path, "w") as out:
        for name, qtype in queries:
            out.write(f"{name} {qtype}\n")


def hit_mix(cluster: Cluster, names: Names, directory: Path, rng: random.Random) -> Mix:
    """70/10/5/5/10 over a few thousand distinct names, repeated so a cache warms up."""
    budget = {kind: max(1, HIT_NAMES * weight // 100) for kind, weight in HIT_WEIGHTS.items()}
    pools: dict[str, list[Query]] = {
        "cluster_ip": names.cluster_ip,
        "headless": names.headless,
        "srv": names.srv,
        "ptr": names.ptr,
        "search_nx": search_nx_names(cluster, budget["search_nx"], rng),
    }
    pools = {kind: rng.sample(pool, min(len(pool), budget[kind])) for kind, pool in pools.items()}
    kinds = [kind for kind in HIT_WEIGHTS if pools[kind]]
    weights = [HIT_WEIGHTS[kind] for kind in kinds]
    lines = [rng.choice(pools[kind]) for kind in rng.choices(kinds, weights, k=HIT_LINES)]
    distinct = [q for kind in kinds for q in pools[kind]]
    write_queries(directory / "hit.txt", lines)
    write_queries(directory / "hit-warm.txt", distinct)
    sample = [q for kind in kinds for q in pools[kind][: CHECK_SAMPLE // len(kinds)]]
    return Mix("hit", "cache-hit", directory / "hit.txt", len(distinct), len(lines),
               directory / "hit-warm.txt", False, sample)


def miss_mix(cluster: Cluster, names: Names, directory: Path, rng: random.Random,
             total: int) -> Mix:
    """Distinct names only: every existing name once, the rest distinct non-existent names."""
    existing = names.existing()
    if len(existing) > total // 2:
        existing = rng.sample(existing, total // 2)
    missing = [
        (f"r{i}-{rng.getrandbits(32):08x}.{rng.choice(cluster.namespaces)}.svc.{ZONE}", "A")
        for i in range(total - len(existing))
    ]
    queries = existing + missing
    rng.shuffle(queries)
    write_queries(directory / "miss.txt", queries)
    # The compared sample is not in the file: its own non-existent names, and existing
    # names (asked of a server instance that the miss-mix runs never use).
    sample_missing = [(f"check-{i}.{cluster.namespaces[0]}.svc.{ZONE}", "A") for i in range(50)]
    sample = rng.sample(names.endpoint, min(100, len(names.endpoint))) + sample_missing
    return Mix("miss", "miss-heavy", directory / "miss.txt", len(queries), len(queries), None,
               True, sample, existing=len(existing))


# ---- processes: start, stop, measure ----------------------------------------------------


class Processes:
    """Every process the bench starts, each in its own process group; all killed at exit."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen, grace: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(wait)
        # workers the leader left behind in its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(self.running):
            self.stop(process, grace=3.0)


def proc_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out = [root]
    for pid in out:
        out.extend(children.get(pid, []))
    return out


def cpu_times(root: int) -> dict[int, float]:
    """CPU seconds per process of the tree: utime+stime plus cutime+cstime (children it
    has reaped), so that the sum over the tree counts every worker, live or gone."""
    times = {}
    for pid in proc_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        times[pid] = sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK
    return times


def memory_mb(root: int, field_name: str = "VmRSS") -> float:
    """VmRSS summed over the process tree, in MB (shared pages of forked workers count
    once per worker)."""
    total = 0
    for pid in proc_tree(root):
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{pid}/status").read_text()
            match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M)
            total += int(match.group(1)) if match else 0
    return total / 1024


def pss_mb(root: int) -> float:
    """Proportional set size summed over the tree (shared pages split), in MB."""
    total = 0
    for pid in proc_tree(root):
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
            total += int(match.group(1)) if match else 0
    return total / 1024


def udp_socket_owners(root: int, port: int) -> list[int]:
    """The processes of the tree holding a UDP socket bound to ``port`` (the workers)."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{parts[9]}]")
    owners = []
    for pid in proc_tree(root):
        with contextlib.suppress(OSError):
            fds = os.listdir(f"/proc/{pid}/fd")
            links = set()
            for fd in fds:
                with contextlib.suppress(OSError):
                    links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            if links & inodes:
                owners.append(pid)
    return owners


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def ask(port: int, name: str, qtype: str, timeout: float = 2.0) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, use_edns=False)
    query.flags &= ~dns.flags.RD  # as dnsperf sends it
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout)


# ---- 4/5. the servers -------------------------------------------------------------------

KNOT_CONF = """\
server:
    rundir: "{run}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

database:
    storage: "{db}"

log:
  - target: stderr
    any: info

template:
  - id: default
    storage: "{zones}"
    file: "%s.zone"
    zonefile-load: whole
    zonefile-sync: -1
    journal-content: none
    semantic-checks: on

zone:
  - domain: cluster.local
  - domain: in-addr.arpa
  - domain: ip6.arpa
"""

DNSLIB_SERVER = '''\
"""dnslib.server baseline: clusterdns's pure resolver behind dnslib's socketserver server."""

import argparse
import time
from pathlib import Path

from dnslib import AAAA, CNAME, NS, PTR, RCODE, RR, SOA, SRV, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from clusterdns.core.resolver import ZoneConfig, resolve
from clusterdns.core.rr import QType, SOAData, SRVData
from clusterdns.sources.manifests import ManifestSource
from clusterdns.core.store import Store


def rdata(rr):
    data = rr.rdata
    if rr.rtype == QType.A:
        return A(data)
    if rr.rtype == QType.AAAA:
        return AAAA(data)
    if rr.rtype == QType.CNAME:
        return CNAME(data)
    if rr.rtype == QType.PTR:
        return PTR(data)
    if rr.rtype == QType.NS:
        return NS(data)
    if rr.rtype == QType.TXT:
        return TXT(list(data))
    if isinstance(data, SRVData):
        return SRV(data.priority, data.weight, data.port, data.target)
    if isinstance(data, SOAData):
        return SOA(data.mname, data.rname, (data.serial, data.refresh, data.retry,
                                            data.expire, data.minimum))
    raise ValueError(rr)


def to_dnslib(rr):
    return RR(rr.name, rr.rtype, ttl=rr.ttl, rdata=rdata(rr))


class ClusterResolver(BaseResolver):
    def __init__(self, store, config):
        self.store = store
        self.config = config

    def resolve(self, request, handler):
        reply = request.reply(ra=0, aa=1)
        question = request.q
        answer = resolve(self.store, str(question.qname).lower(), question.qtype, self.config)
        if answer is None:
            reply.header.rcode = RCODE.REFUSED
            return reply
        reply.header.rcode = answer.rcode
        for rr in answer.answer:
            reply.add_answer(to_dnslib(rr))
        for rr in answer.authority:
            reply.add_auth(to_dnslib(rr))
        for rr in answer.additional:
            reply.add_ar(to_dnslib(rr))
        return reply


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--zones", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    store = Store()
    ManifestSource(store, [args.zones]).load(time.time())
    config = ZoneConfig(ns_addresses=("127.0.0.1",))
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", logf=lambda s: None)
    server = DNSServer(ClusterResolver(store, config), address="127.0.0.1", port=args.port,
                       logger=quiet)
    print(f"dnslib.server listening on 127.0.0.1:{args.port}", flush=True)
    server.start()


main()
'''


@dataclass(frozen=True)
class Server:
    label: str
    kind: str  # "clusterdns" | "knot" | "dnslib"
    workers: int = 1
    mixes: tuple[str, ...] = ("hit", "miss")


@dataclass
class Work:
    """The temp dir and what lives in it."""

    root: Path
    tools: Tools
    procs: Processes
    workers_flag: bool  # clusterdns serve has --workers

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def zones(self) -> Path:
        return self.root / "zones"


def server_command(server: Server, work: Work, port: int) -> tuple[list[str], dict]:
    """The command line and Popen arguments of one server instance on ``port``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if server.kind == "clusterdns":
        cmd = [sys.executable, "-m", "clusterdns", "serve", "--zones", str(work.manifests),
               "--listen", f"127.0.0.1:{port}", "--cache-size", str(CACHE_SIZE)]
        if work.workers_flag:
            cmd += ["--workers", str(server.workers)]
        return cmd, {"cwd": ROOT, "env": env}
    if server.kind == "knot":
        conf = work.root / "knot.conf"
        write_knot_conf(work, port, conf)
        return [work.tools.knotd, "-c", str(conf)], {"cwd": work.root}
    script = work.root / "dnslib_server.py"
    script.write_text(DNSLIB_SERVER)
    return ([sys.executable, str(script), "--zones", str(work.manifests), "--port", str(port)],
            {"cwd": work.root, "env": env})


def write_knot_conf(work: Work, port: int, conf: Path) -> None:
    for sub in ("knot-run", "knot-db"):
        shutil.rmtree(work.root / sub, ignore_errors=True)
        (work.root / sub).mkdir()
    conf.write_text(KNOT_CONF.format(run=work.root / "knot-run", db=work.root / "knot-db",
                                     zones=work.zones, port=port))


def check_knot(work: Work) -> str:
    """``knotc conf-check`` and ``knotc zone-check`` on the generated configuration."""
    if work.tools.knotc is None:
        return "knotc not found: configuration and zones not checked before the start"
    conf = work.root / "knot.conf"
    write_knot_conf(work, free_port(), conf)
    out = []
    for command in ("conf-check", "zone-check"):
        done = subprocess.run([work.tools.knotc, "-c", str(conf), command],
                              capture_output=True, text=True, timeout=600)
        text = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            raise RuntimeError(f"knotc {command} failed:\n{text}")
        out.append(f"knotc {command}: {text.splitlines()[-1] if text else 'OK'}")
    return "; ".join(out)


@dataclass
class Running:
    server: Server
    process: subprocess.Popen
    port: int
    log: Path
    started: float  # seconds from start to answering


@contextlib.contextmanager
def serving(server: Server, work: Work) -> Iterator[Running]:
    """Start ``server`` on a free port, wait until it answers, stop it afterwards."""
    port = free_port()
    cmd, kwargs = server_command(server, work, port)
    log_path = work.root / f"{server.kind}-{server.workers}.log"
    began = time.perf_counter()
    with open(log_path, "w") as log_file:
        process = work.procs.start(cmd, stdout=log_file, stderr=subprocess.STDOUT, **kwargs)
    try:
        wait_ready(process, port, log_path, server.workers)
        yield Running(server, process, port, log_path, time.perf_counter() - began)
    finally:
        work.procs.stop(process)


def wait_ready(process: subprocess.Popen, port: int, log_path: Path, workers: int) -> None:
    """Poll until a query for the first service answers (and, with several workers, until
    that many UDP sockets listen on the port); raise if the process dies or the deadline
    passes."""
    deadline = time.monotonic() + START_DEADLINE
    probe = f"svc-0.ns-0.svc.{ZONE}"
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not answer in {START_DEADLINE:.0f} s:\n"
                               f"{tail(log_path)}")
        with contextlib.suppress(dns.exception.DNSException, OSError):
            if ask(port, probe, "A", timeout=0.5).answer:
                break
        time.sleep(0.2)
    sockets_deadline = time.monotonic() + 60
    while len(udp_socket_owners(process.pid, port)) < workers:
        if time.monotonic() > sockets_deadline or process.poll() is not None:
            log(f"warning: fewer than {workers} processes listen on UDP port {port}")
            break
        time.sleep(0.2)


def tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def supports_workers() -> bool:
    """Whether ``clusterdns serve`` has ``--workers`` (another change may add it)."""
    done = subprocess.run([sys.executable, "-m", "clusterdns", "serve", "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    return "--workers" in done.stdout


# ---- dnsperf ----------------------------------------------------------------------------


@dataclass
class Perf:
    """One dnsperf run as its summary reports it (+ latencies from ``-v``)."""

    sent: int
    completed: int
    lost: int
    qps: float
    run_time: float
    rcodes: dict[str, int]
    latencies: list[float] = field(default_factory=list)  # seconds, completed queries
    buffer_drops: int = 0  # datagrams dropped at full UDP receive buffers meanwhile
    client_cpu: float = 0.0  # dnsperf's own CPU seconds (all its threads)
    wall: float = 0.0  # seconds from dnsperf's start to its exit


def parse_dnsperf(text: str) -> Perf:
    def number(label: str) -> float:
        match = re.search(rf"{label}:\s+([\d.]+)", text)
        if not match:
            raise RuntimeError(f"dnsperf output without {label!r}:\n{text[-2000:]}")
        return float(match.group(1))

    codes = re.search(r"Response codes:\s+(.*)", text)
    rcodes = {m.group(1): int(m.group(2))
              for m in re.finditer(r"(\w+) (\d+) \(", codes.group(1) if codes else "")}
    latencies = []
    for line in text.splitlines():
        if line.startswith("> "):
            parts = line.split()
            if parts[1] != "T" and len(parts) >= 5:
                latencies.append(float(parts[-1]))
    return Perf(int(number("Queries sent")), int(number("Queries completed")),
                int(number("Queries lost")), number("Queries per second"),
                number(r"Run time \(s\)"), rcodes, latencies)


def children_cpu() -> float:
    """CPU seconds of the bench's reaped children (dnsperf once it has been waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def system_cpu() -> float:
    """CPU seconds spent in user and system mode by everything on the machine (/proc/stat;
    interrupt and softirq time, where loopback packets are handled, is left out)."""
    user, nice, system = (int(x) for x in Path("/proc/stat").read_text().split()[1:4])
    return (user + nice + system) / CLK_TCK


def udp_rcvbuf_errors() -> int:
    """RcvbufErrors of /proc/net/snmp: datagrams dropped because a socket's receive buffer
    was full (every UDP socket of the network namespace)."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def dnsperf(work: Work, running: Running, data: Path, *, duration: float, clients: int,
            qps: int = 0, once: bool = False, verbose: bool = False) -> Perf:
    cmd = [work.tools.dnsperf, "-s", "127.0.0.1", "-p", str(running.port), "-d", str(data),
           "-c", str(clients), "-T", "1", "-l", str(duration), "-t", str(TIMEOUT),
           "-q", str(OUTSTANDING)]
    if qps:
        cmd += ["-Q", str(qps)]
    if once:
        cmd += ["-n", "1"]
    if verbose:
        cmd += ["-v"]
    out = work.root / "dnsperf.out"
    drops = udp_rcvbuf_errors()
    children = children_cpu()
    began = time.perf_counter()
    with open(out, "w") as sink:
        process = work.procs.start(cmd, stdout=sink, stderr=subprocess.STDOUT)
        try:
            process.wait(duration + TIMEOUT + 60)
        finally:
            work.procs.stop(process, grace=2.0)
    perf = parse_dnsperf(out.read_text(errors="replace"))
    perf.buffer_drops = udp_rcvbuf_errors() - drops
    perf.client_cpu = children_cpu() - children
    perf.wall = time.perf_counter() - began
    return perf


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# ---- 4. measuring -----------------------------------------------------------------------


@dataclass
class RunResult:
    """One run of one server on one mix."""

    qps: float
    cpu_seconds: float
    busy: float  # server CPU seconds per second of the full-load run (1.0 = one core)
    # CPU seconds per wall second of the full-load dnsperf process, which includes reading
    # its file and waiting for the last replies, of:
    client_busy: float  # dnsperf itself (a sending and a receiving thread with -T 1)
    other_busy: float  # every other process on the machine (noise)
    completed: int
    per_cpu: float  # queries completed per server CPU second
    worker_cpu: list[float]  # CPU seconds of each process holding the UDP socket
    rss_mb: float
    pss_mb: float
    p50_ms: float
    p99_ms: float
    latency_qps: float  # what dnsperf achieved in the 20k run
    latency_lost: int
    lost_50k: int
    sent_50k: int
    rate_50k: float  # what dnsperf achieved (less than 50k when -q caps the outstanding)
    drops_50k: int  # of which dropped at full receive buffers
    rcodes: dict[str, int]


@dataclass
class Row:
    """The median of the runs of one server on one mix."""

    server: Server
    mix: Mix
    runs: list[RunResult]
    start_seconds: float

    def median(self, name: str) -> float:
        values = [getattr(run, name) for run in self.runs]
        values = [v for v in values if not math.isnan(v)]
        return statistics.median(values) if values else math.nan


def measure_run(server: Server, mix: Mix, work: Work, args: argparse.Namespace) -> tuple[
        RunResult, float]:
    """Throughput + CPU + RSS, latency at 20k qps, loss at 50k qps; returns the start time
    of the server too."""
    once = mix.fresh
    with contextlib.ExitStack() as stack:
        running = stack.enter_context(serving(server, work))
        started = running.started
        if mix.warm is not None:
            dnsperf(work, running, mix.warm, duration=60, clients=args.clients, once=True)
        pid = running.process.pid
        workers = udp_socket_owners(pid, running.port)
        before, machine_before, self_before = cpu_times(pid), system_cpu(), own_cpu()
        full = dnsperf(work, running, mix.path, duration=args.duration, clients=args.clients,
                       once=once)
        after = cpu_times(pid)
        others = (system_cpu() - machine_before) - (own_cpu() - self_before) - full.client_cpu
        rss, pss = memory_mb(pid), pss_mb(pid)
        cpu = sum(after.values()) - sum(before.get(p, 0.0) for p in after)
        others -= cpu
        worker_cpu = [after.get(p, 0.0) - before.get(p, 0.0) for p in workers]

        if mix.fresh:  # nothing asked twice of one server process
            stack.close()
            running = stack.enter_context(serving(server, work))
        latency = dnsperf(work, running, mix.path, duration=args.duration,
                          clients=args.clients, qps=LATENCY_QPS, once=once, verbose=True)
        if mix.fresh:
            stack.close()
            running = stack.enter_context(serving(server, work))
        loss = dnsperf(work, running, mix.path, duration=args.duration, clients=args.clients,
                       qps=LOSS_QPS, once=once)
    result = RunResult(
        qps=full.qps, cpu_seconds=cpu, completed=full.completed,
        busy=cpu / min(full.run_time, full.wall) if full.run_time else cpu / full.wall,
        client_busy=full.client_cpu / full.wall,
        other_busy=max(0.0, others) / full.wall,
        per_cpu=full.completed / cpu if cpu > 0 else math.nan, worker_cpu=worker_cpu,
        rss_mb=rss, pss_mb=pss,
        p50_ms=percentile(latency.latencies, 0.50) * 1000,
        p99_ms=percentile(latency.latencies, 0.99) * 1000,
        latency_qps=latency.qps, latency_lost=latency.lost,
        lost_50k=loss.lost, sent_50k=loss.sent, rate_50k=loss.qps, drops_50k=loss.buffer_drops,
        rcodes=full.rcodes,
    )
    return result, started


def describe(r: RunResult) -> str:
    """One run on one line (progress output)."""
    workers = "/".join(f"{c:.1f}" for c in r.worker_cpu)
    return (
        f"{r.qps:,.0f} q/s, {r.per_cpu:,.0f} q/CPU-s (CPU {r.cpu_seconds:.1f} s, "
        f"{100 * r.busy:.0f}% busy; per UDP socket owner {workers} s; dnsperf "
        f"{100 * r.client_busy:.0f}%, other processes {100 * r.other_busy:.0f}%); "
        f"p50/p99 {r.p50_ms:.2f}/{r.p99_ms:.2f} ms at {r.latency_qps:,.0f} q/s "
        f"(lost {r.latency_lost}); lost {r.lost_50k}/{r.sent_50k} at {r.rate_50k:,.0f} q/s "
        f"({r.drops_50k} receive-buffer drops); RSS {r.rss_mb:.0f} MB; rcodes {r.rcodes}"
    )


def measure(server: Server, mix: Mix, work: Work, args: argparse.Namespace) -> Row:
    """``--runs`` runs; a run during which other processes took more than NOISE_CORES of
    CPU is repeated (at most NOISE_RETRIES times, keeping the least disturbed one)."""
    runs, starts = [], []
    for index in range(args.runs):
        attempts = []
        for attempt in range(1 + NOISE_RETRIES):
            result, started = measure_run(server, mix, work, args)
            attempts.append((result, started))
            log(f"{server.label}, {mix.title} run {index + 1}/{args.runs}: {describe(result)}")
            if result.other_busy < NOISE_CORES:
                break
            if attempt < NOISE_RETRIES:
                log(f"  other processes used {result.other_busy:.2f} cores: repeating the run")
        result, started = min(attempts, key=lambda pair: pair[0].other_busy)
        runs.append(result)
        starts.append(started)
    return Row(server, mix, runs, statistics.median(starts))


# ---- 3b. the answers agree --------------------------------------------------------------


def normalise(reply: dns.message.Message) -> tuple:
    """rcode, TC, answer and additional records (sorted, case-folded), authority types."""
    def records(section: list) -> tuple[str, ...]:
        return tuple(sorted(
            f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rd}".lower()
            for rrset in section for rd in rrset
        ))
    authority = tuple(sorted(dns.rdatatype.to_text(r.rdtype) for r in reply.authority))
    truncated = "TC" if reply.flags & dns.flags.TC else ""
    return (dns.rcode.to_text(reply.rcode()), truncated, records(reply.answer),
            records(reply.additional), authority)


def collect_answers(server: Server, work: Work, sample: list[Query]) -> dict[Query, tuple]:
    answers = {}
    with serving(server, work) as running:
        for name, qtype in sample:
            try:
                answers[(name, qtype)] = normalise(ask(running.port, name, qtype))
            except dns.exception.DNSException as exc:
                answers[(name, qtype)] = ("no answer", type(exc).__name__)
    return answers


def compare_answers(servers: list[Server], work: Work, mixes: list[Mix]) -> str:
    """Ask the samples of both mixes of every server kind (rcode, TC, answer, additional
    records, authority types); Knot is the reference. One line, then any differences."""
    sample = [q for mix in mixes for q in mix.sample]
    kinds = {}
    for server in servers:
        kinds.setdefault(server.kind, server)
    reference = collect_answers(kinds["knot"], work, sample)
    summary, details = [], []
    for kind, server in kinds.items():
        if kind == "knot":
            continue
        answers = collect_answers(server, work, sample)
        differ = [q for q in sample if answers[q] != reference[q]]
        summary.append(f"{kind} {len(sample) - len(differ)}/{len(sample)} as Knot")
        for q in differ[:5]:
            details.append(f"  - {q[0]} {q[1]}: Knot {str(reference[q])[:300]}, "
                           f"{kind} {str(answers[q])[:300]}")
    return "; ".join(summary) + "".join("\n" + line for line in details)


# ---- 6. the report ----------------------------------------------------------------------


def fmt(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    return "n/a" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}x"


def find(rows: list[Row], kind: str, mix: str, workers: int = 1) -> Row | None:
    for row in rows:
        if row.server.kind == kind and row.mix.key == mix and row.server.workers == workers:
            return row
    return None


def table(rows: list[Row]) -> str:
    out = [
        "| server | mix | queries/s | queries per server CPU s | p50 / p99 ms at 20k qps "
        "| lost at 50k qps | RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        latency = f"{fmt(row.median('p50_ms'), 2)} / {fmt(row.median('p99_ms'), 2)}"
        achieved = row.median("latency_qps")
        if achieved < LATENCY_QPS * 0.95:  # the server could not keep up: say so
            latency += f" (only {fmt(achieved)} q/s, lost {fmt(row.median('latency_lost'))})"
        lost, sent = row.median("lost_50k"), row.median("sent_50k")
        lost = f"{fmt(lost)} of {fmt(sent)} ({fmt(100 * lost / sent if sent else math.nan, 2)}%"
        rate = row.median("rate_50k")
        lost += f"; sent at {fmt(rate)} q/s)" if rate < LOSS_QPS * 0.95 else ")"
        qps = f"{fmt(row.median('qps'))} ({fmt(100 * row.median('busy'))}% CPU)"
        out.append(
            f"| {row.server.label} | {row.mix.title} | {qps} "
            f"| {fmt(row.median('per_cpu'))} | {latency} | {lost} "
            f"| {fmt(row.median('rss_mb'))} |"
        )
    out.append("")
    out.append("queries/s (server CPU over the run, 100% = one core); p50/p99 (the rate dnsperf "
               "reached when under 20k, and the queries lost); lost (the rate dnsperf reached "
               "when under 50k); all medians of the runs, each column on its own.")
    return "\n".join(out)


def ratios(rows: list[Row], args: argparse.Namespace) -> list[str]:
    out = []
    for mix in ("hit", "miss"):
        ours, knot = find(rows, "clusterdns", mix), find(rows, "knot", mix)
        if ours and knot:
            out.append(
                f"- {ours.mix.title}: clusterdns/Knot queries per CPU second "
                f"{ratio(ours.median('per_cpu'), knot.median('per_cpu'))}, "
                f"queries/s {ratio(ours.median('qps'), knot.median('qps'))}, "
                f"p99 at 20k qps {ratio(ours.median('p99_ms'), knot.median('p99_ms'))}"
            )
    ours, base = find(rows, "clusterdns", "miss"), find(rows, "dnslib", "miss")
    if ours and base:
        factor = ours.median("qps") / base.median("qps") if base.median("qps") else math.nan
        verdict = "met" if factor >= 5 else "not met"
        out.append(f"- miss-heavy: clusterdns/dnslib.server queries/s "
                   f"{ratio(ours.median('qps'), base.median('qps'))} (goal >= 5x: {verdict})")
    for workers in args.workers:
        if workers == 1:
            continue
        for mix in ("hit", "miss"):
            many, one = find(rows, "clusterdns", mix, workers), find(rows, "clusterdns", mix)
            if not (many and one):
                continue
            splits = []
            for run in many.runs:
                total = sum(run.worker_cpu)
                shares = "/".join(f"{c:.1f}" for c in run.worker_cpu) or "none found"
                pct = "/".join(f"{100 * c / total:.0f}%" for c in run.worker_cpu) if total else ""
                splits.append(f"{shares} s ({pct})")
            took = all(
                len(run.worker_cpu) >= workers
                and min(run.worker_cpu) >= 0.1 * sum(run.worker_cpu) / len(run.worker_cpu)
                for run in many.runs
            )
            out.append(
                f"- {many.mix.title}: {workers} workers/1 worker queries per CPU second "
                f"{ratio(many.median('per_cpu'), one.median('per_cpu'))}, queries/s "
                f"{ratio(many.median('qps'), one.median('qps'))}; every worker took traffic in "
                f"every run: {'yes' if took else 'no'} (CPU seconds per worker, per run: "
                f"{'; '.join(splits)}); PSS {fmt(many.median('pss_mb'))} MB vs RSS sum "
                f"{fmt(many.median('rss_mb'))} MB"
            )
    return out


def noise_warning(rows: list[Row]) -> str:
    """A warning when other processes took a noticeable share of the CPUs during the runs."""
    worst = max((run.other_busy for row in rows for run in row.runs), default=0.0)
    if worst < NOISE_CORES:
        return ""
    return (f" WARNING: other processes used up to {worst:.2f} cores during a kept full-load "
            f"run (after {NOISE_RETRIES} repeats); those figures are disturbed, run again on a "
            "quiet machine.")


def machine() -> str:
    model = "unknown"
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = match.group(1).strip() if match else model
    return (f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


# ---- main -------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Steps, figures and caveats: see the module docstring (bench/speed.py).",
    )
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--pods", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=3, help="runs per server and mix (median)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per dnsperf run (-l)")
    parser.add_argument("--clients", type=int, default=16,
                        help="dnsperf clients, i.e. source ports (-c); with SO_REUSEPORT "
                        "workers the kernel spreads them by hash, so not too few")
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="clusterdns worker counts to measure, e.g. --workers 1 2")
    parser.add_argument("--miss-names", type=int, default=MISS_NAMES,
                        help="distinct names in the miss-heavy file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    if 1 not in args.workers:
        args.workers = [1, *args.workers]
    args.workers = sorted(set(args.workers))
    return args


def prepare(work: Work, args: argparse.Namespace) -> tuple[list[Mix], list[str]]:
    """Step 2 and 3: cluster, manifests, zones, mixes, checks. Returns the mixes and notes."""
    notes = []
    t = time.perf_counter()
    cluster = make_cluster(args.services, args.pods)
    write_manifests(cluster, work.manifests)
    records = write_zones(cluster, work.zones)
    log(f"cluster: {len(cluster.services):,} services, {cluster.pods:,} pods; "
        f"{records:,} zone records ({time.perf_counter() - t:.1f} s)")
    notes.append(f"clusterdns check: {check_manifests(work.manifests)}")
    notes.append(check_knot(work))
    for note in notes:
        log(note)
    rng = random.Random(args.seed)
    names = cluster_names(cluster)
    mixes = [hit_mix(cluster, names, work.root, rng),
             miss_mix(cluster, names, work.root, rng, args.miss_names)]
    for mix in mixes:
        log(f"{mix.title} mix: {mix.lines:,} queries, {mix.distinct:,} distinct names")
    return mixes, notes


def servers_to_run(work: Work, args: argparse.Namespace) -> tuple[list[Server], list[str]]:
    servers = []
    notes = []
    if not work.workers_flag:
        skipped = [str(n) for n in args.workers if n > 1]
        notes.append("clusterdns serve has no --workers flag: one process measured"
                     + (f"; --workers {' '.join(skipped)} not measured" if skipped else ""))
    for workers in args.workers:
        if workers > 1 and not work.workers_flag:
            continue
        noun = "worker" if workers == 1 else "workers"
        servers.append(Server(f"clusterdns ({workers} {noun})", "clusterdns", workers))
    if not work.workers_flag:
        servers[0] = Server("clusterdns (1 process)", "clusterdns", 1)
    servers.append(Server("Knot DNS (1 UDP worker)", "knot"))
    servers.append(Server("dnslib.server", "dnslib", mixes=("miss",)))
    return servers, notes


def interrupted(signum: int, frame: object) -> None:
    """SIGTERM: unwind as Ctrl-C does, so that every server is stopped."""
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    tools = check_tools()
    if tools is None:
        return 2
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    signal.signal(signal.SIGTERM, interrupted)
    # Also when started in the background of a script, where SIGINT comes in ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    procs = Processes()
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="clusterdns-speed-"))
    try:
        work = Work(tmp, tools, procs, supports_workers())
        log(f"work dir {tmp}; clusterdns --workers: "
            f"{'supported' if work.workers_flag else 'not supported'}")
        mixes, notes = prepare(work, args)
        servers, server_notes = servers_to_run(work, args)
        notes += server_notes
        for note in server_notes:
            log(note)
        agreement = compare_answers(servers, work, mixes)
        log(agreement)
        rows = []
        for mix in mixes:
            for server in servers:
                if mix.key in server.mixes:
                    rows.append(measure(server, mix, work, args))
        elapsed = time.perf_counter() - began
        print(report(rows, mixes, args, tools, notes, agreement, command, elapsed))
        return 0
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(rows: list[Row], mixes: list[Mix], args: argparse.Namespace, tools: Tools,
           notes: list[str], agreement: str, command: str, elapsed: float) -> str:
    starts = ", ".join(
        f"{row.server.label} {row.start_seconds:.1f} s" for row in rows if row.mix.key == "miss"
    )
    hit, miss = mixes
    lines = [
        table(rows),
        "",
        *ratios(rows, args),
        "",
        f"- Cluster: {args.services:,} services ({100 // HEADLESS_EVERY}% headless), "
        f"{args.pods:,} pods in {NAMESPACES} namespaces. Cache-hit mix: {hit.lines:,} queries "
        f"over {hit.distinct:,} distinct names (70% ClusterIP A, 10% headless A, 5% SRV, "
        f"5% PTR, 10% search-path NXDOMAIN), warmed with one pass. Miss-heavy mix: "
        f"{miss.distinct:,} distinct names ({miss.existing:,} existing: every service A, "
        f"endpoint A, SRV and PTR name once; the rest random non-existent names), each "
        f"server process asked each at most once.",
        f"- dnsperf: -c {args.clients} -T 1 -l {args.duration:g} -t {TIMEOUT} "
        f"-q {OUTSTANDING}; latency with -Q {LATENCY_QPS} -v (p50/p99 over completed "
        f"queries, from the per-query lines: dnsperf 2.10 prints no percentiles); loss with "
        f"-Q {LOSS_QPS}. Median of {args.runs} runs. Queries per CPU second: completed "
        f"queries of the full-load run / utime+stime of the server's process tree over it.",
        "- Lost at 50k qps, of which dropped at full UDP receive buffers (RcvbufErrors of "
        "/proc/net/snmp over the run, medians): " + ", ".join(
            f"{row.server.label} {row.mix.title} {fmt(row.median('drops_50k'))}" for row in rows
        ) + ". The default receive buffer (net.core.rmem_default, 208 KB) holds only "
        "about 200 small datagrams. A server that keeps up loses a few hundred when "
        "dnsperf catches up with a burst; one that cannot (sent below 50k: dnsperf keeps "
        f"-q {OUTSTANDING} outstanding) loses what does not fit, once per -t {TIMEOUT} s "
        "timeout, about 1,500 per 10 s whatever the server: then the rate dnsperf reached "
        "is the figure to read.",
        f"- RSS after the full-load run, VmRSS summed over the server's processes. "
        f"Start to first answer: {starts}.",
        f"- Same answers, asked of each server before measuring (a sample of "
        f"{sum(len(m.sample) for m in mixes)} names of both mixes): {agreement}",
        *[f"- {note}" for note in notes],
        "- CPU during the full-load runs, in cores (medians; server per second of dnsperf's "
        "run time / dnsperf and every other process on the machine, which is noise, per "
        "second of the dnsperf process's life): " + ", ".join(
            f"{row.server.label} {row.mix.title} {fmt(row.median('busy'), 2)} / "
            f"{fmt(row.median('client_busy'), 2)} / {fmt(row.median('other_busy'), 2)}"
            for row in rows
        ) + f". dnsperf and the server share {os.cpu_count()} CPUs: when the server is well "
        "below one core per worker, queries/s is bound by dnsperf, not by the server."
        + noise_warning(rows),
        f"- Machine: {machine()}; {tools.versions()}.",
        f"- Command: `{command}` ({elapsed / 60:.1f} minutes)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
