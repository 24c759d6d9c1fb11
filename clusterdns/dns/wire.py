"""DNS messages on the wire: queries in, and the one import for our codec.

The query's header, question and OPT record are parsed here by hand (RFC 1035 4.1, RFC 6891
6.1): all a server needs of a query, on every cache miss. The rest of the codec lives by job,
and its names are re-exported here so ``from clusterdns.dns.wire import ...`` keeps working:

- ``message``: header and record layouts, flags, :class:`Query`;
- ``edns``: EDNS0 (the OPT record, its options) and the UDP size limit buckets;
- ``encode``: answers encoded from the core's record tuples by our own encoder (not dnslib),
  truncation, error replies, the negative-answer SOA template;
- ``cache``: :class:`AnswerCache`, the hot path (a hit answered from the packet's bytes).

Sources: RFC 1035 4.1 (format), RFC 6891 (EDNS0), RFC 2181 9 (TC), RFC 5452 9.1 and
docs/behaviour.md 12 (the question echoed byte for byte).
"""

from __future__ import annotations

import struct

from ..core.errors import FormatError, NotImplementedOpcode
from ..core.rr import QType
from . import message
from .cache import AnswerCache, CacheKey, Tags
from .edns import (
    DEFAULT_UDP_SIZE,
    MIN_UDP,
    OPT_HEAD,
    OPT_SIZE,
    OPTION_COOKIE,
    PAYLOAD_BUCKETS,
    TCP_LIMIT,
    Edns,
    check_options,
    find_opt,
    udp_limit,
)
from .encode import (
    encode_answer,
    error_response,
    from_upstream,
    header_only_response,
    negative_response,
    soa_template,
)
from .message import (
    FLAG_AA,
    FLAG_CD,
    FLAG_QR,
    FLAG_RD,
    FLAG_TC,
    MAX_NAME,
    OPCODE_MASK,
    REPLY_HEAD,
    SOA_HEAD,
    SOA_TIMES,
    Drop,
    Query,
)

# Assigned, not imported by name, as in ``cache``: CPython makes a bound method per
# ``NAME.method()`` call on an imported name. These structs read every query.
HEADER = message.HEADER
QTAIL = message.QTAIL
RRHEAD = message.RRHEAD

__all__ = [
    "DEFAULT_UDP_SIZE",
    "FLAG_AA",
    "FLAG_CD",
    "FLAG_QR",
    "FLAG_RD",
    "FLAG_TC",
    "HEADER",
    "MAX_NAME",
    "MIN_UDP",
    "OPCODE_MASK",
    "OPTION_COOKIE",
    "OPT_HEAD",
    "OPT_SIZE",
    "PAYLOAD_BUCKETS",
    "QTAIL",
    "REPLY_HEAD",
    "RRHEAD",
    "SOA_HEAD",
    "SOA_TIMES",
    "TCP_LIMIT",
    "AnswerCache",
    "CacheKey",
    "Drop",
    "Edns",
    "FormatError",
    "NotImplementedOpcode",
    "Query",
    "Tags",
    "check_options",
    "encode_answer",
    "error_response",
    "find_opt",
    "from_upstream",
    "header_only_response",
    "negative_response",
    "parse_header",
    "parse_query",
    "soa_template",
    "udp_limit",
]


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
    """A raw label as lower-case text, ``.`` and ``\\`` escaped (never cluster data)."""
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
    return Query(ident, flags, question, _qname(question), tuple(raw_labels), qtype, qclass, edns)


def _qname(question: bytes) -> str:
    """The question's name as lower-case absolute text, from its (checked, uncompressed)
    wire form: the length bytes become dots in one pass over a copy. A label that holds a
    dot or a backslash is escaped label by label (:func:`_label_text`), so it never
    matches cluster data."""
    end = len(question) - 5  # the root label's zero byte, then qtype and qclass
    if end <= 0:
        return "."
    text = bytearray(question[:end].lower())
    pos, labels = 0, 0
    while pos < end:
        length = text[pos]
        text[pos] = 46  # "."
        pos += 1 + length
        labels += 1
    name = text.decode("latin-1")
    if name.count(".") != labels or "\\" in name:
        raw, pos = [], 0
        while pos < end:
            length = question[pos]
            raw.append(_label_text(question[pos + 1 : pos + 1 + length]))
            pos += 1 + length
        return ".".join(raw) + "."
    return name[1:] + "."
