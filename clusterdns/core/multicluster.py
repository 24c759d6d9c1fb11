"""Multi-cluster services DNS: the names of ``clusterset.local`` (KEP-1645), pure.

Answers from the ServiceImports (multicluster.x-k8s.io/v1alpha1) and the EndpointSlices
labelled ``multicluster.kubernetes.io/service-name`` in the store, as the KEP's DNS
specification (keps/sig-multicluster/1645-multi-cluster-services-api/specification.md)
and CoreDNS's external plugin github.com/coredns/multicluster (``multicluster.go``,
``parse.go``) define them:

- ``<svc>.<ns>.svc.<zone>`` A/AAAA: a ClusterSetIP import's ``spec.ips``; a Headless
  import's ready endpoint addresses over every cluster (spec 2.3.1, 2.4.1). A Headless
  import without ready endpoints is NXDOMAIN (2.4.1).
- ``<hostname>.<clusterid>.<svc>.<ns>.svc.<zone>`` A/AAAA: a Headless import's ready
  endpoints of that cluster whose hostname (else dashed IP) is ``<hostname>`` (2.4.1).
- ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` SRV: the import's ports of that name and
  protocol, target the service name (ClusterSetIP) or each endpoint name (Headless), with
  A/AAAA glue (2.3.2, 2.4.2); the bare service name gives every port (CoreDNS).
- ``dns-version.<zone>`` TXT (2.2); the apex SOA; NXDOMAIN and NODATA with the zone SOA
  (:func:`clusterdns.core.resolver.zone_soa`, the builder the cluster zone uses).

PTR (2.3.3, 2.4.3) is required by the KEP only for addresses that have no PTR record yet;
CoreDNS's plugin answers none ("reverse lookup is not supported") and neither does this
module: the cluster zone's reverse names stay the kubernetes resolver's.

Pure: no I/O, no clock, no third-party imports.
"""

from __future__ import annotations

from .names import dashed_ip, find_zone
from .records import ClustersetEndpoint, ImportKind, Port, ServiceImport
from .resolver import SCHEMA_VERSION_TTL, Answer, ZoneConfig, _Question
from .rr import RR, QType, Rcode
from .store import APEX, Store, Tag

CLUSTERSET_ZONE = "clusterset.local."  # KEP-1645: the clusterset zone must be this one
TTL = 5  # seconds: the multicluster plugin's defaultTTL (it has no ttl option)
SCHEMA_VERSION = "1.1.0"  # the multicluster plugin's DNSSchemaVersion (the KEP says 1.0.0)

_Item = tuple[str, tuple[str, ...], tuple[Port, ...]]  # (target name, addresses, ports)


def resolve_clusterset(
    store: Store,
    qname: str,
    qtype: int,
    zone: str = CLUSTERSET_ZONE,
    ttl: int = TTL,
    endpoints: bool = True,
) -> Answer | None:
    """Answer ``qname``/``qtype`` (class IN) of the clusterset ``zone`` from ``store``;
    None when ``qname`` is not in ``zone`` (the caller hands it on).

    ``qname`` and ``zone`` are lower-case and absolute; ``ttl`` is in seconds (records and
    the SOA minimum). Every answer is authoritative; negative ones carry the zone SOA
    (RFC 2308 3). Before the store has synced, NXDOMAIN becomes SERVFAIL, as the
    multicluster plugin answers before its watches have synced. Fallthrough is the
    caller's (``answer.rcode == Rcode.NXDOMAIN``). ``endpoints`` False (the plugin's
    ``noendpoints``): every name of a Headless import is NXDOMAIN, as the plugin answers
    without its endpoints watch.
    """
    if find_zone(qname, (zone,)) is None:
        return None
    q = _Question(store, qname, qtype, zone, ZoneConfig(zones=(zone,), ttl=ttl), 0)
    answer = _answer(q, store, qname, qtype, zone, endpoints)
    if answer.rcode == Rcode.NXDOMAIN and not store.synced:
        return Answer(Rcode.SERVFAIL, zone)
    return answer


def clusterset_dependencies(qname: str, zone: str = CLUSTERSET_ZONE) -> tuple[Tag, ...]:
    """The store tags the answer to ``qname`` (any qtype) reads (``core/depends.py``'s
    contract for the answer cache): the apex reads :data:`APEX`; ``<ns>.svc.<zone>`` the
    namespace; names at or under ``<svc>.<ns>.svc.<zone>`` the namespace and
    ``("mcs", ns, svc)`` (the import and its endpoints, touched also when it appears or
    goes). Other names depend on the configuration only: ``()``. A name outside ``zone``
    gets ``("any",)``."""
    if find_zone(qname, (zone,)) is None:
        return ("any",)
    if qname == zone:
        return (APEX,)
    labels = qname[: -len(zone) - 1].split(".")
    if labels[-1] != "svc" or len(labels) < 2:
        return ()
    namespace = labels[-2]
    if len(labels) == 2:
        return (("ns", namespace),)
    return (("ns", namespace), ("mcs", namespace, labels[-3]))


def _answer(
    q: _Question, store: Store, qname: str, qtype: int, zone: str, endpoints: bool
) -> Answer:
    if qname == zone:
        # The plugin answers SOA here and NODATA for the rest (NS included).
        return Answer(Rcode.NOERROR, zone, [q.soa()]) if qtype == QType.SOA else q.nodata()
    labels = qname[: -len(zone) - 1].split(".")
    if labels == ["dns-version"]:
        if qtype != QType.TXT:
            return q.nodata()  # as the cluster zone (behaviour.md 17); the plugin: NXDOMAIN
        return q.positive([RR(qname, QType.TXT, SCHEMA_VERSION_TTL, (SCHEMA_VERSION,))])
    if labels[-1] != "svc":
        # DIFFERS: the plugin answers <svc>.<ns>.pod.<zone> like svc; the KEP defines no
        # pod names, so only svc exists here.
        return q.nxdomain()
    if len(labels) == 1:
        return q.nodata()  # svc.<zone>
    namespace = labels[-2]
    if namespace not in store.namespaces:
        return q.nxdomain()  # the plugin's namespaceExists
    if len(labels) == 2:
        return q.nodata()  # <ns>.svc.<zone>
    imp = store.imports.get((namespace, labels[-3]))
    if imp is None or (not endpoints and imp.kind is ImportKind.HEADLESS):
        return q.nxdomain()
    fqdn = ".".join(labels[-3:]) + "." + zone
    rest = labels[:-3]
    if not rest:
        items = _service_items(store, imp, fqdn)
        if not items:
            return q.nxdomain()  # a Headless import without ready endpoints (2.4.1)
        return _records(q, items)
    if len(rest) != 2:
        return q.nxdomain()  # parse.go: exactly two labels more, or nothing
    first, second = rest
    if second.startswith("_"):  # _<port>._<proto> (parse.go tells them by the underscore)
        port, proto = first.removeprefix("_"), second[1:]
        items = [
            (target, ips, tuple(p for p in ports if p.name == port and p.protocol == proto))
            for target, ips, ports in _service_items(store, imp, fqdn)
        ]
        items = [item for item in items if item[2]]
        return _records(q, items) if items else q.nxdomain()
    if imp.kind is not ImportKind.HEADLESS:
        # DIFFERS: the plugin answers endpoint names under a ClusterSetIP import too; the
        # KEP (2.3.4) says no name may pick one cluster's backends of such a service.
        return q.nxdomain()
    hostname, cluster = first.removeprefix("_"), second
    items = [
        (f"{label}.{ep.cluster_id}.{fqdn}", (ep.address,), ep.ports)
        for ep in store.clusterset_endpoints(imp.namespace, imp.name)
        if ep.cluster_id == cluster and (label := _label(ep)) == hostname
    ]
    return _records(q, items) if items else q.nxdomain()


def _label(ep: ClustersetEndpoint) -> str:
    """An endpoint's hostname, else its dashed IP (the plugin's endpointHostname)."""
    return ep.hostname or dashed_ip(ep.address)


def _service_items(store: Store, imp: ServiceImport, fqdn: str) -> list[_Item]:
    """What the service name stands for: a ClusterSetIP import its IPs and ports; a
    Headless one each ready endpoint (its name when it has a cluster ID) with its slice's
    ports."""
    if imp.kind is ImportKind.CLUSTERSET_IP:
        return [(fqdn, imp.ips, imp.ports)] if imp.ips else []
    return [
        (f"{_label(ep)}.{ep.cluster_id}.{fqdn}" if ep.cluster_id else "", (ep.address,),
         ep.ports if ep.cluster_id else ())
        for ep in store.clusterset_endpoints(imp.namespace, imp.name)
    ]


def _records(q: _Question, items: list[_Item]) -> Answer:
    """A/AAAA of every item's addresses, SRV of their ports (with glue), else NODATA. The
    bare service name lists every port, an ``_port._proto`` name its matches."""
    if q.qtype == QType.SRV:
        return q.srv([item for item in items if item[0]])
    if q.qtype in (QType.A, QType.AAAA):
        answer: list[RR] = []
        for _, ips, _ in items:
            answer.extend(q.addresses(q.qname, ips))
        return q.positive(list(dict.fromkeys(answer)))
    return q.nodata()
