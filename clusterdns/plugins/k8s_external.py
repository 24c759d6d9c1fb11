"""The ``k8s_external`` zone: Services' external addresses under a zone of your own.

Pure, like :mod:`clusterdns.core.resolver`: (store, question, config) in, an
:class:`~clusterdns.core.resolver.Answer` out. Behaviour follows CoreDNS's k8s_external plugin
(plugin/k8s_external: README, external.go, apex.go, msg_to_dns.go) and the kubernetes
plugin's ``External`` (plugin/kubernetes/external.go); choices that differ are marked
``DIFFERS`` and listed in docs/exposed-names.md.

Names (``ZONE`` is a configured zone):

* ``ZONE`` SOA and NS (``ns1.dns.ZONE``, glue with the server's own addresses);
  ``dns.ZONE`` is an empty non-terminal, ``ns1.dns.ZONE`` A/AAAA the server's addresses;
* ``<service>.<namespace>.ZONE`` A/AAAA: ``spec.externalIPs`` then
  ``status.loadBalancer.ingress`` IPs; a load balancer that reports a host name (AWS ELB)
  gives a CNAME to it; SRV for every port, ``_<port>._<proto>.<service>.<namespace>.ZONE``
  SRV/A/AAAA for one named port;
* with ``headless``: a headless Service without external addresses answers its ready
  endpoints, and ``<endpoint>.<service>.<namespace>.ZONE`` one of them.

Only Services with an external address (or, with ``headless``, ready endpoints) have names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..core.errors import ConfigError
from ..core.names import find_zone
from ..core.records import ServiceKind
from ..core.resolver import Answer, ZoneConfig, endpoint_label
from ..core.rr import RR, QType, Rcode, SRVData
from ..core.rr import soa as make_soa
from ..core.store import Store
from ..corefile.reader import relative_name, zones_args
from .exposure import address_records, exposed, settle_negative
from .plugin import Ask, Build, Chain, Outcome, Plugin, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup

DEFAULT_TTL = 5  # seconds (CoreDNS k8s_external New())
DEFAULT_APEX = "dns"


@dataclass(frozen=True, slots=True)
class ExternalConfig:
    """The ``k8s_external`` directive, typed.

    ``zones``: absolute, lower-case. ``apex``: the label under which the name server
    names live (``dns``: ``ns1.dns.ZONE``). ``ttl``: seconds, 0..3600, also the SOA minimum.
    ``headless``: answer headless Services' endpoints. ``fallthrough``: zones whose
    NXDOMAIN goes on to the next plugin (``"."``: all). ``ns_addresses``: the server's own
    addresses (NS glue). ``namespaces``/``endpoint_pod_names``: from the block's
    kubernetes directive, as CoreDNS's k8s_external asks the kubernetes plugin.
    """

    zones: tuple[str, ...]
    ttl: int = DEFAULT_TTL
    apex: str = DEFAULT_APEX
    headless: bool = False
    fallthrough: tuple[str, ...] = ()
    ns_addresses: tuple[str, ...] = ()
    namespaces: frozenset[str] = frozenset()
    endpoint_pod_names: bool = False


def soa(store: Store, zone: str, apex: str, ttl: int) -> RR:
    """The zone's SOA: ``ns1.<apex>.ZONE`` / ``hostmaster.<apex>.ZONE``, refresh 7200,
    retry 1800, expire 86400, minimum ``ttl``; serial = the store's last change (Unix
    seconds; CoreDNS k8s_external apex.go ``soa``, ``ExternalSerial``)."""
    return make_soa(zone, f"ns1.{apex}.{zone}", f"hostmaster.{apex}.{zone}", store.serial, ttl, ttl)



def resolve_external(store: Store, qname: str, qtype: int, config: ExternalConfig) -> Answer | None:
    """Answer ``qname``/``qtype`` in a k8s_external zone; None when it is in none of them.

    Negative answers carry the SOA (RFC 2308 3); before the store has synced NXDOMAIN is
    SERVFAIL (docs/behaviour.md 13); NXDOMAIN under ``fallthrough`` is marked for the next plugin.
    """
    zone = find_zone(qname, config.zones)
    if zone is None:
        return None
    answer = _External(store, qname, qtype, zone, config).answer()
    return settle_negative(store, qname, zone, config.fallthrough, answer)



class _External:
    __slots__ = ("store", "qname", "qtype", "zone", "config", "ttl")

    def __init__(
        self, store: Store, qname: str, qtype: int, zone: str, config: ExternalConfig
    ) -> None:
        self.store = store
        self.qname = qname
        self.qtype = qtype
        self.zone = zone
        self.config = config
        self.ttl = config.ttl

    def soa(self) -> RR:
        return soa(self.store, self.zone, self.config.apex, self.ttl)

    def nxdomain(self) -> Answer:
        return Answer(Rcode.NXDOMAIN, self.zone, authority=[self.soa()])

    def positive(self, answer: list[RR], additional: list[RR] | None = None) -> Answer:
        if not answer:
            return Answer(Rcode.NOERROR, self.zone, authority=[self.soa()])
        return Answer(Rcode.NOERROR, self.zone, answer, [], additional or [])

    def ns_name(self) -> str:
        return f"ns1.{self.config.apex}.{self.zone}"

    def own_addresses(self) -> tuple[str, ...]:
        """The server's external addresses (CoreDNS ``ExternalAddress``/``nsAddrs``): the
        external IPs of the Services whose ready endpoints are this server; else the
        addresses it listens on."""
        found: list[str] = []
        for ip in self.config.ns_addresses:
            for key in self.store.services_with_endpoint(ip):
                svc = self.store.services.get(key)
                if svc is not None:
                    found.extend(a for a in svc.exposed if not a.endswith("."))
        return tuple(dict.fromkeys(found)) or self.config.ns_addresses

    def glue(self, owner: str, ips: tuple[str, ...]) -> list[RR]:
        return [RR(owner, QType.AAAA if ":" in ip else QType.A, self.ttl, ip) for ip in ips]

    def answer(self) -> Answer:
        if self.qname == self.zone:
            if self.qtype == QType.SOA:
                return Answer(Rcode.NOERROR, self.zone, [self.soa()])
            if self.qtype == QType.NS:
                ns = self.ns_name()
                return self.positive(
                    [RR(self.zone, QType.NS, self.ttl, ns)], self.glue(ns, self.own_addresses())
                )
            return self.positive([])
        base = self.qname[: -len(self.zone) - 1]
        apex = self.config.apex
        if base == apex:
            return self.positive([])  # the empty non-terminal above ns1 (apex.go)
        if base.endswith("." + apex):
            if base != "ns1." + apex:
                return self.nxdomain()
            return self.positive(
                address_records(self.qname, self.qtype, self.ttl, self.own_addresses())[0]
            )
        return self.service(base.split("."))

    def service(self, labels: list[str]) -> Answer:
        namespace = labels[-1]
        if namespace not in self.store.namespaces or (
            self.config.namespaces and namespace not in self.config.namespaces
        ):
            return self.nxdomain()
        if len(labels) == 1:
            # DIFFERS: CoreDNS answers NODATA for any single label (it does not check that
            # the namespace exists); clusterdns only for a namespace that does.
            return self.positive([])
        if len(labels) > 4:
            return self.nxdomain()
        svc = self.store.services.get((namespace, labels[-2]))
        if svc is None:
            return self.nxdomain()
        extra = labels[:-2]
        endpoint = extra[0] if len(extra) == 1 else None
        port = proto = None
        if len(extra) == 2:
            port, proto = (label.removeprefix("_") for label in extra)
        base = f"{svc.name}.{svc.namespace}.{self.zone}"
        # (target name, its addresses, port numbers)
        items: list[tuple[str, tuple[str, ...], list[int]]] = []
        if (
            self.config.headless
            and not svc.exposed
            and (svc.kind is ServiceKind.HEADLESS or endpoint is not None)
        ):
            for ep in self.store.ready_endpoints(svc.namespace, svc.name):
                label = endpoint_label(ep, self.config.endpoint_pod_names)
                if endpoint is not None and label != endpoint:
                    continue
                ports = [p.port for p in ep.ports if _port_matches(p.name, p.protocol, port, proto)]
                if ports or (port is None and not ep.ports):
                    items.append((f"{label}.{base}", (ep.address,), ports))
        elif endpoint is None and svc.exposed:
            # DIFFERS: CoreDNS ignores an endpoint label here and answers the service.
            ports = [p.port for p in svc.ports if _port_matches(p.name, p.protocol, port, proto)]
            if ports or (port is None and not svc.ports):
                items.append((base, svc.exposed, ports))
        if not items:
            return self.nxdomain()
        if self.qtype == QType.SRV:
            return self.srv(items)
        answer: list[RR] = []
        chase = ""
        for _, addresses, _ in items:
            records, chase = address_records(self.qname, self.qtype, self.ttl, addresses)
            answer.extend(records)
        result = self.positive(list(dict.fromkeys(answer)))
        result.chase = chase
        return result

    def srv(self, items: list[tuple[str, tuple[str, ...], list[int]]]) -> Answer:
        """SRV per (address, port): priority 0, weight floor(100 / candidates); IPs get the
        service (or endpoint) name as target with glue, a host name is its own target
        (CoreDNS msg_to_dns.go ``srv``)."""
        candidates = [
            (target, address, port)
            for target, addresses, ports in items
            for address in addresses
            for port in ports
            if port >= 0
        ]
        if not candidates:
            return self.positive([])
        weight = max(1, 100 // len(candidates))
        answer: dict[RR, None] = {}
        extra: dict[RR, None] = {}
        for target, address, port in candidates:
            if address.endswith("."):
                answer[RR(self.qname, QType.SRV, self.ttl, SRVData(0, weight, port, address))] = (
                    None
                )
                continue
            answer[RR(self.qname, QType.SRV, self.ttl, SRVData(0, weight, port, target))] = None
            for rr in self.glue(target, (address,)):
                extra[rr] = None
        return self.positive(list(answer), list(extra))


def _port_matches(name: str, protocol: str, port: str | None, proto: str | None) -> bool:
    """CoreDNS ``matchPortAndProtocol``: no label matches every port; otherwise name and
    protocol must both match (an unnamed port has no SRV name, spec 2.3.2)."""
    if port is None:
        return True
    return bool(name) and name == port and protocol == proto


def explain(store: Store, qname: str, config: ExternalConfig) -> list[str]:
    """Why ``qname`` answers what it does in a k8s_external zone, one line per fact, for
    ``clusterdns resolve``. Empty when ``qname`` is in none of the zones."""
    zone = find_zone(qname, config.zones)
    if zone is None:
        return []
    where = f"k8s_external zone {zone}"
    if (
        qname == zone
        or qname.endswith(f".{config.apex}.{zone}")
        or qname == f"{config.apex}.{zone}"
    ):
        return [f"{where}: the zone apex and its {config.apex} subdomain (SOA, NS, ns1)"]
    labels = qname[: -len(zone) - 1].split(".")
    if len(labels) < 2:
        return [f"{where}: {qname} names a namespace; names are <service>.<namespace>.{zone}"]
    namespace, name = labels[-1], labels[-2]
    if namespace not in store.namespaces:
        return [f"{where}: NXDOMAIN: no namespace {namespace}"]
    svc = store.services.get((namespace, name))
    if svc is None:
        return [f"{where}: NXDOMAIN: no Service {namespace}/{name}"]
    if svc.exposed:
        parts = []
        if svc.external_ips:
            parts.append(f"spec.externalIPs {', '.join(svc.external_ips)}")
        if svc.lb_ingress:
            parts.append(f"status.loadBalancer.ingress {', '.join(svc.lb_ingress)}")
        return [f"{where}: answered by Service {namespace}/{name}: {'; '.join(parts)}"]
    if config.headless and svc.kind is ServiceKind.HEADLESS:
        return [f"{where}: headless Service {namespace}/{name}: its ready endpoints"]
    pending = " (a LoadBalancer still waiting for its address)" if svc.load_balancer else ""
    return [
        f"{where}: NXDOMAIN: Service {namespace}/{name} has no external address"
        f"{pending}; only Services with spec.externalIPs or status.loadBalancer.ingress "
        "have names here"
    ]



def parse_external(r: Reader, block_zones: tuple[str, ...]) -> ExternalConfig:
    """``k8s_external [ZONES...] { options }``; no zones: the server block's ``block_zones``.
    Raises ConfigError naming ``file:line``. What the block adds (our addresses, the
    kubernetes directive's namespaces) is filled in when the block is built."""
    e = ExternalConfig(zones_args(r.d.args, block_zones, r))
    for sub in r.d.block:
        args, line = sub.args, sub.line
        if sub.name == "ttl":
            r.count(args, 1, 1, "ttl SECONDS", line)
            e = replace(e, ttl=r.integer(args[0], 0, 3600, line))
        elif sub.name == "apex":
            r.count(args, 1, 1, "apex LABEL", line)
            e = replace(e, apex=relative_name(r, args[0], line))
        elif sub.name == "headless":
            r.count(args, 0, 0, "headless", line)
            e = replace(e, headless=True)
        elif sub.name == "fallthrough":
            e = replace(e, fallthrough=zones_args(args, (".",), r, line))
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    return e


def _parse(r: Reader, setup: Setup) -> ExternalConfig:
    return parse_external(r, setup.zones)


def _build(config: ExternalConfig, build: Build) -> Step:
    """k8s_external reads the kubernetes directive of its block (CoreDNS: the kubernetes
    plugin is its source). Raises ConfigError without one."""
    kubernetes = build.configs.get("kubernetes")
    if kubernetes is None:
        raise ConfigError("k8s_external: the kubernetes plugin is not loaded in this block")
    zone = kubernetes if isinstance(kubernetes, ZoneConfig) else kubernetes.zone
    config = replace(
        config,
        ns_addresses=config.ns_addresses or build.addresses,
        namespaces=frozenset(zone.namespaces),
        endpoint_pod_names=zone.endpoint_pod_names,
    )

    def run(chain: Chain, ask: Ask) -> Outcome | None:
        """Names of services' external addresses."""
        q = ask.query
        found = resolve_external(chain.store, q.qname, q.qtype, config)
        return exposed(chain, ask, found, "k8s_external")

    return Step(run)


PLUGIN = Plugin("k8s_external", _parse, _build)
"""CoreDNS plugin/k8s_external: names for services' external and LoadBalancer IPs."""
