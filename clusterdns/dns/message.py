"""The DNS message format (RFC 1035 4.1): the layouts of the header, question tail and
record head, the header flags, and :class:`Query`, a parsed query.

Shared by the parser (``wire``), the encoder (``encode``) and the answer cache (``cache``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .edns import DEFAULT_UDP_SIZE, MIN_UDP, TCP_LIMIT, Edns, udp_limit

HEADER = struct.Struct("!HHHHHH")  # ID, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT
QTAIL = struct.Struct("!HH")  # QTYPE, QCLASS
RRHEAD = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH (after the owner name)
REPLY_HEAD = struct.Struct("!HHH")  # ID, flags, QDCOUNT
SOA_HEAD = RRHEAD  # type, class, TTL, RDLENGTH
SOA_TIMES = struct.Struct("!IIIII")  # serial, refresh, retry, expire, minimum

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_CD = 0x0010
OPCODE_MASK = 0x7800

MAX_NAME = 255  # octets, wire form (RFC 1035 2.3.4)


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
    edns: Edns | None
    udp_size: int = DEFAULT_UDP_SIZE

    def limit(self, tcp: bool) -> int:
        """Largest response in bytes: 65535 on TCP, 512 without EDNS, else
        :func:`udp_limit` of the client's payload and ours."""
        if tcp:
            return TCP_LIMIT
        if self.edns is None:
            return MIN_UDP
        return udp_limit(self.edns[0], self.udp_size)
