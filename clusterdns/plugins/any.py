"""The ``any`` plugin (CoreDNS plugin/any; RFC 8482 4.2): a query of type ANY is answered
with one synthesized HINFO record, CPU ``"RFC8482"``, OS ``""``, TTL 8482, owned by the
query name, whatever the name; other types go on down the chain. Sits before chaos, as in
CoreDNS's plugin.cfg.

Built with dnslib: off the hot path, never kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dnslib import EDNS0, QTYPE, RD, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from ..core.rr import QType
from .plugin import Ask, Chain, Outcome, Plugin, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup

TTL = 8482  # seconds, as CoreDNS's any.go


def _parse(r: Reader, setup: Setup) -> bool:
    r.count(r.d.args, 0, 0, "no arguments")
    if r.d.block:
        raise r.error(f"unknown option {r.d.block[0].name!r}", r.d.block[0].line)
    return True


def _run(chain: Chain, ask: Ask) -> Outcome | None:
    query = ask.query
    if query.qtype != QType.ANY:
        return None
    qname = DNSLabel(list(query.labels))
    record = DNSRecord(
        DNSHeader(id=query.id, qr=1, rd=(query.flags >> 8) & 1),
        q=DNSQuestion(qname, query.qtype, query.qclass),
    )
    hinfo = RD(b"\x07RFC8482\x00")  # two character-strings (RFC 1035 3.3.2); dnslib has no HINFO
    record.add_answer(RR(qname, QTYPE.HINFO, 1, TTL, hinfo))
    if query.edns is not None:
        record.add_ar(EDNS0(udp_len=query.udp_size, flags="do" if query.edns[2] else ""))
    data = bytearray(record.pack())
    data[12 : 12 + len(query.question)] = query.question  # the client's case (0x20)
    return bytes(data), "any"


PLUGIN = Plugin("any", _parse, lambda on, build: Step(_run))
"""CoreDNS plugin/any: answers ANY queries of any name, cluster names included."""
