"""The loop plugin (CoreDNS plugin/loop): find out at start whether forwarding comes back to us.

:func:`probe` sends ``<random>.<random>.<zone> HINFO`` to the server's own address, a new
name per attempt, until one is answered. The chain counts each probe name it sees
(its step's ``probes``); a name that arrives a third time went out through the upstreams
and back: the server then stops with CoreDNS's error line (``Started.fail``). An answer of
any rcode means no loop.
"""

from __future__ import annotations

import asyncio
import functools
import random
from typing import TYPE_CHECKING, Any

from dnslib import DNSRecord

from ..core.rr import QType
from .plugin import Ask, Chain, Outcome, Plugin, Started, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup

ATTEMPTS = 10
INTERVAL = 0.5  # seconds between attempts
TIMEOUT = 6.0  # seconds to wait for an answer: longer than a forward's deadline


async def probe(probes: dict[str, int], zone: str, host: str, port: int) -> None:
    """Probe the block listening on ``host``:``port`` (a wildcard host is asked on
    loopback), each name sent entered in ``probes``. Returns once a probe is answered or
    after :data:`ATTEMPTS`."""
    target = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    loop = asyncio.get_running_loop()
    suffix = "" if zone == "." else zone
    for _ in range(ATTEMPTS):
        name = f"{random.randrange(10**9)}.{random.randrange(10**9)}.{suffix}"
        probes[name.lower()] = 0
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


class _LoopStep(Step):
    """Counts the probes that come back (first in the chain: before anything answers
    them) and runs the probe once the ports are open, on the node's first worker."""

    def __init__(self, zone: str) -> None:
        super().__init__(self.count)
        self.zone = zone
        # qnames we sent, with how often each arrived: one arrival is our own send; a
        # forwarding loop brings the same name back again and again
        self.probes: dict[str, int] = {}
        self.started: Started | None = None
        self.task: asyncio.Task[None] | None = None

    def count(self, chain: Chain, ask: Ask) -> Outcome | None:
        qname = ask.query.qname
        if ask.query.qtype == QType.HINFO and qname in self.probes:
            self.probes[qname] += 1
            if self.probes[qname] > 2 and self.started is not None:
                where = ", ".join(f"{h}:{p}" for h, p in self.started.listeners)
                self.started.fail(error_line(where, qname))
        return None

    def start(self, started: Started) -> None:
        self.started = started
        if started.first_worker and started.listeners and self.task is None:
            host, port = started.listeners[0]
            self.task = asyncio.create_task(probe(self.probes, self.zone, host, port))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None


def _parse(r: Reader, setup: Setup) -> bool:
    r.count(r.d.args, 0, 0, "no arguments")
    return True


PLUGIN = Plugin("loop", _parse, lambda on, build: _LoopStep(build.zones[0]), in_class=False)
"""CoreDNS plugin/loop: only counts its own HINFO probes."""
