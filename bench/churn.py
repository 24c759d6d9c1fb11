"""Query speed on a changing cluster: clusterdns static and under EndpointSlice churn, Knot as
the reference, all in one run (issue 11).

One command (from the repository root, with the project's virtualenv)::

    python bench/churn.py [--services 1000] [--rate 50] [--duration 10] [--clients 16]
                          [--flood 300000] [--udp-thread] [--workers 1 2] [--keep]

What it does (everything on 127.0.0.1, bounded in time and count):

1. Checks for ``dnsperf`` and ``knotd`` (``apt-get install dnsperf knot``; exits 2 without).
2. Builds bench/speed.py's cluster (100 namespaces, N Services, every 10th headless with
   4 pods, one EndpointSlice per Service), Knot's static zones of the same records, and
   the realistic query mix (70% ClusterIP A, 10% headless A, 5% SRV, 5% PTR, 10%
   search-path NXDOMAIN).
3. Serves the cluster from the test API server (tests/kubeapi.py) and starts
   ``clusterdns serve --kubeconfig ...`` against it (list/watch, the default install);
   starts Knot on the static zones.
4. Measures, each for ``--duration`` seconds: Knot at full load; clusterdns at full load
   on the still cluster; clusterdns at full load while a thread makes ``--rate``
   EndpointSlice changes per second through the API (alternately a readiness flip and an
   address move, each on a random service); then p50/p99 latency at a fixed 20,000
   queries/s, static and under churn, and Knot's; then a random-name flood (``--flood``
   distinct names under the cluster zone, each asked once) of both servers, and for
   clusterdns a flood of as many other names as the latency runs send, at their fixed
   rate (what it loses: the table's "at fixed rate" column). Full load is
   dnsperf ``-c 16 -q 500``; the server's CPU seconds come from /proc, so "queries per
   server CPU second" holds on a machine where dnsperf itself takes a core.
5. After the churn: waits one second, then asks every service the churn touched for the
   names the change altered (a headless service's A records; each endpoint's PTR, gone
   when not ready; the PTR of each address moved away) and counts answers that are not
   current.
6. With ``--workers 1 2`` (any counts): the still cluster again at full load, with
   ``serve --workers N`` for each N (one process per N, each a fresh start), the server's
   CPU summed over its workers.
7. Prints a markdown table and the ratios (clusterdns/Knot static, churn/static, N
   workers/1 worker).

Every process it starts is in its own process group and is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import dns.rcode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import speed  # noqa: E402
from speed import (  # noqa: E402
    Processes,
    Server,
    Work,
    ask,
    check_tools,
    cluster_names,
    cpu_times,
    dnsperf,
    free_port,
    hit_mix,
    make_cluster,
    percentile,
    reverse_name,
    service_objects,
    serving,
    wait_ready,
    write_zones,
)

from tests.kubeapi import KubeAPIServer  # noqa: E402

MOVED_NET = "10.250"  # addresses the churn moves endpoints to: 10.250.x.y


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Churn:
    """EndpointSlice changes at ``rate`` per second through the API server, in a thread.

    Keeps the slices as it last wrote them, so the check afterwards knows what each
    changed name must answer, and the addresses moved away (their PTR must be gone)."""

    def __init__(self, api: KubeAPIServer, slices: dict[str, dict], rate: float, seed: int):
        self.api = api
        self.slices = slices  # service fqdn -> its EndpointSlice object (current)
        self.rate = rate
        self.rng = random.Random(seed)
        self.changed: set[str] = set()
        self.moved_away: set[str] = set()
        self.count = 0
        self.next_ip = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="churn", daemon=True)

    def run(self) -> None:
        began = time.perf_counter()
        names = sorted(self.slices)
        while not self.stop.is_set():
            due = began + self.count / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                self.stop.wait(delay)
                continue
            fqdn = self.rng.choice(names)
            obj = self.slices[fqdn]
            endpoint = self.rng.choice(obj["endpoints"])
            if self.count % 2 == 0:  # a readiness flip
                endpoint["conditions"]["ready"] = not endpoint["conditions"]["ready"]
            else:  # an address move (a pod replaced by another)
                old = endpoint["addresses"][0]
                self.next_ip += 1
                new = f"{MOVED_NET}.{self.next_ip // 250 % 250}.{self.next_ip % 250 + 1}"
                endpoint["addresses"] = [new]
                self.moved_away.add(old)
                self.moved_away.discard(new)
            self.api.update(obj)
            self.changed.add(fqdn)
            self.count += 1

    def __enter__(self) -> Churn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def check_current(port: int, churn: Churn) -> tuple[int, int]:
    """Ask every name the churn changed; return (names checked, answers not current)."""
    checked = wrong = 0
    live: set[str] = set()
    for fqdn in sorted(churn.changed):
        obj = churn.slices[fqdn]
        headless = any(ep.get("hostname") for ep in obj["endpoints"])
        ready = [ep for ep in obj["endpoints"] if ep["conditions"]["ready"]]
        live.update(ep["addresses"][0] for ep in obj["endpoints"])
        if headless:
            checked += 1
            reply = ask(port, fqdn, "A")
            got = sorted(rr.address for rrset in reply.answer for rr in rrset)
            want = sorted(ep["addresses"][0] for ep in ready)
            if want and got != want or not want and reply.rcode() != dns.rcode.NXDOMAIN:
                wrong += 1
        for ep in ready:
            checked += 1
            ip = ep["addresses"][0]
            label = ep.get("hostname") or ip.replace(".", "-")
            reply = ask(port, reverse_name(ip), "PTR")
            got_ptr = [rr.target.to_text() for rrset in reply.answer for rr in rrset]
            if f"{label}.{fqdn}" not in got_ptr:
                wrong += 1
        for ep in obj["endpoints"]:
            if not ep["conditions"]["ready"]:  # not ready: no PTR
                checked += 1
                reply = ask(port, reverse_name(ep["addresses"][0]), "PTR")
                if reply.rcode() != dns.rcode.NXDOMAIN:
                    wrong += 1
    for ip in sorted(churn.moved_away - live):
        checked += 1
        if ask(port, reverse_name(ip), "PTR").rcode() != dns.rcode.NXDOMAIN:
            wrong += 1
    return checked, wrong


def start_clusterdns(work: Work, kubeconfig: Path, extra: list[str], workers: int = 1,
                     source: Path = ROOT) -> tuple[subprocess.Popen, int, Path]:
    """``clusterdns serve`` from the tree at ``source`` (its package first on the path)."""
    port = free_port()
    log_path = work.root / "clusterdns.log"
    cmd = [sys.executable, "-m", "clusterdns", "serve", "--kubeconfig", str(kubeconfig),
           "--listen", f"127.0.0.1:{port}", *extra]
    env = {**os.environ, "PYTHONPATH": str(source)}
    with open(log_path, "w") as log_file:
        process = work.procs.start(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=source,
                                   env=env)
    wait_ready(process, port, log_path, workers)
    return process, port, log_path


class Pseudo:
    """What speed.dnsperf needs of a running server: its port."""

    def __init__(self, port: int) -> None:
        self.port = port


def flood_file(cluster_namespaces: list[str], count: int, path: Path, rng: random.Random) -> Path:
    """``count`` distinct names under the cluster zone that do not exist (a random-name
    flood: every one NXDOMAIN, none asked twice)."""
    with open(path, "w") as out:
        for i in range(count):
            ns = rng.choice(cluster_namespaces)
            out.write(f"x{i}-{rng.getrandbits(32):08x}.{ns}.svc.cluster.local. A\n")
    return path


def full_load(work: Work, port: int, pid: int, mix: Path, args: argparse.Namespace,
              once: bool = False) -> dict:
    before = cpu_times(pid)
    perf = dnsperf(work, Pseudo(port), mix, duration=args.duration,  # type: ignore[arg-type]
                   clients=args.clients, once=once)
    after = cpu_times(pid)
    cpu = sum(after.values()) - sum(before.get(p, 0.0) for p in after)
    return {"qps": perf.qps, "cpu": cpu, "per_cpu": perf.completed / cpu if cpu else 0.0,
            "lost": perf.lost, "sent": perf.sent}


def latency(work: Work, port: int, mix: Path, args: argparse.Namespace,
            once: bool = False) -> dict:
    perf = dnsperf(work, Pseudo(port), mix, duration=args.duration,  # type: ignore[arg-type]
                   clients=args.clients, qps=args.latency_qps, verbose=True, once=once)
    return {"p50": percentile(perf.latencies, 0.5) * 1000,
            "p99": percentile(perf.latencies, 0.99) * 1000, "lat_lost": perf.lost,
            "lat_sent": perf.sent, "lat_qps": perf.qps}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=0,
                        help="pods behind the services (default: 10 per service)")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="EndpointSlice changes per second during the churn runs")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--latency-qps", type=int, default=speed.LATENCY_QPS)
    parser.add_argument("--flood", type=int, default=300_000,
                        help="distinct random names of the flood runs (0: no flood runs)")
    parser.add_argument("--udp-thread", action="store_true",
                        help="run clusterdns with --udp-thread (cache hits from a thread)")
    parser.add_argument("--workers", type=int, nargs="+", default=[], metavar="N",
                        help="also measure the still cluster at full load with serve "
                        "--workers N for each N (e.g. --workers 1 2)")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=FLAGS",
                        help="also measure clusterdns with these serve flags (static, churn, "
                        "flood), e.g. --variant 'thread=--udp-thread'; repeatable")
    parser.add_argument("--compare", type=Path, default=None, metavar="TREE",
                        help="also measure clusterdns from another source tree (e.g. a git "
                        "worktree of an older commit), in the same run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    tools = check_tools()
    if tools is None:
        return 2
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="clusterdns-churn-"))
    work = Work(root, tools, Processes(), False)
    api = KubeAPIServer()
    results: dict[str, dict] = {}
    try:
        cluster = make_cluster(args.services, args.pods or args.services * 10)
        write_zones(cluster, work.zones)
        mix = hit_mix(cluster, cluster_names(cluster), root, rng)
        objects: list[dict] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            for ns in cluster.namespaces
        ]
        slices: dict[str, dict] = {}
        for svc in cluster.services:
            for obj in service_objects(svc):
                if obj["kind"] == "Pod":
                    continue  # the default install does not watch pods
                objects.append(obj)
                if obj["kind"] == "EndpointSlice":
                    slices[svc.fqdn] = obj
        api.start()
        api.load(objects)
        kubeconfig = api.write_kubeconfig(root / "kubeconfig")
        log(f"cluster: {args.services} services, {cluster.pods} endpoints, "
            f"{mix.distinct} distinct names in the mix")

        flood = flood_file(cluster.namespaces, args.flood, root / "flood.txt", rng)
        # the flood at the fixed rate of the latency runs: as many other distinct names
        steady_flood = flood_file(cluster.namespaces, int(args.latency_qps * args.duration),
                                  root / "flood-rate.txt", rng)
        with serving(Server("Knot", "knot"), work) as knot:
            log("Knot: full load")
            results["knot"] = full_load(work, knot.port, knot.process.pid, mix.path, args)
            results["knot"].update(latency(work, knot.port, mix.path, args))
            if args.flood:
                log("Knot: random-name flood")
                results["knot-flood"] = full_load(work, knot.port, knot.process.pid, flood,
                                                  args, once=True)

        extra = ["--udp-thread"] if args.udp_thread else []
        runs = [("", extra, ROOT)]
        runs += [(v.split("=", 1)[0], v.split("=", 1)[1].split(), ROOT) for v in args.variant]
        if args.compare is not None:
            runs.append((f"tree {args.compare.name}", extra, args.compare))
        checked = wrong = 0
        churn = Churn(api, slices, args.rate, args.seed)
        for label, flags, source in runs:
            churn = Churn(api, slices, args.rate, args.seed)
            part, checked_here, wrong_here = measure(
                work, kubeconfig, flags, source, mix, (flood, steady_flood), churn, args)
            checked, wrong = checked + checked_here, wrong + wrong_here
            for key, value in part.items():
                results[f"{label}:{key}" if label else key] = value
            if label:
                args.labels = [*getattr(args, "labels", []), label]
        extra = ["--udp-thread"] if args.udp_thread else []
        for count in args.workers:
            process, port, _ = start_clusterdns(work, kubeconfig,
                                                [*extra, "--workers", str(count)], count)
            dnsperf(work, Pseudo(port), mix.warm, duration=60,  # type: ignore[arg-type]
                    clients=args.clients, once=True)
            log(f"clusterdns static, {count} workers: full load")
            results[f"workers-{count}"] = full_load(work, port, process.pid, mix.path, args)
            work.procs.stop(process)
        report(results, args, churn, checked, wrong)
    finally:
        api.stop()
        for process in list(work.procs.running):
            with contextlib.suppress(Exception):
                work.procs.stop(process)
        if args.keep:
            log(f"kept {root}")
        else:
            subprocess.run(["rm", "-rf", str(root)], check=False)
    return 0


def measure(work: Work, kubeconfig: Path, flags: list[str], source: Path, mix: Any,
            floods: tuple[Path, Path], churn: Churn,
            args: argparse.Namespace) -> tuple[dict, int, int]:
    """One clusterdns (``flags``, from ``source``): static and churn at full load with their
    latency, the changed names checked, then one pass of the real mix, the random-name
    flood (``floods[0]``, at full load), the real mix's first pass after it (what a flood
    leaves of the kept answers), and a flood of other names (``floods[1]``) at the fixed
    rate of the latency runs (what it loses)."""
    flood, steady_flood = floods
    results: dict[str, dict] = {}
    process, port, _ = start_clusterdns(work, kubeconfig, flags, source=source)
    dnsperf(work, Pseudo(port), mix.warm, duration=60,  # type: ignore[arg-type]
            clients=args.clients, once=True)
    log(f"clusterdns {' '.join(flags)} ({source.name}) static: full load")
    results["static"] = full_load(work, port, process.pid, mix.path, args)
    results["static"].update(latency(work, port, mix.path, args))
    log(f"clusterdns under {args.rate:g} EndpointSlice changes/s: full load")
    with churn:
        results["churn"] = full_load(work, port, process.pid, mix.path, args)
        results["churn"].update(latency(work, port, mix.path, args))
    time.sleep(1.0)  # "current within 1 s of its watch event"
    checked, wrong = check_current(port, churn)
    if args.flood:
        results["before-flood"] = full_load(work, port, process.pid, mix.path, args, once=True)
        log("clusterdns: random-name flood")
        results["flood"] = full_load(work, port, process.pid, flood, args, once=True)
        results["after-flood"] = full_load(work, port, process.pid, mix.path, args, once=True)
        log(f"clusterdns: random-name flood at {args.latency_qps} q/s")
        results["flood"].update(latency(work, port, steady_flood, args, once=True))
    work.procs.stop(process)
    return results, checked, wrong


def report(results: dict[str, dict], args: argparse.Namespace, churn: Churn, checked: int,
           wrong: int) -> None:
    rows = [("Knot, static zone", "knot"), ("clusterdns, static cluster", "static"),
            (f"clusterdns, {args.rate:g} EndpointSlice changes/s", "churn")]
    print(f"Command: python bench/churn.py {' '.join(sys.argv[1:])}")
    print(f"Machine: {speed.machine()}")
    print()
    print("| condition | queries/s | server CPU s | queries per server CPU second "
          f"| p50 / p99 at {args.latency_qps} q/s (ms) | lost (full load; at fixed rate) |")
    print("|---|---|---|---|---|---|")
    for title, key in rows:
        r = results[key]
        print(f"| {title} | {r['qps']:,.0f} | {r['cpu']:.1f} | {r['per_cpu']:,.0f} "
              f"| {r['p50']:.2f} / {r['p99']:.2f} | {r['lost']} of {r['sent']}; "
              f"{r['lat_lost']} of {r['lat_sent']} |")
    for title, key in (("Knot, random-name flood", "knot-flood"),
                       ("clusterdns, random-name flood", "flood")):
        if key in results:
            r = results[key]
            steady = f"; {r['lat_lost']} of {r['lat_sent']}" if "lat_lost" in r else ""
            print(f"| {title} | {r['qps']:,.0f} | {r['cpu']:.1f} | {r['per_cpu']:,.0f} | - "
                  f"| {r['lost']} of {r['sent']}{steady} |")
    for label in getattr(args, "labels", []):
        for title, key in (("static cluster", "static"), ("under churn", "churn"),
                           ("random-name flood", "flood")):
            r = results.get(f"{label}:{key}")
            if r is None:
                continue
            p = f"{r['p50']:.2f} / {r['p99']:.2f}" if "p50" in r else "-"
            print(f"| clusterdns [{label}], {title} | {r['qps']:,.0f} | {r['cpu']:.1f} "
                  f"| {r['per_cpu']:,.0f} | {p} | {r['lost']} of {r['sent']} |")
    for count in args.workers:
        r = results[f"workers-{count}"]
        print(f"| clusterdns, static cluster, {count} worker{'s' if count > 1 else ''} "
              f"| {r['qps']:,.0f} | {r['cpu']:.1f} | {r['per_cpu']:,.0f} | - "
              f"| {r['lost']} of {r['sent']} |")
    k, s, c = results["knot"]["per_cpu"], results["static"]["per_cpu"], results["churn"]["per_cpu"]
    print()
    print(f"- clusterdns static / Knot: {s / k:.2f}x (queries per server CPU second)")
    print(f"- clusterdns under churn / its static figure: {c / s:.2f}x")
    if "flood" in results:
        ratio = results["flood"]["per_cpu"] / results["knot-flood"]["per_cpu"]
        print(f"- random-name flood, clusterdns / Knot: {ratio:.2f}x")
    for label in ["", *getattr(args, "labels", [])]:
        prefix = f"{label}:" if label else ""
        name = f"[{label}] " if label else ""
        r = results.get(f"{prefix}static")
        if r is None:
            continue
        if label:
            print(f"- {name}static / Knot: {r['per_cpu'] / k:.2f}x; static / the first "
                  f"clusterdns's static: {r['per_cpu'] / s:.2f}x; churn / its static: "
                  f"{results[prefix + 'churn']['per_cpu'] / r['per_cpu']:.2f}x")
            if f"{prefix}flood" in results:
                flood = results[f"{prefix}flood"]["per_cpu"] / results["knot-flood"]["per_cpu"]
                print(f"- {name}random-name flood / Knot: {flood:.2f}x")
        before, after = results.get(f"{prefix}before-flood"), results.get(f"{prefix}after-flood")
        if before and after:
            print(f"- {name}the real mix's first pass after the flood: "
                  f"{after['per_cpu'] / before['per_cpu']:.2f}x its pass before "
                  f"(queries per server CPU second)")
    if len(args.workers) > 1:
        one = results[f"workers-{args.workers[0]}"]
        for count in args.workers[1:]:
            r = results[f"workers-{count}"]
            print(f"- {count} workers / {args.workers[0]}: {r['qps'] / one['qps']:.2f}x the "
                  f"queries/s, {r['per_cpu'] / one['per_cpu']:.2f}x per server CPU second")
    print(f"- churn: {churn.count} EndpointSlice changes over {len(churn.changed)} services; "
          f"1 s after the last: {checked} changed names asked, {wrong} not current")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
