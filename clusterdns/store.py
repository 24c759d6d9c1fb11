"""The in-memory cache of cluster state: records from every source, the indexes answers use.

One thread (the event loop's) mutates a Store; the resolver reads it in that same thread,
so a reader always sees one consistent state. Every effective change bumps ``generation``
(the answer cache is tied to it) and sets ``serial`` (the SOA serial: Unix time, in
seconds, of the last change; CoreDNS ``Serial``).

Several sources (``zones/`` manifests, the API watch) feed one store. Each source owns its
own objects; where two sources hold the same object, the one registered last wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .records import (
    EndpointSlice,
    Namespace,
    Pod,
    ReadyEndpoint,
    Record,
    Service,
)

Key = Any  # str for Namespaces, (namespace, name) otherwise
SvcKey = tuple[str, str]

KINDS = ("Namespace", "Service", "EndpointSlice", "Pod")


def record_key(record: Record) -> Key:
    """The identity of a record within its kind: name, or ``(namespace, name)``."""
    if isinstance(record, Namespace):
        return record.name
    return (record.namespace, record.name)


class Store:
    """Cluster state and the indexes of SPEC.md: services by (namespace, name), ready
    endpoints by service, ClusterIPs and endpoint addresses by IP (PTR), pods by IP
    (verified pod records), namespaces.

    Not thread-safe by design: call mutators from one thread only.
    """

    def __init__(self) -> None:
        self.generation = 0
        self.serial = 0
        self._sources: dict[str, dict[str, dict[Key, Record]]] = {}
        self._unsynced: set[str] = set()
        self._merged: dict[str, dict[Key, Record]] = {kind: {} for kind in KINDS}
        # derived indexes
        self.namespaces: set[str] = set()
        self.services: dict[SvcKey, Service] = {}
        self._slices_by_service: dict[SvcKey, set[Key]] = {}
        self._ready: dict[SvcKey, tuple[ReadyEndpoint, ...]] = {}
        self._cluster_ips: dict[str, set[SvcKey]] = {}
        self._endpoint_ips: dict[str, set[SvcKey]] = {}
        # (pod IP, namespace) -> how many live pods have it: all that verified pod records
        # need (SPEC.md 5), in one flat dict (no per-IP set: 100,000 pods, SPEC issue 6).
        self._pod_ips: dict[tuple[str, str], int] = {}

    # ---- sources and sync -------------------------------------------------------------

    def add_source(self, source: str, *, synced: bool = False) -> None:
        """Register a source by name. Until :meth:`mark_synced` is called for every
        registered source, :attr:`synced` is False (SPEC.md 13: SERVFAIL, not NXDOMAIN)."""
        self._sources.setdefault(source, {kind: {} for kind in KINDS})
        if not synced:
            self._unsynced.add(source)

    def mark_synced(self, source: str) -> None:
        """Record that ``source`` has listed everything once (answers may change: NXDOMAIN
        stops being SERVFAIL, so the generation moves)."""
        if source in self._unsynced:
            self._unsynced.discard(source)
            self.generation += 1

    @property
    def synced(self) -> bool:
        """True once every registered source has synced."""
        return not self._unsynced

    # ---- mutation ---------------------------------------------------------------------

    def replace(self, source: str, kind: str, records: Iterable[Record], now: float) -> bool:
        """Replace every ``kind`` object of ``source`` with ``records`` in one swap.

        ``now``: Unix time in seconds, the SOA serial if anything changed.
        Returns True when the effective state changed. Raises KeyError for an unknown
        source or kind.
        """
        objects = self._sources[source][kind]
        new = {record_key(r): r for r in records}
        changed = False
        for key in [k for k in objects if k not in new]:
            del objects[key]
            changed |= self._remerge(kind, key)
        for key, record in new.items():
            if objects.get(key) != record:
                objects[key] = record
                changed |= self._remerge(kind, key)
        return self._bump(changed, now)

    def upsert(self, source: str, record: Record, now: float) -> bool:
        """Add or update one record of ``source``; True when the effective state changed."""
        kind = type(record).__name__
        key = record_key(record)
        objects = self._sources[source][kind]
        if objects.get(key) == record:
            return False
        objects[key] = record
        return self._bump(self._remerge(kind, key), now)

    def delete(self, source: str, kind: str, key: Key, now: float) -> bool:
        """Delete one object of ``source`` by kind and key; True when the state changed."""
        objects = self._sources[source][kind]
        if objects.pop(key, None) is None:
            return False
        return self._bump(self._remerge(kind, key), now)

    def count(self, kind: str) -> int:
        """How many objects of ``kind`` the merged state holds."""
        return len(self._merged[kind])

    def _bump(self, changed: bool, now: float) -> bool:
        if changed:
            self.generation += 1
            self.serial = int(now)
        return changed

    def _remerge(self, kind: str, key: Key) -> bool:
        new: Record | None = None
        for objects in self._sources.values():  # registration order: the last one wins
            new = objects[kind].get(key, new)
        merged = self._merged[kind]
        old = merged.get(key)
        if old == new:
            return False
        if new is None:
            del merged[key]
        else:
            merged[key] = new
        if kind == "Namespace":
            self._on_namespace(key, new)
        elif kind == "Service":
            self._on_service(key, old, new)  # type: ignore[arg-type]
        elif kind == "EndpointSlice":
            self._on_slice(key, old, new)  # type: ignore[arg-type]
        else:
            self._on_pod(key, old, new)  # type: ignore[arg-type]
        return True

    def _on_namespace(self, key: str, new: Record | None) -> None:
        if new is None:
            self.namespaces.discard(key)
        else:
            self.namespaces.add(key)

    def _on_service(self, key: SvcKey, old: Service | None, new: Service | None) -> None:
        if old is not None:
            _unindex(self._cluster_ips, old.cluster_ips, key)
        if new is None:
            self.services.pop(key, None)
        else:
            self.services[key] = new
            _index(self._cluster_ips, new.cluster_ips, key)

    def _on_slice(self, key: Key, old: EndpointSlice | None, new: EndpointSlice | None) -> None:
        affected = set()
        for slice_ in (old, new):
            if slice_ is not None and slice_.service:
                svc = (slice_.namespace, slice_.service)
                affected.add(svc)
                members = self._slices_by_service.setdefault(svc, set())
                if slice_ is new:
                    members.add(key)
                else:
                    members.discard(key)
        for svc in affected:
            self._rebuild_ready(svc)

    def _rebuild_ready(self, svc: SvcKey) -> None:
        before = self._ready.pop(svc, ())
        _unindex(self._endpoint_ips, (ep.address for ep in before), svc)
        members = self._slices_by_service.get(svc)
        if not members:
            self._slices_by_service.pop(svc, None)
            return
        seen: set[str] = set()
        ready: list[ReadyEndpoint] = []
        slices = self._merged["EndpointSlice"]
        for slice_key in sorted(members):
            slice_: EndpointSlice = slices[slice_key]  # type: ignore[assignment]
            for ep in slice_.endpoints:
                if not ep.ready:
                    continue
                for address in ep.addresses:
                    if address not in seen:  # the same address in two slices: controller skew
                        seen.add(address)
                        ready.append(
                            ReadyEndpoint(
                                address, slice_.family, ep.hostname, ep.pod_name, slice_.ports
                            )
                        )
        if ready:
            self._ready[svc] = tuple(ready)
            _index(self._endpoint_ips, seen, svc)

    def _on_pod(self, key: SvcKey, old: Pod | None, new: Pod | None) -> None:
        index = self._pod_ips
        if old is not None and not old.deleting:
            for ip in old.ips:
                n = index.pop((ip, old.namespace), 1) - 1
                if n:
                    index[(ip, old.namespace)] = n
        if new is not None and not new.deleting:
            for ip in new.ips:
                index[(ip, new.namespace)] = index.get((ip, new.namespace), 0) + 1

    # ---- queries (the resolver's view) ------------------------------------------------

    def ready_endpoints(self, namespace: str, service: str) -> tuple[ReadyEndpoint, ...]:
        """Ready addresses of a service over all its EndpointSlices, de-duplicated."""
        return self._ready.get((namespace, service), ())

    def services_with_cluster_ip(self, ip: str) -> list[SvcKey]:
        """Services that have ``ip`` (canonical text) as a ClusterIP, sorted."""
        return sorted(self._cluster_ips.get(ip, ()))

    def services_with_endpoint(self, ip: str) -> list[SvcKey]:
        """Services that have ``ip`` as a ready endpoint address, sorted."""
        return sorted(self._endpoint_ips.get(ip, ()))

    def has_pod_ip(self, namespace: str, ip: str) -> bool:
        """Whether a pod in ``namespace``, not being deleted, has ``ip`` among its IPs."""
        return (ip, namespace) in self._pod_ips


def _index(index: dict[str, set[SvcKey]], ips: Iterable[str], key: SvcKey) -> None:
    for ip in ips:
        index.setdefault(ip, set()).add(key)


def _unindex(index: dict[str, set[SvcKey]], ips: Iterable[str], key: SvcKey) -> None:
    for ip in ips:
        keys = index.get(ip)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del index[ip]
