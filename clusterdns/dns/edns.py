"""EDNS0 (RFC 6891) and the size a reply may take: the OPT record read from a query (its
options checked, found even in a packet that does not parse) and written into a reply, and
the UDP size limit as a few buckets.

Sources: RFC 1035 4.2.1 and 4.2.2 (512 bytes over UDP, 65535 over TCP), RFC 6891 6.1
(the OPT record), 6.2.3 and 6.2.5 (payload sizes), RFC 7873 5.2.2 (COOKIE lengths).
"""

from __future__ import annotations

import struct

from ..core.defaults import UDP_SIZE
from ..core.errors import FormatError
from ..core.rr import QType

OPT_HEAD = struct.Struct("!BHHIH")  # owner (root), type, class (payload), TTL, RDLENGTH
OPTION_HEAD = struct.Struct("!HH")  # option code, option length

MIN_UDP = 512  # RFC 1035 4.2.1; EDNS payloads below it count as 512 (RFC 6891 6.2.5)
DEFAULT_UDP_SIZE = UDP_SIZE  # our own EDNS payload in bytes (core.defaults)
PAYLOAD_BUCKETS = (4096, 1232)  # UDP limits between ours and 512 (docs/design.md)
OPTION_COOKIE = 10  # RFC 7873
TCP_LIMIT = 65535  # RFC 1035 4.2.2: two-octet length
OPT_SIZE = 11  # an OPT RR without options

Edns = tuple[int, int, bool]
"""A query's EDNS: ``(udp payload in bytes, version, DO bit)``."""


def udp_limit(payload: int, ours: int) -> int:
    """The size a UDP reply is encoded for: the largest of ``ours``, 4096, 1232 and 512
    (bytes) that is not over ``min(payload, ours)``, the client's and our EDNS payload
    (RFC 6891 6.2.5: never more than the requestor's; 6.2.3: below 512 counts as 512).

    A few buckets, never the exact size: the answer cache is keyed by this value, and a
    client varying its payload byte by byte must not create an entry per value (issue 14).
    ``AnswerCache.lookup`` inlines this function: change both together.
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
        code, length = OPTION_HEAD.unpack_from(data, pos)
        pos += 4 + length
        if pos > end:
            raise FormatError("EDNS option runs past the OPT record")
        if code == OPTION_COOKIE and length != 8 and not 16 <= length <= 40:
            raise FormatError(f"EDNS COOKIE of {length} bytes")


def find_opt(data: bytes) -> Edns | None:
    """The EDNS ``(payload, version, DO)`` of a packet that may not parse (to answer
    FORMERR/NOTIMP with an OPT, RFC 6891 6.1.1): the root-owned OPT record ending the
    packet, found from its end. None if there is none to be found."""
    if len(data) < 23 or not struct.unpack_from("!H", data, 10)[0]:
        return None
    end = len(data)
    pos = data.rfind(b"\x00\x00\x29", 12, end - 8)
    while pos >= 12:
        root, rtype, payload, ttl, rdlength = OPT_HEAD.unpack_from(data, pos)
        if pos + OPT_SIZE + rdlength == end:
            return payload, (ttl >> 16) & 0xFF, bool(ttl & 0x8000)
        pos = data.rfind(b"\x00\x00\x29", 12, pos + 2)
    return None


def opt_record(payload: int, rcode: int, do: bool) -> bytes:
    """The OPT RR of a reply, without options (RFC 6891 6.1.2, 6.1.3): ``payload`` (bytes,
    what we honour: RFC 6891 6.2.3, 6.2.5), the upper 8 bits of ``rcode`` as the extended
    rcode, version 0, the DO bit copied from the query (RFC 3225 3)."""
    ttl = ((rcode >> 4) << 24) | (0x8000 if do else 0)
    return OPT_HEAD.pack(0, QType.OPT, payload, ttl, 0)
