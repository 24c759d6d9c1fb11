"""What each cluster answer depends on, and negative answers without the resolver.

The answer cache keeps answers per name and drops only those a change touches
(docs/design-answers.md). This module is the answer side of that contract: for a name of
the kubernetes zone it says which store *tags* (``store.Tag``) its answer reads; the store
says which tags a change touched. The two sides follow the resolver's reading of the store
(docs/behaviour.md 1-6): every rule in ``resolver.py`` that reads an index has its tag here.

Pure: no I/O, no clock, no third-party imports.
"""

from __future__ import annotations

from .names import find_zone, pod_label_to_ip, reverse_to_ip
from .records import ServiceKind
from .resolver import Answer, PodMode, ZoneConfig, is_reverse_zone
from .rr import QType
from .store import ANY, APEX, Store, Tag

STRUCTURAL = ("dns-version", "dns")  # top labels the resolver answers from the config only


def dependencies(
    store: Store, qname: str, config: ZoneConfig, answer: Answer | None = None
) -> tuple[Tag, ...]:
    """The tags the answer to ``qname`` (any qtype) reads, given the store as it is now.

    ``answer``: the answer given; the tags of in-zone CNAME targets in it (ExternalName,
    docs/behaviour.md 4) are added. A name outside ``config.zones`` gets ``("any",)``: dropped on
    every change. An empty tuple: the answer depends on the configuration only.
    """
    tags = list(_name_tags(store, qname, config))
    if answer is not None:
        for rr in answer.answer:
            if rr.rtype == QType.CNAME and isinstance(rr.rdata, str):
                tags.extend(_name_tags(store, rr.rdata, config))
    return tuple(dict.fromkeys(tags))


def _name_tags(store: Store, qname: str, config: ZoneConfig) -> tuple[Tag, ...]:
    zone = find_zone(qname, config.zones)
    if zone is None:
        return (ANY,)
    if qname == zone:
        return (APEX,)  # SOA serial, NS targets from the kube-dns service
    if is_reverse_zone(zone):
        ip = reverse_to_ip(qname)
        return () if ip is None else (("ip", ip),)
    labels = qname[: -len(zone) - 1].split(".")
    top = labels[-1]
    rest = labels[:-1]
    if top == "svc":
        if not rest:
            return ()
        namespace = rest[-1]
        if len(rest) == 1:
            return (("ns", namespace),)
        name = rest[-2]
        svc = store.services.get((namespace, name))
        # A ClusterIP service's own name and its _port._proto names read the Service only;
        # a headless service's names and every endpoint name read its ready endpoints.
        if svc is None:
            return (("nx", namespace),)  # as long as no such service appears
        namespace, name = svc.namespace, svc.name  # the store's strings: kept once
        if svc.kind is ServiceKind.CLUSTER_IP and len(rest) != 3:
            return (("ns", namespace), ("svc", namespace, name))
        return (("ns", namespace), ("svc", namespace, name), ("eps", namespace, name))
    if top == "pod":
        if not rest:
            return ()
        namespace = rest[-1]
        if config.pods is PodMode.VERIFIED and len(rest) == 2:
            parsed = pod_label_to_ip(rest[0])
            if parsed is not None:
                return (("ns", namespace), ("pod", parsed[0]))
        return (("ns", namespace),)
    return ()  # dns-version, ns.dns, and names the zone never has: the config decides


def quick_negative(
    store: Store, qname: str, config: ZoneConfig
) -> tuple[str, tuple[Tag, ...]] | None:
    """``(zone, tags)`` when ``qname`` is certainly NXDOMAIN in a forward zone of
    ``config``, decided with a few dict lookups (the bulk of search-path traffic and of
    random-name floods); None when the full resolver must decide.

    The same answers as ``resolver.resolve`` (docs/behaviour.md 1, 2, 5, 9): a name under
    ``svc.<zone>`` or ``pod.<zone>`` in a namespace that does not exist (or is not
    exposed), a name under ``<ns>.svc.<zone>`` whose service does not exist, a name whose
    top label is none the zone has. Not before the store is synced (SERVFAIL then,
    docs/behaviour.md 13), not in a ``fallthrough`` zone (the NXDOMAIN is handed on).
    """
    if not store.synced:
        return None
    zone = find_zone(qname, config.zones)
    if zone is None or qname == zone or is_reverse_zone(zone):
        return None
    if config.fallthrough and find_zone(qname, config.fallthrough):
        return None
    return negative_below(store, qname[: -len(zone) - 1].split("."), zone, config)


def negative_below(
    store: Store, labels: list[str], zone: str, config: ZoneConfig
) -> tuple[str, tuple[Tag, ...]] | None:
    """:func:`quick_negative` for a name already placed: ``labels`` (lower-case text, the
    name's labels left of ``zone``, at least one), ``zone`` a forward zone of ``config``
    outside any ``fallthrough``, the store synced. The one place the decision is written
    (the wire-level fast path, ``plugins.kubernetes.Kubernetes.wire_negative``, comes here
    too)."""
    top = labels[-1]
    if top == "svc" or top == "pod":
        if len(labels) < 3:
            return None
        namespace = labels[-2]
        # One tag for every negative answer under a namespace: ("nx", ns) is touched when
        # the namespace or one of its services appears or goes (a tag per name would cost
        # more than the answer under a flood of random names).
        tags = (("nx", namespace),)
        served = config.namespaces  # ZoneConfig.exposes inlined: a flood comes here per name
        if namespace not in store.namespaces or (served and namespace not in served):
            return zone, tags
        if top == "pod":
            return (zone, tags) if config.pods is PodMode.DISABLED else None
        name = labels[-3]
        if (namespace, name) not in store.services:
            return zone, tags
        if len(labels) > 5:
            return zone, (("ns", namespace), ("svc", namespace, name))
        return None
    if top in STRUCTURAL:
        return None
    return zone, ()
