"""Queries per server CPU second: plain recvfrom/sendto against recvmmsg/sendmmsg
(server/batch.py), with what a cache hit costs as the answer (issue 19, part 1).

One command (from the repository root, with the project's virtualenv)::

    python bench/batch_udp.py [--rates 20000 50000] [--duration 5] [--names 1000] [--batch 64]

What it does (everything on 127.0.0.1, bounded in count and time):

1. Builds ``--names`` A queries (``svcN.nsM.svc.cluster.local``, no EDNS, as glibc's stub
   sends them) and, for each, a reply tail (flags, counts, question, one A record); the
   answer function is a dict lookup of the query minus its ID returning ID + tail: about
   what a hit in the answer cache costs, so that what differs between the runs is the I/O.
2. For each mode (``plain``: one thread, blocking ``recvfrom``/``sendto``; ``batch``: a
   ``BatchServer`` thread, each source decoded for ``answer``; ``batch-lean``: the same
   with ``addresses=False``, as a cache-hit path that needs no source) and each rate,
   starts the server in a process of its own; a load process sends the queries in turn
   at the fixed rate for ``--duration`` seconds (paced every millisecond) and counts the
   replies (it reads them in batches, so that it keeps up); then the server reports its
   CPU time.
3. Prints a markdown table: queries sent, answered, lost, the server's CPU seconds
   (``getrusage`` of its process, user and system, from the first query to the last reply), queries
   per server CPU second, datagrams per recvmmsg, and the batch/plain ratio per rate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


MODES = ("plain", "batch", "batch-lean")


def query(name: str, qid: int = 0) -> bytes:
    """An A/IN query for ``name`` with RD, no EDNS."""
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + b"\x00\x01\x00\x01"


def table(names: int) -> dict[bytes, bytes]:
    """Query minus its ID -> reply minus its ID, for ``names`` service names."""
    kept = {}
    for i in range(names):
        q = query(f"svc{i}.ns{i % 100}.svc.cluster.local.")
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + bytes([10, 96, i >> 8 & 255,
                                                                         i & 255])
        kept[q[2:]] = b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + q[12:] + answer
    return kept


# --- the server process -------------------------------------------------------------------


def serve(mode: str, names: int, batch_size: int) -> None:
    """Serve on an ephemeral port until 'stop' on stdin; print the port, then the result."""
    from clusterdns.server.batch import BatchServer

    kept = table(names)
    get = kept.get
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.bind(("127.0.0.1", 0))
    counts = {"answered": 0, "batches": 0}

    def answer(data: bytes, addr: Any) -> bytes | None:
        tail = get(data[2:])
        return None if tail is None else data[:2] + tail

    if mode != "plain":
        server = BatchServer(sock, answer, lambda items: None, batch=batch_size,
                             addresses=mode == "batch")
        server.start()
    else:
        def plain() -> None:
            recvfrom, sendto = sock.recvfrom, sock.sendto
            while True:
                data, addr = recvfrom(4096)
                tail = get(data[2:])
                if tail is not None:
                    sendto(data[:2] + tail, addr)
                    counts["answered"] += 1

        threading.Thread(target=plain, daemon=True).start()
    print(sock.getsockname()[1], flush=True)
    start = resource.getrusage(resource.RUSAGE_SELF)
    for line in sys.stdin:
        if line.strip() == "start":
            start = resource.getrusage(resource.RUSAGE_SELF)
        elif line.strip() == "stop":
            end = resource.getrusage(resource.RUSAGE_SELF)
            user, system = end.ru_utime - start.ru_utime, end.ru_stime - start.ru_stime
            if mode != "plain":
                counts = {"answered": server.answered, "batches": server.batches,
                          "received": server.received}
            print(json.dumps({"cpu": user + system, "user": user, "system": system, **counts}),
                  flush=True)
            os._exit(0)


# --- the load process ---------------------------------------------------------------------


def load(port: int, rate: int, duration: float, names: int) -> None:
    """Send ``rate`` queries/s for ``duration`` s to ``port``; print sent and received."""
    from clusterdns.server.batch import BatchServer, available

    queries = [query(f"svc{i}.ns{i % 100}.svc.cluster.local.") for i in range(names)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.bind(("127.0.0.1", 0))
    received = [0]

    def count(data: bytes, addr: Any) -> bytes:
        received[0] += 1
        return b""

    reader = None
    if available():
        reader = BatchServer(sock, count, lambda items: None)
        reader.start()
    else:
        def read() -> None:
            while True:
                sock.recvfrom(4096)
                received[0] += 1

        threading.Thread(target=read, daemon=True).start()
    total = int(rate * duration)
    target = ("127.0.0.1", port)
    sendto = sock.sendto
    sent = 0
    began = time.monotonic()
    while sent < total:
        due = min(total, int(rate * (time.monotonic() - began)) + 1)
        while sent < due:
            qid = sent & 0xFFFF
            q = queries[sent % names]
            sendto(qid.to_bytes(2, "big") + q[2:], target)
            sent += 1
        time.sleep(0.001)
    elapsed = time.monotonic() - began
    # wait for the replies still in flight: until all arrived, or 1 s with none new
    last, quiet = received[0], time.monotonic()
    while received[0] < sent and time.monotonic() - quiet < 1.0:
        time.sleep(0.01)
        if received[0] != last:
            last, quiet = received[0], time.monotonic()
    print(json.dumps({"sent": sent, "received": received[0], "elapsed": elapsed}), flush=True)
    os._exit(0)


# --- the driver ---------------------------------------------------------------------------


def run(mode: str, rate: int, args: argparse.Namespace) -> dict[str, Any]:
    me = [sys.executable, __file__]
    server = subprocess.Popen(
        [*me, "--serve", mode, "--names", str(args.names), "--batch", str(args.batch)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdin and server.stdout
        port = int(server.stdout.readline())
        server.stdin.write("start\n")
        server.stdin.flush()
        done = subprocess.run(
            [*me, "--load", str(port), "--rate", str(rate), "--duration", str(args.duration),
             "--names", str(args.names)],
            capture_output=True, text=True, timeout=args.duration + 60, check=True,
        )
        server.stdin.write("stop\n")
        server.stdin.flush()
        result: dict[str, Any] = json.loads(server.stdout.readline())
        result.update(json.loads(done.stdout))
        return result
    finally:
        server.kill()
        server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[20_000, 50_000],
                        help="queries per second offered (each a run per mode)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64, help="datagrams per recvmmsg")
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.names, args.batch)
        return 0
    if args.load:
        load(args.load, args.rate, args.duration, args.names)
        return 0
    from clusterdns.server.batch import available

    if not available():
        print("recvmmsg/sendmmsg are not available here (Linux only)", file=sys.stderr)
        return 2
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {args.names} names, "
          f"{args.duration:g} s per run, batch {args.batch}\n")
    print("| mode | offered q/s | sent | answered | lost | server CPU s (user+system) "
          "| us per query (user+system) | q per server CPU s | datagrams per recvmmsg |")
    print("|---|---|---|---|---|---|---|---|---|")
    per_cpu: dict[tuple[str, int], float] = {}
    for rate in args.rates:
        for mode in MODES:
            r = run(mode, rate, args)
            n = max(1, r["answered"])
            qps = r["answered"] / r["cpu"] if r["cpu"] else 0.0
            per_cpu[mode, rate] = qps
            per_batch = f"{r['received'] / r['batches']:.1f}" if r.get("batches") else "1"
            print(f"| {mode} | {rate:,} | {r['sent']:,} | {r['answered']:,} "
                  f"| {r['sent'] - r['received']:,} | {r['cpu']:.2f} ({r['user']:.2f}+"
                  f"{r['system']:.2f}) | {1e6 * r['user'] / n:.2f}+{1e6 * r['system'] / n:.2f} "
                  f"| {qps:,.0f} | {per_batch} |",
                  flush=True)
    print()
    for rate in args.rates:
        if per_cpu.get(("plain", rate)):
            ratios = ", ".join(f"{mode} {per_cpu[mode, rate] / per_cpu['plain', rate]:.2f}x"
                               for mode in MODES[1:])
            print(f"at {rate:,} q/s, queries per server CPU second against plain: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
