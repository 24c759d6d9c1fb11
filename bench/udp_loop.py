"""Measure a leaner UDP serving loop against the asyncio transport (issue 11, optional part).

Not a server anyone should run: a measurement of what the event loop costs per datagram.
The same Handler on the same store (bench/speed.py's cluster, loaded from manifests) is
served three ways, one process each, and dnsperf runs the realistic mix at full load
against each; the server's CPU seconds come from /proc:

- ``asyncio``: clusterdns's own ``DNSServer`` (a DatagramProtocol on the default loop);
- ``blocking``: one thread, blocking ``recvfrom`` -> ``Handler.handle`` -> ``sendto`` (the
  prototype: everything in the thread, not safe next to a live store);
- ``thread``: ``DNSServer(udp_thread=True)`` (``serve --udp-thread``): the thread answers
  cache hits and certain NXDOMAINs, everything else goes to the loop;
- ``recvmmsg``: not measured (Python's socket module has no recvmmsg; left for later).

Usage: python bench/udp_loop.py [--services 1000] [--duration 10] [--clients 16]
Everything on 127.0.0.1; bounded by its durations. Needs dnsperf (apt-get install dnsperf).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def serve(mode: str, zones: Path, port: int) -> None:
    """Run one server until killed (the child process)."""
    from clusterdns.core.resolver import ZoneConfig
    from clusterdns.core.store import Store
    from clusterdns.server.transport import DNSServer
    from clusterdns.sources.manifests import ManifestSource
    from tests.handlers import make_handler

    store = Store()
    ManifestSource(store, [zones]).load(time.time())
    handler = make_handler(store, ZoneConfig())
    if mode in ("asyncio", "thread"):
        async def run() -> None:
            server = DNSServer(handler, "127.0.0.1", port, udp_thread=mode == "thread")
            await server.start()
            print("ready", flush=True)
            await asyncio.Event().wait()

        asyncio.run(run())
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    print("ready", flush=True)
    recvfrom, sendto, handle = sock.recvfrom, sock.sendto, handler.handle
    while True:
        data, addr = recvfrom(4096)
        reply = handle(data, False, "1", addr[0])
        if isinstance(reply, bytes):
            sendto(reply, addr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--serve", choices=("asyncio", "blocking", "thread"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--zones", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.zones, args.port)
        return 0

    import speed

    tools = speed.check_tools()
    if tools is None:
        return 2
    root = Path(tempfile.mkdtemp(prefix="clusterdns-udploop-"))
    work = speed.Work(root, tools, speed.Processes(), False)
    try:
        cluster = speed.make_cluster(args.services, args.services * 10)
        speed.write_manifests(cluster, work.manifests)
        mix = speed.hit_mix(cluster, speed.cluster_names(cluster), root, random.Random(1))
        rows = []
        modes = ("asyncio", "blocking", "thread")
        for mode in modes + modes:
            port = speed.free_port()
            process = work.procs.start(
                [sys.executable, __file__, "--serve", mode, "--zones", str(work.manifests),
                 "--port", str(port)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
            assert process.stdout is not None
            process.stdout.readline()
            running = speed.Running(speed.Server(mode, "clusterdns"), process, port,
                                    root / "x.log", 0.0)
            speed.dnsperf(work, running, mix.warm, duration=60, clients=args.clients, once=True)
            before = speed.cpu_times(process.pid)
            perf = speed.dnsperf(work, running, mix.path, duration=args.duration,
                                 clients=args.clients)
            after = speed.cpu_times(process.pid)
            cpu = sum(after.values()) - sum(before.get(p, 0.0) for p in after)
            rows.append((mode, perf.qps, cpu, perf.completed / cpu, perf.lost, perf.sent))
            speed.log(f"{mode}: {perf.qps:,.0f} q/s, {perf.completed / cpu:,.0f} per CPU s")
            work.procs.stop(process)
        print(f"Command: python bench/udp_loop.py {' '.join(sys.argv[1:])}")
        print(f"Machine: {speed.machine()}\n")
        print("| serving loop | queries/s | server CPU s | queries per server CPU second "
              "| lost |")
        print("|---|---|---|---|---|")
        for mode, qps, cpu, per_cpu, lost, sent in rows:
            print(f"| {mode} | {qps:,.0f} | {cpu:.1f} | {per_cpu:,.0f} | {lost} of {sent} |")
        by = {m: sum(r[3] for r in rows if r[0] == m) for m in modes}
        print()
        for mode in modes[1:]:
            print(f"- {mode} / asyncio: {by[mode] / by['asyncio']:.2f}x "
                  "(queries per server CPU second, both runs of each summed)")
    finally:
        for process in list(work.procs.running):
            with contextlib.suppress(Exception):
                work.procs.stop(process)
        subprocess.run(["rm", "-rf", str(root)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
