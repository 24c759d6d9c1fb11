"""Where the synced memory goes (issue 19): the live source and the store, in-process.

Runs the test API server of ``tests/kubeapi.py`` in a forked child with the objects of
``bench/kube_sync.py`` (plain, or ``--realistic``), and in this process the server's own
pieces: ``api_client`` (the ``kubernetes`` library), a ``Store`` and a ``KubeSource`` on an
asyncio loop, Pods listed (``--pods verified``), until synced and the relists applied.
Then it reports:

- RSS (VmRSS, from /proc) at each stage: the interpreter, clusterdns's server modules, the
  ``kubernetes`` library and the client, synced;
- the live objects by component, counted by walking them (``sys.getsizeof``, every object
  once, shared strings and ports to the first component that reaches them): the records of
  each kind, the strings they hold, and each index of the store;
- the allocators: pymalloc's arenas and the bytes free inside them
  (``sys._debugmallocstats``), glibc's heap and the bytes free in it (``mallinfo2``): the
  part of RSS that is fragmentation rather than live objects;
- with ``--trace``: the allocations made during the sync that are still alive, by source
  line (tracemalloc; slow, and its own bookkeeping inflates RSS).

Usage: python bench/store_memory.py [--services 10000] [--pods 100000] [--realistic] [--trace]
All traffic stays on 127.0.0.1; the run ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import multiprocessing
import os
import re
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def rss_mb() -> float:
    """This process's VmRSS in MB."""
    text = Path("/proc/self/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


def serve_api(conn: Any, services: int, pods: int, realistic: bool, tmp: str) -> None:
    """The child: load the objects into a test API server, send back the kubeconfig path,
    serve until the parent says stop."""
    import kube_sync

    from tests.kubeapi import KubeAPIServer

    api = KubeAPIServer()
    api.start()
    make = kube_sync.realistic_objects if realistic else kube_sync.objects
    api.load(make(services, pods))
    conn.send(str(api.write_kubeconfig(Path(tmp) / "kubeconfig")))
    conn.recv()
    api.stop()


def sizes(roots: Iterable[Any], seen: set[int]) -> tuple[int, int]:
    """(bytes, objects) reachable from ``roots`` through tuples, lists, sets, dicts and
    slotted records, each object counted once across calls (``seen``); classes, enums,
    None, bools and small ints are not counted."""
    total = count = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (bool, type)):
            continue
        if type(obj).__module__ != "builtins" and hasattr(obj, "value") and hasattr(
            type(obj), "__members__"
        ):
            continue  # an enum member: shared by every record
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        count += 1
        if isinstance(obj, (tuple, list, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif hasattr(type(obj), "__slots__"):
            for cls in type(obj).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    stack.append(getattr(obj, slot, None))
    return total, count


def by_component(store: Any) -> list[tuple[str, int, int]]:
    """(component, bytes, objects) of the store's live objects, records before indexes."""
    seen: set[int] = set()
    rows = []
    for kind, objects in store._merged.items():
        if objects:
            b, n = sizes(objects.values(), seen)
            rows.append((f"{kind} records ({len(objects)})", b, n))
    for kind, objects in store._merged.items():
        if objects:
            b, n = sizes([objects], seen)
            rows.append((f"{kind} table (dict, keys)", b, n))
    for attr in ("services", "_slices_by_service", "_ready_ips", "_cluster_ips",
                 "_endpoint_ips", "_pod_ips", "namespaces", "imports", "_mc_slices"):
        b, n = sizes([getattr(store, attr, None)], seen)  # None: not kept (any more)
        if b:
            rows.append((f"index {attr}", b, n))
    return rows


def debugmallocstats() -> dict[str, int]:
    """pymalloc's totals from ``sys._debugmallocstats`` (written to fd 2 by C code)."""
    with tempfile.TemporaryFile("w+") as out:
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    wanted = {
        "# arenas allocated current": "arenas",
        "# bytes in allocated blocks": "allocated",
        "# bytes in available blocks": "available",
        "unused pools *": "unused pools",
        "# bytes lost to pool headers": "pool headers",
        "# bytes lost to quantization": "quantization",
        "Total": "total",
    }
    found: dict[str, int] = {}
    for line in text.splitlines():
        for key, name in wanted.items():
            if key in line and name not in found and "=" in line:
                found[name] = int(re.sub(r"[^\d]", "", line.split("=")[-1]) or 0)
    return found


class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def mallinfo() -> dict[str, int]:
    """glibc's heap: ``arena`` (bytes from sbrk), ``hblkhd`` (mmapped), ``uordblks`` (in
    use), ``fordblks`` (free in the heap); empty where glibc has no mallinfo2."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Mallinfo2
        info = libc.mallinfo2()
        return {name: getattr(info, name) for name, _ in Mallinfo2._fields_}
    return {}


def smaps() -> dict[str, float]:
    """Resident MB by mapping kind from /proc/self/smaps: ``[heap]`` (glibc's main heap),
    ``anon 1 MiB`` (pymalloc's arenas), ``anon thread heaps`` (glibc's per-thread arenas,
    64 MiB reserved each), ``anon other``, ``files`` (code and shared libraries)."""
    out: dict[str, float] = {}
    kind = ""
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            size = hi - lo
            name = head[5] if len(head) > 5 else ""
            if name == "[heap]":
                kind = "[heap]"
            elif name.startswith("/"):
                kind = "files"
            elif name:
                kind = "other " + name
            elif size == 2**20:
                kind = "anon 1 MiB"
            elif size <= 2**26 and size >= 2**20 and size % 2**20 == 0 and size > 2**25:
                kind = "anon thread heaps"
            else:
                kind = "anon other"
        elif head and head[0] == "Rss:":
            out[kind] = out.get(kind, 0.0) + int(head[1]) / 1024
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--pods", type=int, default=100000)
    parser.add_argument("--realistic", action="store_true")
    parser.add_argument("--trace", action="store_true", help="tracemalloc by source line")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--page-size", type=int, default=0,
                        help="LIST page size (default: the reflector's, PAGE_SIZE)")
    args = parser.parse_args()
    mb = 2**20
    stages = [("interpreter", rss_mb())]

    from clusterdns.core.store import Store
    from clusterdns.server import app  # noqa: F401 - the server's modules, as serve loads them
    from clusterdns.sources.memory import release_memory
    stages.append(("clusterdns server modules", rss_mb()))

    ctx = multiprocessing.get_context("fork")
    tmp = tempfile.mkdtemp()
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve_api, args=(child, args.services, args.pods,
                                               args.realistic, tmp), daemon=True)
    proc.start()
    kubeconfig = parent.recv()

    from clusterdns.sources.kube import KubeSource, api_client
    api = api_client(kubeconfig)
    stages.append(("kubernetes library + ApiClient", rss_mb()))

    if args.trace:
        tracemalloc.start(1)
    store = Store()
    loop = asyncio.new_event_loop()
    source = KubeSource(store, api, loop, pods=True)
    if args.page_size:
        for reflector in source.reflectors:
            reflector.page_size = args.page_size
    began = time.perf_counter()
    source.start()

    async def wait_synced() -> None:
        while not (source.synced.is_set() and source.idle()):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the malloc-trim threads

    loop.run_until_complete(wait_synced())
    synced = time.perf_counter() - began
    stages.append((f"synced ({synced:.1f} s), before a full collection", rss_mb()))
    release_memory()
    time.sleep(0.3)
    stages.append(("synced, after gc.collect + malloc_trim", rss_mb()))

    mode = "realistic" if args.realistic else "plain"
    print(f"## {args.services} services / {args.pods} pods, {mode} objects, "
          f"Python {sys.version.split()[0]}\n")
    print("| stage | RSS (MB) | + (MB) |\n|---|---|---|")
    last = 0.0
    for name, value in stages:
        print(f"| {name} | {value:.1f} | {value - last:+.1f} |")
        last = value

    gc.unfreeze()
    rows = by_component(store)
    print("\n| live objects of the store | MB | objects | bytes per object |\n|---|---|---|---|")
    total = 0
    for name, b, n in rows:
        total += b
        print(f"| {name} | {b / mb:.1f} | {n} | {b / max(n, 1):.0f} |")
    print(f"| **all** | {total / mb:.1f} | | |")

    stats = debugmallocstats()
    info = mallinfo()
    if stats:
        arenas = stats.get("arenas", 0)
        print(f"\npymalloc: {arenas} arenas of 1 MiB; "
              f"{stats.get('allocated', 0) / mb:.1f} MB in allocated blocks, "
              f"{stats.get('available', 0) / mb:.1f} MB in free blocks of used pools, "
              f"{stats.get('unused pools', 0) / mb:.1f} MB in unused pools, "
              f"{stats.get('total', 0) / mb:.1f} MB in all")
    if info:
        print(f"glibc: heap {info['arena'] / mb:.1f} MB (in use {info['uordblks'] / mb:.1f}, "
              f"free {info['fordblks'] / mb:.1f}), mmapped {info['hblkhd'] / mb:.1f} MB")

    print("resident by mapping (MB): " + ", ".join(
        f"{k} {v:.1f}" for k, v in sorted(smaps().items(), key=lambda kv: -kv[1]) if v >= 0.1))

    if args.trace:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)])
        print("\n| allocated during the sync and alive (tracemalloc) | MB | blocks |")
        print("|---|---|---|")
        for stat in snapshot.statistics("lineno")[: args.top]:
            frame = stat.traceback[0]
            path = Path(frame.filename)
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            where = f"{shown}:{frame.lineno}"
            print(f"| {where} | {stat.size / mb:.1f} | {stat.count} |")
        print(f"| total | {sum(s.size for s in snapshot.statistics('filename')) / mb:.1f} | |")

    source.stop(2)
    parent.send("stop")
    proc.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
