"""DNS messages on the wire: query parsing, response encoding, EDNS0, truncation, answer cache.

The query's header, question and OPT record are parsed here by hand: that is the hot path
(DESIGN.md 3) and all a server needs of a query. Answers are encoded with dnslib on a cache
miss; the encoded sections after the question are cached, so a hit copies bytes only.

Sources: RFC 1035 4.1 (format), RFC 6891 (EDNS0), RFC 2181 9 (TC), RFC 5452 9.1 and
SPEC.md 12 (the question echoed byte for byte).
"""

from __future__ import annotations

import itertools
import socket
import struct
from dataclasses import dataclass
from typing import Any

from ..core.errors import FormatError, NotImplementedOpcode
from ..core.resolver import Answer
from ..core.rr import RR as Rec
from ..core.rr import QType, Rcode, SOAData, SRVData

HEADER = struct.Struct("!HHHHHH")
QTAIL = struct.Struct("!HH")
RRHEAD = struct.Struct("!HHIH")
OPT_HEAD = struct.Struct("!BHHIH")  # owner (root), type, class (payload), TTL, RDLENGTH
REPLY_HEAD = struct.Struct("!HHH")  # ID, flags, QDCOUNT
SOA_HEAD = RRHEAD  # type, class, TTL, RDLENGTH
SOA_TIMES = struct.Struct("!IIIII")  # serial, refresh, retry, expire, minimum

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_CD = 0x0010
OPCODE_MASK = 0x7800

MIN_UDP = 512  # RFC 1035 4.2.1; EDNS payloads below it count as 512 (RFC 6891 6.2.5)
DEFAULT_UDP_SIZE = 1232  # our own EDNS payload: DNS Flag Day 2020, Knot's default
PAYLOAD_BUCKETS = (4096, 1232)  # UDP limits between ours and 512 (DESIGN.md 3)
OPTION_COOKIE = 10  # RFC 7873
TCP_LIMIT = 65535  # RFC 1035 4.2.2: two-octet length
MAX_NAME = 255  # octets, wire form (RFC 1035 2.3.4)
OPT_SIZE = 11  # an OPT RR without options


class Drop(Exception):
    """A packet that gets no reply at all: header unreadable, or QR set (a response)."""


@dataclass(slots=True)
class Query:
    """A parsed query.

    ``question``: the question section exactly as sent (name with the client's case, type,
    class); ``qname``: lower-case absolute text (labels with ``.`` or ``\\`` are escaped so
    they never match cluster data); ``labels``: the raw labels as sent;
    ``edns``: None, or ``(udp payload in bytes, version, DO bit)``; ``udp_size``: our own
    EDNS payload in bytes, what replies over UDP are capped at and what our OPT advertises
    (set by the handler; CoreDNS ``bufsize``).
    """

    id: int
    flags: int
    question: bytes
    qname: str
    labels: tuple[bytes, ...]
    qtype: int
    qclass: int
    edns: tuple[int, int, bool] | None
    udp_size: int = DEFAULT_UDP_SIZE

    def limit(self, tcp: bool) -> int:
        """Largest response in bytes: 65535 on TCP, 512 without EDNS, else
        :func:`udp_limit` of the client's payload and ours."""
        if tcp:
            return TCP_LIMIT
        if self.edns is None:
            return MIN_UDP
        return udp_limit(self.edns[0], self.udp_size)


def udp_limit(payload: int, ours: int) -> int:
    """The size a UDP reply is encoded for: the largest of ``ours``, 4096, 1232 and 512
    (bytes) that is not over ``min(payload, ours)``, the client's and our EDNS payload
    (RFC 6891 6.2.5: never more than the requestor's; 6.2.3: below 512 counts as 512).

    A few buckets, never the exact size: the answer cache is keyed by this value, and a
    client varying its payload byte by byte must not create an entry per value (issue 14).
    """
    if payload >= ours:
        return ours
    for bucket in PAYLOAD_BUCKETS:
        if payload >= bucket:
            return bucket
    return MIN_UDP


def check_options(data: bytes, pos: int, end: int) -> None:
    """Check the options of an OPT record's RDATA, ``data[pos:end]`` (RFC 6891 6.1.2):
    each a code, a length and that many bytes, exactly filling the RDATA; a COOKIE of 8
    or 16 to 40 bytes (RFC 7873 5.2.2). Raises FormatError."""
    while pos < end:
        if pos + 4 > end:
            raise FormatError("EDNS option header runs past the OPT record")
        code, length = struct.unpack_from("!HH", data, pos)
        pos += 4 + length
        if pos > end:
            raise FormatError("EDNS option runs past the OPT record")
        if code == OPTION_COOKIE and length != 8 and not 16 <= length <= 40:
            raise FormatError(f"EDNS COOKIE of {length} bytes")


def find_opt(data: bytes) -> tuple[int, int, bool] | None:
    """The EDNS ``(payload, version, DO)`` of a packet that may not parse (to answer
    FORMERR/NOTIMP with an OPT, RFC 6891 6.1.1): the root-owned OPT record ending the
    packet, found from its end. None if there is none to be found."""
    if len(data) < 23 or not struct.unpack_from("!H", data, 10)[0]:
        return None
    end = len(data)
    pos = data.rfind(b"\x00\x00\x29", 12, end - 8)
    while pos >= 12:
        root, rtype, payload, ttl, rdlength = OPT_HEAD.unpack_from(data, pos)
        if pos + 11 + rdlength == end:
            return payload, (ttl >> 16) & 0xFF, bool(ttl & 0x8000)
        pos = data.rfind(b"\x00\x00\x29", 12, pos + 2)
    return None


def _read_name(data: bytes, pos: int) -> tuple[list[bytes], int]:
    """Read an uncompressed name at ``pos``; return its labels and the offset after it.

    Raises FormatError for compression pointers, extended label types (RFC 6891 5), names
    over 255 octets and names that run past the end of the packet.
    """
    labels = []
    start = pos
    end = len(data)
    while True:
        if pos >= end:
            raise FormatError("name runs past the end of the packet")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length > 63:
            raise FormatError("compressed or extended label in the question")
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length
        if pos - start >= MAX_NAME:
            raise FormatError("name longer than 255 octets")
    if pos > end:
        raise FormatError("name runs past the end of the packet")
    return labels, pos


def _skip_name(data: bytes, pos: int) -> int:
    """Skip a possibly compressed name (in records after the question); FormatError if bad."""
    while True:
        if pos >= len(data):
            raise FormatError("name runs past the end of the packet")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length > 63:
            raise FormatError("extended label type")
        if length == 0:
            return pos + 1
        pos += 1 + length


def _label_text(label: bytes) -> str:
    text = label.lower().decode("latin-1")
    if "." in text or "\\" in text:
        text = text.replace("\\", "\\\\").replace(".", "\\.")
    return text


def parse_header(data: bytes) -> tuple[int, int]:
    """Return ``(id, flags)`` of a packet; Drop if it is shorter than a header or a response."""
    if len(data) < 12:
        raise Drop("shorter than a DNS header")
    ident, flags = struct.unpack_from("!HH", data)
    if flags & FLAG_QR:
        raise Drop("QR set: a response, not a query")
    return ident, flags


def parse_query(data: bytes) -> Query:
    """Parse a query (RFC 1035 4.1, RFC 6891 6.1).

    Raises Drop (no reply), NotImplementedOpcode (opcode other than QUERY) or FormatError
    (no or several questions, bad names, truncated records, more than one OPT or an OPT
    not owned by the root).
    """
    ident, flags = parse_header(data)
    _, _, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & OPCODE_MASK:
        raise NotImplementedOpcode("opcode not QUERY")
    if qdcount != 1:
        raise FormatError(f"{qdcount} questions, want 1")
    raw_labels, pos = _read_name(data, 12)
    if pos + 4 > len(data):
        raise FormatError("question runs past the end of the packet")
    qtype, qclass = QTAIL.unpack_from(data, pos)
    pos += 4
    question = data[12:pos]
    edns = None
    for index in range(ancount + nscount + arcount):
        owner = pos
        pos = _skip_name(data, pos)
        if pos + 10 > len(data):
            raise FormatError("record runs past the end of the packet")
        rtype, rclass, ttl, rdlength = RRHEAD.unpack_from(data, pos)
        pos += 10 + rdlength
        if pos > len(data):
            raise FormatError("record data runs past the end of the packet")
        if rtype == QType.OPT:
            if index < ancount + nscount or edns is not None or data[owner] != 0:
                raise FormatError("misplaced, repeated or non-root OPT record")
            check_options(data, pos - rdlength, pos)
            edns = (rclass, (ttl >> 16) & 0xFF, bool(ttl & 0x8000))
    qname = ".".join(_label_text(label) for label in raw_labels) + "." if raw_labels else "."
    return Query(ident, flags, question, qname, tuple(raw_labels), qtype, qclass, edns)


def _opt(query: Query, rcode: int) -> bytes:
    """The OPT RR of a reply (RFC 6891 6.1.2): our payload, extended rcode, version 0, DO."""
    assert query.edns is not None
    payload = query.udp_size  # what we honour (RFC 6891 6.2.3, 6.2.5)
    ttl = ((rcode >> 4) << 24) | (0x8000 if query.edns[2] else 0)
    return b"\x00" + RRHEAD.pack(QType.OPT, payload, ttl, 0)


def _header(query: Query, flags: int, counts: tuple[int, int, int], qd: int = 1) -> bytes:
    flags |= FLAG_QR | (query.flags & (FLAG_RD | FLAG_CD))
    return HEADER.pack(query.id, flags, qd, *counts)


def error_response(query: Query, rcode: int) -> bytes:
    """A reply with ``rcode`` and no records, the question echoed, OPT if the query had one.

    BADVERS (16) goes in the OPT's extended rcode (RFC 6891 6.1.3).
    """
    opt = _opt(query, rcode) if query.edns is not None else b""
    return _header(query, rcode & 0xF, (0, 0, 1 if opt else 0)) + query.question + opt


def header_only_response(
    ident: int,
    query_flags: int,
    rcode: int,
    edns: tuple[int, int, bool] | None = None,
    udp_size: int = DEFAULT_UDP_SIZE,
) -> bytes:
    """A reply to a query whose question could not be read: header only (RFC 1035 4.1.1),
    plus an OPT (``udp_size`` bytes, DO copied) when the query had one, ``edns`` (RFC 6891
    6.1.1: a responder MUST include an OPT in a reply to a request with one)."""
    flags = FLAG_QR | (query_flags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | (rcode & 0xF)
    if edns is None:
        return HEADER.pack(ident, flags, 0, 0, 0, 0)
    ttl = ((rcode >> 4) << 24) | (0x8000 if edns[2] else 0)
    opt = b"\x00" + RRHEAD.pack(QType.OPT, udp_size, ttl, 0)
    return HEADER.pack(ident, flags, 0, 0, 0, 1) + opt


class _Writer:
    """Appends records to a response in wire form (RFC 1035 3.2, 4.1.3, 4.1.4).

    Names are compressed against every name already written, matched case-insensitively,
    so a pointer into the question gives the client's own case for free: the owner that
    equals the qname, and the zone part of synthesised names (SPEC.md 12). SRV targets are
    written in full (RFC 2782) with the zone part in the query's case, and are not offered
    to later names. Only the pure core's record tuples are written: no dnslib.
    """

    __slots__ = ("data", "names", "zone", "zone_wire")

    def __init__(self, query: Query, zone: str) -> None:
        self.data = bytearray(12)
        self.data += query.question
        self.names: dict[str, int] = {}
        labels = query.labels
        offset = 12
        for i in range(len(labels)):  # every suffix of the question name, at its offset
            self.names.setdefault(_suffix(labels, i), offset)
            offset += 1 + len(labels[i])
        self.zone = zone
        count = zone.count(".") if zone != "." else 0
        zone_labels = labels[len(labels) - count :] if 0 < count <= len(labels) else ()
        self.zone_wire = b"".join(bytes((len(x),)) + x for x in zone_labels)

    def name(self, name: str, compress: bool = True) -> None:
        """Write an absolute lower-case name, compressed when ``compress``."""
        data = self.data
        if name == ".":
            data.append(0)
            return
        labels = name[:-1].split(".")
        if not compress:
            zone = self.zone
            if self.zone_wire and (name == zone or name.endswith("." + zone)):
                labels = labels[: len(labels) - zone.count(".")]
                for label in labels:
                    raw = label.encode("latin-1")
                    data.append(len(raw))
                    data += raw
                data += self.zone_wire
                data.append(0)
                return
            for label in labels:
                raw = label.encode("latin-1")
                data.append(len(raw))
                data += raw
            data.append(0)
            return
        names = self.names
        for i in range(len(labels)):
            suffix = ".".join(labels[i:]) + "."
            pointer = names.get(suffix)
            if pointer is not None:
                data += (0xC000 | pointer).to_bytes(2, "big")
                return
            if len(data) < 0x3FFF:
                names[suffix] = len(data)
            raw = labels[i].encode("latin-1")
            data.append(len(raw))
            data += raw
        data.append(0)

    def record(self, rec: Rec) -> None:
        """Write one resource record."""
        self.name(rec.name)
        data = self.data
        data += RRHEAD.pack(rec.rtype, 1, rec.ttl, 0)
        start = len(data)
        rtype, rdata = rec.rtype, rec.rdata
        if rtype == QType.A:
            data += socket.inet_pton(socket.AF_INET, rdata)  # type: ignore[arg-type]
        elif rtype == QType.AAAA:
            data += socket.inet_pton(socket.AF_INET6, rdata)  # type: ignore[arg-type]
        elif rtype == QType.SRV:
            assert isinstance(rdata, SRVData)
            data += struct.pack("!HHH", rdata.priority, rdata.weight, rdata.port)
            self.name(rdata.target, compress=False)  # RFC 2782: never compressed
        elif rtype == QType.SOA:
            assert isinstance(rdata, SOAData)
            self.name(rdata.mname)
            self.name(rdata.rname)
            data += struct.pack("!IIIII", *rdata[2:])
        elif rtype == QType.TXT:
            assert isinstance(rdata, tuple)
            for text in rdata:
                raw = str(text).encode()
                data.append(len(raw))
                data += raw
        else:  # CNAME, PTR, NS
            assert isinstance(rdata, str)
            self.name(rdata)
        struct.pack_into("!H", data, start - 2, len(data) - start)

    def rollback(self, mark: int) -> None:
        """Forget everything written from ``mark`` on, names offered included."""
        del self.data[mark:]
        for suffix in [k for k, v in self.names.items() if v >= mark]:
            del self.names[suffix]


def _suffix(labels: tuple[bytes, ...], i: int) -> str:
    return b".".join(labels[i:]).lower().decode("latin-1") + "."


def from_upstream(records: list[Any]) -> list[Rec]:
    """dnslib records from a forwarder as the core's tuples (A, AAAA, CNAME, PTR, NS, TXT,
    SRV); other types are left out."""
    out = []
    for rr in records:
        rtype = rr.rtype
        owner = str(rr.rname).lower()
        if rtype in (QType.A, QType.AAAA):
            out.append(Rec(owner, rtype, rr.ttl, str(rr.rdata)))
        elif rtype in (QType.CNAME, QType.PTR, QType.NS):
            out.append(Rec(owner, rtype, rr.ttl, str(rr.rdata.label).lower()))
        elif rtype == QType.TXT:
            strings = tuple(s.decode("utf-8", "replace") for s in rr.rdata.data)
            out.append(Rec(owner, rtype, rr.ttl, strings))
        elif rtype == QType.SRV:
            d = rr.rdata
            out.append(
                Rec(
                    owner,
                    rtype,
                    rr.ttl,
                    SRVData(d.priority, d.weight, d.port, str(d.target).lower()),
                )
            )
    return out


def _negative(query: Query, answer: Answer) -> bytes | None:
    """The authority section of a negative answer (NXDOMAIN, NODATA) from a template: the
    zone SOA, with owner, MNAME and RNAME pointing at the zone inside the question
    (RFC 1035 4.1.4), so its case is the client's. The same bytes the general writer
    gives, without walking names. None when the template does not apply."""
    soa = answer.authority[0]
    data = soa.rdata
    zone = answer.zone
    if (
        soa.rtype != QType.SOA
        or not isinstance(data, SOAData)
        or soa.name != zone
        or data.mname != "ns.dns." + zone
        or data.rname != "hostmaster." + zone
    ):
        return None
    return soa_template(query, zone, soa.ttl, data[2:])


def soa_template(
    query: Query, zone: str, ttl: int, times: tuple[int, int, int, int, int]
) -> bytes | None:
    """The zone SOA as the authority of a negative answer (RFC 2308 3), names pointing
    into the question: ``ns.dns.<zone>``, ``hostmaster.<zone>``; ``times``: serial,
    refresh, retry, expire, minimum (seconds). None when the question's name is not in
    ``zone`` as plain labels (an escaped label: the general writer's job)."""
    qname = query.qname
    if (
        zone == "."
        or not (qname == zone or qname.endswith("." + zone))
        or len(query.question) != len(qname) + 5
    ):
        return None
    pointer = (0xC000 | (12 + len(qname) - len(zone))).to_bytes(2, "big")
    return (
        pointer
        + SOA_HEAD.pack(QType.SOA, 1, ttl, 42)
        + b"\x02ns\x03dns"
        + pointer
        + b"\x0ahostmaster"
        + pointer
        + SOA_TIMES.pack(*times)
    )


def negative_response(
    query: Query, rcode: int, zone: str, ttl: int, times: tuple[int, int, int, int, int]
) -> tuple[bytes, bytes] | None:
    """``(header, tail)`` of an authoritative NXDOMAIN/NODATA (``rcode``) from the SOA
    template (:func:`soa_template`), as :func:`encode_answer` would make it; None when the
    template does not apply. RFC 2308 3, RFC 6891 (OPT echoed)."""
    negative = soa_template(query, zone, ttl, times)
    if negative is None:
        return None
    if query.edns is not None:
        opt = _opt(query, rcode)
        return _header(query, FLAG_AA | rcode, (0, 1, 1)), negative + opt
    return _header(query, FLAG_AA | rcode, (0, 1, 0)), negative


def encode_answer(
    query: Query, answer: Answer, limit: int, upstream: list[Any] | None = None
) -> tuple[bytes, int, bytes]:
    """Encode ``answer`` to fit ``limit`` bytes; return ``(header, flags, tail)``.

    ``upstream``: dnslib records from a forwarder, appended to the answer section after
    ``answer.answer`` (an ExternalName target's records follow its CNAME).

    ``tail`` is everything after the question. Records are kept whole, in order: answer,
    authority, additional (RFC 1035 4.2.1). When an answer or authority record does not
    fit, TC is set and nothing more is added. Additional records that do not fit are
    dropped a whole RRset at a time without TC (RFC 2181 9: TC only when required data is
    missing; CoreDNS sets TC here too, SPEC.md 16). The OPT record always fits: its room is
    kept back.
    """
    opt = _opt(query, answer.rcode) if query.edns is not None else b""
    if not answer.answer and not answer.additional and len(answer.authority) == 1:
        negative = _negative(query, answer)
        if negative is not None:
            flags = FLAG_AA | (answer.rcode & 0xF)
            return _header(query, flags, (0, 1, 1 if opt else 0)), flags, negative + opt
    writer = _Writer(query, answer.zone)
    room = limit - len(opt)
    counts = [0, 0, 0]
    authoritative = answer.rcode in (Rcode.NOERROR, Rcode.NXDOMAIN)
    flags = (FLAG_AA if authoritative else 0) | (answer.rcode & 0xF)
    truncated = False
    answers = answer.answer + from_upstream(upstream) if upstream else answer.answer
    for section, records in enumerate((answers, answer.authority, answer.additional)):
        rrset_start = (0, 0, ("", 0))
        for rec in records:
            mark = len(writer.data)
            if section == 2 and rrset_start[2] != (rec.name, rec.rtype):
                rrset_start = (mark, counts[2], (rec.name, rec.rtype))
            writer.record(rec)
            if len(writer.data) <= room:
                counts[section] += 1
                continue
            if section == 2:
                mark, counts[2] = rrset_start[0], rrset_start[1]
            else:
                truncated = True
            writer.rollback(mark)
            break
        if truncated or (section == 2 and counts[2] < len(records)):
            break
    if truncated:
        flags |= FLAG_TC
    tail = bytes(writer.data[12 + len(query.question) :]) + opt
    header = _header(query, flags, (counts[0], counts[1], counts[2] + (1 if opt else 0)))
    return header, flags, tail


CacheKey = tuple[bytes, bytes, int, bool, bool]
"""Lower-cased qname wire bytes, qtype+qclass bytes, size limit, EDNS present, DO bit."""
Tags = tuple[Any, ...]
"""What a cached answer depends on (``store.Tag`` values: ``("svc", ns, name)``, ...)."""
INTERN_MAX = 4096  # shared copies of small repeated values (tags, counts, qtype bytes)
SMALL = 8  # keys under one tag kept in a list up to this many, then in a set


class AnswerCache:
    """Encoded answers by question, kept per name and invalidated per name (DESIGN.md 3,
    docs/design-answers.md).

    Key: the lower-cased question bytes, the size limit (one of a few buckets: see
    :func:`udp_limit`), EDNS present, DO bit.
    Value: header flags, counts, the encoded sections after the question, and the *tags*
    the answer depends on. A hit copies the query ID, RD/CD and the question as sent: owner
    names are compression pointers to the question, so they carry the client's case.

    Invalidation: :meth:`invalidate` (called by the store, see ``Store.listen``) drops
    exactly the entries indexed under a touched tag; entries of other names survive.
    Cluster answers are never served stale.

    Bounds: positive answers (the compiled part of the zone that is asked for) up to
    ``max_entries``; negative answers (NXDOMAIN, NODATA, SERVFAIL: what a flood of random
    names produces) up to ``max_negative`` on their own, so a flood never evicts a positive
    answer. Oldest first in each part.

    Memory (measured, docs/performance.md): about 500-700 bytes per entry, key, encoded
    answer and tag index included.
    """

    __slots__ = (
        "entries",
        "rotations",
        "max_entries",
        "max_negative",
        "by_tag",
        "negatives",
        "shared",
        "hits",
        "misses",
        "turn",
        "last_qtype",
        "udp_size",
        "__weakref__",
    )

    def __init__(self, max_entries: int = 200_000, max_negative: int = 20_000) -> None:
        self.entries: dict[CacheKey, tuple[int, bytes, bytes, Tags]] = {}
        # loadbalance: further encodings of an entry with its addresses rotated
        self.rotations: dict[CacheKey, tuple[bytes, ...]] = {}
        # tag -> the keys of the entries that depend on it: a list while few (most tags
        # have one or two entries, and a set costs 216 bytes), a set beyond SMALL
        self.by_tag: dict[Any, list[CacheKey] | set[CacheKey]] = {}
        # the negative entries in insertion order, for their own eviction (values unused);
        # the positive ones are the others, in the order of ``entries``
        self.negatives: dict[CacheKey, None] = {}
        # one copy of each repeated small value (counts, qtype+qclass bytes, tag tuples):
        # about 150 bytes less per entry; emptied when it grows past INTERN_MAX
        self.shared: dict[Any, Any] = {}
        self.turn = 0
        self.max_entries = max_entries
        self.max_negative = max_negative
        self.hits = 0
        self.misses = 0
        self.last_qtype = 0  # the qtype of the last :meth:`lookup` hit (for metrics)
        self.udp_size = DEFAULT_UDP_SIZE  # our EDNS payload (bytes): see udp_limit

    def lookup(self, data: bytes, tcp: bool) -> bytes | None:
        """The hot path: the whole reply for a query packet straight from its bytes.

        No parsing into objects, no dnslib: the header, the question's labels and an OPT
        record are checked in place and the key is cut from the packet. Returns None on a
        miss and for anything out of the ordinary (a response, another opcode, several
        questions, records other than one OPT, EDNS version > 0, a bad or compressed
        name): the caller then takes the full, checking path.
        """
        if len(data) < 17:
            return None
        ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
        if flags & 0xF800 or qdcount != 1 or ancount or nscount or arcount > 1:
            return None
        end = len(data)
        # The first zero byte ends the name when the name is well formed; when it is not
        # (a zero inside a label, a pointer), the bytes up to it cannot equal a cached key,
        # which always is a whole, checked name with its only zero at its end: a miss.
        pos = data.find(0, 12)
        if pos < 0:
            return None
        qend = pos + 5  # the root label, qtype, qclass
        if arcount:
            if qend + 11 > end:
                return None
            root, rtype, payload, ttl, rdlength = OPT_HEAD.unpack_from(data, qend)
            if root or rtype != 41 or ttl & 0x00FF0000 or qend + 11 + rdlength != end:
                return None
            if rdlength:
                try:
                    check_options(data, qend + 11, end)
                except FormatError:
                    return None  # the full path answers FORMERR
            ours = self.udp_size  # udp_limit inlined: the key holds a bucket, not the payload
            limit = (
                65535
                if tcp
                else ours
                if payload >= ours
                else 4096
                if payload >= 4096
                else 1232
                if payload >= 1232
                else 512
            )
            key = (data[12 : pos + 1].lower(), data[pos + 1 : qend], limit, True, ttl & 0x8000 != 0)
        else:
            if qend != end:
                return None
            key = (
                data[12 : pos + 1].lower(),
                data[pos + 1 : qend],
                65535 if tcp else 512,
                False,
                False,
            )
        hit = self.entries.get(key)
        if hit is None:
            return None
        self.hits += 1
        cached_flags, counts, tail, _ = hit
        if self.rotations:
            tail = self._rotated(key, tail)
        self.last_qtype = (data[pos + 1] << 8) | data[pos + 2]
        return (
            REPLY_HEAD.pack(ident, cached_flags | FLAG_QR | (flags & 0x0110), 1)
            + counts
            + data[12:qend]
            + tail
        )

    def _rotated(self, key: CacheKey, tail: bytes) -> bytes:
        """loadbalance: the next of the entry's encodings, in turn."""
        variants = self.rotations.get(key)
        if not variants:
            return tail
        self.turn += 1
        pick = self.turn % (len(variants) + 1)
        return variants[pick - 1] if pick else tail

    @staticmethod
    def key(query: Query, limit: int) -> CacheKey:
        """The cache key of a query answered within ``limit`` bytes.

        Only the name is lower-cased: qtype/qclass bytes must not be (0x41 is not 0x61).
        """
        edns = query.edns
        question = query.question
        return (
            question[:-4].lower(),
            question[-4:],
            limit,
            edns is not None,
            bool(edns and edns[2]),
        )

    def get(self, query: Query, limit: int) -> bytes | None:
        """The full response for ``query`` if cached, else None."""
        key = self.key(query, limit)
        hit = self.entries.get(key)
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        flags, counts, tail, _ = hit
        if self.rotations:
            tail = self._rotated(key, tail)
        flags |= FLAG_QR | (query.flags & (FLAG_RD | FLAG_CD))
        return REPLY_HEAD.pack(query.id, flags, 1) + counts + query.question + tail

    def __len__(self) -> int:
        return len(self.entries)

    def _drop(self, key: CacheKey) -> None:
        """Forget one entry and its place in every index."""
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        by_tag = self.by_tag
        for tag in entry[3]:
            keys = by_tag.get(tag)
            if keys is not None:
                if type(keys) is set:
                    keys.discard(key)
                elif key in keys:
                    keys.remove(key)
                if not keys:
                    del by_tag[tag]
        if self.rotations:
            self.rotations.pop(key, None)
        self.negatives.pop(key, None)

    def invalidate(self, tags: set[Any] | None) -> None:
        """Drop the entries that depend on any of ``tags`` (None: every entry).

        Called by the store after each change that alters answers (``Store.listen``);
        costs O(entries dropped), whatever the size of the cache.
        """
        if tags is None:
            self.clear()
            return
        by_tag = self.by_tag
        for tag in tags:
            keys = by_tag.get(tag)
            if keys:
                for key in list(keys):
                    self._drop(key)

    def clear(self) -> None:
        """Drop every entry."""
        self.entries.clear()
        self.rotations.clear()
        self.by_tag.clear()
        self.negatives.clear()
        self.shared.clear()

    def _share(self, value: Any) -> Any:
        """One shared copy of a small immutable value."""
        shared = self.shared
        if len(shared) >= INTERN_MAX:
            shared.clear()
        return shared.setdefault(value, value)

    def _evict_negative(self) -> None:
        """Drop the oldest tenth of the negative entries at once.

        Deleting the first key of a dict one at a time leaves dead slots at the front that
        every next ``iter`` walks again: the order dict is rebuilt instead (O(1) per insert
        over time).
        """
        victims = list(itertools.islice(self.negatives, max(1, self.max_negative // 10)))
        for key in victims:
            self._drop(key)
        self.negatives = dict.fromkeys(self.negatives)

    def _evict_positive(self) -> None:
        """Drop the oldest tenth of the positive entries at once, and rebuild ``entries``
        (see :meth:`_evict_negative`)."""
        drop = max(1, self.max_entries // 10)
        negatives = self.negatives
        victims = list(itertools.islice((k for k in self.entries if k not in negatives), drop))
        for key in victims:
            self._drop(key)
        self.entries = dict(self.entries)

    def put(
        self,
        query: Query,
        limit: int,
        header: bytes,
        tail: bytes,
        rotations: list[bytes] | None = None,
        tags: Tags = ("any",),
    ) -> None:
        """Store an encoded response (``header`` as made by :func:`encode_answer`), and
        optionally ``rotations``: the same answer with its addresses in other orders, all
        with the same header counts, served in turn. ``tags``: what the answer depends on
        (the default, ``"any"``, drops it on every change of the cluster)."""
        name, qtail, size, edns, do = self.key(query, limit)
        key = (name, self._share(qtail), size, edns, do)
        if key in self.entries:
            self._drop(key)
        flags = struct.unpack_from("!H", header, 2)[0] & ~(FLAG_QR | FLAG_RD | FLAG_CD)
        if flags & 0xF != Rcode.NOERROR or header[6:8] == b"\x00\x00":
            if len(self.negatives) >= self.max_negative:
                self._evict_negative()
            self.negatives[key] = None
        elif len(self.entries) - len(self.negatives) >= self.max_entries:
            self._evict_positive()
        # namespace-wide tags are shared by many entries: one copy of each
        tags = tuple(self._share(t) if t[0] in ("ns", "nx") else t for t in tags)
        self.entries[key] = (self._share(flags), self._share(header[6:12]), tail, tags)
        by_tag = self.by_tag
        for tag in tags:
            keys = by_tag.get(tag)
            if keys is None:
                by_tag[tag] = [key]
            elif isinstance(keys, set):
                keys.add(key)
            elif key not in keys:
                keys.append(key)
                if len(keys) > SMALL:
                    by_tag[tag] = set(keys)
        if rotations:
            self.rotations[key] = tuple(rotations)
