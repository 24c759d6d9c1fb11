"""Traffic by client: who sends the queries, how many are search-path waste, and the fix.

Pure (no clock, no threads, no I/O): time is a parameter (``now``, seconds on any clock that
the caller uses consistently). Three pieces:

- :class:`TopCounter`, a bounded top-K counter: Misra-Gries with batched decrements, the
  deterministic sibling of the space-saving counters of Metwally, Agrawal and El Abbadi
  (ICDT 2005; the two are isomorphic, Agarwal et al., "Mergeable summaries", PODS 2012),
  and :func:`merge`, summing such summaries with their error bounds.
- :class:`TrafficTally`, one per serving thread: :meth:`TrafficTally.note` is what the hot
  path calls once per query; :meth:`TrafficTally.rotate` closes the current time bucket.
- :func:`snapshot`, over every thread's tally, the pod map (IP -> namespace, name) and the
  cluster zone: per client and per namespace queries, answers by rcode, search-path
  expansions and the names behind them, the names that finally failed, the top names, and
  advice (trailing dot, ``ndots: 2``, ``autopath``) as counts, shares and a sentence. The
  dict is what ``/traffic.json`` serves (docs/traffic.md).

**Bounds and error.** A tally keeps, per time bucket, at most ``2 * client_capacity``
(client, outcome) counters and ``2 * name_capacity`` (client, qname, outcome) counters, and
since start at most ``total_client_capacity`` and ``total_name_capacity``. Memory does not
grow with the number of distinct clients or names, only with these capacities. Every count
reported is at most the truth and at most ``error_bound`` (in the snapshot, per summary)
below it, with error_bound <= N / (K + 1) for N queries and K counters per bucket (summed
over the buckets of a span: at most N / (K + 1) for the span's N). A key seen more than that
is never missing. While a bucket sees at most ``2 * K`` distinct keys, error_bound is 0 and
every count is exact. The per-outcome totals and the time series are exact counters.

**What counts as an expansion.** A query from a known pod in namespace ``ns`` whose name is
``base + "." + S`` for S one of the kubelet's search suffixes ``<ns>.svc.<zone>``,
``svc.<zone>``, ``<zone>`` (the first that matches, in that order; KUBELET
``pkg/kubelet/network/dns``), that did not answer: NXDOMAIN, or NODATA (NOERROR without
answer records) when the same client got no answer for that name with any type (so the
AAAA NODATA next to an answered A, glibc asking both types of the candidate that resolves,
is not waste). A client that is not a known pod has unknown search suffixes: no
expansions are counted for it. A fully qualified query that happens to look like an
expansion (``web.shop.svc.cluster.local.`` asked with its trailing dot, NXDOMAIN) counts as
one: the server cannot tell the two apart.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from .rr import RCODE_NAMES

NODATA = 16
"""The outcome code of NOERROR without answer records (a header rcode is 0..15)."""
OUTCOMES = 17
ANSWERED = 0
NXDOMAIN = 3

DEFAULT_BUCKET_S = 5.0
DEFAULT_WINDOW_S = 60.0
CLIENT_CAPACITY = 256  # (client, outcome) counters per bucket
NAME_CAPACITY = 1024  # (client, qname, outcome) counters per bucket
TOTAL_CLIENT_CAPACITY = 2048  # since start
TOTAL_NAME_CAPACITY = 8192
TOP_CLIENTS = 50  # clients listed in a snapshot (the rest are summed in the totals)
TOP_NAMES = 10  # names listed per client


def outcome_name(outcome: int) -> str:
    """``NOERROR`` (answered), ``NODATA``, ``NXDOMAIN``, ... or ``RCODE<n>``."""
    if outcome == NODATA:
        return "NODATA"
    return RCODE_NAMES.get(outcome) or f"RCODE{outcome}"


# ---- bounded counters -----------------------------------------------------------------------


class TopCounter:
    """At most ``2 * capacity`` counters over a stream of keys: Misra-Gries ("Finding repeated
    elements", 1982) with batched decrements (Demaine, Lopez-Ortiz, Munro 2002; Karp,
    Shenker, Papadimitriou 2003), the deterministic sibling of space-saving (Metwally,
    Agrawal, El Abbadi 2005; the two are isomorphic, Agarwal et al. 2012).

    ``counts``: key -> a count never above the truth; ``slack``: no key's true count exceeds
    its count (0 when absent) by more than ``slack``, and ``slack <= N / (capacity + 1)``
    over N keys added. So every key seen more than N / (capacity + 1) times is kept, and a
    stream with at most ``2 * capacity`` distinct keys is counted exactly (``slack == 0``).

    Why batched Misra-Gries rather than space-saving's one eviction per new key: in Python
    the eviction (a heap of stale minima) costs ~2 us per new key, the batched prune a
    C-level sort every ``capacity`` new keys (~0.2 us amortised), and counting a kept key
    is one dict update either way.
    """

    __slots__ = ("capacity", "counts", "slack")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.counts: dict[Any, int] = {}
        self.slack = 0

    def add(self, key: Hashable) -> None:
        """Count one occurrence of ``key``."""
        counts = self.counts
        n = counts.get(key)
        if n is not None:
            counts[key] = n + 1
        else:
            self.insert(key)

    def insert(self, key: Hashable) -> None:
        """Count the first occurrence of a key not kept (the hot path inlines :meth:`add`)."""
        counts = self.counts
        counts[key] = 1
        if len(counts) >= 2 * self.capacity:
            self.slack += _prune(counts, self.capacity)

    def frozen(self) -> Summary:
        """A copy as a :class:`Summary` (a dict copy is atomic under CPython's GIL, so
        another thread may read a live counter)."""
        return Summary(self.counts.copy(), self.slack)


def _prune(counts: dict[Any, int], capacity: int) -> int:
    """Subtract the (capacity+1)-th largest count from every count, in place, dropping
    those left at zero or below; return what was subtracted (Misra-Gries decrement)."""
    if len(counts) <= capacity:
        return 0
    cut = heapq.nlargest(capacity + 1, counts.values())[-1]
    kept = {k: n - cut for k, n in counts.items() if n > cut}
    counts.clear()
    counts.update(kept)
    return cut


class Summary:
    """A read-only view: ``counts`` (key -> a count never above the truth) and ``slack``:
    no key's truth exceeds its count (0 if absent) by more than ``slack``. ``slack == 0``:
    every count is exact and nothing was dropped."""

    __slots__ = ("counts", "slack")

    def __init__(self, counts: dict[Any, int], slack: int) -> None:
        self.counts = counts
        self.slack = slack


def merge(parts: Iterable[Summary], capacity: int | None = None) -> Summary:
    """Sum summaries over disjoint spans of the stream (Agarwal et al., "Mergeable
    summaries", PODS 2012): counts add and stay at most the truth, slacks add. With
    ``capacity``, a Misra-Gries decrement leaves at most ``capacity`` keys and adds the
    amount subtracted to the slack; the bound slack <= N / (capacity + 1) holds for the
    merged stream when every part kept it."""
    counts: dict[Any, int] = {}
    slack = 0
    for part in parts:
        slack += part.slack
        if not counts:
            counts = part.counts.copy()
            continue
        get = counts.get
        for key, n in part.counts.items():
            counts[key] = get(key, 0) + n
    if capacity is not None:
        slack += _prune(counts, capacity)
    return Summary(counts, slack)


# ---- the per-thread tally -------------------------------------------------------------------


class Bucket:
    """The counts of one time slice ``[start, end)``: exact per-outcome totals, and the two
    bounded counters ((client, outcome) and (client, qname, outcome))."""

    __slots__ = ("start", "end", "outcomes", "clients", "names")

    def __init__(self, start: float, client_capacity: int, name_capacity: int) -> None:
        self.start = start
        self.end = start  # set when closed
        self.outcomes = [0] * OUTCOMES
        self.clients = TopCounter(client_capacity)
        self.names = TopCounter(name_capacity)


class TrafficTally:
    """The traffic one serving thread saw: time buckets over a sliding window, and the
    summaries of everything older, since ``now`` at construction.

    Only the owning thread calls :meth:`note`. :meth:`rotate` and :func:`snapshot` may run
    in another thread (one at a time, e.g. under the page's lock): a note racing a rotation
    lands in the bucket just closed, which stays in the window. Memory is bounded by the
    capacities whatever the traffic: per bucket ``client_capacity`` + ``name_capacity``
    counters, ``window_s / bucket_s + 1`` buckets, and the since-start summaries.
    """

    __slots__ = (
        "bucket_s",
        "window_s",
        "client_capacity",
        "name_capacity",
        "total_client_capacity",
        "total_name_capacity",
        "started",
        "current",
        "_outcomes",
        "_clients",
        "_names",
        "ring",
        "total_clients",
        "total_names",
        "total_outcomes",
    )

    def __init__(
        self,
        now: float,
        *,
        bucket_s: float = DEFAULT_BUCKET_S,
        window_s: float = DEFAULT_WINDOW_S,
        client_capacity: int = CLIENT_CAPACITY,
        name_capacity: int = NAME_CAPACITY,
        total_client_capacity: int = TOTAL_CLIENT_CAPACITY,
        total_name_capacity: int = TOTAL_NAME_CAPACITY,
    ) -> None:
        if bucket_s <= 0 or window_s < bucket_s:
            raise ValueError(f"want 0 < bucket_s <= window_s, got {bucket_s}, {window_s}")
        self.bucket_s = bucket_s
        self.window_s = window_s
        self.client_capacity = client_capacity
        self.name_capacity = name_capacity
        self.total_client_capacity = total_client_capacity
        self.total_name_capacity = total_name_capacity
        self.started = now
        self.ring: list[Bucket] = []  # closed buckets inside the window, oldest first
        self.total_clients = Summary({}, 0)  # closed buckets that left the window
        self.total_names = Summary({}, 0)
        self.total_outcomes = [0] * OUTCOMES
        self._open(self._align(now))

    def _align(self, now: float) -> float:
        return now - now % self.bucket_s

    def _open(self, start: float) -> None:
        bucket = Bucket(start, self.client_capacity, self.name_capacity)
        self._outcomes = bucket.outcomes
        self._clients = bucket.clients.counts
        self._names = bucket.names.counts
        self.current = bucket

    def note(self, client: str, qname: bytes, rcode: int, ancount: int) -> None:
        """Count one answered query: the hot path's one call.

        ``client``: the source IP as text; ``qname``: the question's name in wire format,
        lower-cased, with its terminating zero byte, as cut from the packet (the answer
        cache's key: ``data[12:end_of_name + 1].lower()``); ``rcode``: the reply header's
        4-bit RCODE (``reply[3] & 15``); ``ancount``: true when the reply has answer
        records (``reply[6] | reply[7]``; NOERROR without them is NODATA, RFC 2308 2.2).
        Nothing is decoded. An answered query (the common case) is counted under the keys
        ``client`` and ``(client, qname)``, anything else under ``(client, outcome)`` and
        ``(client, qname, outcome)``: one tuple fewer, ~80 ns less per answered query.
        """
        if rcode or not ancount:
            if not rcode:
                rcode = NODATA
            self._outcomes[rcode] += 1
            key: Any = (client, rcode)
            counts = self._clients
            n = counts.get(key)
            if n is None:
                self.current.clients.insert(key)
            else:
                counts[key] = n + 1
            key = (client, qname, rcode)
        else:
            self._outcomes[0] += 1
            counts = self._clients
            n = counts.get(client)
            if n is None:
                self.current.clients.insert(client)
            else:
                counts[client] = n + 1
            key = (client, qname)
        counts = self._names
        n = counts.get(key)
        if n is None:
            self.current.names.insert(key)
        else:
            counts[key] = n + 1

    def rotate(self, now: float) -> None:
        """Close the current bucket if ``now`` is past its end, and fold the buckets that
        left the window into the since-start summaries. Call it every second or so, and
        before each snapshot, from one thread at a time. A bucket left open longer than
        the window (nobody rotated) goes straight to the since-start summaries: its
        queries cannot be placed in time."""
        current = self.current
        if now < current.start + self.bucket_s:
            return
        self._open(self._align(now))
        current.end = now
        horizon = now - self.window_s
        if current.start < horizon:
            self._fold(current)
        else:
            self.ring.append(current)
        while self.ring and self.ring[0].end <= horizon:
            self._fold(self.ring.pop(0))

    def _fold(self, bucket: Bucket) -> None:
        for i, n in enumerate(bucket.outcomes):
            self.total_outcomes[i] += n
        self.total_clients = merge(
            (self.total_clients, bucket.clients.frozen()), self.total_client_capacity
        )
        self.total_names = merge(
            (self.total_names, bucket.names.frozen()), self.total_name_capacity
        )

    def window(self, now: float) -> list[Bucket]:
        """The buckets inside the window ending at ``now``, the open one last."""
        horizon = now - self.window_s
        return [b for b in self.ring if b.end > horizon] + [self.current]


# ---- the snapshot ---------------------------------------------------------------------------


def wire_to_text(wire: bytes) -> str:
    """A wire-format name (length-prefixed labels, ending in a zero byte) as absolute text;
    bytes other than letters, digits, ``-`` and ``_`` are written ``\\DDD`` (RFC 1035 5.1).
    A malformed name is shown as far as it reads."""
    labels = []
    i = 0
    while i < len(wire):
        length = wire[i]
        if length == 0 or length > 63:
            break
        label = wire[i + 1 : i + 1 + length]
        i += 1 + length
        if label.isalnum() or all(c in _PLAIN for c in label):
            labels.append(label.decode("ascii"))
        else:
            labels.append("".join(chr(c) if c in _PLAIN else f"\\{c:03d}" for c in label))
    return ".".join(labels) + "." if labels else "."


_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*")


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "0%"


class _Base:
    """What one client's expansions of one base name add up to."""

    __slots__ = ("expansions", "first", "resolved_at", "final", "final_bare")

    def __init__(self) -> None:
        self.expansions = 0  # queries: base + a search suffix, not answered
        self.first = 0  # of those, with the first suffix (<ns>.svc.<zone>): one per walk+type
        self.resolved_at = ""  # the candidate that answered, if any
        self.final = 0  # queries at a later candidate that answered (or NODATA there)
        self.final_bare = 0  # of those, at the bare name


def _client_view(
    ip: str,
    pod: tuple[str, str] | None,
    names: Mapping[str, Mapping[int, int]],
    outcomes: Mapping[int, int],
    zone: str,
) -> dict[str, Any]:
    """One client's entry: counts, expansions by base name, failures, top names, savings and
    the advice sentence. ``names``: absolute qname -> outcome -> count for this client;
    ``outcomes``: outcome -> count (the clients summary)."""
    queries = sum(outcomes.values())
    bases: dict[str, _Base] = {}
    failed: dict[str, int] = {}
    suffixes = (f"{pod[0]}.svc.{zone}", f"svc.{zone}", zone) if pod else ()
    for name, by_outcome in names.items():
        answered = by_outcome.get(ANSWERED, 0)
        for outcome, n in by_outcome.items():
            if outcome == ANSWERED:
                continue
            wasted = outcome == NXDOMAIN or (outcome == NODATA and not answered)
            if wasted and suffixes:
                for index, suffix in enumerate(suffixes):
                    if name.endswith("." + suffix) and len(name) > len(suffix) + 1:
                        base = bases.setdefault(name[: -len(suffix) - 1], _Base())
                        base.expansions += n
                        if index == 0:
                            base.first += n
                        break
                else:
                    wasted = False
                if wasted:
                    continue
            if outcome != NODATA:
                failed[name] = failed.get(name, 0) + n
    for base_name, base in bases.items():
        # the candidates after the first suffix, then the bare name: which one answered?
        for candidate in (*(f"{base_name}.{s}" for s in suffixes[1:]), base_name + "."):
            seen = names.get(candidate)
            if not seen or not seen.get(ANSWERED):
                continue
            got = seen[ANSWERED] + seen.get(NODATA, 0)
            base.final += got
            if candidate == base_name + ".":
                base.final_bare += got
            if not base.resolved_at:
                base.resolved_at = candidate
    expansions = sum(b.expansions for b in bases.values())
    dot = ndots2 = autopath = 0
    for base_name, base in bases.items():
        walks = base.first
        if walks:
            # autopath answers the first query of each walk (one per qtype) server-side:
            # the walks that ended in an answer lose every expansion
            autopath += round(base.expansions * min(1.0, base.final / walks))
        if base_name.count(".") >= 2:
            # ndots:2 asks a name with >= 2 dots as is first: saved where that answered
            ndots2 += round(base.expansions * min(1.0, base.final_bare / max(walks, 1)))
        dot += base.expansions
    top = sorted(names.items(), key=lambda item: -sum(item[1].values()))[:TOP_NAMES]
    wasted_names = sorted(bases.items(), key=lambda item: -item[1].expansions)
    entry: dict[str, Any] = {
        "ip": ip,
        "pod": f"{pod[0]}/{pod[1]}" if pod else None,
        "namespace": pod[0] if pod else None,
        "queries": queries,
        "rcodes": {outcome_name(o): n for o, n in sorted(outcomes.items()) if n},
        "nxdomain": outcomes.get(NXDOMAIN, 0),
        "search_expansions": expansions,
        "waste_share": _share(expansions, queries),
        "expanded_names": [
            {
                "name": name,
                "expansions": base.expansions,
                "resolves_as": base.resolved_at or None,
            }
            for name, base in wasted_names[:TOP_NAMES]
        ],
        "failed_names": [
            {"name": name, "queries": n}
            for name, n in sorted(failed.items(), key=lambda item: -item[1])[:TOP_NAMES]
        ],
        "top_names": [
            {
                "name": name,
                "queries": sum(by_outcome.values()),
                "rcodes": {outcome_name(o): n for o, n in sorted(by_outcome.items())},
            }
            for name, by_outcome in top
        ],
        "savings": {
            "trailing_dot": {"queries": dot, "share": _share(dot, queries)},
            "ndots2": {"queries": ndots2, "share": _share(ndots2, queries)},
            "autopath": {"queries": autopath, "share": _share(autopath, queries)},
        },
    }
    entry["advice"] = _advice(entry, wasted_names)
    return entry


def _advice(entry: dict[str, Any], wasted: Sequence[tuple[str, _Base]]) -> str:
    """The sentence an operator acts on: which pod, which names, which fix, what it saves.

    Names that resolved get "write X. (the name that answered, with its trailing dot)";
    names that never resolved get "fix or drop the lookup" (a trailing dot would still
    save their expansions, but the lookup itself is the bug)."""
    who = entry["pod"] or entry["ip"]
    queries = entry["queries"]
    expansions = entry["search_expansions"]
    failed = [f["name"] for f in entry["failed_names"][:3]]
    failing = f"names that failed: {', '.join(failed)}" if failed else ""
    if entry["pod"] is None:
        text = f"{who} is not a known pod: its search path is unknown, so no waste is counted"
        return text + (f"; {failing}" if failing else ".")
    if not expansions:
        text = f"{who}: no search-path expansions in {queries} queries"
        return text + (f"; {failing}" if failing else ".")
    resolving = [(b.resolved_at, b.expansions) for _, b in wasted if b.resolved_at]
    broken = [(name, b.expansions) for name, b in wasted if not b.resolved_at]
    s = entry["savings"]
    fixes = []
    if resolving:
        n = sum(e for _, e in resolving)
        names = ", ".join(name for name, _ in resolving[:3])
        fixes.append((n, f"write {names} (with the trailing dot) in its configuration"))
    fixes.append((s["ndots2"]["queries"], 'set dnsConfig.options ndots: "2" in its pod template'))
    fixes.append((s["autopath"]["queries"], "enable autopath on the server (pods verified)"))
    fixes = sorted((f for f in fixes if f[0]), key=lambda f: -f[0])
    text = (
        f"{who}: {expansions} of its {queries} queries ({_pct(expansions, queries)}) were "
        "search-path expansions."
    )
    if fixes:
        text += " Fix: " + "; or ".join(
            f"{fix} (saves {n}, {_pct(n, queries)})" for n, fix in fixes
        )
        text += "."
    if broken:
        n = sum(e for _, e in broken)
        names = ", ".join(name for name, _ in broken[:3])
        text += (
            f" {names} never resolved: fix or drop the lookup (its search walk alone "
            f"cost {n} queries, {_pct(n, queries)})."
        )
    return text


def _sum_entries(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    queries = sum(e["queries"] for e in entries)
    expansions = sum(e["search_expansions"] for e in entries)
    savings = {
        fix: {
            "queries": (n := sum(e["savings"][fix]["queries"] for e in entries)),
            "share": _share(n, queries),
        }
        for fix in ("trailing_dot", "ndots2", "autopath")
    }
    rcodes: dict[str, int] = {}
    for e in entries:
        for name, n in e["rcodes"].items():
            rcodes[name] = rcodes.get(name, 0) + n
    return {
        "clients": len(entries),
        "queries": queries,
        "nxdomain": sum(e["nxdomain"] for e in entries),
        "rcodes": rcodes,
        "search_expansions": expansions,
        "waste_share": _share(expansions, queries),
        "savings": savings,
    }


def _cluster_advice(entries: Sequence[dict[str, Any]], total: dict[str, Any]) -> str:
    queries = total["queries"]
    expansions = total["search_expansions"]
    if not expansions:
        return f"No search-path expansions seen in {queries} queries from known pods."
    worst = sorted(
        (e for e in entries if e["search_expansions"]), key=lambda e: -e["search_expansions"]
    )
    pods = ", ".join(f"{e['pod']} ({e['search_expansions']})" for e in worst[:3])
    s = total["savings"]
    return (
        f"{expansions} of {queries} queries ({_pct(expansions, queries)}) were search-path "
        f"expansions, most from {pods}. Fully qualified names (trailing dot) would save "
        f"{s['trailing_dot']['queries']} ({_pct(s['trailing_dot']['queries'], queries)}), "
        f'dnsConfig ndots: "2" on those pods {s["ndots2"]["queries"]} '
        f"({_pct(s['ndots2']['queries'], queries)}), autopath on the server "
        f"{s['autopath']['queries']} ({_pct(s['autopath']['queries'], queries)})."
    )


def view(
    clients: Summary,
    names: Summary,
    pods: Mapping[str, tuple[str, str]],
    zone: str,
    top: int = TOP_CLIENTS,
) -> dict[str, Any]:
    """Clients, namespaces and the cluster's totals and advice for one span (a merged
    clients summary and names summary). ``zone``: the cluster zone, absolute."""
    per_client: dict[str, dict[int, int]] = {}
    for key, n in clients.counts.items():
        ip, outcome = (key, ANSWERED) if type(key) is str else key  # note(): answered = ip
        row = per_client.setdefault(ip, {})
        row[outcome] = row.get(outcome, 0) + n
    text_of: dict[bytes, str] = {}
    per_names: dict[str, dict[str, dict[int, int]]] = {}
    for key, n in names.counts.items():
        ip, qname, outcome = key if len(key) == 3 else (*key, ANSWERED)
        name = text_of.get(qname)
        if name is None:
            name = text_of[qname] = wire_to_text(qname)
        by_outcome = per_names.setdefault(ip, {}).setdefault(name, {})
        by_outcome[outcome] = by_outcome.get(outcome, 0) + n
    entries = [
        _client_view(ip, pods.get(ip), per_names.get(ip, {}), outcomes, zone)
        for ip, outcomes in per_client.items()
    ]
    entries.sort(key=lambda e: (-e["queries"], e["ip"]))
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        if e["namespace"] is not None:
            by_namespace.setdefault(e["namespace"], []).append(e)
    namespaces = [{"namespace": ns, **_sum_entries(es)} for ns, es in by_namespace.items()]
    namespaces.sort(key=lambda n: (-n["queries"], n["namespace"]))
    pod_entries = [e for e in entries if e["pod"] is not None]
    total = _sum_entries(entries)
    total["pods"] = _sum_entries(pod_entries)
    total["advice"] = _cluster_advice(pod_entries, total["pods"])
    wasted: dict[str, list[int]] = {}
    for e in pod_entries:
        for n in e["expanded_names"]:
            sums = wasted.setdefault(n["name"], [0, 0])
            sums[0] += n["expansions"]
            sums[1] += 1
    total["wasted_names"] = [
        {"name": name, "expansions": n, "pods": pods_}
        for name, (n, pods_) in sorted(wasted.items(), key=lambda item: -item[1][0])[:TOP_NAMES]
    ]
    return {
        "clients": entries[:top],
        "clients_total": len(entries),
        "namespaces": namespaces,
        "cluster": total,
        "error_bound": {"clients": clients.slack, "names": names.slack},
    }


def snapshot(
    tallies: Sequence[TrafficTally],
    pods: Mapping[str, tuple[str, str]],
    zone: str,
    now: float,
    *,
    top: int = TOP_CLIENTS,
) -> dict[str, Any]:
    """The traffic of every tally (one per serving thread), as ``/traffic.json`` serves it.

    ``pods``: pod IP -> (namespace, name), the pods the server knows; ``zone``: the cluster
    zone (``"cluster.local."``); ``now``: on the tallies' clock (rotate them first). Shape::

        {"window_s": 60, "covered_s": 58.2, "bucket_s": 5, "since_s": 3600.0,
         "outcomes": ["NOERROR", "NODATA", "NXDOMAIN", ...],
         "series": [{"t": -55.0, "span": 5.0, "qps": {"NOERROR": 12.4, ...}}, ...],
         "clients": [{"ip", "pod" ("ns/name" or None), "namespace", "queries", "rcodes",
                      "nxdomain", "search_expansions", "waste_share", "expanded_names",
                      "failed_names", "top_names", "savings", "advice"}],
         "clients_total": N, "namespaces": [{"namespace", "clients", "queries", ...}],
         "cluster": {"queries", "search_expansions", "savings", "pods": {...}, "advice",
                     "wasted_names": [{"name", "expansions", "pods"}]},
         "error_bound": {"clients": 0, "names": 0},
         "totals": {"queries": N, "rcodes": {...}},  # exact, whatever the traffic
         "since_start": {same keys as the window: clients, namespaces, cluster, totals...}}

    Times in ``series`` are seconds relative to ``now``; ``qps`` is queries per second over
    the bucket. Raises nothing on any tally content.
    """
    zone = zone.lower().rstrip(".") + "."
    window: list[Bucket] = []
    for tally in tallies:
        window += tally.window(now)
    # the open buckets end now
    spans = [(b.start, (b.end if b.end > b.start else now)) for b in window]
    covered = now - min((s for s, _ in spans), default=now)
    series: dict[float, list[float]] = {}
    names_out: set[int] = set()
    for bucket, (start, end) in zip(window, spans, strict=True):
        point = series.setdefault(start, [0.0] * OUTCOMES + [max(end - start, 1e-9)])
        point[OUTCOMES] = max(point[OUTCOMES], end - start)
        for i, n in enumerate(bucket.outcomes):
            if n:
                point[i] += n
                names_out.add(i)
    order = sorted(names_out, key=lambda o: (o != ANSWERED, o != NODATA, o))
    points = []
    for start in sorted(series):
        point = series[start]
        span = point[OUTCOMES]
        if span < 0.5:
            continue  # a bucket just opened: its rate means nothing yet
        points.append(
            {
                "t": round(start - now, 3),
                "span": round(span, 3),
                "qps": {outcome_name(o): round(point[o] / span, 3) for o in order},
            }
        )
    win_outcomes = [sum(b.outcomes[i] for b in window) for i in range(OUTCOMES)]
    all_outcomes = [
        win_outcomes[i] + sum(t.total_outcomes[i] for t in tallies) for i in range(OUTCOMES)
    ]
    win_clients = merge(b.clients.frozen() for b in window)
    win_names = merge(b.names.frozen() for b in window)
    result: dict[str, Any] = {
        "window_s": tallies[0].window_s if tallies else DEFAULT_WINDOW_S,
        "bucket_s": tallies[0].bucket_s if tallies else DEFAULT_BUCKET_S,
        "covered_s": round(covered, 3),
        "since_s": round(now - min((t.started for t in tallies), default=now), 3),
        "zone": zone,
        "outcomes": [outcome_name(o) for o in order],
        "series": points,
        **view(win_clients, win_names, pods, zone, top),
        "totals": _totals(win_outcomes),
    }
    all_clients = merge([t.total_clients for t in tallies] + [win_clients])
    all_names = merge([t.total_names for t in tallies] + [win_names])
    result["since_start"] = view(all_clients, all_names, pods, zone, top)
    result["since_start"]["totals"] = _totals(all_outcomes)
    return result


def _totals(outcomes: Sequence[int]) -> dict[str, Any]:
    """Exact counts (not bounded summaries): queries and answers by outcome."""
    return {
        "queries": sum(outcomes),
        "rcodes": {outcome_name(o): n for o, n in enumerate(outcomes) if n},
    }
