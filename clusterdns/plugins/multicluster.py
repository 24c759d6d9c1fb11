"""The ``multicluster`` plugin (github.com/coredns/multicluster, the external plugin CoreDNS
maintains; KEP-1645 Multi-Cluster Services DNS): the ``clusterset.local`` names of
ServiceImports (multicluster.x-k8s.io/v1alpha1) and the EndpointSlices labelled
``multicluster.kubernetes.io/service-name``.

    multicluster [ZONES...] {
        kubeconfig KUBECONFIG [CONTEXT]
        noendpoints
        fallthrough [ZONES...]
    }

ZONES default to the server block's zones (CoreDNS ``OriginsFromArgsOrServerBlock``).
The answers are :func:`clusterdns.core.multicluster.resolve_clusterset`'s; they are kept
in the answer cache under the tags they read (``clusterset_dependencies``), so a change
of an import or its endpoints drops exactly them. ``noendpoints``: every name of a
Headless import is NXDOMAIN (the plugin without its endpoints watch). ``fallthrough``: an
NXDOMAIN under those zones (all of the plugin's without arguments) goes on down the chain,
as k8s_external's. ``kubeconfig``: read as k8s_gateway's: the block's one API connection
serves it (the server's kubeconfig, else the kubernetes directive's, else this one).

The live source lists and watches ServiceImports only when a block has this directive
(``kinds``); a cluster without the CRD is one log line and counts as listed, as for the
Gateway API. After kubernetes in the chain (its README: "just below kubernetes").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..core.multicluster import clusterset_dependencies, resolve_clusterset
from ..core.names import find_zone
from ..core.records import ImportKind
from ..core.rr import QClass, Rcode
from ..core.store import Store
from ..corefile.reader import zones_args
from .plugin import Ask, Build, Chain, Outcome, Plugin, Source, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup


@dataclass(frozen=True, slots=True)
class MulticlusterConfig:
    """The ``multicluster`` directive, typed: ``zones`` (absolute, lower-case);
    ``fallthrough``: zones whose NXDOMAIN goes on (``"."``: all); ``endpoints``: False
    with ``noendpoints``; ``kubeconfig``/``context``: as the directive names them."""

    zones: tuple[str, ...]
    fallthrough: tuple[str, ...] = ()
    endpoints: bool = True
    kubeconfig: str = ""
    context: str = ""


def parse_multicluster(r: Reader, block_zones: tuple[str, ...]) -> MulticlusterConfig:
    """``multicluster [ZONES...] { options }`` (coredns/multicluster setup.go
    ``ParseStanza``). Raises ConfigError naming ``file:line``."""
    m = MulticlusterConfig(zones_args(r.d.args, block_zones, r))
    for sub in r.d.block:
        args, line = sub.args, sub.line
        if sub.name == "kubeconfig":
            r.count(args, 1, 2, "kubeconfig KUBECONFIG [CONTEXT]", line)
            m = replace(m, kubeconfig=args[0], context=args[1] if len(args) > 1 else "")
        elif sub.name == "noendpoints":
            r.count(args, 0, 0, "noendpoints", line)
            m = replace(m, endpoints=False)
        elif sub.name == "fallthrough":
            m = replace(m, fallthrough=zones_args(args, (".",), r, line))
        else:
            raise r.error(f"unknown property {sub.name!r}", line)
    return m


def _parse(r: Reader, setup: Setup) -> MulticlusterConfig:
    return parse_multicluster(r, setup.zones)


def _build(config: MulticlusterConfig, build: Build) -> Step:
    zones, fallthrough, endpoints = config.zones, config.fallthrough, config.endpoints

    def run(chain: Chain, ask: Ask) -> Outcome | None:
        """clusterset names; NXDOMAIN under ``fallthrough`` goes on."""
        query = ask.query
        zone = find_zone(query.qname, zones)
        if zone is None or query.qclass != QClass.IN:
            return None
        answer = resolve_clusterset(
            chain.store, query.qname, query.qtype, zone, endpoints=endpoints
        )
        if answer is None:
            return None
        if answer.rcode == Rcode.NXDOMAIN and any(
            find_zone(query.qname, (z,)) for z in fallthrough
        ):
            ask.passed = ask.passed or answer
            return None
        header, _, tail = chain.encode(query, answer, ask.limit)
        if answer.rcode in (Rcode.NOERROR, Rcode.NXDOMAIN) and not ask.rewritten:
            tags = clusterset_dependencies(query.qname, zone)
            chain.keep(query, ask.limit, header, tail, answer, tags=tags)
        return header + query.question + tail, "multicluster"

    return Step(run)


def explain(store: Store, qname: str, config: MulticlusterConfig) -> list[str]:
    """Why ``qname`` (lower-case, absolute) answers as it does under the clusterset zones:
    one line each, for ``clusterdns resolve``; empty outside them."""
    zone = find_zone(qname, config.zones)
    if zone is None:
        return []
    where = f"{qname} (multicluster {zone})"
    labels = qname[: -len(zone) - 1].split(".") if qname != zone else []
    if len(labels) < 3 or labels[-1] != "svc":
        return [f"{where}: names are <svc>.<ns>.svc.{zone} and the names under them"]
    namespace, name = labels[-2], labels[-3]
    if namespace not in store.namespaces:
        return [f"{where}: NXDOMAIN: no namespace {namespace}"]
    imp = store.imports.get((namespace, name))
    if imp is None:
        return [f"{where}: NXDOMAIN: no ServiceImport {namespace}/{name}"]
    if imp.kind is ImportKind.CLUSTERSET_IP:
        ips = ", ".join(imp.ips) or "none: NXDOMAIN"
        return [f"{where}: ServiceImport {namespace}/{name} (ClusterSetIP): spec.ips {ips}"]
    if not config.endpoints:
        return [f"{where}: NXDOMAIN: ServiceImport {namespace}/{name} is Headless and "
                "noendpoints is set"]
    ready = [f"{ep.address} ({ep.cluster_id or 'no cluster id'})"
             for ep in store.clusterset_endpoints(namespace, name)]
    return [f"{where}: ServiceImport {namespace}/{name} (Headless): ready endpoints "
            f"{', '.join(ready) or 'none: NXDOMAIN'} from EndpointSlices labelled "
            f"multicluster.kubernetes.io/service-name={name}"]


PLUGIN = Plugin(
    "multicluster",
    _parse,
    _build,
    kinds=lambda config: ("ServiceImport",),
    source=lambda config: Source(config.kubeconfig, config.context),
)
"""coredns/multicluster: clusterset.local names of multi-cluster services (KEP-1645)."""
