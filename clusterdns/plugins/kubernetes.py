"""kubernetes: the cluster zone's plugin (CoreDNS kubernetes plugin; behaviour.md 2-12).

The answers themselves come from the pure resolver (``core.resolver.resolve``); the step
decides what becomes of them: autopath on NXDOMAIN, an ExternalName target chased
upstream, ``fallthrough`` handed on to the next plugin, else the answer encoded and kept.
Its :meth:`Kubernetes.negative` decides a certain NXDOMAIN from the question alone
(``core.depends.quick_negative``) for the fast path (docs/design.md 4) and, when the fast
path could not take it (a rewritten question, a plugin before this one), for the step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.depends import negative_below, quick_negative
from ..core.errors import FormatError
from ..core.resolver import ZoneConfig, is_reverse_zone, resolve
from ..core.rr import QType, Rcode, soa_timers
from ..core.store import Store, Tag
from ..dns import edns, message
from ..dns.encode import negative_response, soa_tail
from ..dns.message import FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RD, Query
from .plugin import Ask, Build, Chain, Outcome, Plugin, Source, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup
    from .kubernetes_setup import KubernetesConfig

QUICK_NEGATIVE_TTL = 300  # seconds at most, as the resolver caps a negative TTL
NOT_FAST = frozenset((QType.AXFR, QType.IXFR, QType.HINFO))  # transfers, loop probes
HEADER = message.HEADER  # assigned, not imported by name: LOAD_METHOD on the hot path
OPT_HEAD = edns.OPT_HEAD
check_options = edns.check_options
opt_record = edns.opt_record
NXDOMAIN_FLAGS = FLAG_QR | FLAG_AA | Rcode.NXDOMAIN
MEMO_MAX = 4096  # entries of a thread's from_wire memo (name suffixes, SOA records)


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
            # forward zones, longest first, with their wire form (lower-case), for the
            # wire-level negative; none when a fallthrough zone may hand NXDOMAINs on
            forward = sorted(
                (z for z in config.zones if z != "." and not is_reverse_zone(z)),
                key=len,
                reverse=True,
            )
            self.zone_wires = tuple((z, _wire(z)) for z in forward)
            if self.zone_wires and not config.fallthrough:
                self.wire_negative = self.from_wire

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

    # One function on purpose, like AnswerCache.lookup: the random-name flood's whole path.
    def from_wire(
        self, data: bytes, tcp: bool, udp_size: int, memo: dict[Any, Any] | None = None
    ) -> tuple[bytes, tuple[Tag, ...]] | None:
        """``(reply, tags)`` when the datagram is a plain query for a name certainly
        NXDOMAIN, decided and encoded from its bytes (no Query built): the random-name
        flood's path (docs/design.md 4). None for anything else (the parsing path then
        decides, with the same answer): a compressed, escaped or odd name, class other than
        IN, a transfer or loop probe, an OPT that is not plain version 0, a name the
        resolver must answer. The decision is ``core.depends.negative_below``'s, the SOA
        ``dns.encode.soa_tail``'s: byte for byte what :meth:`made` gives (tested).
        ``udp_size``: our EDNS payload (bytes), advertised in the OPT. ``memo``: the calling
        thread's own (``Tally.memo``): the names below the first label, placed in a zone
        once (a flood varies the first label), and the SOA record by its offset and the
        zone's serial; at most :data:`MEMO_MAX` entries, forgotten all at once."""
        end = len(data)
        if end < 17:
            return None
        ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
        if flags & 0xF800 or qdcount != 1 or ancount or nscount or arcount > 1:
            return None
        pos = data.find(0, 12)
        qend = pos + 5
        if pos < 0 or qend > end or data[pos + 3] != 0 or data[pos + 4] != 1:  # class IN
            return None
        qtype = (data[pos + 1] << 8) | data[pos + 2]
        if qtype in NOT_FAST:
            return None
        do = False
        if arcount:
            if qend + 11 > end:
                return None
            root, rtype, _, ttl, rdlength = OPT_HEAD.unpack_from(data, qend)
            if root or rtype != 41 or ttl & 0x00FF0000 or qend + 11 + rdlength != end:
                return None
            if rdlength:
                try:
                    check_options(data, qend + 11, end)
                except FormatError:
                    return None
            do = ttl & 0x8000 != 0
        elif qend != end:
            return None
        name = data[12 : pos + 1].lower()
        size = len(name)
        first = name[0] + 1  # where the name below the first label starts
        if size > 255 or first > 64 or first >= size:
            return None
        label = name[1:first]
        if b"." in label or b"\\" in label:
            return None  # a label the text form escapes: the parsing path's job
        below = name[first:]
        placed = None if memo is None else memo.get(below)
        if placed is None:
            placed = self._place(below)
            if memo is not None:
                if len(memo) >= MEMO_MAX:
                    memo.clear()
                memo[below] = placed
        if not placed:
            return None
        store, config = self.store, self.config
        if not store.synced:
            return None
        zone, labels_below, zone_size = placed
        found = negative_below(store, [label.decode("latin-1"), *labels_below], zone, config)
        if found is None:
            return None
        cut = 12 + size - zone_size  # the zone's offset in the message
        serial = store.serial
        kept = None if memo is None else memo.get(cut)
        if kept is not None and kept[0] == serial:
            tail = kept[1]
        else:
            ttl_ = config.ttl
            tail = soa_tail(cut, min(ttl_, QUICK_NEGATIVE_TTL), (serial, *soa_timers(ttl_)))
            if memo is not None:
                memo[cut] = (serial, tail)
        header = HEADER.pack(
            ident, NXDOMAIN_FLAGS | (flags & (FLAG_RD | FLAG_CD)), 1, 0, 1, 1 if arcount else 0
        )
        if arcount:
            tail += opt_record(udp_size, Rcode.NXDOMAIN, do)
        return header + data[12:qend] + tail, found[1]

    def _place(self, below: bytes) -> tuple[str, tuple[str, ...], int] | tuple[()]:
        """For the wire form of a name below its first label (lower-case, its only zero
        byte at its end): ``(zone, the labels left of the zone as text, the zone's length in
        bytes)`` for the longest forward zone it is in (itself or an ancestor), or ``()``
        when it is malformed, has a dot or backslash in a label, or is in none."""
        if b"." in below or b"\\" in below:
            return ()  # a label the text form escapes: the parsing path's job
        size = len(below) - 1
        starts = []
        at = 0
        while at < size:
            length = below[at]
            if length > 63:
                return ()
            starts.append(at)
            at += 1 + length
        if at != size:
            return ()  # a label runs past the end
        for forward, wire in self.zone_wires:
            cut = len(below) - len(wire)
            if cut >= 0 and below.endswith(wire) and cut in starts:
                labels = tuple(
                    below[s + 1 : s + 1 + below[s]].decode("latin-1") for s in starts if s < cut
                )
                return forward, labels, len(wire)
        return ()


def _wire(zone: str) -> bytes:
    """A lower-case absolute name in wire form (RFC 1035 3.1), e.g. for ``cluster.local.``
    ``b"\\x07cluster\\x05local\\x00"``."""
    labels = (label.encode() for label in zone.split(".") if label)
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def _parse(r: Reader, setup: Setup) -> KubernetesConfig:
    from .kubernetes_setup import parse_kubernetes

    return parse_kubernetes(r, setup.zones, setup.warnings)


def _build(config: KubernetesConfig | ZoneConfig, build: Build) -> Step:
    """The zone with our own addresses (NS glue); a ZoneConfig is taken as it is (the
    resolver's own configuration, as tools and tests give it)."""
    zone = config if isinstance(config, ZoneConfig) else config.answering(build.addresses)
    build.config = zone
    return Kubernetes(build.store, zone, quick=build.autopath is None)


def _source(config: KubernetesConfig | ZoneConfig) -> Source:
    """The API connection is the kubernetes directive's first (CoreDNS: its client);
    ``pods verified`` needs the Pods listed."""
    if isinstance(config, ZoneConfig):
        return Source(pods=config.pods == "verified", primary=True)
    return Source(
        config.kubeconfig,
        config.context,
        config.endpoint,
        config.startup_timeout,
        pods=config.pods == "verified",
        primary=True,
    )


PLUGIN = Plugin("kubernetes", _parse, _build, source=_source)
"""CoreDNS plugin/kubernetes: the cluster zone and its reverse zones."""
