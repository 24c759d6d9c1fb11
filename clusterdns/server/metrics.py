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
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .. import __version__
from ..core.rr import QTYPE_NAMES, RCODE_NAMES
from ..plugins.chain import QueryMetrics

# prometheus.ExponentialBuckets(0.00025, 2, 16): 0.25 ms .. 8.192 s (CoreDNS plugin.TimeBuckets)
TIME_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
# CoreDNS plugin.SizeBuckets, bytes
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)
# qtypes with a label value of their own (CoreDNS vars.monitorType); the rest are "other"
MONITORED_TYPES = frozenset(
    [
        "A",
        "AAAA",
        "CNAME",
        "DNSKEY",
        "DS",
        "MX",
        "NSEC3",
        "NSEC",
        "NS",
        "PTR",
        "RRSIG",
        "SOA",
        "SRV",
        "TXT",
        "HTTPS",
        "IXFR",
        "AXFR",
        "ANY",
    ]
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


def _histograms(
    name: str, doc: str, labels: list[str], data: dict[tuple[str, ...], Histogram]
) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, hist in data.items():
        buckets, total = hist.export()
        family.add_metric(list(values), buckets, total)
    return family


class Metrics(QueryMetrics):
    """The counters of one server block: ``server`` like ``dns://:53``, ``zone`` like ``.``.

    Call :meth:`observe` once per answered query; the other methods are the forwarder's
    and cache's reports. Not thread-safe: call from the event loop only; scraping reads
    integers from another thread, which can only see a value a moment old.
    """

    def __init__(self, server: str, zone: str) -> None:
        self.server = server
        self.zone = zone
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
        # answer-cache hits, counted with one dict update each and folded into the
        # families above at scrape time: (tcp, family, qtype, rcode, request, reply bytes)
        self.hits: defaultdict[tuple[bool, str, int, int, int, int], int] = defaultdict(int)
        self.cache_entries: Callable[[], dict[str, int]] | None = None
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

    def hit(self, tcp: bool, family: str, qtype: int, request: bytes, reply: bytes) -> None:
        """Count one query answered from the answer cache (the hot path: one dict update).
        Such a reply takes well under 0.25 ms: it counts in the first duration bucket."""
        self.hits[(tcp, family, qtype, reply[3] & 0xF, len(request), len(reply))] += 1

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
        for (tcp, family, qtype, rcode, request, reply), n in list(self.hits.items()):
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


class Collector:
    """Exports every registered :class:`Metrics` at scrape time, plus process-wide ones
    (build info, reload failures)."""

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
        build = GaugeMetricFamily(
            "coredns_build_info",
            "A metric with a constant '1' value labeled by version, "
            "revision, and goversion from which CoreDNS was built.",
            labels=["version", "revision", "goversion"],
        )
        build.add_metric([__version__, "clusterdns", f"python{platform.python_version()}"], 1)
        yield build
        reload_failed = CounterMetricFamily(
            "coredns_reload_failed", "Counter of the number of failed reload attempts."
        )
        reload_failed.add_metric([], self.reload_failed)
        yield reload_failed
        panics = CounterMetricFamily(
            "coredns_panics", "A metrics that counts the number of panics."
        )
        panics.add_metric([], 0)
        yield panics
        enabled = GaugeMetricFamily(
            "coredns_plugin_enabled",
            "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            labels=["server", "zone", "view", "name"],
        )
        for m in servers:
            for name in m.plugins:
                enabled.add_metric([m.server, m.zone, "", name], 1)
        yield enabled
        yield from self._dns(servers)
        yield from self._plugins(servers)

    def _dns(self, servers: list[Metrics]) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            labels=["server", "zone", "view", "proto", "family", "type"],
        )
        responses = CounterMetricFamily(
            "coredns_dns_responses",
            "Counter of response status codes.",
            labels=["server", "zone", "view", "rcode", "plugin"],
        )
        do = CounterMetricFamily(
            "coredns_dns_do_requests",
            "Counter of DNS requests with DO bit set per zone.",
            labels=["server", "view", "zone"],
        )
        duration: dict[tuple[str, ...], Histogram] = {}
        req_size: dict[tuple[str, ...], Histogram] = {}
        resp_size: dict[tuple[str, ...], Histogram] = {}
        for m in servers:
            base = [m.server, m.zone, ""]
            for (proto, family, qtype), n in list(m.requests.items()):
                requests.add_metric([*base, proto, family, qtype], n)
            for (rcode, plugin), n in list(m.responses.items()):
                responses.add_metric([*base, rcode, plugin], n)
            do.add_metric([m.server, "", m.zone], m.do_requests)
            duration[tuple(base)] = m.duration
            for proto, hist in list(m.request_size.items()):
                req_size[(*base, proto)] = hist
            for proto, hist in list(m.response_size.items()):
                resp_size[(*base, proto)] = hist
        yield requests
        yield responses
        yield do
        yield _histograms(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            ["server", "zone", "view"],
            duration,
        )
        yield _histograms(
            "coredns_dns_request_size_bytes",
            "Size of the request in bytes.",
            ["server", "zone", "view", "proto"],
            req_size,
        )
        yield _histograms(
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            ["server", "zone", "view", "proto"],
            resp_size,
        )

    def _plugins(self, servers: list[Metrics]) -> Iterator[Metric]:
        entries = GaugeMetricFamily(
            "coredns_cache_entries",
            "The number of elements in the cache.",
            labels=["server", "type", "zones", "view"],
        )
        hits = CounterMetricFamily(
            "coredns_cache_hits",
            "The count of cache hits.",
            labels=["server", "type", "zones", "view"],
        )
        misses = CounterMetricFamily(
            "coredns_cache_misses",
            "The count of cache misses. Deprecated, derive misses from "
            "cache hits/requests counters.",
            labels=["server", "zones", "view"],
        )
        cache_requests = CounterMetricFamily(
            "coredns_cache_requests",
            "The count of cache requests.",
            labels=["server", "zones", "view"],
        )
        proxy: dict[tuple[str, ...], Histogram] = {}
        failures = CounterMetricFamily(
            "coredns_proxy_healthcheck_failures",
            "Counter of the number of failed healthchecks.",
            labels=["proxy_name", "to"],
        )
        # The names CoreDNS exported before 1.11, which the coredns-mixin alerts and
        # dashboard still query (CoreDNSForwardLatencyHigh, ...ErrorsHigh,
        # ...HealthcheckFailureCount): exported too, so those alerts work here.
        legacy_requests = CounterMetricFamily(
            "coredns_forward_requests", "Counter of requests made per upstream.", labels=["to"]
        )
        legacy_responses = CounterMetricFamily(
            "coredns_forward_responses",
            "Counter of responses received per upstream.",
            labels=["rcode", "to"],
        )
        legacy_failures = CounterMetricFamily(
            "coredns_forward_healthcheck_failures",
            "Counter of the number of failed healthchecks.",
            labels=["to"],
        )
        legacy_duration: dict[tuple[str, ...], Histogram] = {}
        broken = CounterMetricFamily(
            "coredns_forward_healthcheck_broken",
            "Counter of the number of complete failures of the healthchecks.",
        )
        rejects = CounterMetricFamily(
            "coredns_forward_max_concurrent_rejects",
            "Counter of the number of queries rejected because the concurrent queries were at "
            "maximum.",
        )
        autopath = CounterMetricFamily(
            "coredns_autopath_success",
            "Counter of requests that did autopath.",
            labels=["server"],
        )
        broken_total = rejects_total = 0
        for m in servers:
            if m.cache_entries is not None:
                for kind, n in m.cache_entries().items():
                    entries.add_metric([m.server, kind, m.cache_zones, ""], n)
                for kind in ("success", "denial"):
                    hits.add_metric([m.server, kind, m.cache_zones, ""], m.cache_hits[kind])
                misses.add_metric([m.server, m.cache_zones, ""], m.cache_misses)
                cache_requests.add_metric(
                    [m.server, m.cache_zones, ""], m.cache_misses + sum(m.cache_hits.values())
                )
            for (to, rcode), hist in list(m.proxy_duration.items()):
                proxy[("forward", to, rcode)] = hist
                legacy_duration[(to, rcode)] = hist
            for to, n in list(m.healthcheck_failures.items()):
                failures.add_metric(["forward", to], n)
                legacy_failures.add_metric([to], n)
            for to, n in list(m.forward_requests.items()):
                legacy_requests.add_metric([to], n)
            for (to, rcode), n in list(m.forward_responses.items()):
                legacy_responses.add_metric([rcode, to], n)
            broken_total += m.healthcheck_broken_count
            rejects_total += m.max_concurrent_rejects
            autopath.add_metric([m.server], m.autopath_success)
        broken.add_metric([], broken_total)
        rejects.add_metric([], rejects_total)
        yield from (entries, hits, misses, cache_requests)
        yield _histograms(
            "coredns_proxy_request_duration_seconds",
            "Histogram of the time each request took.",
            ["proxy_name", "to", "rcode"],
            proxy,
        )
        yield _histograms(
            "coredns_forward_request_duration_seconds",
            "Histogram of the time each request took.",
            ["to", "rcode"],
            legacy_duration,
        )
        yield from (failures, broken, rejects, autopath)
        yield from (legacy_requests, legacy_responses, legacy_failures)


def registry(collector: Collector) -> CollectorRegistry:
    """A registry with ``collector`` and the process and platform collectors."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


def serve_metrics(address: str, reg: CollectorRegistry | None = None) -> Any:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread (prometheus_client's server).

    Returns the HTTP server (``shutdown()`` stops it). Raises OSError if it cannot bind.
    """
    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(
        int(port), addr=(host.strip("[]") or "0.0.0.0"), registry=reg or REGISTRY
    )
    return server
