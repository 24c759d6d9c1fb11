"""Replies out: answers encoded from the core's record tuples, error replies, and negative
answers from the zone SOA template. Our own encoder, not a library's: it writes
:class:`~clusterdns.core.rr.RR` tuples straight into bytes (measured 3-4x faster than
dnslib, docs/design.md), and a miss is encoded once, then served from the answer cache.

Names are compressed against the question, so the client's case comes back for free (behaviour.md
12); records are kept whole and TC is set only when required data is missing.

Sources: RFC 1035 3.2, 4.1 (format) and 4.1.4 (compression), RFC 2181 9 (TC), RFC 2308 3
(negative answers), RFC 2782 (SRV targets never compressed), RFC 6891 (the OPT record).
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from ..core.resolver import Answer
from ..core.rr import RR as Rec
from ..core.rr import QType, Rcode, SOAData, SRVData
from . import message
from .edns import DEFAULT_UDP_SIZE, Edns, opt_record
from .message import (
    FLAG_AA,
    FLAG_CD,
    FLAG_QR,
    FLAG_RD,
    FLAG_TC,
    OPCODE_MASK,
    Query,
)

# Assigned, not imported by name, as in ``cache``: CPython makes a bound method per
# ``NAME.method()`` call on an imported name. These structs write every reply.
HEADER = message.HEADER
RRHEAD = message.RRHEAD
SOA_HEAD = message.SOA_HEAD
SOA_TIMES = message.SOA_TIMES


def _opt(query: Query, rcode: int) -> bytes:
    """The OPT RR of a reply to ``query`` (which has one): our payload, ``rcode``'s upper
    bits, version 0, DO copied (:func:`~clusterdns.dns.edns.opt_record`)."""
    assert query.edns is not None
    return opt_record(query.udp_size, rcode, query.edns[2])


def _header(query: Query, flags: int, counts: tuple[int, int, int], qd: int = 1) -> bytes:
    """A reply's header: ``flags`` with QR set and RD/CD copied from the query (RFC 1035
    4.1.1, RFC 4035 3.1.6), ``qd`` questions, ``counts``: answer, authority, additional."""
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
    edns: Edns | None = None,
    udp_size: int = DEFAULT_UDP_SIZE,
) -> bytes:
    """A reply to a query whose question could not be read: header only (RFC 1035 4.1.1),
    plus an OPT (``udp_size`` bytes, DO copied) when the query had one, ``edns`` (RFC 6891
    6.1.1: a responder MUST include an OPT in a reply to a request with one)."""
    flags = FLAG_QR | (query_flags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | (rcode & 0xF)
    if edns is None:
        return HEADER.pack(ident, flags, 0, 0, 0, 0)
    return HEADER.pack(ident, flags, 0, 0, 0, 1) + opt_record(udp_size, rcode, edns[2])


class _Writer:
    """Appends records to a response in wire form (RFC 1035 3.2, 4.1.3, 4.1.4).

    Names are compressed against every name already written, matched case-insensitively,
    so a pointer into the question gives the client's own case for free: the owner that
    equals the qname, and the zone part of synthesised names (docs/behaviour.md 12). SRV targets are
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
    SRV); other types are left out. Read by attribute: this module does not import dnslib."""
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
    return soa_tail(12 + len(qname) - len(zone), ttl, times)


def soa_tail(offset: int, ttl: int, times: tuple[int, int, int, int, int]) -> bytes:
    """The zone SOA record of a negative answer, its names compression pointers to the
    zone at byte ``offset`` of the message (inside the question): ``<zone> SOA
    ns.dns.<zone> hostmaster.<zone>`` with ``times`` (serial, refresh, retry, expire,
    minimum; seconds) and TTL ``ttl`` seconds (RFC 1035 3.3.13, 4.1.4; RFC 2308 3)."""
    pointer = (0xC000 | offset).to_bytes(2, "big")
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
    missing; CoreDNS sets TC here too, behaviour.md 17). The OPT record always fits: its room is
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
