"""kubernetes: the cluster zone's plugin (CoreDNS kubernetes plugin; behaviour.md 2-12).

The answers themselves come from the pure resolver (``core.resolver.resolve``); the step
decides what becomes of them: autopath on NXDOMAIN, an ExternalName target chased
upstream, ``fallthrough`` handed on to the next plugin, else the answer encoded and kept.
Its :meth:`Kubernetes.negative` decides a certain NXDOMAIN from the question alone
(``core.depends.quick_negative``) for the fast path (docs/design.md 4) and, when the fast
path could not take it (a rewritten question, a plugin before this one), for the step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.depends import quick_negative
from ..core.resolver import ZoneConfig, resolve
from ..core.rr import Rcode, soa_timers
from ..core.store import Store, Tag
from ..dns.encode import negative_response
from ..dns.message import Query
from .plugin import Ask, Build, Chain, Outcome, Plugin, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup
    from .kubernetes_setup import KubernetesConfig

QUICK_NEGATIVE_TTL = 300  # seconds at most, as the resolver caps a negative TTL


class Kubernetes(Step):
    """The kubernetes step of one server block: ``store`` and ``config`` answer.
    ``quick``: decide certain NXDOMAINs without the resolver; off with autopath (its
    NXDOMAIN may become another name's answer, per client)."""

    def __init__(self, store: Store, config: ZoneConfig, quick: bool = True) -> None:
        super().__init__(self.answer)
        self.store = store
        self.config = config
        self.quick = quick
        if quick:
            self.negative = self.made

    def answer(self, chain: Chain, ask: Ask) -> Outcome | None:
        """The reply and ``"kubernetes"`` (or ``"autopath"``), or None to go on (not the
        zone, or ``fallthrough``: the answer is left in ``ask.passed``). An NXDOMAIN an
        exposure plugin fell through with (``ask.passed``) stands for a name outside the
        zone."""
        query, limit = ask.query, ask.limit
        if self.quick:
            made = self.made(query)
            if made is not None:
                header, tail, tags = made
                if not ask.rewritten:
                    chain.keep(query, limit, header, tail, None, tags)
                return header + query.question + tail, "kubernetes"
        answer = resolve(self.store, query.qname, query.qtype, self.config)
        if answer is None:
            answer = ask.passed
            if answer is None:
                return None
        if answer.rcode == Rcode.NXDOMAIN:
            found = chain.autopath(ask, answer)
            if found is not None:
                return found
        if answer.fallthrough:
            ask.passed = answer
            return None
        keep = not ask.rewritten and not (self.autopath_on and answer.rcode == Rcode.NXDOMAIN)
        return chain.reply(query, answer, limit, keep), "kubernetes"

    @property
    def autopath_on(self) -> bool:
        """Whether autopath may turn this block's NXDOMAINs into other names' answers (per
        client: such an NXDOMAIN is not kept)."""
        return not self.quick

    def made(self, query: Query) -> tuple[bytes, bytes, tuple[Tag, ...]] | None:
        """``(header, tail, tags)`` of the certain NXDOMAIN for ``query`` from the SOA
        template (RFC 2308 3: the SOA's minimum caps the negative TTL), or None when the
        resolver must decide. Reads the store only: safe from any serving thread."""
        config = self.config
        found = quick_negative(self.store, query.qname, config)
        if found is None:
            return None
        zone, tags = found
        ttl = config.ttl
        times = (self.store.serial, *soa_timers(ttl))
        made = negative_response(query, Rcode.NXDOMAIN, zone, min(ttl, QUICK_NEGATIVE_TTL), times)
        if made is None:
            return None
        return made[0], made[1], tags


def _parse(r: Reader, setup: Setup) -> KubernetesConfig:
    from .kubernetes_setup import parse_kubernetes

    return parse_kubernetes(r, setup.zones, setup.warnings)


def _build(config: KubernetesConfig | ZoneConfig, build: Build) -> Step:
    """The zone with our own addresses (NS glue); a ZoneConfig is taken as it is (the
    resolver's own configuration, as tools and tests give it)."""
    zone = config if isinstance(config, ZoneConfig) else config.answering(build.addresses)
    build.config = zone
    return Kubernetes(build.store, zone, quick=build.autopath is None)


PLUGIN = Plugin("kubernetes", _parse, _build)
"""CoreDNS plugin/kubernetes: the cluster zone and its reverse zones."""
