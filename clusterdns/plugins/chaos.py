"""The ``chaos`` plugin: TXT answers in class CH for ``version.bind``/``version.server``,
``authors.bind``, ``hostname.bind``/``id.server`` (CoreDNS plugin/chaos README).

Other CH names and types go on down the chain. The default version is
``clusterdns-<version>`` (not CoreDNS's), the default authors are the project's. Answers
have TTL 0 and no AA bit, as CoreDNS's.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dnslib import CLASS, EDNS0, QTYPE, RR, TXT, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from .. import __version__
from ..dns.wire import Query
from .plugin import Ask, Build, Chain, Outcome, Plugin, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader

DEFAULT_AUTHORS = ("the clusterdns authors",)


@dataclass
class ChaosConfig:
    """``chaos [VERSION] [AUTHORS...]``."""

    version: str = f"clusterdns-{__version__}"
    authors: tuple[str, ...] = DEFAULT_AUTHORS


def parse_chaos(r: Reader) -> ChaosConfig:
    """Parse the ``chaos`` directive (no options)."""
    if r.d.block:
        raise r.error(f"unknown option {r.d.block[0].name!r}", r.d.block[0].line)
    config = ChaosConfig()
    if r.d.args:
        config.version = r.d.args[0]
    if len(r.d.args) > 1:
        config.authors = tuple(r.d.args[1:])
    return config


class Chaos:
    """Answers the CH TXT names; :meth:`answer` gives None for anything else."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config

    def answer(self, query: Query, limit: int) -> bytes | None:
        """The reply bytes for a CH TXT question this plugin knows, else None."""
        if query.qclass != CLASS.CH or query.qtype != QTYPE.TXT:
            return None
        name = query.qname
        if name == "authors.bind.":
            texts = list(self.config.authors)
            random.shuffle(texts)
        elif name in ("version.bind.", "version.server."):
            texts = [self.config.version]
        elif name in ("hostname.bind.", "id.server."):
            texts = [socket.gethostname()[:255] or "localhost"]
        else:
            return None
        qname = DNSLabel(list(query.labels))
        record = DNSRecord(
            DNSHeader(id=query.id, qr=1, rd=(query.flags >> 8) & 1),
            q=DNSQuestion(qname, QTYPE.TXT, CLASS.CH),
        )
        for text in texts:
            record.add_answer(RR(qname, QTYPE.TXT, CLASS.CH, 0, TXT(text.encode()[:255])))
        if query.edns is not None:
            payload = query.udp_size  # we advertise what we honour (RFC 6891 6.2.5)
            record.add_ar(EDNS0(udp_len=payload, flags="do" if query.edns[2] else ""))
        data = bytearray(record.pack())
        data[12 : 12 + len(query.question)] = query.question
        return bytes(data)


def _build(config: ChaosConfig, build: Build) -> Step:
    chaos = Chaos(config)

    def run(chain: Chain, ask: Ask) -> Outcome | None:
        """``version.bind`` and friends in class CH; anything else goes on."""
        if ask.query.qclass != CLASS.CH:
            return None
        found = chaos.answer(ask.query, ask.limit)
        return None if found is None else (found, "chaos")

    return Step(run)


PLUGIN = Plugin("chaos", lambda r, setup: parse_chaos(r), _build, in_class=False)
"""CoreDNS plugin/chaos: answers only class CH, so never a cluster name."""
