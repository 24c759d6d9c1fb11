"""Traffic by client (clusterdns/core/traffic.py): a pod's glibc search walk counted exactly,
the advice it gets, the sliding window, and the bounds under abuse (docs/traffic.md)."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Mapping

from clusterdns.core.rr import Rcode
from clusterdns.core.search import Libc, Reply, pod_resolv_conf, walk
from clusterdns.core.traffic import (
    NODATA,
    TOP_CLIENTS,
    TopCounter,
    TrafficTally,
    merge,
    snapshot,
    wire_to_text,
)

ZONE = "cluster.local."
WEB = "10.244.1.10"
PODS = {WEB: ("shop", "web-0"), "10.244.2.7": ("default", "client-1")}
# what the cluster answers: name -> qtype -> addresses (a name present without the qtype
# is NODATA, an absent name NXDOMAIN)
ANSWERS: dict[str, dict[str, list[str]]] = {
    "api.github.com.": {"A": ["140.82.121.6"], "AAAA": ["64:ff9b::8c52:7906"]},
    "web.shop.svc.cluster.local.": {"A": ["10.96.100.10"]},
    "kubernetes.default.svc.cluster.local.": {"A": ["10.96.0.1"]},
}


def wire(name: str) -> bytes:
    """A name as the packet carries it: length-prefixed labels and the zero byte."""
    labels = [x for x in name.rstrip(".").split(".") if x]
    return b"".join(bytes([len(x)]) + x.encode() for x in labels) + b"\0"


def glibc_walk(
    tally: TrafficTally,
    ip: str,
    name: str,
    namespace: str,
    answers: Mapping[str, Mapping[str, list[str]]] = ANSWERS,
) -> int:
    """Walk ``name`` as glibc does from a pod in ``namespace`` (ndots:5, A and AAAA per
    candidate, the kubelet's three search suffixes then the name), noting every query into
    ``tally`` as the server's fast path would; return the number of queries sent."""
    sent = 0

    def query(candidate: str, qtype: str) -> Reply:
        nonlocal sent
        sent += 1
        held = answers.get(candidate)
        if held is None:
            reply = Reply(Rcode.NXDOMAIN)
        else:
            reply = Reply(Rcode.NOERROR, addresses=list(held.get(qtype, [])))
        tally.note(ip, wire(candidate), reply.rcode, len(reply.addresses))
        return reply

    conf = pod_resolv_conf(namespace, cluster_domain=ZONE.rstrip("."))
    walk(name, conf, query, Libc.GLIBC, ("A", "AAAA"))
    return sent


def client(snap: dict, ip: str) -> dict:
    (entry,) = [c for c in snap["clients"] if c["ip"] == ip]
    return entry


def test_a_glibc_walk_from_a_pod_is_counted_exactly() -> None:
    tally = TrafficTally(100.0)
    sent = glibc_walk(tally, WEB, "api.github.com", "shop")
    assert sent == 8  # three suffixes then the name, A and AAAA each
    snap = snapshot([tally], PODS, ZONE, 101.0)
    web = client(snap, WEB)
    assert web["pod"] == "shop/web-0"
    assert web["queries"] == 8
    assert web["search_expansions"] == 6
    assert web["nxdomain"] == 6
    assert web["rcodes"] == {"NOERROR": 2, "NXDOMAIN": 6}
    assert web["expanded_names"] == [
        {"name": "api.github.com", "expansions": 6, "resolves_as": "api.github.com."}
    ]
    assert web["failed_names"] == []
    # each fix removes the six expansions: trailing dot, ndots:2 (two dots), autopath
    assert {fix: s["queries"] for fix, s in web["savings"].items()} == {
        "trailing_dot": 6,
        "ndots2": 6,
        "autopath": 6,
    }
    assert web["savings"]["trailing_dot"]["share"] == 0.75
    assert web["advice"].startswith("shop/web-0: 6 of its 8 queries (75%)")
    assert "api.github.com." in web["advice"]
    assert 'ndots: "2"' in web["advice"] and "autopath" in web["advice"]
    top = {t["name"]: t["queries"] for t in web["top_names"]}
    assert top["api.github.com."] == 2 and top["api.github.com.shop.svc.cluster.local."] == 2
    (shop,) = snap["namespaces"]
    assert (shop["namespace"], shop["queries"], shop["search_expansions"]) == ("shop", 8, 6)
    assert snap["cluster"]["pods"]["search_expansions"] == 6
    assert "shop/web-0 (6)" in snap["cluster"]["advice"]
    assert snap["error_bound"] == {"clients": 0, "names": 0}
    assert snap["totals"] == {"queries": 8, "rcodes": {"NOERROR": 2, "NXDOMAIN": 6}}


def test_a_cluster_name_resolving_at_the_second_suffix() -> None:
    """``web.shop`` from ``default``: one expansion per type, then the A answers and the
    AAAA is NODATA at the candidate that resolved (not waste); ndots:2 does not apply to a
    one-dot name; the fix is the full name."""
    tally = TrafficTally(0.0)
    assert glibc_walk(tally, "10.244.2.7", "web.shop", "default") == 4
    entry = client(snapshot([tally], PODS, ZONE, 1.0), "10.244.2.7")
    assert entry["search_expansions"] == 2
    assert entry["rcodes"] == {"NOERROR": 1, "NXDOMAIN": 2, "NODATA": 1}
    assert entry["expanded_names"][0]["resolves_as"] == "web.shop.svc.cluster.local."
    assert {fix: s["queries"] for fix, s in entry["savings"].items()} == {
        "trailing_dot": 2,
        "ndots2": 0,
        "autopath": 2,
    }
    assert "web.shop.svc.cluster.local." in entry["advice"] and "ndots" not in entry["advice"]


def test_a_name_that_never_resolves() -> None:
    tally = TrafficTally(0.0)
    assert glibc_walk(tally, WEB, "nosuch", "shop") == 8
    entry = client(snapshot([tally], PODS, ZONE, 1.0), WEB)
    assert entry["search_expansions"] == 6
    assert entry["failed_names"] == [{"name": "nosuch.", "queries": 2}]
    assert entry["savings"]["autopath"]["queries"] == 0  # the client walks its own list
    assert entry["savings"]["trailing_dot"]["queries"] == 6
    assert "nosuch never resolved: fix or drop the lookup" in entry["advice"]


def test_a_client_that_is_not_a_known_pod_counts_no_expansions() -> None:
    tally = TrafficTally(0.0)
    glibc_walk(tally, "192.0.2.1", "api.github.com", "shop")
    entry = client(snapshot([tally], PODS, ZONE, 1.0), "192.0.2.1")
    assert (entry["pod"], entry["queries"], entry["search_expansions"]) == (None, 8, 0)
    assert entry["nxdomain"] == 6
    assert "not a known pod" in entry["advice"]
    assert snapshot([tally], PODS, ZONE, 1.0)["namespaces"] == []


def test_tallies_of_several_threads_merge() -> None:
    a, b = TrafficTally(0.0), TrafficTally(0.0)
    glibc_walk(a, WEB, "api.github.com", "shop")
    glibc_walk(b, WEB, "api.github.com", "shop")
    glibc_walk(b, "10.244.2.7", "kubernetes.default", "default")
    snap = snapshot([a, b], PODS, ZONE, 2.0)
    assert client(snap, WEB)["queries"] == 16
    assert client(snap, WEB)["search_expansions"] == 12
    assert client(snap, "10.244.2.7")["queries"] == 4
    assert [n["namespace"] for n in snap["namespaces"]] == ["shop", "default"]
    assert snap["cluster"]["queries"] == 20


def test_the_window_slides_and_since_start_keeps_everything() -> None:
    tally = TrafficTally(0.0, bucket_s=5.0, window_s=60.0)
    glibc_walk(tally, WEB, "api.github.com", "shop")
    for t in range(1, 40):
        tally.rotate(float(t))
    glibc_walk(tally, WEB, "api.github.com", "shop")  # at 39 s
    snap = snapshot([tally], PODS, ZONE, 40.0)
    assert client(snap, WEB)["queries"] == 16
    qps = sum(sum(p["qps"].values()) * p["span"] for p in snap["series"])
    assert round(qps) == 16
    assert snap["outcomes"] == ["NOERROR", "NXDOMAIN"]
    for t in range(41, 80):
        tally.rotate(float(t))
    snap = snapshot([tally], PODS, ZONE, 80.0)
    assert client(snap, WEB)["queries"] == 8  # the first walk left the window
    assert client(snap["since_start"], WEB)["queries"] == 16
    assert client(snap["since_start"], WEB)["search_expansions"] == 12
    tally.rotate(500.0)
    snap = snapshot([tally], PODS, ZONE, 500.0)
    assert snap["clients"] == [] and snap["series"] == []
    assert client(snap["since_start"], WEB)["queries"] == 16


def test_nodata_alone_is_waste_but_next_to_an_answer_is_not() -> None:
    tally = TrafficTally(0.0)
    name = wire("web.shop.svc.cluster.local.")
    tally.note("10.244.2.7", name, Rcode.NOERROR, 0)  # AAAA NODATA, the A answered
    tally.note("10.244.2.7", name, Rcode.NOERROR, 1)
    tally.note(WEB, wire("db.shop.svc.cluster.local."), Rcode.NOERROR, 0)  # NODATA only
    snap = snapshot([tally], PODS, ZONE, 1.0)
    assert client(snap, "10.244.2.7")["search_expansions"] == 0
    assert client(snap, WEB)["search_expansions"] == 1
    assert client(snap, WEB)["rcodes"] == {"NODATA": 1}
    assert NODATA == 16


def test_wire_names_decode_with_escapes() -> None:
    assert wire_to_text(wire("web.shop.svc.cluster.local.")) == "web.shop.svc.cluster.local."
    assert wire_to_text(b"\0") == "."
    assert wire_to_text(b"\x03a.b\x02\xff\x00\x00") == "a\\046b.\\255\\000."
    assert wire_to_text(b"\x05ab") == "ab."  # cut short: as far as it reads


def test_counters_never_overstate_and_keep_the_heavy_keys() -> None:
    """Misra-Gries with batched decrements: counts <= truth <= count + slack, slack <=
    N / (K + 1), every key above that kept; merged summaries keep the bound."""
    rng = random.Random(7)
    stream = [
        f"heavy{rng.randrange(5)}" if rng.random() < 0.3 else f"k{rng.randrange(50_000)}"
        for _ in range(60_000)
    ]
    parts = []
    for chunk in range(3):
        counter = TopCounter(100)
        for key in stream[chunk * 20_000 : (chunk + 1) * 20_000]:
            counter.add(key)
        assert len(counter.counts) < 200
        assert counter.slack <= 20_000 / 101
        parts.append(counter.frozen())
    truth: dict[str, int] = {}
    for key in stream:
        truth[key] = truth.get(key, 0) + 1
    merged = merge(parts, capacity=100)
    assert len(merged.counts) <= 100
    assert merged.slack <= 60_000 / 101 * 2
    for key, n in truth.items():
        assert merged.counts.get(key, 0) <= n <= merged.counts.get(key, 0) + merged.slack
    assert {f"heavy{i}" for i in range(5)} <= set(merged.counts)
    exact = TopCounter(10)
    for key in ["a", "b", "a"] * 5:
        exact.add(key)
    assert (exact.counts, exact.slack) == ({"a": 10, "b": 5}, 0)


def test_abuse_keeps_memory_bounded_and_the_snapshot_small() -> None:
    """50,000 distinct source addresses, then a million distinct names, over ten minutes of
    buckets: memory stays under a fixed cap, the snapshot lists at most TOP_CLIENTS, and a
    pod's walk in the middle of it still shows."""
    tally = TrafficTally(0.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        note = tally.note
        name = wire("flood.example.com.")
        for i in range(50_000):
            note(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", name, 3, 0)
        tally.rotate(5.0)
        for i in range(1_000_000):
            note("192.0.2.66", b"\x08%07d\x07example\x03com\x00" % i, 3, 0)
            if i % 10_000 == 0:
                tally.rotate(5.0 + i / 1_600)
                glibc_walk(tally, WEB, "api.github.com", "shop")
        tally.rotate(700.0)
        glibc_walk(tally, WEB, "api.github.com", "shop")
        grown = tracemalloc.get_traced_memory()[1] - before
        snap = snapshot([tally], PODS, ZONE, 701.0)
    finally:
        tracemalloc.stop()
    assert grown < 20 * 2**20, f"{grown / 2**20:.1f} MiB"
    assert len(snap["since_start"]["clients"]) <= TOP_CLIENTS
    assert snap["since_start"]["clients_total"] <= tally.total_client_capacity
    assert snap["since_start"]["clients"][0]["ip"] == "192.0.2.66"
    assert (
        snap["since_start"]["clients"][0]["queries"]
        >= 1_000_000 - snap["since_start"]["error_bound"]["clients"]
    )
    web = client(snap, WEB)
    assert (web["queries"], web["search_expansions"]) == (8, 6)  # the window: exact
    assert client(snap["since_start"], WEB)["queries"] >= 8
