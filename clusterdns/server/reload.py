"""Corefile reload (CoreDNS reload plugin): notice a changed Corefile and apply it without
dropping a query.

:func:`load_conf` reads a Corefile and the digest it is followed by; :func:`corefile_digest`
covers its imports too (CoreDNS >= 1.7 notices an edited import). A :class:`Reloader` polls
the file every ``reload`` interval (with jitter), re-reads it on a reload signal, and
applies a new one: new blocks are built first, then each listener's handler is swapped
between two queries; an invalid file is logged, counted in ``coredns_reload_failed_total``
and the running configuration stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ClusterDNSError, ConfigError
from ..corefile.config import ServerConfig, imported_files
from ..corefile.config import load as load_corefile
from .transport import DNSServer

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("clusterdns")


def load_conf(path: Path) -> tuple[list[ServerConfig], str]:
    """Read and parse a Corefile; return its server blocks and the SHA-512 of the text
    read (the reload baseline). ConfigError naming file:line, or the unreadable file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    text = data.decode("utf-8", "replace")
    return load_corefile(text, str(path)), corefile_digest(path, data)


def corefile_digest(path: Path, data: bytes) -> str:
    """SHA-512 over the Corefile ``data`` and every file its imports read (their names and
    contents), so that ``reload`` notices an edited import (CoreDNS >= 1.7 does)."""
    digest = hashlib.sha512(data)
    for name in imported_files(data.decode("utf-8", "replace"), str(path)):
        try:
            content = Path(name).read_bytes()
        except OSError:
            content = b""
        digest.update(b"\0" + name.encode() + b"\0" + content)
    return digest.hexdigest()


class Reloader:
    """Re-reads ``app``'s Corefile (``app.options.corefile``) and applies it to ``app``
    when its digest changed; the baseline is the digest of the text that was loaded
    (``app.options.corefile_digest``), not what the file holds by the time it starts."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.digest = app.options.corefile_digest

    async def follow(self, interval: float, jitter: float) -> None:
        """Poll every ``interval`` ± ``jitter`` seconds (the reload directive) forever."""
        while True:
            await asyncio.sleep(interval + random.uniform(-jitter, jitter))
            await self.check()

    async def check(self) -> None:
        """Read the Corefile once; apply it if it (or an import) changed. An unreadable file
        is logged and counted as a failed reload."""
        path = self.app.options.corefile
        if path is None:
            return
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.error("reload: %s: %s", path, exc)
            self.app.collector.reload_failed += 1
            return
        digest = corefile_digest(path, data)
        if digest != self.digest:
            self.digest = digest
            await self.apply(data.decode("utf-8", "replace"))

    async def apply(self, text: str) -> bool:
        """Apply a new Corefile without dropping a query; keep the old one (and count a
        failure) when it is invalid. Returns whether it was applied."""
        app = self.app
        name = str(app.options.corefile or "Corefile")
        try:
            servers = load_corefile(text, name)
            blocks = [app.build(s) for s in servers]
        except ClusterDNSError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            app.collector.reload_failed += 1
            return False
        for config in servers:
            for warning in config.warnings:
                log.warning("%s", warning)
        old_blocks = app.blocks
        app.servers, app.blocks = servers, blocks
        app.collector.replace(b.metrics for b in blocks if b.metrics is not None)
        await self._swap_listeners()
        for block in blocks:
            app.start_block(block)
        for block in old_blocks:
            await block.stop()
        log.info("reloaded %s", name)
        return True

    async def _swap_listeners(self) -> None:
        """Point the listeners that stay at the new handlers (swapped between two queries:
        none is lost), open the new addresses and close the ones no block uses any more."""
        app = self.app
        old_listeners = app.listeners
        listeners: dict[tuple[str, int], DNSServer] = {}
        try:
            for key, handler in app.routes().items():
                server = old_listeners.get(key)
                if server is not None:
                    server.handler = handler
                else:
                    server = app.listener(handler, *key)
                    await server.start()
                listeners[key] = server
        except OSError as exc:
            log.error("reload: cannot listen: %s", exc)
            app.collector.reload_failed += 1
        for key, server in old_listeners.items():
            if key not in listeners:
                await server.stop()
        app.listeners = listeners
