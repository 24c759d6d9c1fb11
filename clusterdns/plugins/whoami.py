"""The ``whoami`` plugin (CoreDNS plugin/whoami): tells the client what the server sees of
it. The answer section stays empty; the additional section holds an A (or AAAA) record of
the client's address owned by the query name, and an SRV record ``_udp.``/``_tcp.`` + the
query name with the client's port and target ``.``, all with TTL 0, in the query's class,
authoritative. Typically a block's only plugin (``. { whoami }``); after kubernetes and
forward in the chain, as in CoreDNS's plugin.cfg.

Built with dnslib: off the hot path (its replies are never kept: each client sees itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dnslib import AAAA, EDNS0, QTYPE, RR, SRV, A, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from .plugin import Ask, Chain, Outcome, Plugin, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup


def _parse(r: Reader, setup: Setup) -> bool:
    r.count(r.d.args, 0, 0, "no arguments")
    if r.d.block:
        raise r.error(f"unknown option {r.d.block[0].name!r}", r.d.block[0].line)
    return True


def _run(chain: Chain, ask: Ask) -> Outcome | None:
    """The client's address and port, for any name and type (CoreDNS whoami.go)."""
    query, client = ask.query, ask.client
    if not client:
        return None  # no client address to tell (an in-process call): go on
    qname = DNSLabel(list(query.labels))
    record = DNSRecord(
        DNSHeader(id=query.id, qr=1, aa=1, rd=(query.flags >> 8) & 1),
        q=DNSQuestion(qname, query.qtype, query.qclass),
    )
    if ":" in client:
        record.add_ar(RR(qname, QTYPE.AAAA, query.qclass, 0, AAAA(client)))
    else:
        record.add_ar(RR(qname, QTYPE.A, query.qclass, 0, A(client)))
    proto = "_tcp" if ask.tcp else "_udp"
    owner = DNSLabel([proto.encode(), *query.labels])
    record.add_ar(RR(owner, QTYPE.SRV, query.qclass, 0, SRV(0, 0, ask.port, ".")))
    if query.edns is not None:
        record.add_ar(EDNS0(udp_len=query.udp_size, flags="do" if query.edns[2] else ""))
    data = bytearray(record.pack())
    data[12 : 12 + len(query.question)] = query.question  # the client's case (0x20)
    return bytes(data), "whoami"


PLUGIN = Plugin("whoami", _parse, lambda on, build: Step(_run))
"""CoreDNS plugin/whoami."""
