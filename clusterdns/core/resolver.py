"""The resolver: a pure function from (store, question, zone config) to an Answer.

This is where the Kubernetes DNS specification lives (docs/behaviour.md sections 1-12). No sockets,
no clock, no third-party imports: names in, record tuples out. Names are lower-case and
absolute; the wire layer restores the client's case.

Where CoreDNS, the specification and the DNS RFCs disagree, the choice is marked
``DIFFERS`` below and listed in docs/behaviour.md section 17.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .names import dashed_ip, find_zone, pod_label_to_ip, reverse_to_ip
from .records import Port, ReadyEndpoint, Service, ServiceKind
from .rr import RR, QType, Rcode, SRVData, soa
from .store import Store

SCHEMA_VERSION = "1.1.0"  # specification 2.2
SCHEMA_VERSION_TTL = 28800  # CoreDNS hard-codes this TTL for dns-version (docs/behaviour.md 7)
MAX_CNAME_CHAIN = 8  # ExternalName -> in-zone ExternalName -> ... chases at most this deep
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")


_Item = tuple[str, tuple[str, ...], tuple[Port, ...]]
"""(target name, its addresses, its ports): what one service or endpoint name stands for."""


class PodMode(enum.StrEnum):
    """How ``a-b-c-d.<ns>.pod.<zone>`` is answered (docs/behaviour.md 5, CoreDNS ``pods``). A
    StrEnum: each member equals the Corefile word (``PodMode.VERIFIED == "verified"``)."""

    DISABLED = "disabled"
    INSECURE = "insecure"
    VERIFIED = "verified"


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    """What the kubernetes zone answers and how.

    ``zones``: lower-case absolute names; the first one that is not a reverse zone is the
    cluster domain used in PTR targets. ``ttl``: seconds, 0..3600 (docs/behaviour.md 11).
    ``fallthrough``: zones whose NXDOMAIN answers are handed on (``"."`` = every zone).
    ``ns_addresses``: the server's own addresses, for NS glue and ``ns.dns.<zone>``.
    ``namespaces``: when not empty, only these namespaces exist for DNS.
    """

    zones: tuple[str, ...] = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    ttl: int = 30
    pods: PodMode = PodMode.INSECURE
    endpoint_pod_names: bool = False
    fallthrough: tuple[str, ...] = ()
    ns_addresses: tuple[str, ...] = ()
    namespaces: frozenset[str] = frozenset()

    def exposes(self, namespace: str) -> bool:
        """Whether ``namespace`` is served (CoreDNS ``namespaces``: empty = all)."""
        return not self.namespaces or namespace in self.namespaces

    @property
    def cluster_domain(self) -> str:
        """The primary forward zone (``cluster.local.``)."""
        for zone in self.zones:
            if not is_reverse_zone(zone):
                return zone
        return "cluster.local."


@dataclass(slots=True)
class Answer:
    """A response in record tuples (RFC 1035 4.1).

    ``zone``: the zone that answered. ``fallthrough``: an NXDOMAIN that the configuration
    hands on to the next handler. ``chase``: an out-of-zone CNAME target whose records the
    handler may append (ExternalName, docs/behaviour.md 4).
    """

    rcode: int
    zone: str
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    fallthrough: bool = False
    chase: str = ""


def endpoint_label(ep: ReadyEndpoint, endpoint_pod_names: bool) -> str:
    """``hostname``; else the pod name with ``endpoint_pod_names``; else the dashed IP
    (docs/behaviour.md 3.3, CoreDNS ``endpointHostname``)."""
    if ep.hostname:
        return ep.hostname
    if endpoint_pod_names and ep.pod_name:
        return ep.pod_name
    return dashed_ip(ep.address)


def zone_soa(zone: str, serial: int, ttl: int) -> RR:
    """The SOA of ``zone`` (behaviour.md 8, CoreDNS ``plugin/backend_lookup.go`` SOA, which
    the kubernetes and multicluster plugins share): ``ns.dns.<zone>``,
    ``hostmaster.<zone>``, ``serial`` (the store's), our timers (``rr.soa_timers``) and
    minimum ``ttl`` seconds; its own TTL min(ttl, 300)."""
    return soa(zone, "ns.dns." + zone, "hostmaster." + zone, serial, ttl, min(ttl, 300))


def is_reverse_zone(zone: str) -> bool:
    """True for ``in-addr.arpa.``, ``ip6.arpa.`` and zones below them."""
    return any(zone == r or zone.endswith("." + r) for r in REVERSE_ZONES)


def resolve(store: Store, qname: str, qtype: int, config: ZoneConfig) -> Answer | None:
    """Answer ``qname``/``qtype`` (class IN) from ``store``; None when ``qname`` is in none of
    ``config.zones`` (the handler forwards or refuses it).

    Every answer is authoritative. Negative answers carry the zone SOA in the authority
    section (RFC 2308 3). Before the store has synced, NXDOMAIN becomes SERVFAIL (behaviour.md 13):
    clients must not cache the absence of names we have not seen yet.
    """
    answer = _resolve(store, qname, qtype, config, 0)
    if answer is None or answer.rcode != Rcode.NXDOMAIN:
        return answer
    if not store.synced:
        return Answer(Rcode.SERVFAIL, answer.zone)
    if any(find_zone(qname, (zone,)) for zone in config.fallthrough):
        answer.fallthrough = True
    return answer


def _resolve(store: Store, qname: str, qtype: int, config: ZoneConfig, depth: int) -> Answer | None:
    zone = find_zone(qname, config.zones)
    if zone is None:
        return None
    q = _Question(store, qname, qtype, zone, config, depth)
    if qname == zone:
        return q.apex()
    if is_reverse_zone(zone):
        return q.reverse()
    labels = qname[: -len(zone) - 1].split(".")
    return q.forward(labels)


class _Question:
    """One question being answered: holds what every rule needs."""

    __slots__ = ("store", "qname", "qtype", "zone", "config", "ttl", "depth")

    def __init__(
        self, store: Store, qname: str, qtype: int, zone: str, config: ZoneConfig, depth: int
    ) -> None:
        self.store = store
        self.qname = qname
        self.qtype = qtype
        self.zone = zone
        self.config = config
        self.ttl = config.ttl
        self.depth = depth

    # ---- building answers -----------------------------------------------------------

    def soa(self) -> RR:
        """The zone SOA (:func:`zone_soa`)."""
        return zone_soa(self.zone, self.store.serial, self.ttl)

    def nxdomain(self) -> Answer:
        """Name error (RFC 1035 4.1.1) with the SOA for negative caching (RFC 2308 3)."""
        return Answer(Rcode.NXDOMAIN, self.zone, authority=[self.soa()])

    def nodata(self) -> Answer:
        """The name exists but has no data of this type (RFC 2308 2.2)."""
        return Answer(Rcode.NOERROR, self.zone, authority=[self.soa()])

    def positive(self, answer: list[RR], additional: list[RR] | None = None) -> Answer:
        """``answer`` if not empty, else NODATA."""
        if not answer:
            return self.nodata()
        return Answer(Rcode.NOERROR, self.zone, answer, [], additional or [])

    def addresses(self, owner: str, ips: list[str] | tuple[str, ...]) -> list[RR]:
        """A/AAAA records of ``owner`` for the qtype's family, de-duplicated, in order."""
        if self.qtype == QType.A:
            rtype, v6 = QType.A, False
        elif self.qtype == QType.AAAA:
            rtype, v6 = QType.AAAA, True
        else:
            return []
        seen: set[str] = set()
        out = []
        for ip in ips:
            if (":" in ip) == v6 and ip not in seen:
                seen.add(ip)
                out.append(RR(owner, rtype, self.ttl, ip))
        return out

    def glue(self, owner: str, ips: list[str] | tuple[str, ...]) -> list[RR]:
        """A and AAAA records of ``owner`` for the additional section (both families)."""
        return [RR(owner, QType.AAAA if ":" in ip else QType.A, self.ttl, ip) for ip in ips]

    # ---- the zone apex and structural names (docs/behaviour.md 7, 8) ----------------------------

    def apex(self) -> Answer:
        """SOA and NS at the zone apex; NODATA for every other type (docs/behaviour.md 8)."""
        if self.qtype == QType.SOA:
            return Answer(Rcode.NOERROR, self.zone, [self.soa()])
        if self.qtype == QType.NS:
            servers = self.name_servers()
            return self.positive(
                [RR(self.zone, QType.NS, self.ttl, target) for target, _ in servers],
                [rr for target, ips in servers for rr in self.glue(target, ips)],
            )
        return self.nodata()

    def name_servers(self) -> list[tuple[str, tuple[str, ...]]]:
        """NS targets with their addresses (CoreDNS ``ns.go`` nsAddrs).

        In a cluster: every service that has one of our own addresses as a ready endpoint
        (kube-dns), named by its ClusterIPs, or for a headless one by that endpoint's name
        and address. Otherwise ``ns.dns.<zone>`` with our own addresses; nothing when those
        are unknown.
        """
        domain = self.config.cluster_domain
        found: list[tuple[str, tuple[str, ...]]] = []
        for ip in self.config.ns_addresses:
            for ns, name in self.store.services_with_endpoint(ip):
                svc = self.store.services.get((ns, name))
                if svc is None or svc.kind is ServiceKind.EXTERNAL_NAME:
                    continue
                fqdn = f"{name}.{ns}.svc.{domain}"
                if svc.cluster_ips:
                    found.append((fqdn, svc.cluster_ips))
                    continue
                for ep in self.store.ready_endpoints(ns, name):
                    if ep.address == ip:
                        found.append((f"{self.endpoint_name(ep)}.{fqdn}", (ip,)))
        if not found and self.config.ns_addresses:
            found.append(("ns.dns." + self.zone, self.config.ns_addresses))
        return found

    def forward(self, labels: list[str]) -> Answer:
        """Names below a forward zone, read right to left (docs/behaviour.md 1)."""
        top = labels[-1]
        if top == "svc":
            return self.service_names(labels[:-1])
        if top == "pod":
            return self.pod_names(labels[:-1])
        if len(labels) == 1 and top == "dns-version":
            if self.qtype == QType.TXT:
                return Answer(
                    Rcode.NOERROR,
                    self.zone,
                    [RR(self.qname, QType.TXT, SCHEMA_VERSION_TTL, (SCHEMA_VERSION,))],
                )
            # DIFFERS: CoreDNS answers NXDOMAIN for other types; the name exists, so
            # RFC 2308 2.2 asks for NODATA (docs/behaviour.md 7, 16).
            return self.nodata()
        if top == "dns" and len(labels) <= 2:
            if len(labels) == 2 and labels[0] != "ns":
                return self.nxdomain()
            if len(labels) == 1:
                # DIFFERS: CoreDNS says NXDOMAIN; dns.<zone> is an empty non-terminal
                # above ns.dns.<zone>, so RFC 8020 asks for NODATA.
                return self.nodata()
            return self.positive(self.addresses(self.qname, self.config.ns_addresses))
        return self.nxdomain()

    # ---- services (docs/behaviour.md 2, 3, 4) ---------------------------------------------------

    def service_names(self, rest: list[str]) -> Answer:
        """``[endpoint|_port._proto].<svc>.<ns>.svc.<zone>`` and the names above it."""
        if not rest:
            return self.nodata()  # svc.<zone>
        namespace = rest[-1]
        if namespace not in self.store.namespaces or not self.config.exposes(namespace):
            return self.nxdomain()
        if len(rest) == 1:
            return self.nodata()  # <ns>.svc.<zone>, even for an empty namespace
        svc = self.store.services.get((namespace, rest[-2]))
        extra = rest[:-2]
        if svc is None or len(extra) > 2:
            return self.nxdomain()
        if svc.kind is ServiceKind.EXTERNAL_NAME:
            return self.nxdomain() if extra else self.external_name(svc)
        fqdn = f"{svc.name}.{svc.namespace}.svc.{self.zone}"
        items = self.service_items(svc, fqdn, extra[0] if len(extra) == 1 else None)
        if items is None:
            return self.nxdomain()
        if len(extra) == 2:
            port, proto = (label.removeprefix("_") for label in extra)
            items = [
                (target, ips, tuple(p for p in ports if p.name == port and p.protocol == proto))
                for target, ips, ports in items
            ]
            items = [item for item in items if item[2]]
            if not port or not items:  # unnamed ports have no SRV name (spec 2.3.2)
                return self.nxdomain()
        if self.qtype == QType.SRV:
            return self.srv(items)
        answer: list[RR] = []
        for _, ips, _ in items:
            answer.extend(self.addresses(self.qname, ips))
        # One answer per address: an address that two endpoints share is listed once.
        if len(items) > 1:
            answer = list(dict.fromkeys(answer))
        return self.positive(answer)

    def service_items(self, svc: Service, fqdn: str, endpoint: str | None) -> list[_Item] | None:
        """The (target name, addresses, ports) a service name stands for, or None if the
        name does not exist.

        A ClusterIP service stands for its ClusterIPs and spec ports; a headless service,
        or an endpoint label below either kind (CoreDNS extension, docs/behaviour.md 2.3), for its
        ready endpoints with their slice's ports. A headless service without ready
        endpoints does not exist (spec 2.4.1).
        """
        if svc.kind is ServiceKind.CLUSTER_IP and endpoint is None:
            return [(fqdn, svc.cluster_ips, svc.ports)]
        items: list[_Item] = []
        for ep in self.store.ready_endpoints(svc.namespace, svc.name):
            name = self.endpoint_name(ep)
            if endpoint is None or name == endpoint:
                items.append((f"{name}.{fqdn}", (ep.address,), ep.ports))
        return items or None

    def endpoint_name(self, ep: ReadyEndpoint) -> str:
        """The endpoint's DNS label (:func:`endpoint_label`)."""
        return endpoint_label(ep, self.config.endpoint_pod_names)

    def srv(self, items: list[_Item]) -> Answer:
        """SRV records for every (item, port) with A/AAAA glue (spec 2.3.2, 2.4.2; RFC 2782).

        Priority 0, weight floor(100 / candidates), one candidate per (address, port),
        counted before identical (target, port) pairs collapse (CoreDNS ``backend_lookup.go``
        SRV). Ports without a number (-1)
        give nothing; no record at all is NODATA (portless headless service).
        """
        candidates = [
            (target, ips, p.port) for target, ips, ports in items for p in ports if p.port >= 0
        ]
        if not candidates:
            return self.nodata()
        # CoreDNS counts one candidate per address: a dual-stack ClusterIP gives weight 50.
        weight = 100 // sum(len(ips) for _, ips, _ in candidates)
        answer: dict[RR, None] = {}
        glue: dict[RR, None] = {}
        for target, ips, port in candidates:
            answer[RR(self.qname, QType.SRV, self.ttl, SRVData(0, weight, port, target))] = None
            for rr in self.glue(target, ips):
                glue[rr] = None
        return self.positive(list(answer), list(glue))

    def external_name(self, svc: Service) -> Answer:
        """CNAME to ``externalName`` (spec 2.5), with in-zone targets chased (docs/behaviour.md 4).

        DIFFERS: CoreDNS gives the CNAME only for A/AAAA/CNAME questions and NODATA for the
        rest; a name that owns a CNAME owns nothing else (RFC 1034 3.6.2, RFC 2181 10.1),
        so every qtype gets the CNAME here, and the target's records of that type follow.
        An in-zone target without such records keeps the CNAME and takes the target's
        rcode and SOA (RFC 6604 2.1), where CoreDNS drops the CNAME.
        """
        target = svc.external_name
        cname = RR(self.qname, QType.CNAME, self.ttl, target)
        if self.qtype in (QType.CNAME, QType.ANY):
            return Answer(Rcode.NOERROR, self.zone, [cname])
        if self.depth >= MAX_CNAME_CHAIN:
            return Answer(Rcode.SERVFAIL, self.zone, [cname])
        chased = _resolve(self.store, target, self.qtype, self.config, self.depth + 1)
        if chased is None:
            return Answer(Rcode.NOERROR, self.zone, [cname], chase=target)
        chased.answer.insert(0, cname)  # the CNAME comes first (glibc; CoreDNS CNAMEOrder)
        chased.zone = self.zone
        return chased

    # ---- pods (docs/behaviour.md 5) -------------------------------------------------------------

    def pod_names(self, rest: list[str]) -> Answer:
        """``<a-b-c-d>.<ns>.pod.<zone>`` in the configured pod mode (docs/behaviour.md 5 table)."""
        if not rest:
            return self.nodata()  # pod.<zone>
        mode = self.config.pods
        namespace = rest[-1]
        if (
            mode is PodMode.DISABLED
            or namespace not in self.store.namespaces
            or not self.config.exposes(namespace)
        ):
            return self.nxdomain()
        if len(rest) == 1:
            return self.nodata()
        parsed = pod_label_to_ip(rest[0]) if len(rest) == 2 else None
        if parsed is None:
            return self.nxdomain()
        ip, _ = parsed
        if mode is PodMode.VERIFIED and not self.store.has_pod_ip(namespace, ip):
            return self.nxdomain()
        return self.positive(self.addresses(self.qname, (ip,)))

    # ---- reverse zones (docs/behaviour.md 6) ----------------------------------------------------

    def reverse(self) -> Answer:
        """PTR for a ClusterIP (one record, spec 2.3.3) or else for every ready endpoint
        with that address, one per service (spec 2.4.3; CoreDNS does it for all services)."""
        ip = reverse_to_ip(self.qname)
        if ip is None:
            return self.nxdomain()
        domain = self.config.cluster_domain
        targets: list[str] = []
        exposes = self.config.exposes
        # Only names that resolve: a service in a namespace that does not exist (no
        # Namespace object: service_names answers NXDOMAIN for it) gets no PTR either.
        namespaces = self.store.namespaces
        owners = [
            o
            for o in self.store.services_with_cluster_ip(ip)
            if exposes(o[0]) and o[0] in namespaces
        ]
        if owners:
            ns, name = owners[0]
            targets.append(f"{name}.{ns}.svc.{domain}")
        else:
            for ns, name in self.store.services_with_endpoint(ip):
                if not exposes(ns) or ns not in namespaces:
                    continue
                for ep in self.store.ready_endpoints(ns, name):
                    if ep.address == ip:
                        targets.append(f"{self.endpoint_name(ep)}.{name}.{ns}.svc.{domain}")
                        break
        if not targets:
            return self.nxdomain()
        if self.qtype != QType.PTR:
            return self.nodata()
        return self.positive([RR(self.qname, QType.PTR, self.ttl, t) for t in targets])
