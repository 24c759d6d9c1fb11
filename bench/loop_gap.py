"""The longest pause of the serving thread during a relist (issue 11: no pauses on the loop).

Builds a store holding N Services, N EndpointSlices and M Pods (as bench/kube_sync.py's
cluster), then replays what a reflector does after a 410 Gone: a thread converts M pod
objects (the LIST it just read, with every pod's phase changed) and hands them to
``KubeSource.replace``; the event loop applies them. Meanwhile a ticker on the loop wakes
every millisecond and records how late it ran: the longest gap is the longest time the
loop could not answer a query. Printed: the longest gap, p99 of the gaps, the relist's
duration, and how long the loop then needs to be idle again.

Usage: python bench/loop_gap.py [--services 10000] [--pods 100000] [--relists 3]
In-process, no network; bounded by its counts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from kube_sync import objects  # noqa: E402

from clusterdns.core.convert import convert  # noqa: E402
from clusterdns.core.store import Store  # noqa: E402
from clusterdns.sources.kube import SWITCH_INTERVAL, KubeSource  # noqa: E402


async def relist(source: KubeSource, pods: list[dict], phase: str) -> tuple[float, list[float]]:
    """One relist of every pod while a 1 ms ticker runs; return (seconds, gaps in ms)."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    done = asyncio.Event()

    def reflector() -> None:
        records = []
        for obj in pods:
            obj["status"]["phase"] = phase
            record = convert(obj)
            if record is not None:
                records.append(record)
        source.replace("Pod", records)
        loop.call_soon_threadsafe(lambda: loop.call_soon(done.set))

    began = time.perf_counter()
    thread = threading.Thread(target=reflector)
    thread.start()
    last = time.perf_counter()
    idle = getattr(source, "idle", lambda: True)  # the code before issue 11 had none
    while not (done.is_set() and idle()):
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append((now - last) * 1000)
        last = now
    thread.join()
    return time.perf_counter() - began, gaps


async def main_async(args: argparse.Namespace) -> None:
    everything = objects(args.services, args.pods)
    store = Store()
    source = KubeSource(store, None, asyncio.get_running_loop(), pods=True)
    by_kind: dict[str, list] = {}
    for obj in everything:
        record = convert(obj)
        if record is not None:
            by_kind.setdefault(type(record).__name__, []).append(record)
    for kind, records in by_kind.items():
        store.replace("api", kind, records, time.time())
    store.mark_synced("api")
    pods = [obj for obj in everything if obj["kind"] == "Pod"]
    print("| relist | seconds | longest loop gap (ms) | p99 gap (ms) | ticks |")
    print("|---|---|---|---|---|")
    # The machine's own noise: the same ticker for a second with nothing to do.
    gaps = []
    last = began = time.perf_counter()
    while last - began < 1:
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append((now - last) * 1000)
        last = now
    gaps.sort()
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
    print(f"| none (idle loop) | 1.00 | {gaps[-1]:.1f} | {p99:.1f} | {len(gaps)} |")
    for i in range(args.relists):
        seconds, gaps = await relist(source, pods, "Pending" if i % 2 == 0 else "Running")
        gaps.sort()
        p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
        print(f"| {i + 1} | {seconds:.2f} | {gaps[-1]:.1f} | {p99:.1f} | {len(gaps)} |")


def main() -> int:
    sys.setswitchinterval(SWITCH_INTERVAL)  # as KubeSource.start() sets it in the server
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--pods", type=int, default=100000)
    parser.add_argument("--relists", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
