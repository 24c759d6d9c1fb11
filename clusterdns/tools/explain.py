"""``clusterdns resolve``: walk a pod's search list against a server, or in-process.

Glue between :mod:`clusterdns.core.search` (the pure walk) and something that answers: a
running server over UDP (TCP when truncated) with dnspython, or the resolver on a store
built from ``--zones`` when no server is given.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from ..core.names import absolute, find_zone
from ..core.resolver import ZoneConfig
from ..core.rr import RCODE_NAMES, Rcode
from ..core.search import Query, Reply, Walk
from ..core.store import Store
from ..plugins.chain import assemble
from ..plugins.k8s_external import ExternalConfig
from ..plugins.k8s_external import explain as external_explain
from ..plugins.k8s_gateway import GatewayConfig
from ..plugins.k8s_gateway import explain as gateway_explain
from ..plugins.multicluster import MulticlusterConfig
from ..plugins.multicluster import explain as clusterset_explain
from ..sources.manifests import ManifestSource

TIMEOUT = 2.0  # seconds per query


def _reply(msg: dns.message.Message, qtype: str, began: float) -> Reply:
    wanted = dns.rdatatype.from_text(qtype)
    answers, addresses = [], []
    for rrset in msg.answer:
        for rdata in rrset:
            answers.append(f"{dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}")
            if rrset.rdtype == wanted:
                addresses.append(rdata.to_text())
    return Reply(msg.rcode(), answers, addresses, (time.perf_counter() - began) * 1000)


def server_query(host: str, port: int) -> Query:
    """Ask a running server: UDP, then TCP if truncated. Raises TimeoutError if it stays
    silent, ConnectionRefusedError (an OSError) at once if nothing listens there.

    The UDP socket is connected, so the kernel hands us the ICMP port unreachable that a
    closed port answers with (an unconnected socket never sees it, and each query would
    wait out :data:`TIMEOUT`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def ask(name: str, qtype: str) -> Reply:
        began = time.perf_counter()
        query = dns.message.make_query(name, qtype)
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect((host, port))
            try:
                msg, _ = dns.query.udp_with_fallback(
                    query, host, timeout=TIMEOUT, port=port, udp_sock=udp
                )
            except dns.exception.Timeout:
                raise TimeoutError(name) from None
        return _reply(msg, qtype, began)

    return ask


@dataclass
class Exposure:
    """The k8s_gateway, k8s_external and multicluster (clusterset) zones ``clusterdns
    resolve`` also answers and explains (absolute, lower-case); :func:`local_query` fills
    in :attr:`store`."""

    gateway_zones: tuple[str, ...] = ()
    external_zones: tuple[str, ...] = ()
    store: Store | None = None
    clusterset_zones: tuple[str, ...] = ()

    @property
    def clusterset(self) -> MulticlusterConfig | None:
        """The multicluster configuration (defaults), or None without zones."""
        return MulticlusterConfig(self.clusterset_zones) if self.clusterset_zones else None

    @property
    def gateway(self) -> GatewayConfig | None:
        """The k8s_gateway configuration (defaults), or None without zones."""
        return GatewayConfig(self.gateway_zones) if self.gateway_zones else None

    @property
    def external(self) -> ExternalConfig | None:
        """The k8s_external configuration (defaults), or None without zones."""
        return ExternalConfig(self.external_zones) if self.external_zones else None

    def why(self, name: str) -> list[str]:
        """Lines saying which object answered ``name`` (made absolute) or why it is
        NXDOMAIN (k8s_gateway/k8s_external ``explain``); needs the in-process store."""
        qname = absolute(name).lower()
        if self.store is None:
            return ["why: explanations need the in-process answers (drop --server)"]
        lines: list[str] = []
        if self.gateway is not None:
            lines.extend(gateway_explain(self.store, qname, self.gateway))
        if self.external is not None:
            lines.extend(external_explain(self.store, qname, self.external))
        if self.clusterset is not None:
            lines.extend(clusterset_explain(self.store, qname, self.clusterset))
        return [f"why: {line}" for line in lines] or [
            f"why: {qname} is in no k8s_gateway, k8s_external or multicluster zone"
        ]


def local_query(
    paths: Sequence[Path], config: ZoneConfig, exposure: Exposure | None = None
) -> Query:
    """Answer from the manifests in ``paths`` with the resolver, in this process. Names
    outside the cluster zones (and ``exposure``'s zones) have no upstream here: they count
    as NXDOMAIN (a real server would forward them)."""
    store = Store()
    ManifestSource(store, paths).load(time.time())
    exposure = exposure or Exposure()
    exposure.store = store
    zones = (
        config.zones
        + exposure.gateway_zones
        + exposure.external_zones
        + exposure.clusterset_zones
    )
    plugins: dict[str, object] = {"kubernetes": config}
    if exposure.gateway is not None:
        plugins["k8s_gateway"] = exposure.gateway
    if exposure.external is not None:
        plugins["k8s_external"] = exposure.external
    if exposure.clusterset is not None:
        plugins["multicluster"] = exposure.clusterset
    handler = assemble(store, zones, plugins)

    def ask(name: str, qtype: str) -> Reply:
        began = time.perf_counter()
        if find_zone(name.lower(), zones) is None:
            return Reply(Rcode.NXDOMAIN, ["(outside the cluster zone: no upstream in-process)"])
        query = dns.message.make_query(name, qtype)
        query.flags |= dns.flags.RD
        wire = handler.handle(query.to_wire(), True)
        assert isinstance(wire, bytes)
        return _reply(dns.message.from_wire(wire), qtype, began)

    return ask


def report(result: Walk) -> list[str]:
    """The lines ``clusterdns resolve`` prints: one per query, then the outcome."""
    lines = []
    for step in result.steps:
        reply = step.reply
        answers = ", ".join(reply.answers) or "-"
        rcode = RCODE_NAMES.get(reply.rcode, str(reply.rcode))
        lines.append(
            f"{step.qtype:<4} {step.name:<60} {rcode:<8} {reply.milliseconds:6.1f} ms  {answers}"
        )
    queries = len(result.steps)
    if result.resolved:
        lines.append(
            f"resolved: {result.name} -> {', '.join(result.addresses)} "
            f"after {queries} quer{'y' if queries == 1 else 'ies'}"
        )
    else:
        lines.append(f"not resolved after {queries} quer{'y' if queries == 1 else 'ies'}")
    lines.append(f"why the walk stopped: {result.reason}")
    return lines
