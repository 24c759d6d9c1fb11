"""The ``k8s_gateway`` zone: Ingress hosts, Gateway API route hostnames and LoadBalancer
Services answered with the address their traffic enters the cluster at.

Pure, like :mod:`clusterdns.core.resolver`. Behaviour follows the k8s_gateway CoreDNS plugin
(github.com/k8s-gateway/k8s_gateway, formerly ori-edge/k8s_gateway: README, gateway.go,
apex.go, kubernetes.go); choices that differ are marked ``DIFFERS`` and listed in
docs/exposed-names.md.

Lookup of a name below a zone: first the name itself, then the name with its first label
replaced by ``*`` (a wildcard host matches exactly one label); for each, the resources in
order (default HTTPRoute, TLSRoute, GRPCRoute, Ingress, Service) until one gives an
address:

* a route kind: routes whose ``spec.hostnames`` hold the name -> the ``status.addresses``
  of the Gateways in their ``spec.parentRefs``;
* Ingress: Ingresses whose rules (or TLS hosts) hold the name -> their
  ``status.loadBalancer.ingress``;
* Service: ``<name>.<namespace>.ZONE`` of a LoadBalancer Service -> its
  ``spec.externalIPs`` if any, else its ``status.loadBalancer.ingress``.

The zone apex answers SOA and NS (``<apex>.ZONE`` and ``<secondary>.ZONE``);
``<apex>.ZONE`` answers the server's own address.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..core.exposure import HOST_KINDS
from ..core.names import find_zone
from ..core.records import Ingress, Route
from ..core.resolver import Answer
from ..core.rr import RR, QType, Rcode
from ..core.rr import soa as make_soa
from ..core.store import Store
from ..corefile.reader import relative_name, zones_args
from .exposure import address_records, exposed, settle_negative
from .plugin import Ask, Build, Chain, Outcome, Plugin, Source, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup

RESOURCES = ("HTTPRoute", "TLSRoute", "GRPCRoute", "Ingress", "Service")
"""Every resource k8s_gateway reads, in its default lookup order (gateway.go)."""
DEFAULT_TTL = 60  # seconds (gateway.go ttlDefault)
SOA_TTL = 60  # seconds (gateway.go ttlSOA: the SOA, NS and glue TTL, not configurable)
DEFAULT_APEX = "dns1.kube-system"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The ``k8s_gateway`` directive, typed.

    ``zones``: absolute, lower-case. ``resources``: kinds to answer from, in lookup order.
    ``ttl``: seconds for answers. ``apex``: relative name of this server (NS target,
    ``dns1.kube-system``); ``secondary``: a peer server's relative name, or ``""``.
    ``fallthrough``: zones whose NXDOMAIN goes on (``"."``: all). ``ns_addresses``: the
    server's own addresses, for ``<apex>.ZONE`` when no LoadBalancer Service names it.
    """

    zones: tuple[str, ...]
    resources: tuple[str, ...] = RESOURCES
    ttl: int = DEFAULT_TTL
    apex: str = DEFAULT_APEX
    secondary: str = ""
    fallthrough: tuple[str, ...] = ()
    ns_addresses: tuple[str, ...] = ()
    kubeconfig: str = ""  # read, not used: the block's API connection serves it
    context: str = ""


@dataclass(frozen=True, slots=True)
class Match:
    """What answered a name: the resource kind, the object(s) (``namespace/name``), the
    addresses found (IP text or absolute host names) and, for a name that is claimed but
    has no address, why (``reason``)."""

    kind: str
    objects: tuple[str, ...]
    addresses: tuple[str, ...]
    key: str
    reason: str = ""


def lookup(store: Store, qname: str, zone: str, config: GatewayConfig) -> list[Match]:
    """Every claim on ``qname`` in lookup order (exact name, then its wildcard; resources in
    ``config.resources`` order). The first Match with addresses is the answer; the others
    explain why a name has none (``clusterdns resolve``)."""
    found: list[Match] = []
    base = qname[: -len(zone) - 1] if qname != zone else ""
    keys = [qname]
    if base:
        keys.append("*." + qname.split(".", 1)[1])
    for key in keys:
        for kind in config.resources:
            match = _lookup_one(store, kind, key, base if key == qname else "")
            if match is not None:
                found.append(match)
    return found


def _lookup_one(store: Store, kind: str, key: str, base: str) -> Match | None:
    if kind == "Service":
        labels = base.split(".") if base else []
        if len(labels) != 2:
            return None
        svc = store.services.get((labels[1], labels[0]))
        if svc is None or not svc.load_balancer:
            return None
        # spec.externalIPs win over the status entirely (kubernetes.go lookupServiceIndex)
        addresses = svc.external_ips or svc.lb_ingress
        reason = "" if addresses else "LoadBalancer Service without an address yet"
        return Match(kind, (f"{svc.namespace}/{svc.name}",), addresses, key, reason)
    if kind not in HOST_KINDS:
        return None
    owners = store.exposure.owners(key, kind)
    if not owners:
        return None
    found: list[str] = []
    reasons: list[str] = []
    for owner in owners:
        if isinstance(owner, Ingress):
            found.extend(owner.addresses)
            if not owner.addresses:
                reasons.append(f"Ingress {owner.namespace}/{owner.name} has no address yet")
        elif isinstance(owner, Route):
            found.extend(_gateway_addresses(store, owner, reasons))
    names = tuple(f"{o.namespace}/{o.name}" for o in owners)
    reason = "" if found else "; ".join(reasons)
    return Match(kind, names, tuple(dict.fromkeys(found)), key, reason)


def _gateway_addresses(store: Store, route: Route, reasons: list[str]) -> list[str]:
    """The ``status.addresses`` of a route's parent Gateways (kubernetes.go
    ``lookupGateways``; the route's namespace when a ref has none)."""
    out: list[str] = []
    what = f"{type(route).__name__} {route.namespace}/{route.name}"
    if not route.parents:
        reasons.append(f"{what} is not attached to a Gateway (no parentRefs)")
    for namespace, name in route.parents:
        gateway = store.exposure.gateway(namespace, name)
        if gateway is None:
            reasons.append(f"{what}: its parent Gateway {namespace}/{name} does not exist")
        elif not gateway.addresses:
            reasons.append(f"{what}: Gateway {namespace}/{name} has no address yet")
        out.extend(gateway.addresses if gateway is not None else ())
    return out


def resolve_gateway(store: Store, qname: str, qtype: int, config: GatewayConfig) -> Answer | None:
    """Answer ``qname``/``qtype`` in a k8s_gateway zone; None when it is in none of them.

    A name with addresses answers A/AAAA (NODATA for the other family, RFC 4074 3, and for
    other types); a name nothing claims, or claims without an address, is NXDOMAIN with
    the SOA. Before the store has synced NXDOMAIN is SERVFAIL (k8s_gateway answers
    SERVFAIL until its informers sync); under ``fallthrough`` NXDOMAIN goes on.
    """
    zone = find_zone(qname, config.zones)
    if zone is None:
        return None
    answer = _answer(store, qname, qtype, zone, config)
    return settle_negative(store, qname, zone, config.fallthrough, answer)


def soa(store: Store, zone: str, config: GatewayConfig) -> RR:
    """``<apex>.ZONE hostmaster.<apex>.ZONE``, refresh 7200, retry 1800, expire 86400,
    minimum 60 (apex.go ``soa``). DIFFERS: the serial is the store's last change, not the
    fixed 12345, so secondaries notice changes."""
    apex = config.apex
    return make_soa(zone, f"{apex}.{zone}", f"hostmaster.{apex}.{zone}", store.serial, SOA_TTL,
                    SOA_TTL)


def self_addresses(store: Store, key: str, config: GatewayConfig) -> tuple[str, ...]:
    """Addresses of a name server by relative name (``dns1.kube-system``): the
    LoadBalancer Service of that name, as k8s_gateway's ``SelfAddress`` looks it up."""
    labels = key.split(".")
    if len(labels) == 2:
        svc = store.services.get((labels[1], labels[0]))
        if svc is not None and svc.load_balancer:
            return tuple(a for a in (svc.external_ips or svc.lb_ingress) if not a.endswith("."))
    return ()


def _answer(store: Store, qname: str, qtype: int, zone: str, config: GatewayConfig) -> Answer:
    authority = [soa(store, zone, config)]

    def nodata() -> Answer:
        return Answer(Rcode.NOERROR, zone, authority=authority)

    def nxdomain() -> Answer:
        return Answer(Rcode.NXDOMAIN, zone, authority=authority)

    apex_name = f"{config.apex}.{zone}"
    if qname == apex_name or qname.endswith("." + apex_name):
        if qname != apex_name:
            return nxdomain()  # apex.go serveSubApex
        own = self_addresses(store, config.apex, config) or config.ns_addresses
        records, _ = address_records(qname, qtype, SOA_TTL, own)
        return Answer(Rcode.NOERROR, zone, records) if records else nodata()
    if qname == zone and qtype in (QType.SOA, QType.NS):
        if qtype == QType.SOA:
            return Answer(Rcode.NOERROR, zone, authority[:])
        servers = [config.apex] + ([config.secondary] if config.secondary else [])
        answer = [RR(zone, QType.NS, SOA_TTL, f"{s}.{zone}") for s in servers]
        glue: list[RR] = []
        for server in servers:
            own = self_addresses(store, server, config)
            if not own and server == config.apex:
                own = config.ns_addresses
            glue.extend(
                RR(f"{server}.{zone}", QType.AAAA if ":" in ip else QType.A, SOA_TTL, ip)
                for ip in own
            )
        return Answer(Rcode.NOERROR, zone, answer, [], glue)
    match = next((m for m in lookup(store, qname, zone, config) if m.addresses), None)
    if match is None:
        # The apex exists even when nothing claims it (gateway.go isRootZoneQuery).
        # DIFFERS: k8s_gateway answers NOERROR for other types of unclaimed names; a name
        # that does not exist is NXDOMAIN whatever the type (RFC 8020).
        return nodata() if qname == zone else nxdomain()
    records, chase = address_records(qname, qtype, config.ttl, match.addresses)
    if not records:
        return nodata()
    result = Answer(Rcode.NOERROR, zone, records)
    result.chase = chase
    return result


def explain(store: Store, qname: str, config: GatewayConfig) -> list[str]:
    """Why ``qname`` answers what it does in a k8s_gateway zone, one line per fact, for
    ``clusterdns resolve``: which object answered (and through which wildcard), or why the
    name is NXDOMAIN (no such host, an Ingress without an address yet, a route not attached
    to a Gateway). Empty when ``qname`` is in none of the zones."""
    zone = find_zone(qname, config.zones)
    if zone is None:
        return []
    where = f"k8s_gateway zone {zone}"
    apex_name = f"{config.apex}.{zone}"
    if qname == apex_name or qname.endswith("." + apex_name):
        return [f"{where}: {qname} is this name server's own name (apex {config.apex})"]
    matches = lookup(store, qname, zone, config)
    lines: list[str] = []
    for match in matches:
        via = "" if match.key == qname else f" through the wildcard host {match.key}"
        objects = ", ".join(match.objects)
        if match.addresses:
            lines.append(
                f"{where}: answered by {match.kind} {objects}{via}: {', '.join(match.addresses)}"
            )
            return lines
        lines.append(f"{where}: no address{via}: {match.reason}")
    if qname == zone:
        return [*lines, f"{where}: the zone apex: SOA and NS; A/AAAA only if a host is the apex"]
    if not matches:
        base = qname[: -len(zone) - 1].split(".")
        hint = ""
        if len(base) == 2 and "Service" in config.resources:
            svc = store.services.get((base[1], base[0]))
            if svc is not None and not svc.load_balancer:
                hint = f" (Service {base[1]}/{base[0]} exists but is not of type LoadBalancer)"
        lines.append(f"{where}: NXDOMAIN: no {', '.join(config.resources)} claims {qname}{hint}")
    else:
        lines.append(f"{where}: NXDOMAIN: nothing that claims {qname} has an address")
    return lines


def parse_gateway(r: Reader, block_zones: tuple[str, ...]) -> GatewayConfig:
    """``k8s_gateway [ZONES...] { options }``; no zones: the server block's ``block_zones``.
    Raises ConfigError naming ``file:line``."""
    g = GatewayConfig(zones_args(r.d.args, block_zones, r))
    known = RESOURCES
    for sub in r.d.block:
        args, line = sub.args, sub.line
        if sub.name == "resources":
            r.count(args, 1, len(known), "resources " + " ".join(known), line)
            for arg in args:
                if arg not in known:
                    raise r.error(f"resources: want some of {' '.join(known)}, got {arg!r}", line)
            g = replace(g, resources=tuple(dict.fromkeys(args)))
        elif sub.name == "ttl":
            r.count(args, 1, 1, "ttl SECONDS", line)
            g = replace(g, ttl=r.integer(args[0], 0, 3600, line))
        elif sub.name in ("apex", "secondary"):
            r.count(args, 1, 1, f"{sub.name} NAME", line)
            name = relative_name(r, args[0], line)
            g = replace(g, apex=name) if sub.name == "apex" else replace(g, secondary=name)
        elif sub.name == "fallthrough":
            g = replace(g, fallthrough=zones_args(args, (".",), r, line))
        elif sub.name == "kubeconfig":
            r.count(args, 1, 2, "kubeconfig PATH [CONTEXT]", line)
            g = replace(g, kubeconfig=args[0])
            g = replace(g, context=args[1] if len(args) > 1 else "")
        elif sub.name in ("ingressClasses", "gatewayClasses"):
            # It narrows which objects answer: ignoring it would misread the Corefile.
            raise r.error(f"option {sub.name!r} is not supported by clusterdns", line)
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    return g


def _parse(r: Reader, setup: Setup) -> GatewayConfig:
    return parse_gateway(r, setup.zones)


def _build(config: GatewayConfig, build: Build) -> Step:
    config = replace(config, ns_addresses=config.ns_addresses or build.addresses)

    def run(chain: Chain, ask: Ask) -> Outcome | None:
        """Names of Gateway API routes, Ingresses and LoadBalancer services."""
        q = ask.query
        found = resolve_gateway(chain.store, q.qname, q.qtype, config)
        return exposed(chain, ask, found, "k8s_gateway")

    return Step(run)


def _kinds(config: GatewayConfig) -> tuple[str, ...]:
    """What the live source lists for it: the kinds it reads (Services are listed anyway),
    and Gateways when it reads a route kind (least-privilege RBAC)."""
    wanted = [k for k in config.resources if k != "Service"]
    if any(k.endswith("Route") for k in wanted):
        wanted.append("Gateway")
    return tuple(wanted)


PLUGIN = Plugin(
    "k8s_gateway",
    _parse,
    _build,
    kinds=_kinds,
    source=lambda config: Source(config.kubeconfig, config.context),
)
"""The k8s_gateway plugin: names of what Gateway API routes and Ingresses expose."""
