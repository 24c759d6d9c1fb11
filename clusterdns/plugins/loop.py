"""The loop plugin (CoreDNS plugin/loop): find out at start whether forwarding comes back to us.

:func:`probe` sends ``<random>.<random>.<zone> HINFO`` to the server's own address, a new
name per attempt, until one is answered. The chain counts each probe name it sees
(``Handler.loop_probes``); a name that arrives a third time went out through the upstreams
and back, and the chain calls ``Handler.on_loop`` with it: the server then stops with
CoreDNS's error line. An answer of any rcode means no loop.
"""

from __future__ import annotations

import asyncio
import functools
import random
from typing import Any

from dnslib import DNSRecord

from .chain import Handler

ATTEMPTS = 10
INTERVAL = 0.5  # seconds between attempts
TIMEOUT = 6.0  # seconds to wait for an answer: longer than a forward's deadline


async def probe(handler: Handler, zone: str, host: str, port: int) -> None:
    """Probe through ``handler``'s block listening on ``host``:``port`` (a wildcard host is
    asked on loopback). Returns once a probe is answered or after :data:`ATTEMPTS`."""
    target = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    loop = asyncio.get_running_loop()
    suffix = "" if zone == "." else zone
    for _ in range(ATTEMPTS):
        name = f"{random.randrange(10**9)}.{random.randrange(10**9)}.{suffix}"
        handler.loop_probes[name.lower()] = 0
        answered: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            functools.partial(_Answer, answered), remote_addr=(target, port)
        )
        try:
            transport.sendto(bytes(DNSRecord.question(name, "HINFO").pack()))
            await asyncio.wait_for(answered, TIMEOUT)
            return  # answered (whatever the rcode): no loop
        except (TimeoutError, OSError):
            pass
        finally:
            transport.close()
        await asyncio.sleep(INTERVAL)


def error_line(listeners: str, qname: str) -> str:
    """CoreDNS's log line for a detected loop (so existing alerts on it keep matching)."""
    return (
        f'Loop ({listeners}) detected for zone "{qname.split(".", 2)[-1] or "."}", see '
        f'https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO {qname}"'
    )


class _Answer(asyncio.DatagramProtocol):
    """Resolves ``answered`` with the first datagram that comes back."""

    def __init__(self, answered: asyncio.Future[bytes]) -> None:
        self.answered = answered

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answered.done():
            self.answered.set_result(data)
