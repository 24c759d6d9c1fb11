"""Run a Corefile in-process for tests: its blocks built as `clusterdns -conf` builds them
(app.build_block), the store loaded from zones/, every port served on 127.0.0.1 at an
ephemeral port (the Corefile's ports only group blocks). Fast: no subprocess."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdataclass

from clusterdns.core.store import Store
from clusterdns.corefile.config import load
from clusterdns.plugins.chain import for_port
from clusterdns.server.blocks import Block, build_block
from clusterdns.server.transport import DNSServer
from clusterdns.sources.manifests import ManifestSource

ZONES = Path(__file__).resolve().parent.parent / "zones"


@dataclass
class Served:
    """A running Corefile: ``ports`` maps the Corefile's port to the loopback port."""

    ports: dict[int, int]
    blocks: list[Block]
    loop: asyncio.AbstractEventLoop
    warnings: list[str] = field(default_factory=list)

    def ask(
        self,
        name: str,
        qtype: str = "A",
        port: int | None = None,
        tcp: bool = False,
        rdclass: str = "IN",
        **kw: Any,
    ) -> dns.message.Message:
        """Ask the block on the Corefile's ``port`` (the first one by default)."""
        query = dns.message.make_query(name, qtype, rdclass=dns.rdataclass.from_text(rdclass), **kw)
        target = self.ports[port] if port is not None else next(iter(self.ports.values()))
        send = dns.query.tcp if tcp else dns.query.udp
        return send(query, "127.0.0.1", port=target, timeout=5)

    def call(self, fn: Any) -> Any:
        """Run ``fn()`` on the server's loop thread and return its result."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)


@contextmanager
def serve(text: str, filename: str = "Corefile", zones: Path | None = ZONES) -> Iterator[Served]:
    """Serve ``text`` until the block ends. Raises ConfigError as `clusterdns -conf` would."""
    servers = load(text, filename)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listeners: list[DNSServer] = []

    async def start() -> Served:
        store = Store()
        if zones is not None:
            ManifestSource(store, [zones]).load(time.time())
        blocks = [build_block(s, store, 1000) for s in servers]
        by_port: dict[int, list[Block]] = {}
        for block in blocks:
            block.start()
            by_port.setdefault(block.config.port, []).append(block)
        ports = {}
        for port, group in by_port.items():
            handlers = [b.handler for b in group]
            server = DNSServer(for_port(handlers), "127.0.0.1", 0)
            await server.start()
            listeners.append(server)
            ports[port] = server.port
        return Served(ports, blocks, loop, [w for s in servers for w in s.warnings])

    async def stop(blocks: list[Block]) -> None:
        for server in listeners:
            await server.stop()
        for block in blocks:
            await block.stop()

    served = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield served
    finally:
        asyncio.run_coroutine_threadsafe(stop(served.blocks), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def texts(response: dns.message.Message, section: str = "answer") -> list[str]:
    """Records of a section as zone-file lines (``name ttl class type rdata``), sorted."""
    return sorted(
        line for rrset in getattr(response, section) for line in rrset.to_text().splitlines()
    )
