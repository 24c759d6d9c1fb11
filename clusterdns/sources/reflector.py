"""Reflectors: list and watch one API resource, hand what they learn to a sink (docs/design.md).

One :class:`Reflector` thread per kind: paginated LIST -> replace the kind in one swap ->
WATCH from the list's resourceVersion with bookmarks -> apply events -> on 410 Expired
relist; on errors back off with jitter (:class:`Backoff`) and retry, one log line per
step for all kinds together (:class:`OutageLog`). The semantics are the API's "efficient
detection of changes" (https://kubernetes.io/docs/reference/using-api/api-concepts/).

The calls are raw GETs through a ``kubernetes.client.ApiClient`` (configured by
:func:`clusterdns.sources.kube.api_client`) whose JSON is read as it arrives: the client's
typed models cost about ten times the memory of slim records and its ``Watch`` neither
tracks resourceVersion nor survives a 410. Reflectors never touch the store: they hand
records to a :class:`Sink` (:class:`clusterdns.sources.kube.KubeSource`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from ..core.convert import convert_or_error, object_key
from ..core.errors import ClusterDNSError
from ..core.records import Record
from .resources import GATEWAY_API, Resource

log = logging.getLogger("clusterdns.kube")

# Objects per LIST page. Smaller than client-go's 500: a page's decoded JSON is garbage the
# moment it is converted, but the records made meanwhile pin the allocator's arenas it used,
# so the synced RSS grows with the page (issue 19; 10,000 services / 100,000 realistic pods:
# 189 MB at 500, see docs/performance.md section 2). 100 costs 5x the requests, each 5x smaller.
PAGE_SIZE = 100
WATCH_TIMEOUT = (300.0, 600.0)  # seconds: server-side timeoutSeconds, jittered in this range
CONNECT_TIMEOUT = 10.0  # seconds
LIST_READ_TIMEOUT = 60.0  # seconds of silence before a LIST page counts as lost
READ_GRACE = 30.0  # seconds past timeoutSeconds before a silent stream counts as hung
BACKOFF_BASE = 0.5  # seconds
BACKOFF_CAP = 30.0  # seconds
MIN_QUIET_WATCH = 1.0  # seconds: an empty watch shorter than this counts as a failure
MISSING_RETRY = 60.0  # seconds between checks for a CRD that was not installed
_ABSENT: set[tuple[int, str]] = set()  # (sink id, API group) already reported missing
_ABSENT_LOCK = threading.Lock()


class Sink(Protocol):
    """Where a reflector hands what it learns. Called from reflector threads."""

    def replace(self, kind: str, records: list[Record]) -> None:
        """The full, current set of ``kind`` after a LIST."""

    def upsert(self, record: Record) -> None:
        """One object added or changed."""

    def delete(self, kind: str, key: Any) -> None:
        """One object gone; ``key`` as :func:`clusterdns.core.store.record_key` gives it."""


class APIError(ClusterDNSError):
    """An error status from the API server (``code`` is the HTTP status)."""

    def __init__(self, code: int, message: str, reason: str = "") -> None:
        super().__init__(f"{code} {reason}: {message}".strip())
        self.code = code
        self.reason = reason


class Expired(APIError):
    """410 Gone / Expired: the resourceVersion was compacted; relist."""


class Untrusted(ClusterDNSError):
    """The stream said something we cannot read: the state is relisted, not patched."""


def _status_error(code: int, body: bytes) -> APIError:
    try:
        status = json.loads(body)
        message, reason = str(status.get("message", "")), str(status.get("reason", ""))
    except (ValueError, AttributeError):
        message, reason = body[:200].decode("utf-8", "replace"), ""
    cls = Expired if code == 410 else APIError
    return cls(code, message, reason)


def _key(kind: str, obj: Mapping[str, Any]) -> Any:
    _, namespace, name = object_key(obj)
    return name.lower() if kind == "Namespace" else (namespace.lower(), name.lower())


class Backoff:
    """Exponential back-off with equal jitter: the n-th delay is d/2 + U(0, d/2) with
    d = min(cap, base * 2**n), in seconds."""

    def __init__(self, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the next one."""
        delay = min(self.cap, self.base * 2.0**self.failures)
        self.failures = min(self.failures + 1, 30)
        return delay / 2 + random.uniform(0, delay / 2)

    def reset(self) -> None:
        """Back to the first, shortest delay."""
        self.failures = 0


class OutageLog:
    """While the API cannot be reached, one line per back-off step for all reflectors
    together (each kind fails on its own, nearly in step), and one line when it answers again.

    ``clock``: monotonic seconds. ``synced``: whether the store has ever held a full list
    (``KubeSource.synced.is_set``): before that there is no last good state to serve, and
    the line says what is answered instead. Thread-safe: every reflector thread reports here.
    """

    def __init__(
        self,
        server: str,
        clock: Any = time.monotonic,
        synced: Callable[[], bool] = lambda: True,
    ) -> None:
        self.server = server
        self.clock = clock
        self.synced = synced
        self.failing = False
        self._quiet_until = 0.0
        self._lock = threading.Lock()

    def failed(self, kind: str, verb: str, exc: Exception, delay: float) -> None:
        """``verb`` of ``kind`` failed with a network error; the next try is in ``delay`` s."""
        now = self.clock()
        with self._lock:
            self.failing = True
            if now < self._quiet_until:
                return
            self._quiet_until = now + delay * 0.9
        serving = (
            "serving the last good state"
            if self.synced()
            else "not synced yet: names not found answer SERVFAIL"
        )
        log.warning(
            "cannot reach the Kubernetes API at %s (%s %s: %s); %s, retrying in %.1f s",
            self.server,
            verb,
            kind,
            _reason(exc),
            serving,
            delay,
        )

    def succeeded(self) -> None:
        """A request went through: say so once after an outage."""
        with self._lock:
            was, self.failing, self._quiet_until = self.failing, False, 0.0
        if was:
            log.info("the Kubernetes API at %s answers again", self.server)


def _server_of(api: Any) -> str:
    """The API server URL of a ``kubernetes.client.ApiClient`` (``?`` without one)."""
    return str(getattr(getattr(api, "configuration", None), "host", "?"))


def _reason(exc: Exception) -> str:
    """The innermost cause of a urllib3/socket error, e.g. ``Connection refused``."""
    text = str(getattr(exc, "reason", None) or exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return match.group(1).strip() if match else f"{type(exc).__name__}: {text[:200]}"


class Reflector:
    """Lists and watches one resource and feeds a sink; run :meth:`run` in a thread.

    ``api``: a ``kubernetes.client.ApiClient``. ``watch_timeout``: the range, in seconds,
    from which each watch's ``timeoutSeconds`` is drawn. Never raises out of :meth:`run`:
    every failure is logged and retried.
    """

    def __init__(
        self,
        api: Any,
        resource: Resource,
        sink: Sink,
        *,
        page_size: int = PAGE_SIZE,
        watch_timeout: tuple[float, float] = WATCH_TIMEOUT,
        backoff: Backoff | None = None,
        on_listed: Any = None,
        outage: OutageLog | None = None,
        missing_retry: float = MISSING_RETRY,
    ) -> None:
        self.api = api
        self.outage = outage or OutageLog(_server_of(api))
        self.resource = resource
        self.sink = sink
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.backoff = backoff or Backoff()
        self.on_listed = on_listed
        self.missing_retry = missing_retry  # seconds between looks for a missing CRD
        self.resource_version = ""
        self.stopped = threading.Event()
        self._response: Any = None
        self._lock = threading.Lock()
        self._denied = ""
        self._absent = False

    # ---- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        """List, then watch, forever; relist on 410 or an untrusted stream."""
        kind = self.resource.kind
        while not self.stopped.is_set():
            verb = "watch" if self.resource_version else "list"
            try:
                if not self.resource_version:
                    self._list()
                    self.outage.succeeded()
                    if self._absent:
                        self._absent = False
                        log.info(
                            "%s: %s.%s is served now",
                            kind,
                            self.resource.plural,
                            self.resource.group,
                        )
                    if self.on_listed is not None:
                        self.on_listed(kind)
                    verb = "watch"
                began = time.monotonic()
                events = self._watch()
                self._denied = ""
                if events or time.monotonic() - began >= MIN_QUIET_WATCH:
                    self.backoff.reset()
                    continue
                # A watch that ends at once with nothing in it (a proxy closing streams)
                # must not become a busy loop of requests.
            except Expired as exc:
                log.info("%s: %s; relisting", kind, exc)
                self.resource_version = ""
                continue
            except Untrusted as exc:
                log.warning("%s: %s; relisting", kind, exc)
                self.resource_version = ""
            except APIError as exc:
                if exc.code == 404 and self.resource.optional and not self.resource_version:
                    self._missing()
                    self.stopped.wait(self.missing_retry)
                    continue
                self._log_api_error(verb, exc)
            except Exception as exc:  # network errors of every kind: keep the last state
                if not self.stopped.is_set():
                    delay = self.backoff.next()
                    self.outage.failed(kind, verb, exc, delay)
                    self.stopped.wait(delay)
                continue
            self.stopped.wait(self.backoff.next())

    def _missing(self) -> None:
        """The resource is not served (its CRD is not installed): say so once, count it
        as listed and empty so the server gets ready, and look again now and then."""
        r = self.resource
        if not self._absent:
            self._absent = True
            with _ABSENT_LOCK:  # one line per API group, not one per kind of it
                first = (id(self.sink), r.group) not in _ABSENT
                _ABSENT.add((id(self.sink), r.group))
            if first:
                log.warning(
                    "API group %s is not served (its CRDs are not installed?): no %s names "
                    "until it is; checking again every %.0f s",
                    r.group,
                    r.kind if r.group != GATEWAY_API else "Gateway API",
                    self.missing_retry,
                )
            self.sink.replace(r.kind, [])
            if self.on_listed is not None:
                self.on_listed(r.kind)

    def stop(self) -> None:
        """Ask :meth:`run` to return; an open watch is closed under it."""
        self.stopped.set()
        with self._lock:
            response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # already closed is closed enough
                response.shutdown()  # urllib3 >= 2.3: unblocks a read in another thread

    def _log_api_error(self, verb: str, exc: APIError) -> None:
        r = self.resource
        if exc.code in (401, 403):
            denied = f"{verb}:{exc.code}"
            if denied != self._denied:  # once per streak, but loud
                self._denied = denied
                group = r.group or '"" (core)'
                log.error(
                    "%s: permission denied (%d): cannot %s %s in API group %s at the "
                    "cluster scope; grant verbs list and watch on it to this server's "
                    "service account. Server said: %s",
                    r.kind,
                    exc.code,
                    verb,
                    r.plural,
                    group,
                    exc,
                )
            return
        log.warning("%s: %s failed: %s", r.kind, verb, exc)

    # ---- HTTP -------------------------------------------------------------------------

    def _get(self, params: list[tuple[str, str]], read_timeout: float) -> Any:
        method, url, headers, _, _ = self.api.param_serialize(
            "GET",
            self.resource.path,
            query_params=params,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(
            method,
            url,
            header_params=headers,
            _request_timeout=(CONNECT_TIMEOUT, read_timeout),
        ).response
        if response.status != 200:
            body = response.data
            response.release_conn()
            raise _status_error(response.status, body)
        return response

    def _list(self) -> None:
        """Paginated LIST; the whole kind goes to the sink in one replace."""
        records: list[Record] = []
        params = [("limit", str(self.page_size))]
        if self.resource.field_selector:
            params.append(("fieldSelector", self.resource.field_selector))
        token = ""
        while True:
            page_params = params + ([("continue", token)] if token else [])
            response = self._get(page_params, LIST_READ_TIMEOUT)
            try:
                page = json.loads(response.data)
            except ValueError as exc:
                raise Untrusted(f"LIST answered something that is not JSON: {exc}") from None
            finally:
                response.release_conn()
            item_kind = self.resource.kind
            for obj in page.get("items") or ():
                if isinstance(obj, dict):
                    obj["kind"] = item_kind  # the API omits it on list items
                    record = self._convert(obj)
                    if record is not None:
                        records.append(record)
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                self.resource_version = str(meta.get("resourceVersion") or "")
                break
        self.sink.replace(self.resource.kind, records)

    def _convert(self, obj: dict[str, Any]) -> Record | None:
        record, error = convert_or_error(obj)
        if error:
            log.error("%s (skipped)", error)
        return record

    def _watch(self) -> int:
        """One WATCH from :attr:`resource_version` until the server ends it; returns how
        many events (bookmarks included) it carried."""
        timeout = random.uniform(*self.watch_timeout)
        params = [
            ("watch", "1"),
            ("resourceVersion", self.resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(int(timeout))),
        ]
        if self.resource.field_selector:
            params.append(("fieldSelector", self.resource.field_selector))
        # A stream silent past its own timeout (plus a grace) is hung: give it up and
        # watch again from the last resourceVersion applied.
        response = self._get(params, timeout + min(READ_GRACE, timeout))
        self.outage.succeeded()
        with self._lock:
            self._response = response
        events = 0
        try:
            if self.stopped.is_set():
                return events
            for line in _lines(response):
                self._event(line)
                events += 1
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
        return events

    def _event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
            meta = obj.get("metadata") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Untrusted(f"malformed watch event: {line[:200]!r}") from None
        if kind == "ERROR":
            raise _status_error(int(obj.get("code") or 500), json.dumps(obj).encode())
        rv = meta.get("resourceVersion")
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = str(rv)
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            raise Untrusted(f"unknown watch event type {kind!r}")
        obj.setdefault("kind", self.resource.kind)
        if kind == "DELETED":
            self.sink.delete(self.resource.kind, _key(self.resource.kind, obj))
        else:
            record = self._convert(obj)
            if record is not None:
                self.sink.upsert(record)
            elif obj.get("addressType") == "FQDN":
                self.sink.delete(self.resource.kind, _key(self.resource.kind, obj))
        if rv:
            self.resource_version = str(rv)


def _lines(response: Any) -> Iterator[bytes]:
    """Newline-separated JSON events from a chunked watch response, as they arrive."""
    buffered = b""
    for chunk in response.stream(65536, decode_content=True):
        buffered += chunk
        while True:
            line, sep, rest = buffered.partition(b"\n")
            if not sep:
                break
            buffered = rest
            if line.strip():
                yield line
    # A partial last line means the stream was cut: the caller re-watches from the last
    # resourceVersion it applied, which that line did not move.

