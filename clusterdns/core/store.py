"""The in-memory cache of cluster state: records from every source, the indexes answers use.

One thread (the event loop's) mutates a Store; the resolver reads it in that same thread,
so a reader always sees one consistent state. Every effective change bumps ``generation``.
A change that alters some answer also sets ``serial`` (the SOA serial: Unix time, in
seconds, of the last such change; CoreDNS ``Serial``) and tells every registered answer
cache which *tags* it touched (docs/design-answers.md): ``("ns", ns)`` a namespace's
existence, ``("nx", ns)`` the negative answers under a namespace (touched when it appears
or goes, or one of its services appears), ``("svc", ns, name)`` a Service,
``("eps", ns, name)`` a service's ready endpoints, ``("ip", ip)`` the reverse name of an
address, ``("pod", ip)`` a live pod's IP
(verified pod records), ``("mcs", ns, name)`` a ServiceImport and the ready endpoints of
its multicluster EndpointSlices (its appearance too: the name's negative answers), plus
:data:`APEX` and :data:`ANY` on every such change. A change no answer reads (a pod's
phase, a not-ready endpoint's hostname, an identical re-send) tells nobody anything.

Several sources (``zones/`` manifests, the API watch) feed one store. Each source owns its
own objects; where two sources hold the same object, the one registered last wins.
"""

from __future__ import annotations

import weakref
from collections.abc import Generator, Iterable, Iterator, MutableMapping
from typing import Any, Generic, Protocol, TypeVar, Union

from .exposure import EXPOSURE_KINDS, ExposureIndex
from .records import (
    ClustersetEndpoint,
    EndpointSlice,
    Namespace,
    Pod,
    ReadyEndpoint,
    Record,
    Service,
    ServiceImport,
)

Key = Any  # str for Namespaces, (namespace, name) otherwise
SvcKey = tuple[str, str]

KINDS = ("Namespace", "Service", "EndpointSlice", "Pod", *EXPOSURE_KINDS, "ServiceImport")

Tag = Union[str, tuple[str, ...]]  # noqa: UP007 - a runtime alias
"""What an answer depends on / what a change touched (see the module docstring)."""
APEX: Tag = "apex"
"""Touched by every answer-changing change: the zone apex (SOA serial, NS targets)."""
ANY: Tag = "any"
"""Touched by every answer-changing change: answers whose dependencies are not known."""


class Listener(Protocol):
    """An answer cache: told which tags a change touched (None: everything)."""

    def invalidate(self, tags: set[Tag] | None) -> None:
        """Drop (or update) the answers that depend on any of ``tags``; all if None."""

T = TypeVar("T")
K = TypeVar("K")


class _Many(Generic[T]):
    """Several values under one index key (rare: most IPs belong to one object)."""

    __slots__ = ("items",)

    def __init__(self, items: list[T]) -> None:
        self.items = items


Multi = Union[T, _Many[T]]  # noqa: UP007 - a generic alias over a TypeVar
"""An index value: the value itself (the common case, no container), or several."""


class _ByNamespace(MutableMapping[Key, Record]):
    """The table of a kind with very many objects (Pods): a mapping by ``(namespace,
    name)`` like the other kinds' dicts, held as one dict of names per namespace, so that
    no key tuple is kept per object and the dicts have str keys (100,000 pods: 10.3 ->
    2.5 MB, issue 19). Iterating makes the key tuples on the fly.

    Written from one thread (the store's); :meth:`snapshot` may be read from another.
    """

    __slots__ = ("_by_ns", "_len")

    def __init__(self) -> None:
        self._by_ns: dict[str, dict[str, Record]] = {}
        self._len = 0

    def __getitem__(self, key: Key) -> Record:
        return self._by_ns[key[0]][key[1]]

    def get(self, key: Key, default: Any = None) -> Any:
        names = self._by_ns.get(key[0])
        return default if names is None else names.get(key[1], default)

    def __contains__(self, key: object) -> bool:
        names = self._by_ns.get(key[0]) if isinstance(key, tuple) and len(key) == 2 else None
        return names is not None and key[1] in names  # type: ignore[index]

    def __setitem__(self, key: Key, record: Record) -> None:
        namespace, name = key
        names = self._by_ns.get(namespace)
        if names is None:
            names = self._by_ns[namespace] = {}
        if name not in names:
            self._len += 1
        names[name] = record

    def __delitem__(self, key: Key) -> None:
        namespace, name = key
        names = self._by_ns[namespace]
        del names[name]
        self._len -= 1
        if not names:
            del self._by_ns[namespace]

    def __iter__(self) -> Iterator[Key]:
        for namespace, names in self._by_ns.items():
            for name in names:
                yield (namespace, name)

    def __len__(self) -> int:
        return self._len

    def copy(self) -> _ByNamespace:
        """A shallow copy (the same records)."""
        out = _ByNamespace()
        out._by_ns = {namespace: dict(names) for namespace, names in self._by_ns.items()}
        out._len = self._len
        return out

    def snapshot(self) -> list[Record]:
        """Every record, copied a namespace at a time in one C-level call each: safe from
        another thread while the store's thread writes (a namespace that comes or goes
        meanwhile may be missed or seen empty)."""
        out: list[Record] = []
        for names in list(self._by_ns.values()):
            out.extend(list(names.values()))
        return out


Table = Union[dict[Key, Record], _ByNamespace]  # noqa: UP007 - a runtime alias
"""A kind's objects by key."""


def _table(kind: str) -> Table:
    """An empty table for ``kind``: pods by namespace, the rest one dict."""
    return _ByNamespace() if kind == "Pod" else {}


def record_key(record: Record) -> Key:
    """The identity of a record within its kind: name, or ``(namespace, name)``."""
    if isinstance(record, Namespace):
        return record.name
    return (record.namespace, record.name)


class Store:
    """Cluster state and the indexes of docs/behaviour.md: services by (namespace, name), ready
    endpoints by service, ClusterIPs and endpoint addresses by IP (PTR), pods by IP
    (verified pod records), namespaces.

    Not thread-safe by design: call mutators from one thread only.
    """

    def __init__(self) -> None:
        self.generation = 0
        self.serial = 0
        self._sources: dict[str, dict[str, Table]] = {}
        self._unsynced: set[str] = set()
        self._merged: dict[str, Table] = {kind: _table(kind) for kind in KINDS}
        # derived indexes
        self.namespaces: set[str] = set()
        self.services: dict[SvcKey, Service] = {}
        # The slices of each service: one for most (a service's slice holds up to 100
        # endpoints), kept bare (Multi), not as a set of one: 10,000 sets cost 2.5 MB.
        self._slices_by_service: dict[SvcKey, Multi[Key]] = {}
        # The IP indexes. Values are bare (Multi), not sets: 100,000 endpoint IPs with a set
        # each cost ~20 MB. A service's ready addresses are not kept beside them: a change
        # unindexes those its service had before it (``before``), computed anyway.
        self._cluster_ips: dict[str, Multi[SvcKey]] = {}
        self._endpoint_ips: dict[str, Multi[SvcKey]] = {}
        # pod IP -> the namespace of each live pod that has it: all that verified pod
        # records need (docs/behaviour.md 5). Usually one namespace, kept as the bare string.
        self._pod_ips: dict[str, Multi[str]] = {}
        # Multi-cluster services (KEP-1645): imports by (namespace, name) and the slices
        # labelled multicluster.kubernetes.io/service-name by the import they back.
        self.imports: dict[SvcKey, ServiceImport] = {}
        self._mc_slices: dict[SvcKey, set[Key]] = {}
        # Ingress and Gateway API host names (k8s_gateway): a separate index.
        self.exposure = ExposureIndex(self._merged)
        # tags touched by the mutation under way, and who is told about them
        self._touched: set[Tag] = set()
        self._listeners: weakref.WeakSet[Listener] = weakref.WeakSet()

    def listen(self, listener: Listener) -> None:
        """Tell ``listener`` about every answer-changing change (held weakly: a cache
        dropped by a reload stops listening by itself)."""
        self._listeners.add(listener)

    def _notify(self, tags: set[Tag] | None) -> None:
        for listener in list(self._listeners):
            listener.invalidate(tags)

    # ---- sources and sync -------------------------------------------------------------

    def add_source(self, source: str, *, synced: bool = False) -> None:
        """Register a source by name. Until :meth:`mark_synced` is called for every
        registered source, :attr:`synced` is False (behaviour.md 13: SERVFAIL, not NXDOMAIN)."""
        if source not in self._sources:
            if not self._sources:
                # One source: its dicts are the merged state (no second copy of the index).
                self._sources[source] = self._merged
            else:
                if len(self._sources) == 1:
                    (first,) = self._sources
                    self._sources[first] = {k: v.copy() for k, v in self._merged.items()}
                self._sources[source] = {kind: _table(kind) for kind in KINDS}
        if not synced:
            self._unsynced.add(source)

    def mark_synced(self, source: str) -> None:
        """Record that ``source`` has listed everything once (answers may change: NXDOMAIN
        stops being SERVFAIL, so the generation moves)."""
        if source in self._unsynced:
            self._unsynced.discard(source)
            self.generation += 1
            self._notify(None)  # every negative answer may change (SERVFAIL -> NXDOMAIN)

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
        steps = self.replace_steps(source, kind, records, now)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return bool(done.value)

    def replace_steps(
        self, source: str, kind: str, records: Iterable[Record], now: float, step: int = 1000
    ) -> Generator[None, None, bool]:
        """:meth:`replace` in steps of about ``step`` objects: a generator that yields
        between steps and returns True when the effective state changed.

        For relists of 100,000 objects on the serving thread: the caller resumes it a
        step per loop turn, so queries are answered in between (issue 11). Between steps
        the store holds some objects from before the relist and some from after it, each
        one whole, as if their watch events had arrived one by one. The caller must not
        apply other changes of ``source``/``kind`` until the generator is exhausted.
        Raises KeyError for an unknown source or kind.
        """
        objects = self._sources[source][kind]
        new = _table(kind)
        for count, record in enumerate(records, 1):
            new[record_key(record)] = record
            if count % step == 0:
                yield
        stale = []
        for count, key in enumerate(list(objects), 1):
            if key not in new:
                stale.append(key)
            if count % (step * 10) == 0:
                yield
        changed = False
        for count, key in enumerate(stale, 1):
            changed |= self._bump(self._set(source, kind, key, None), now)
            if count % step == 0:
                yield
        for count, (key, record) in enumerate(new.items(), 1):
            changed |= self._bump(self._set(source, kind, key, record), now)
            if count % step == 0:
                yield
        return changed

    def upsert(self, source: str, record: Record, now: float) -> bool:
        """Add or update one record of ``source``; True when the effective state changed."""
        return self._bump(self._set(source, type(record).__name__, record_key(record), record), now)

    def delete(self, source: str, kind: str, key: Key, now: float) -> bool:
        """Delete one object of ``source`` by kind and key; True when the state changed."""
        return self._bump(self._set(source, kind, key, None), now)

    def count(self, kind: str) -> int:
        """How many objects of ``kind`` the merged state holds."""
        return len(self._merged[kind])

    def _bump(self, changed: bool, now: float) -> bool:
        if changed:
            self.generation += 1
        touched = self._touched
        if touched:
            self._touched = set()
            self.serial = int(now)
            touched.add(APEX)
            touched.add(ANY)
            self._notify(touched)
        return changed

    def _set(self, source: str, kind: str, key: Key, record: Record | None) -> bool:
        """Set (None: remove) one object of one source; True if the merged state changed.
        The tags of the answers it changes go to ``self._touched``."""
        objects = self._sources[source][kind]
        if objects.get(key) == record:
            return False
        merged = self._merged[kind]
        old = merged.get(key)
        before = self._ready_before(old, record) if kind == "EndpointSlice" else None
        if record is None:
            del objects[key]
        else:
            objects[key] = record
        if objects is merged:
            new = record
        else:
            new = None
            for each in self._sources.values():  # registration order: the last one wins
                new = each[kind].get(key, new)
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
            assert before is not None
            self._on_slice(key, old, new, before)  # type: ignore[arg-type]
        elif kind == "Pod":
            self._on_pod(key, old, new)  # type: ignore[arg-type]
        elif kind == "ServiceImport":
            self._on_import(key, old, new)  # type: ignore[arg-type]
        else:  # Ingress, Gateway, routes: host names k8s_gateway answers
            self.exposure.on_change(kind, key, old, new)
            self._touched.add(ANY)
        return True

    def _on_import(
        self, key: SvcKey, old: ServiceImport | None, new: ServiceImport | None
    ) -> None:
        self._touched.add(("mcs", *key))
        if new is None:
            self.imports.pop(key, None)
        else:
            self.imports[key] = new

    def _on_mc_slice(self, key: Key, old: EndpointSlice | None, new: EndpointSlice | None) -> None:
        """Index a slice under the ServiceImport its multicluster label names."""
        for slice_ in (old, new):
            if slice_ is not None and slice_.mc_service:
                svc = (slice_.namespace, slice_.mc_service)
                members = self._mc_slices.setdefault(svc, set())
                if slice_ is new:
                    members.add(key)
                else:
                    members.discard(key)
                    if not members:
                        del self._mc_slices[svc]
                self._touched.add(("mcs", *svc))

    def _ready_before(
        self, *slices: Record | None
    ) -> dict[SvcKey, list[ReadyEndpoint]]:
        """The ready endpoints, before a change, of the services these slices belong to."""
        return {
            svc: self.ready_endpoints(*svc)
            for svc in {
                (s.namespace, s.service)
                for s in slices
                if isinstance(s, EndpointSlice) and s.service
            }
        }

    def _on_namespace(self, key: str, new: Record | None) -> None:
        self._touched.add(("ns", key))
        self._touched.add(("nx", key))
        if new is None:
            self.namespaces.discard(key)
        else:
            self.namespaces.add(key)

    def _on_service(self, key: SvcKey, old: Service | None, new: Service | None) -> None:
        touched = self._touched
        touched.add(("svc", *key))
        if old is None:  # a name appears: the namespace's negative answers may change
            touched.add(("nx", key[0]))
        for each in (old, new):
            if each is not None:
                touched.update(("ip", ip) for ip in each.cluster_ips)
        if old is not None:
            _unindex(self._cluster_ips, old.cluster_ips, key)
        if new is None:
            self.services.pop(key, None)
        else:
            self.services[key] = new
            _index(self._cluster_ips, new.cluster_ips, key)

    def _on_slice(
        self,
        key: Key,
        old: EndpointSlice | None,
        new: EndpointSlice | None,
        before: dict[SvcKey, list[ReadyEndpoint]],
    ) -> None:
        if (old is not None and old.mc_service) or (new is not None and new.mc_service):
            self._on_mc_slice(key, old, new)
        affected = set()
        for slice_ in (old, new):
            if slice_ is not None and slice_.service:
                svc = (slice_.namespace, slice_.service)
                affected.add(svc)
                if slice_ is new:
                    _index(self._slices_by_service, (svc,), key)
                else:
                    _unindex(self._slices_by_service, (svc,), key)
        for svc in affected:
            # What to unindex: the ready endpoints before the change. A service missing
            # from ``before`` is one only another source's slice (now winning) names: it
            # gains this slice, so its addresses only grow, and re-indexing them is enough.
            after = self._rebuild_ready(svc, before.get(svc, ()))
            was = before.get(svc)
            if was == after:
                continue  # no ready endpoint changed: no answer did
            self._touched.add(("eps", *svc))
            if was is None:  # not known before (another source's slice): every address
                self._touched.update(("ip", ep.address) for ep in after)
                continue
            old_eps = {ep.address: ep for ep in was}
            new_eps = {ep.address: ep for ep in after}
            self._touched.update(
                ("ip", ip)
                for ip in old_eps.keys() | new_eps.keys()
                if old_eps.get(ip) != new_eps.get(ip)
            )

    def _rebuild_ready(
        self, svc: SvcKey, was: Iterable[ReadyEndpoint]
    ) -> list[ReadyEndpoint]:
        """Re-index a service's ready addresses (``was``: its ready endpoints before the
        change); return its ready endpoints."""
        _unindex(self._endpoint_ips, (ep.address for ep in was), svc)
        if svc not in self._slices_by_service:
            return []
        ready = self.ready_endpoints(*svc)
        _index(self._endpoint_ips, (ep.address for ep in ready), svc)
        return ready

    def _on_pod(self, key: SvcKey, old: Pod | None, new: Pod | None) -> None:
        # Answers read a pod only as "a live pod in this namespace has this IP": phase,
        # hostname and subdomain changes touch nothing.
        old_ips = old.ips if old is not None and not old.deleting else ()
        new_ips = new.ips if new is not None and not new.deleting else ()
        if old_ips == new_ips:
            return
        self._touched.update(("pod", ip) for ip in set(old_ips) ^ set(new_ips))
        if old is not None and not old.deleting:
            _unindex(self._pod_ips, old.ips, old.namespace)
        if new is not None and not new.deleting:
            _index(self._pod_ips, new.ips, new.namespace, unique=False)

    # ---- queries (the resolver's view) ------------------------------------------------

    def ready_endpoints(self, namespace: str, service: str) -> list[ReadyEndpoint]:
        """Ready addresses of a service over all its EndpointSlices (by slice name), one per
        address: an address in two slices (controller skew) counts once (docs/behaviour.md 3.1).

        Built on demand, not stored: answers are cached, and 100,000 endpoints would
        otherwise be held twice.
        """
        members = self._slices_by_service.get((namespace, service))
        if members is None:
            return []
        seen: set[str] = set()
        ready: list[ReadyEndpoint] = []
        slices = self._merged["EndpointSlice"]
        for slice_key in sorted(_values(members)):
            slice_: EndpointSlice = slices[slice_key]  # type: ignore[assignment]
            for ep in slice_.endpoints:
                if ep.ready:
                    for address in ep.addresses:
                        if address not in seen:
                            seen.add(address)
                            ready.append(
                                ReadyEndpoint(
                                    address, slice_.family, ep.hostname, ep.pod_name, slice_.ports
                                )
                            )
        return ready

    def clusterset_endpoints(self, namespace: str, name: str) -> list[ClustersetEndpoint]:
        """Ready addresses behind the ServiceImport ``namespace/name`` over the
        EndpointSlices labelled ``multicluster.kubernetes.io/service-name: name`` (by slice
        name), one per (cluster ID, address) (KEP-1645 DNS specification 2.4)."""
        members = self._mc_slices.get((namespace, name))
        if not members:
            return []
        seen: set[tuple[str, str]] = set()
        ready: list[ClustersetEndpoint] = []
        slices = self._merged["EndpointSlice"]
        for slice_key in sorted(members):
            slice_: EndpointSlice = slices[slice_key]  # type: ignore[assignment]
            for ep in slice_.endpoints:
                if not ep.ready:
                    continue
                for address in ep.addresses:
                    if (slice_.cluster_id, address) not in seen:
                        seen.add((slice_.cluster_id, address))
                        ready.append(
                            ClustersetEndpoint(
                                slice_.cluster_id, address, slice_.family, ep.hostname,
                                slice_.ports,
                            )
                        )
        return ready

    def services_with_cluster_ip(self, ip: str) -> list[SvcKey]:
        """Services that have ``ip`` (canonical text) as a ClusterIP, sorted."""
        return sorted(_values(self._cluster_ips.get(ip)))

    def services_with_endpoint(self, ip: str) -> list[SvcKey]:
        """Services that have ``ip`` as a ready endpoint address, sorted."""
        return sorted(_values(self._endpoint_ips.get(ip)))

    def pod_names(self) -> dict[str, tuple[str, str]]:
        """Pod IP -> (namespace, name) of the live pods (the traffic view's attribution).
        Safe from another thread: the pod table is copied first, a namespace at a time in
        one C-level call each (:meth:`_ByNamespace.snapshot`)."""
        out: dict[str, tuple[str, str]] = {}
        pods = self._merged["Pod"]
        for pod in pods.snapshot() if isinstance(pods, _ByNamespace) else list(pods.values()):
            if isinstance(pod, Pod) and not pod.deleting:
                for ip in pod.ips:
                    out[ip] = (pod.namespace, pod.name)
        return out

    def pod_namespace(self, ip: str) -> str | None:
        """The namespace of a live pod with ``ip`` (autopath's client), or None."""
        values = _values(self._pod_ips.get(ip))
        return values[0] if values else None

    def has_pod_ip(self, namespace: str, ip: str) -> bool:
        """Whether a pod in ``namespace``, not being deleted, has ``ip`` among its IPs."""
        return namespace in _values(self._pod_ips.get(ip))


def _values(entry: Multi[T] | None) -> list[T]:
    if entry is None:
        return []
    return entry.items if isinstance(entry, _Many) else [entry]


def _index(index: dict[K, Multi[T]], ips: Iterable[K], value: T, unique: bool = True) -> None:
    """Add ``value`` under each IP (or other key); with ``unique``, at most once per key."""
    for ip in ips:
        entry = index.get(ip)
        if entry is None:
            index[ip] = value
        elif isinstance(entry, _Many):
            if not unique or value not in entry.items:
                entry.items.append(value)
        elif not unique or entry != value:
            index[ip] = _Many([entry, value])


def _unindex(index: dict[K, Multi[T]], ips: Iterable[K], value: T) -> None:
    """Remove one occurrence of ``value`` under each IP (or other key)."""
    for ip in ips:
        entry = index.get(ip)
        if isinstance(entry, _Many):
            if value in entry.items:
                entry.items.remove(value)
            if len(entry.items) == 1:
                index[ip] = entry.items[0]
        elif entry == value:
            del index[ip]
