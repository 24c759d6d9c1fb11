"""What the ``log`` plugin costs per query: the handler's answer-cache hit path and its
miss path, with and without ``log``, in-process (no sockets: the cost of logging, not of
the kernel). The writer thread runs and writes to /dev/null, so its formatting competes
for the CPU (and the GIL) as it would in a server.

    python bench/querylog.py [--queries 200000] [--runs 3]

Prints the best of ``--runs`` for each case in microseconds per query and the ratio. The
time includes writing every line (the writer's final flush is inside the timed part), so
it is the whole CPU cost of logging, not only what the answering thread pays.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clusterdns.core.store import Store  # noqa: E402
from clusterdns.corefile.config import load  # noqa: E402
from clusterdns.plugins.querylog import QueryLog  # noqa: E402
from clusterdns.server.blocks import build_block  # noqa: E402
from clusterdns.sources.manifests import ManifestSource  # noqa: E402

ZONES = Path(__file__).resolve().parent.parent / "zones"
NAMES = ["web.shop.svc.cluster.local.", "kubernetes.default.svc.cluster.local.",
         "db.shop.svc.cluster.local.", "nothere.shop.svc.cluster.local."]


def run(log: bool, queries: int, miss: bool) -> float:
    """Microseconds per query."""
    store = Store()
    ManifestSource(store, [ZONES]).load(time.time())
    text = ".:53 {\n  %s\n  kubernetes cluster.local\n}\n" % ("log" if log else "errors")
    (server,) = load(text)
    block = build_block(server, store, 100000)
    handler = block.handler
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed below
    if handler.querylog is not None:
        handler.querylog = QueryLog(handler.querylog.config, out=sink)
        handler.querylog.start()
    packets = [dns.message.make_query(n, "A").to_wire() for n in NAMES]
    for p in packets:
        handler.handle(p, False, "1", "10.0.0.1", 40000)
    began = time.perf_counter()
    for i in range(queries):
        if miss and i % 64 == 0:
            handler.drop_cache()
        handler.handle(packets[i & 3], False, "1", "10.0.0.1", 40000)
    if handler.querylog is not None:
        handler.querylog.stop()  # what is still queued is formatted and written: timed too
    elapsed = time.perf_counter() - began
    sink.close()
    return elapsed / queries * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=200000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for miss in (False, True):
        off = min(run(False, args.queries, miss) for _ in range(args.runs))
        on = min(run(True, args.queries, miss) for _ in range(args.runs))
        kind = "miss-heavy (cache dropped every 64 queries)" if miss else "answer-cache hit"
        print(f"{kind:46s} no log {off:6.2f} us/query   log {on:6.2f} us/query   x{on / off:.2f}")


if __name__ == "__main__":
    main()
