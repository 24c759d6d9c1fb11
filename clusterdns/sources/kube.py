"""The live source: list and watch the Kubernetes API into the store (docs/design.md).

The official ``kubernetes`` client gives configuration (kubeconfig or the in-cluster
service account), TLS and auth (:func:`api_client`). One reflector thread per kind
(:mod:`clusterdns.sources.reflector`) lists and watches one resource
(:mod:`clusterdns.sources.resources`) and hands what it learns to :class:`KubeSource`,
which schedules each change on the event loop (the only thread that mutates the store)
and applies a relist a slice of loop time per turn.

The reflector and resource names are re-exported here: ``from clusterdns.sources.kube
import KubeSource, Reflector, Backoff, api_client, SERVICES, ...`` keeps working.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from ..core.records import Record
from .memory import release_memory_off_loop
from .reflector import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    CONNECT_TIMEOUT,
    LIST_READ_TIMEOUT,
    MIN_QUIET_WATCH,
    MISSING_RETRY,
    PAGE_SIZE,
    READ_GRACE,
    WATCH_TIMEOUT,
    APIError,
    Backoff,
    Expired,
    OutageLog,
    Reflector,
    Sink,
    Untrusted,
    _server_of,
)
from .resources import (
    ENDPOINTSLICES,
    EXPOSURE_RESOURCES,
    GATEWAY_API,
    MULTICLUSTER_RESOURCES,
    NAMESPACES,
    OPTIONAL_RESOURCES,
    PODS,
    SERVICES,
    Resource,
)

__all__ = [
    "APIError",
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "CONNECT_TIMEOUT",
    "ENDPOINTSLICES",
    "EXPOSURE_RESOURCES",
    "MULTICLUSTER_RESOURCES",
    "Backoff",
    "Expired",
    "GATEWAY_API",
    "KubeSource",
    "LIST_READ_TIMEOUT",
    "MIN_QUIET_WATCH",
    "MISSING_RETRY",
    "NAMESPACES",
    "OutageLog",
    "PAGE_SIZE",
    "PODS",
    "READ_GRACE",
    "RELIST_SLICE",
    "RELIST_STEP",
    "Reflector",
    "Resource",
    "SERVICES",
    "SOURCE",
    "SWITCH_INTERVAL",
    "Sink",
    "Untrusted",
    "WATCH_TIMEOUT",
    "api_client",
]

log = logging.getLogger("clusterdns.kube")

RELIST_SLICE = 0.002  # seconds of relist work per loop turn, then queries get their turn
RELIST_STEP = 500  # objects between checks of the clock during a relist
SWITCH_INTERVAL = 0.001  # seconds a busy reflector thread may hold the GIL from the loop


def api_client(kubeconfig: str | None = None, server: str | None = None, context: str = "") -> Any:
    """A ``kubernetes.client.ApiClient`` from ``kubeconfig``, or from the pod's service
    account when ``kubeconfig`` is None (``KUBERNETES_SERVICE_HOST`` must be set then).

    ``server`` overrides the API URL (CoreDNS's ``endpoint``); ``context`` picks a
    kubeconfig context (default: the current one). Raises
    ``kubernetes.config.ConfigException`` when no configuration can be loaded.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context or None, client_configuration=configuration
        )
    else:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    if server:
        configuration.host = server
    # One attempt per request: the reflectors back off and retry themselves (urllib3's own
    # retries only add a warning line each).
    configuration.retries = 0
    return client.ApiClient(configuration)


SOURCE = "api"


class KubeSource:
    """Feeds a store from the API: one reflector thread per kind, changes applied on the
    event loop. Registers the store source ``"api"``, unsynced until every kind has
    listed once (docs/behaviour.md 13).

    ``kinds``: Namespaces, Services and EndpointSlices always; Pods when ``pods`` is set
    (verified pod records, autopath); the ``exposure`` kinds (Ingress, Gateway, routes:
    :data:`EXPOSURE_RESOURCES`) a k8s_gateway directive reads, and ServiceImports for a
    multicluster directive (:data:`MULTICLUSTER_RESOURCES`): every ``Plugin.kinds``.
    ``clock``: returns Unix time in seconds.
    """

    def __init__(
        self,
        store: Any,
        api: Any,
        loop: Any,
        *,
        pods: bool = False,
        clock: Any = None,
        watch_timeout: tuple[float, float] = WATCH_TIMEOUT,
        backoff_base: float = BACKOFF_BASE,
        exposure: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.loop = loop
        self.clock = clock or time.time
        self.resources = [NAMESPACES, SERVICES, ENDPOINTSLICES] + ([PODS] if pods else [])
        self.resources += [OPTIONAL_RESOURCES[kind] for kind in exposure]
        self._unlisted = {r.kind for r in self.resources}
        self.synced = threading.Event()
        store.add_source(SOURCE)
        outage = OutageLog(_server_of(api), synced=self.synced.is_set)
        self.reflectors = [
            Reflector(
                api,
                resource,
                self,
                watch_timeout=watch_timeout,
                backoff=Backoff(backoff_base),
                on_listed=self._listed,
                outage=outage,
            )
            for resource in self.resources
        ]
        self._threads: list[threading.Thread] = []
        # per kind with a relist being applied: the changes that arrived since, in order
        self._queued: dict[str, deque[tuple[Callable[..., None], tuple[Any, ...]]]] = {}

    def start(self) -> None:
        """Start one daemon thread per reflector.

        Sets the interpreter's switch interval to :data:`SWITCH_INTERVAL` (default 5 ms):
        a reflector converting a page of a LIST holds the GIL, and the serving loop waits
        for it up to that long on every wake-up (measured with bench/loop_gap.py).
        """
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        for reflector in self.reflectors:
            thread = threading.Thread(
                target=reflector.run, name=f"reflector-{reflector.resource.kind}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every reflector and wait up to ``timeout`` seconds in all for their threads
        (daemon threads: one stuck in a connect does not hold the process at exit)."""
        for reflector in self.reflectors:
            reflector.stop()
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))

    # Sink: called from reflector threads; the store changes on the loop only.
    def replace(self, kind: str, records: list[Record]) -> None:
        self.loop.call_soon_threadsafe(self._in_order, kind, self._apply_replace, (kind, records))

    def upsert(self, record: Record) -> None:
        kind = type(record).__name__
        self.loop.call_soon_threadsafe(self._in_order, kind, self._apply_upsert, (record,))

    def delete(self, kind: str, key: Any) -> None:
        self.loop.call_soon_threadsafe(self._in_order, kind, self._apply_delete, (kind, key))

    def idle(self) -> bool:
        """True when no relist is being applied (bench/loop_gap.py)."""
        return not self._queued

    def _in_order(self, kind: str, apply: Callable[..., None], args: tuple[Any, ...]) -> None:
        """Apply a change of ``kind`` now, or after the relist of ``kind`` under way."""
        queued = self._queued.get(kind)
        if queued is not None:
            queued.append((apply, args))
        else:
            apply(*args)

    def _apply_upsert(self, record: Record) -> None:
        self.store.upsert(SOURCE, record, self.clock())

    def _apply_delete(self, kind: str, key: Any) -> None:
        self.store.delete(SOURCE, kind, key, self.clock())

    def _apply_replace(self, kind: str, records: list[Record]) -> None:
        """A relist, applied a slice of the loop's time per turn (issue 11: a relist of
        100,000 pods must not stall answers); changes of ``kind`` that arrive meanwhile
        wait for it, in order."""
        self._queued[kind] = deque()
        steps = self.store.replace_steps(SOURCE, kind, records, self.clock(), RELIST_STEP)
        del records
        self._step(kind, steps)

    def _step(self, kind: str, steps: Generator[None, None, bool]) -> None:
        deadline = time.perf_counter() + RELIST_SLICE
        for _ in steps:
            if time.perf_counter() > deadline:
                self.loop.call_soon(self._step, kind, steps)
                return
        queued = self._queued.pop(kind)
        release_memory_off_loop()
        while queued:
            apply, args = queued.popleft()
            if kind in self._queued:  # another relist began: the rest waits for it
                self._queued[kind].append((apply, args))
            else:
                apply(*args)

    def _listed(self, kind: str) -> None:
        self.loop.call_soon_threadsafe(self._in_order, kind, self._apply_listed, (kind,))

    def _apply_listed(self, kind: str) -> None:
        self._unlisted.discard(kind)
        if not self._unlisted and not self.synced.is_set():
            self.store.mark_synced(SOURCE)
            self.synced.set()
            log.info(
                "synced with the API: %s",
                ", ".join(f"{r.kind} {self.store.count(r.kind)}" for r in self.resources),
            )
