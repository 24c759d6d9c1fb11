"""What the kept answers cost, in-process (issue 19, part 3): tracemalloc of the answer
table once every name of bench/kube_sync.py's cluster has been asked.

One command (from the repository root, with the project's virtualenv)::

    python bench/answer_memory.py [--services 10000] [--pods 100000] [--realistic]

Builds the cluster of ``kube_sync.objects`` (or ``realistic_objects``) into a store in this
process, wires a block as ``serve`` does (``plugins.chain.assemble``, ``pods verified``),
then asks every name ``kube_sync.fill_names`` lists (each service's A, ``_http._tcp`` SRV
and ClusterIP PTR, each pod IP's PTR) through ``Handler.handle``, plain UDP queries as a
stub sends them, under tracemalloc. Prints the answers kept, the bytes traced per answer
(everything the asking allocated and kept: keys, values, the tag index, dict slots) and
the allocation sites that hold the most. The RSS figure, allocator slack included, is
``bench/kube_sync.py --fill``'s.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path

import dns.message

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from kube_sync import fill_names, objects, realistic_objects  # noqa: E402

from clusterdns.core.convert import convert  # noqa: E402
from clusterdns.core.resolver import PodMode, ZoneConfig  # noqa: E402
from clusterdns.core.store import Store  # noqa: E402
from clusterdns.plugins.chain import assemble  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--pods", type=int, default=100000)
    parser.add_argument("--realistic", action="store_true")
    parser.add_argument("--top", type=int, default=6, help="allocation sites listed")
    args = parser.parse_args()

    make = realistic_objects if args.realistic else objects
    made = make(args.services, args.pods)
    by_kind: dict[str, list] = {}
    for obj in made:
        record = convert(obj)
        if record is not None:
            by_kind.setdefault(type(record).__name__, []).append(record)
    store = Store()
    store.add_source("bench", synced=True)
    for kind, records in by_kind.items():
        store.replace("bench", kind, records, 1.0)
    handler = assemble(store, ("cluster.local.", "in-addr.arpa."),
                       {"kubernetes": ZoneConfig(pods=PodMode.VERIFIED)})
    names = fill_names(args.services, args.pods, args.realistic)
    wires = [dns.message.make_query(n, t).to_wire() for n, t in names]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for wire in wires:
        handler.handle(wire, False)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    kept = len(handler.cache)
    print(f"{len(wires)} names asked, {kept} answers kept ({args.services} services, "
          f"{args.pods} pods{', realistic' if args.realistic else ''}); "
          f"{(after - before) / 1e6:.1f} MB traced, {(after - before) / max(kept, 1):.0f} "
          f"bytes per answer")
    for stat in tracemalloc.take_snapshot().statistics("lineno")[: args.top]:
        print(f"  {stat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
