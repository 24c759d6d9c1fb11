"""What the chain reports: :class:`QueryMetrics`, the per-query metrics protocol (no-ops
here; ``server.metrics.Metrics`` counts), and :class:`FaultLog`, unexpected exceptions
logged with their trace at a bounded rate. Re-exported by ``chain``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("clusterdns.plugins.chain")

FAULT_LOG_INTERVAL = 10.0  # seconds: unexpected errors of one kind are logged this often


class FaultLog:
    """Logs unexpected exceptions with their trace, at most one per ``interval`` seconds
    per message; the others are counted and reported with the next one logged (a failing
    upstream must not turn every query into a traceback)."""

    def __init__(self, interval: float = FAULT_LOG_INTERVAL) -> None:
        self.interval = interval
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def exception(self, message: str) -> None:
        """Log the exception being handled under ``message`` (or count it)."""
        now = time.monotonic()
        if now - self.last.get(message, -self.interval) < self.interval:
            self.suppressed[message] = self.suppressed.get(message, 0) + 1
            return
        self.last[message] = now
        more = self.suppressed.pop(message, 0)
        log.exception("%s%s", message, f" (and {more} more since last logged)" if more else "")


FAULTS = FaultLog()


class ForwardMetrics:
    """What the forwarder reports; :class:`clusterdns.server.metrics.Metrics` implements it."""

    def proxy_request(self, to: str, rcode: str, seconds: float) -> None:
        """One upstream exchange finished with ``rcode`` (or an error name)."""

    def healthcheck_failure(self, to: str) -> None:
        """A health probe of ``to`` failed."""

    def healthcheck_broken(self) -> None:
        """Every upstream was down: a random one was tried anyway."""

    def max_concurrent_reject(self) -> None:
        """A query was refused because ``max_concurrent`` were in flight."""

    def cache_hit(self, kind: str) -> None:
        """A cache hit; ``kind`` is success or denial."""

    def cache_miss(self) -> None:
        """A cache miss."""


class QueryMetrics(ForwardMetrics):
    """What the chain reports per query (no-ops here; :class:`clusterdns.server.metrics.Metrics`
    counts them), so the chain does not depend on the server layer."""

    autopath_success = 0  # answers autopath found
    tallies: list[Any] = []  # noqa: RUF012 - set per instance: the serving threads' counters
    cache_entries: Callable[[], dict[str, int]] | None = None  # the forward cache's sizes
    cache_zones = ""  # the forward cache's zones
    answers: Callable[[], dict[str, int]] | None = None  # the answer table's counts

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
        """One query answered by ``plugin`` in ``seconds``; sizes in bytes."""

