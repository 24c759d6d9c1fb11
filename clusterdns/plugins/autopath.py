"""autopath: walk a pod's search list on the server (docs/behaviour.md 16; CoreDNS autopath).

A pod with ``ndots:5`` asks ``web.shop.<its-ns>.svc.cluster.local`` first. When that name
does not exist and the asking pod is known (by source IP, which needs pod records:
``pods verified``), the server tries the rest of that pod's search path itself:
``web.shop.svc.cluster.local``, ``web.shop.cluster.local``, the server's own search
domains, then ``web.shop.`` upstream. The first name that is not NXDOMAIN is answered
with a CNAME from the asked name to it, before its records, under the question asked: the
client is done after one round trip. When every candidate is NXDOMAIN the first reply goes
back unchanged and the client walks its own list.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from dnslib import CNAME, QTYPE, RR, DNSLabel, DNSQuestion, DNSRecord

from ..core.errors import ConfigError
from ..core.names import find_zone
from ..core.resolver import Answer, PodMode, ZoneConfig, resolve
from ..core.rr import RR as Rec
from ..core.rr import QType, Rcode
from ..core.search import parse_resolv_conf
from ..core.store import Store
from ..dns.wire import Query, encode_answer
from .plugin import Build, Forwarder, Plugin, Source

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup

log = logging.getLogger("clusterdns.plugins.autopath")


# NXDOMAIN goes on to the next name. So do errors (CoreDNS would return an upstream's
# REFUSED under a CNAME, which helps no client): only an answer or NODATA is "found".
FOUND = (Rcode.NOERROR,)


def _nothing() -> None:
    """No counter to bump."""


class AutoPath:
    """Server-side search for one server block.

    ``domains``: the server's own search domains (its resolv.conf), tried after the
    cluster's three; ``success``: how many queries autopath answered (metrics).
    """

    def __init__(self, domains: Sequence[str] = ()) -> None:
        self.domains = [d.strip(".").lower() + "." for d in domains if d.strip(".")]
        self.success = 0

    def path(self, namespace: str, zone: str) -> list[str]:
        """The pod's search path: ``<ns>.svc.<zone>``, ``svc.<zone>``, ``<zone>``, the
        server's own domains, and the root (the name as is)."""
        return [f"{namespace}.svc.{zone}", f"svc.{zone}", zone, *self.domains, "."]

    def search(
        self,
        query: Query,
        limit: int,
        client: str,
        *,
        store: Store,
        config: ZoneConfig | None,
        forwarder: Callable[[str], Forwarder | None],
        counted: Callable[[], None] = _nothing,
    ) -> bytes | Awaitable[bytes | None] | None:
        """The reply found along the client's search path (an awaitable when upstream
        names must be tried; it gives None if none exists), or None to answer the asked
        name's NXDOMAIN as usual. ``client``: the source IP of the query; ``store`` and
        ``config``: the cluster records and zone of the server block; ``forwarder``: the
        forwarder for an out-of-zone name (None: not forwarded); ``counted``: called once
        per query autopath answered (coredns_autopath_success)."""
        if config is None:
            return None
        namespace = store.pod_namespace(client)
        if namespace is None:
            return None
        path = self.path(namespace, config.cluster_domain)
        suffix = "." + path[0]
        if not query.qname.endswith(suffix):
            return None  # only names inside the pod's first search domain
        base = query.qname[: -len(suffix)]
        candidates = [f"{base}.{domain}" if domain != "." else base + "." for domain in path[1:]]
        for i, name in enumerate(candidates):
            if find_zone(name, config.zones) is None:
                upstream = forwarder(name)
                if upstream is None:
                    return None
                return self._upstream(upstream, query, limit, candidates[i:], config.ttl, counted)
            answer = resolve(store, name, query.qtype, config)
            if answer is not None and answer.rcode in FOUND:
                self.success += 1
                counted()
                return self._cname(query, limit, name, answer, config.ttl)
        return None

    @staticmethod
    def _cname(query: Query, limit: int, target: str, answer: Answer, ttl: int) -> bytes:
        """The found answer under a CNAME from the asked name (a new Answer: the
        resolver's stays as it returned it)."""
        cname = Rec(query.qname, QType.CNAME, ttl, target)
        found = replace(answer, answer=[cname, *answer.answer])
        header, _, tail = encode_answer(query, found, limit)
        return header + query.question + tail

    async def _upstream(
        self,
        forwarder: Forwarder,
        query: Query,
        limit: int,
        names: list[str],
        ttl: int,
        counted: Callable[[], None],
    ) -> bytes | None:
        """Try the out-of-zone candidates upstream, in order; None keeps the NXDOMAIN.
        ``ttl``: the CNAME's TTL when the found answer has no records."""
        for name in names:
            question = DNSRecord.question(name.rstrip(".") or ".", QTYPE.get(query.qtype))
            try:
                reply = DNSRecord.parse(await forwarder.exchange(question.pack()))
            except Exception as exc:  # an upstream failure ends the search: the client walks on
                log.warning("autopath: %s upstream failed, search ends: %s", name, exc)
                break
            if reply.header.rcode not in FOUND:
                continue
            self.success += 1
            counted()
            reply.header.id = query.id
            reply.questions = [DNSQuestion(DNSLabel(query.labels), query.qtype, query.qclass)]
            ttl = min((rr.ttl for rr in reply.rr), default=ttl)
            cname = RR(DNSLabel(query.labels), QTYPE.CNAME, 1, ttl, CNAME(name))
            reply.rr = [cname, *reply.rr]
            data = bytes(reply.pack())
            if len(data) > limit:
                reply.rr, reply.auth, reply.ar = [], [], []
                reply.header.tc = 1
                data = bytes(reply.pack())
            return data
        return None


def _parse(r: Reader, setup: Setup) -> str:
    r.count(r.d.args, 1, 16, "@kubernetes | RESOLV-CONF")
    return r.d.args[0]


def _build(config: str | AutoPath, build: Build) -> None:
    """``autopath @kubernetes`` needs the kubernetes plugin with ``pods verified`` to know
    the client pod by its IP; the server's own search domains come from /etc/resolv.conf,
    as CoreDNS takes them. Raises ConfigError otherwise. (An AutoPath is taken as it is.)"""
    if isinstance(config, AutoPath):
        build.autopath = config
        return
    if config != "@kubernetes":
        raise ConfigError(f"autopath: only @kubernetes is supported, got {config!r}")
    kubernetes = build.configs.get("kubernetes")
    zone = kubernetes if isinstance(kubernetes, ZoneConfig) else getattr(kubernetes, "zone", None)
    if zone is None or zone.pods != PodMode.VERIFIED:
        raise ConfigError("autopath @kubernetes needs the kubernetes plugin with pods verified")
    try:
        with open("/etc/resolv.conf") as f:
            domains = parse_resolv_conf(f.read()).search
    except OSError:
        domains = []
    build.autopath = AutoPath(domains)


PLUGIN = Plugin("autopath", _parse, _build, source=lambda config: Source(pods=True))
"""CoreDNS plugin/autopath: the pod's search path walked on the server."""
