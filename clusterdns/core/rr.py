"""DNS constants and the record tuples the pure core speaks (RFC 1035 3.2, RFC 6895).

Kept free of any wire library so that the resolver stays pure; our own encoder
(``clusterdns.dns.encode``, not dnslib) writes these tuples into packets.
"""

from __future__ import annotations

from typing import NamedTuple


class QType:
    """RR TYPE values (RFC 1035 3.2.2, RFC 3596, RFC 2782, RFC 6891, RFC 5936)."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    HINFO = 13
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    OPT = 41
    IXFR = 251
    AXFR = 252
    ANY = 255


class QClass:
    """CLASS values (RFC 1035 3.2.4)."""

    IN = 1
    CH = 3
    ANY = 255


class Rcode:
    """RCODE values (RFC 1035 4.1.1, RFC 6891 6.1.3)."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16


RCODE_NAMES = {
    Rcode.NOERROR: "NOERROR",
    Rcode.FORMERR: "FORMERR",
    Rcode.SERVFAIL: "SERVFAIL",
    Rcode.NXDOMAIN: "NXDOMAIN",
    Rcode.NOTIMP: "NOTIMP",
    Rcode.REFUSED: "REFUSED",
    Rcode.BADVERS: "BADVERS",
}

QTYPE_NAMES = {value: name for name, value in vars(QType).items() if not name.startswith("_")}
QTYPE_VALUES = {name: value for value, name in QTYPE_NAMES.items()}


class SOAData(NamedTuple):
    """SOA RDATA (RFC 1035 3.3.13); times in seconds."""

    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400
"""The timers of every SOA clusterdns makes, in seconds (CoreDNS's kubernetes, k8s_external
and k8s_gateway plugins all write these)."""


def soa_timers(minimum: int) -> tuple[int, int, int, int]:
    """(refresh, retry, expire, minimum) of our SOA records, in seconds."""
    return SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, minimum


class SRVData(NamedTuple):
    """SRV RDATA (RFC 2782)."""

    priority: int
    weight: int
    port: int
    target: str


RData = str | SOAData | SRVData | tuple[str, ...]
"""A/AAAA: IP text; CNAME/PTR/NS: absolute name; SOA; SRV; TXT: tuple of strings."""


class RR(NamedTuple):
    """One resource record: owner (absolute name), type, TTL in seconds, RDATA."""

    name: str
    rtype: int
    ttl: int
    rdata: RData


def soa(zone: str, mname: str, rname: str, serial: int, minimum: int, ttl: int) -> RR:
    """The one SOA builder (RFC 1035 3.3.13): ``zone``'s SOA with our timers
    (:func:`soa_timers`), the negative-caching ``minimum`` and the record's own ``ttl``, both
    in seconds (RFC 2308 3: a negative answer lives min(TTL, minimum))."""
    return RR(zone, QType.SOA, ttl, SOAData(mname, rname, serial, *soa_timers(minimum)))
