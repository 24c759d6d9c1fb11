"""Prometheus metrics with CoreDNS's names, labels and buckets.

Per-query counting must not cost a prometheus_client call each: the hot path bumps plain
integers in :class:`Metrics`, and a custom collector turns them into metric families when
Prometheus scrapes ``/metrics`` (CoreDNS plugin/metrics/vars, plugin/forward/metrics.go,
plugin/cache/metrics.go). Process metrics come from prometheus_client's own collectors.
"""

from __future__ import annotations

import bisect
import copy
import platform
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .. import __version__
from ..core.names import split_hostport
from ..core.rr import QTYPE_NAMES, RCODE_NAMES
from ..dns.cache import Tally
from ..plugins.report import QueryMetrics

# prometheus.ExponentialBuckets(0.00025, 2, 16): 0.25 ms .. 8.192 s (CoreDNS plugin.TimeBuckets)
TIME_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
# CoreDNS plugin.SizeBuckets, bytes
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)
# qtypes with a label value of their own (CoreDNS vars.monitorType); the rest are "other"
MONITORED_TYPES = frozenset(
    ["A", "AAAA", "CNAME", "DNSKEY", "DS", "MX", "NSEC3", "NSEC", "NS", "PTR", "RRSIG", "SOA"]
    + ["SRV", "TXT", "HTTPS", "IXFR", "AXFR", "ANY"]
)


def type_label(qtype: int) -> str:
    """The ``type`` label of a qtype: its name if CoreDNS monitors it, else ``other``."""
    name = QTYPE_NAMES.get(qtype) or _MORE_TYPES.get(qtype, "")
    return name if name in MONITORED_TYPES else "other"


_MORE_TYPES = {43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 50: "NSEC3", 65: "HTTPS"}


class Histogram:
    """Cumulative-on-export bucket counts and a sum; ``observe`` is two integer ops."""

    __slots__ = ("buckets", "counts", "total")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one observation (``le`` buckets: the first bound >= value)."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def add(self, value: float, count: int) -> None:
        """Count ``count`` observations of ``value``."""
        self.counts[bisect.bisect_left(self.buckets, value)] += count
        self.total += value * count

    def export(self) -> tuple[list[tuple[str, float]], float]:
        """``(buckets as (le, cumulative count) including +Inf, sum)``."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            out.append((_le(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out, self.total


def _le(bound: float) -> str:
    return repr(float(bound)) if bound != int(bound) else f"{float(bound)}"


class Metrics(QueryMetrics):
    """The counters of one server block: ``server`` like ``dns://:53``, ``zone`` like ``.``.

    Call :meth:`observe` once per answered query; the other methods are the forwarder's
    and cache's reports. Not thread-safe: call from the event loop only; scraping reads
    integers from another thread, which can only see a value a moment old.
    """

    def __init__(self, server: str, zone: str) -> None:
        self.server = server
        self.zone = zone
        self.view = ""  # the block's view name (CoreDNS's ``view`` label), "" without one
        self.requests: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.responses: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.do_requests = 0
        self.duration = Histogram(TIME_BUCKETS)
        self.request_size: dict[str, Histogram] = {}
        self.response_size: dict[str, Histogram] = {}
        self.proxy_duration: dict[tuple[str, str], Histogram] = {}
        self.healthcheck_failures: defaultdict[str, int] = defaultdict(int)
        self.healthcheck_broken_count = 0
        self.max_concurrent_rejects = 0
        self.cache_hits: defaultdict[str, int] = defaultdict(int)
        self.cache_misses = 0
        self.forward_requests: defaultdict[str, int] = defaultdict(int)
        self.forward_responses: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.plugins: tuple[str, ...] = ()
        # the fast path's replies, counted per serving thread (dns.cache.Tally.served) and
        # folded into the families above at scrape time; the handler lends its list
        self.tallies: list[Tally] = []
        self.cache_entries: Callable[[], dict[str, int]] | None = None
        self.answers: Callable[[], dict[str, int]] | None = None  # the answer table's counts
        self.cache_zones = ""
        self.autopath_success = 0

    def observe(
        self,
        proto: str,
        family: str,
        qtype: int,
        request_size: int,
        response: bytes | None,
        plugin: str,
        seconds: float,
        do: bool,
    ) -> None:
        """Count one query (CoreDNS vars.Report): request by proto/family/type, response by
        rcode/plugin, duration (seconds), sizes (bytes; the request as received).
        ``response`` None: nothing was sent."""
        qtype_label = type_label(qtype)
        self.requests[(proto, family, qtype_label)] += 1
        if do:
            self.do_requests += 1
        self.duration.observe(seconds)
        _hist(self.request_size, proto, SIZE_BUCKETS).observe(request_size)
        if response is not None and len(response) >= 4:
            rcode = RCODE_NAMES.get(response[3] & 0xF, str(response[3] & 0xF))
            self.responses[(rcode, plugin)] += 1
            _hist(self.response_size, proto, SIZE_BUCKETS).observe(len(response))

    def folded(self) -> Metrics:
        """A copy of the counters with the cache hits folded in (called at scrape time, on
        the HTTP thread). Every table is copied with one C-level ``dict.copy`` (atomic under
        the GIL: the loop cannot change it midway) and histograms are copied too, so the
        scrape neither iterates nor inserts into (defaultdict) anything the loop owns."""
        out = copy.copy(self)
        for name, value in list(vars(self).items()):
            if isinstance(value, dict):
                table = value.copy()
                for key, hist in list(table.items()):
                    if isinstance(hist, Histogram):
                        table[key] = _copy(hist)
                setattr(out, name, table)
        out.do_requests = self.do_requests
        out.duration = _copy(self.duration)
        # each thread's replies from the fast path (kept answers, template NXDOMAINs): well
        # under 0.25 ms each, so in the first duration bucket
        served = [
            (t.family, key, n)
            for t in list(self.tallies)
            if t.served is not None
            for key, n in t.served.copy().items()
        ]
        for family, (tcp, qtype, rcode, request, reply), n in served:
            proto = "tcp" if tcp else "udp"
            out.requests[(proto, family, type_label(qtype))] += n
            out.responses[(RCODE_NAMES.get(rcode, str(rcode)), "kubernetes")] += n
            out.duration.counts[0] += n
            _hist(out.request_size, proto, SIZE_BUCKETS).add(request, n)
            _hist(out.response_size, proto, SIZE_BUCKETS).add(reply, n)
        return out

    # ForwardMetrics
    def proxy_request(self, to: str, rcode: str, seconds: float) -> None:
        _hist(self.proxy_duration, (to, rcode), TIME_BUCKETS).observe(seconds)
        self.forward_requests[to] += 1
        self.forward_responses[(to, rcode)] += 1

    def healthcheck_failure(self, to: str) -> None:
        self.healthcheck_failures[to] += 1

    def healthcheck_broken(self) -> None:
        self.healthcheck_broken_count += 1

    def max_concurrent_reject(self) -> None:
        self.max_concurrent_rejects += 1

    def cache_hit(self, kind: str) -> None:
        self.cache_hits[kind] += 1

    def cache_miss(self) -> None:
        self.cache_misses += 1


def _copy(hist: Histogram) -> Histogram:
    out = Histogram(hist.buckets)
    out.counts = list(hist.counts)
    out.total = hist.total
    return out


def _hist(table: dict[Any, Histogram], key: Any, buckets: tuple[float, ...]) -> Histogram:
    hist = table.get(key)
    if hist is None:
        hist = table[key] = Histogram(buckets)
    return hist


class Scrape(NamedTuple):
    """What one scrape exports: the servers' counters (folded) and the process-wide ones."""

    servers: list[Metrics]
    reload_failed: int


Sample = tuple[tuple[str, ...], Any]  # (label values, a number or a Histogram)


@dataclass(frozen=True)
class Family:
    """One exported metric family: its name, type (``counter``, ``gauge``, ``histogram``),
    help text and label names as CoreDNS exports them, and where its samples come from."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    samples: Callable[[Scrape], Iterable[Sample]]

    def export(self, scrape: Scrape) -> Metric:
        """The family with its samples. Histograms with the same label values are
        exported once (the last one), counters and gauges as many times as found."""
        if self.kind == "histogram":
            family = HistogramMetricFamily(self.name, self.help, labels=list(self.labels))
            for values, hist in dict(self.samples(scrape)).items():
                buckets, total = hist.export()
                family.add_metric(list(values), buckets, total)
            return family
        make = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        out = make(self.name, self.help, labels=list(self.labels))
        for values, value in self.samples(scrape):
            out.add_metric(list(values), value)
        return out


def _each(scrape: Scrape, table: Callable[[Metrics], dict[Any, Any]]) -> Iterator[
    tuple[Metrics, Any, Any]
]:
    """(server, key, value) of one table of every server."""
    for m in scrape.servers:
        for key, value in list(table(m).items()):
            yield m, key, value


def _cached(scrape: Scrape) -> Iterator[Metrics]:
    """The servers with a forward cache."""
    return (m for m in scrape.servers if m.cache_entries is not None)


def _answering(scrape: Scrape) -> Iterator[tuple[Metrics, dict[str, int]]]:
    """The servers whose answer table is counted, with its counts."""
    for m in scrape.servers:
        if m.answers is not None:
            yield m, m.answers()


def _answer_counts(what: str) -> Callable[[Scrape], Iterable[Sample]]:
    """The samples of one answer-table counter (hits, misses, evictions), by server."""
    return lambda scrape: [((m.server,), n[what]) for m, n in _answering(scrape)]


def _answer_entries(scrape: Scrape) -> Iterable[Sample]:
    return [
        ((m.server, kind), n[kind])
        for m, n in _answering(scrape)
        for kind in ("positive", "negative")
    ]


def _build(_: Scrape) -> Iterable[Sample]:
    return [((__version__, "clusterdns", f"python{platform.python_version()}"), 1)]


SERVER = ("server", "zone", "view")
CACHE = ("server", "type", "zones", "view")
CACHE_TOTALS = ("server", "zones", "view")
TIME_HELP = "Histogram of the time each request took."
HEALTH_HELP = "Counter of the number of failed healthchecks."

# Every family exported, in export order (CoreDNS plugin/metrics/vars, plugin/cache,
# plugin/forward, plugin/autopath). The coredns_forward_* counters and histogram are the
# names CoreDNS exported before 1.11, which the coredns-mixin alerts and dashboard still
# query (CoreDNSForwardLatencyHigh, ...ErrorsHigh, ...HealthcheckFailureCount): exported
# too, so those alerts work here.
FAMILIES: tuple[Family, ...] = (
    Family(
        "coredns_build_info", "gauge",
        "A metric with a constant '1' value labeled by version, "
        "revision, and goversion from which CoreDNS was built.",
        ("version", "revision", "goversion"), _build,
    ),
    Family(
        "coredns_reload_failed", "counter", "Counter of the number of failed reload attempts.",
        (), lambda s: [((), s.reload_failed)],
    ),
    Family(
        "coredns_panics", "counter", "A metrics that counts the number of panics.",
        (), lambda s: [((), 0)],
    ),
    Family(
        "coredns_plugin_enabled", "gauge",
        "A metric that indicates whether a plugin is enabled on per server and zone basis.",
        ("server", "zone", "view", "name"),
        lambda s: [((m.server, m.zone, m.view, n), 1) for m in s.servers for n in m.plugins],
    ),
    Family(
        "coredns_dns_requests", "counter",
        "Counter of DNS requests made per zone, protocol and family.",
        (*SERVER, "proto", "family", "type"),
        lambda s: [
            ((m.server, m.zone, m.view, *k), n) for m, k, n in _each(s, lambda m: m.requests)
        ],
    ),
    Family(
        "coredns_dns_responses", "counter", "Counter of response status codes.",
        (*SERVER, "rcode", "plugin"),
        lambda s: [
            ((m.server, m.zone, m.view, *k), n) for m, k, n in _each(s, lambda m: m.responses)
        ],
    ),
    Family(
        "coredns_dns_do_requests", "counter", "Counter of DNS requests with DO bit set per zone.",
        ("server", "view", "zone"),
        lambda s: [((m.server, m.view, m.zone), m.do_requests) for m in s.servers],
    ),
    Family(
        "coredns_dns_request_duration_seconds", "histogram",
        "Histogram of the time (in seconds) each request took per zone.",
        SERVER, lambda s: [((m.server, m.zone, m.view), m.duration) for m in s.servers],
    ),
    Family(
        "coredns_dns_request_size_bytes", "histogram", "Size of the request in bytes.",
        (*SERVER, "proto"),
        lambda s: [
            ((m.server, m.zone, m.view, p), h) for m, p, h in _each(s, lambda m: m.request_size)
        ],
    ),
    Family(
        "coredns_dns_response_size_bytes", "histogram", "Size of the returned response in bytes.",
        (*SERVER, "proto"),
        lambda s: [
            ((m.server, m.zone, m.view, p), h) for m, p, h in _each(s, lambda m: m.response_size)
        ],
    ),
    Family(
        "coredns_cache_entries", "gauge", "The number of elements in the cache.", CACHE,
        lambda s: [
            ((m.server, kind, m.cache_zones, m.view), n)
            for m in _cached(s)
            for kind, n in (m.cache_entries() if m.cache_entries else {}).items()
        ],
    ),
    Family(
        "coredns_cache_hits", "counter", "The count of cache hits.", CACHE,
        lambda s: [
            ((m.server, kind, m.cache_zones, m.view), m.cache_hits.get(kind, 0))
            for m in _cached(s)
            for kind in ("success", "denial")
        ],
    ),
    Family(
        "coredns_cache_misses", "counter",
        "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
        CACHE_TOTALS,
        lambda s: [((m.server, m.cache_zones, m.view), m.cache_misses) for m in _cached(s)],
    ),
    Family(
        "coredns_cache_requests", "counter", "The count of cache requests.", CACHE_TOTALS,
        lambda s: [
            ((m.server, m.cache_zones, m.view), m.cache_misses + sum(m.cache_hits.values()))
            for m in _cached(s)
        ],
    ),
    Family(
        "coredns_proxy_request_duration_seconds", "histogram", TIME_HELP,
        ("proxy_name", "to", "rcode"),
        lambda s: [(("forward", *k), h) for _, k, h in _each(s, lambda m: m.proxy_duration)],
    ),
    Family(
        "coredns_forward_request_duration_seconds", "histogram", TIME_HELP, ("to", "rcode"),
        lambda s: [(k, h) for _, k, h in _each(s, lambda m: m.proxy_duration)],
    ),
    Family(
        "coredns_proxy_healthcheck_failures", "counter", HEALTH_HELP, ("proxy_name", "to"),
        lambda s: [(("forward", to), n) for _, to, n in _each(s, lambda m: m.healthcheck_failures)],
    ),
    Family(
        "coredns_forward_healthcheck_broken", "counter",
        "Counter of the number of complete failures of the healthchecks.", (),
        lambda s: [((), sum(m.healthcheck_broken_count for m in s.servers))],
    ),
    Family(
        "coredns_forward_max_concurrent_rejects", "counter",
        "Counter of the number of queries rejected because the concurrent queries were at "
        "maximum.", (),
        lambda s: [((), sum(m.max_concurrent_rejects for m in s.servers))],
    ),
    *(
        Family(
            f"clusterdns_answers_{what}", "counter", f"Answer-table {what} (kept cluster "
            "answers, served from the packet's bytes; docs/performance.md).", ("server",),
            _answer_counts(what),
        )
        for what in ("hits", "misses", "evictions")
    ),
    Family(
        "clusterdns_answers_entries", "gauge", "Answers kept in the answer table, by kind "
        "(positive, negative).", ("server", "kind"), _answer_entries,
    ),
    Family(
        "coredns_autopath_success", "counter", "Counter of requests that did autopath.",
        ("server",), lambda s: [((m.server,), m.autopath_success) for m in s.servers],
    ),
    Family(
        "coredns_forward_requests", "counter", "Counter of requests made per upstream.", ("to",),
        lambda s: [((to,), n) for _, to, n in _each(s, lambda m: m.forward_requests)],
    ),
    Family(
        "coredns_forward_responses", "counter", "Counter of responses received per upstream.",
        ("rcode", "to"),
        lambda s: [((rc, to), n) for _, (to, rc), n in _each(s, lambda m: m.forward_responses)],
    ),
    Family(
        "coredns_forward_healthcheck_failures", "counter", HEALTH_HELP, ("to",),
        lambda s: [((to,), n) for _, to, n in _each(s, lambda m: m.healthcheck_failures)],
    ),
)


class Collector:
    """Exports every registered :class:`Metrics` at scrape time, plus process-wide ones
    (build info, reload failures): the families of :data:`FAMILIES`."""

    def __init__(self) -> None:
        self.servers: list[Metrics] = []
        self.reload_failed = 0
        self._lock = threading.Lock()

    def add(self, metrics: Metrics) -> None:
        """Export ``metrics`` from now on."""
        with self._lock:
            self.servers.append(metrics)

    def replace(self, servers: Iterable[Metrics]) -> None:
        """Export ``servers`` instead of the current ones (after a reload)."""
        with self._lock:
            self.servers = list(servers)

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's collector protocol."""
        with self._lock:
            servers = [m.folded() for m in self.servers]
        scrape = Scrape(servers, self.reload_failed)
        for family in FAMILIES:
            yield family.export(scrape)


def registry(collector: Collector) -> CollectorRegistry:
    """A registry with ``collector`` and the process and platform collectors."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


def serve_metrics(
    address: str,
    reg: CollectorRegistry | None = None,
    traffic: Callable[[], dict[str, Any]] | None = None,
) -> Any:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread (prometheus_client's server).

    With ``traffic`` (a callable giving the snapshot, e.g. ``TrafficView.snapshot``), the
    same listener also answers ``/traffic`` and ``/traffic.json``
    (clusterdns/server/traffic_page.py); every other path goes to prometheus_client's own
    WSGI application, unchanged. Returns the HTTP server (``shutdown()`` stops it). Raises
    OSError if it cannot bind, ValueError for an address that is not ``host:port``.
    """
    host, port = split_hostport(address)
    if traffic is not None:
        from .traffic_page import serve_wsgi, traffic_app

        app = traffic_app(make_wsgi_app(reg or REGISTRY), traffic)
        return serve_wsgi(host or "0.0.0.0", port, app)
    server, _thread = start_http_server(port, addr=host or "0.0.0.0", registry=reg or REGISTRY)
    return server
