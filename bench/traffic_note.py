"""Cost of TrafficTally.note, the per-query call of the traffic view (ns per note).

Run: .venv/bin/python bench/traffic_note.py
Cases: the steady state (a few hundred pods asking a few names each: every key kept), and a
flood (every name new: every note evicts), and the snapshot over a full tally.
"""

from __future__ import annotations

import random
import time

from clusterdns.core.traffic import TrafficTally, snapshot


def wire(name: str) -> bytes:
    return b"".join(bytes([len(x)]) + x.encode() for x in name.rstrip(".").split(".")) + b"\0"


def run(label: str, keys: list[tuple[str, bytes, int, int]], repeat: int) -> None:
    tally = TrafficTally(0.0)
    note = tally.note
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter_ns()
        for client, qname, rcode, ancount in keys:
            note(client, qname, rcode, ancount)
        best = min(best, (time.perf_counter_ns() - began) / len(keys))
    empty = float("inf")
    for _ in range(repeat):
        began = time.perf_counter_ns()
        for _client, _qname, _rcode, _ancount in keys:
            pass
        empty = min(empty, (time.perf_counter_ns() - began) / len(keys))
    print(f"{label:<44} {best:7.0f} ns/note ({best - empty:.0f} ns above the bare loop)")


def main() -> None:
    rng = random.Random(1)
    names = [wire(f"svc{i}.ns{i % 20}.svc.cluster.local") for i in range(200)]
    steady = []
    for p in rng.choices(range(300), k=200_000):
        name = (p * 7 + rng.randrange(3)) % 200  # each pod asks 3 names
        steady.append((f"10.244.{p // 250}.{p % 250}", names[name], 0, 1))
    run("steady: 300 pods x 3 names, every key kept", steady, 5)
    spread = [
        (f"10.244.{p // 250}.{p % 250}", names[rng.randrange(200)], rng.choice((0, 3)), 1)
        for p in rng.choices(range(300), k=200_000)
    ]
    run("spread: 300 pods x 200 names x 2 rcodes", spread, 3)
    flood = [
        (f"10.1.{i // 250 % 250}.{i % 250}", wire(f"r{i}.example.com"), 3, 0)
        for i in range(200_000)
    ]
    run("flood: every client and name new (evicting)", flood, 1)
    tally = TrafficTally(0.0)
    for i, key in enumerate(flood):
        tally.note(*key)
        if i % 10_000 == 0:
            tally.rotate(i / 10_000 * 5.0)
    pods = {f"10.244.{p // 250}.{p % 250}": ("shop", f"web-{p}") for p in range(300)}
    began = time.perf_counter()
    snap = snapshot([tally], pods, "cluster.local.", 100.0)
    print(
        f"snapshot of a full tally: {1000 * (time.perf_counter() - began):.0f} ms, "
        f"{snap['clients_total']} clients kept"
    )


if __name__ == "__main__":
    main()
