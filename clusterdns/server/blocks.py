"""Configuration -> handlers: one server block's handler, built from the plugin table
(``plugins.chain.assemble``), and the :class:`Block` that starts and stops what its
plugins run beside the chain.

Used by the lifecycle (:mod:`.app`) at start-up, by :mod:`.reload` on a new Corefile, and
by the pytest plugin and the tests: the one place a block is wired.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass

from ..core.defaults import UDP_SIZE
from ..core.names import canonical_ip
from ..core.store import Store
from ..corefile.config import ServerConfig
from ..plugins import order
from ..plugins.chain import Handler, assemble
from ..plugins.plugin import Started
from .metrics import Metrics
from .traffic_page import TrafficView


def own_addresses(host: str) -> tuple[str, ...]:
    """The addresses this server answers on, for NS glue (docs/behaviour.md 8).

    A specific listen address is itself; a wildcard one is the host's own addresses as its
    name resolves (best effort: empty if it does not).
    """
    parsed = canonical_ip(host) if host else None
    if parsed is not None and parsed[0] not in ("0.0.0.0", "::"):
        return (parsed[0],)
    with contextlib.suppress(OSError):
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_DGRAM)
        return tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    return ()


def exposure_kinds(servers: list[ServerConfig]) -> tuple[str, ...]:
    """The kinds beyond the core ones that the API source must list and watch: what the
    blocks' plugins read (``Plugin.kinds``), so RBAC stays least-privilege."""
    kinds: list[str] = []
    for server in servers:
        for name, config in server.plugins.items():
            plugin = order.plugin(name)
            if plugin is not None and plugin.kinds is not None:
                kinds.extend(plugin.kinds(config))
    return tuple(dict.fromkeys(kinds))


@dataclass
class Block:
    """A server block brought to life: its handler (with its steps) and metrics."""

    config: ServerConfig
    handler: Handler
    metrics: Metrics | None = None

    def start(
        self,
        listeners: tuple[tuple[str, int], ...] = (),
        first_worker: bool = True,
        fail: Callable[[str], None] = lambda message: None,
    ) -> None:
        """Start what the block's plugins run beside the chain (call on the event loop,
        once its ports are open): health checks, the query log writer, the hosts
        re-reader, the loop probe."""
        started = Started(listeners, first_worker, fail)
        for step in self.handler.steps:
            step.start(started)

    async def stop(self) -> None:
        """Stop what :meth:`start` started; the query log writes what it holds."""
        for step in self.handler.steps:
            await step.stop()


def block_metrics(server: ServerConfig) -> Metrics | None:
    """The block's metrics when it has ``prometheus`` (None otherwise): labelled with its
    address and first zone, with the plugins it loads (CoreDNS's
    ``coredns_plugin_enabled``)."""
    if not server.prometheus:
        return None
    address = f"{server.bind[0] if server.bind else ''}:{server.port}"
    metrics = Metrics(f"dns://{address}", server.zones[0])
    metrics.plugins = server.enabled()
    return metrics


def build_block(
    server: ServerConfig,
    store: Store,
    cache_size: int,
    udp_size: int = UDP_SIZE,
    traffic: TrafficView | None = None,
) -> Block:
    """One server block's handler and metrics. ``udp_size``: our EDNS payload in bytes,
    unless the block sets its own (Corefile ``bufsize``); ``traffic``: the server's traffic
    view, which the block's serving threads count into when the block has it on.

    Raises ConfigError when a plugin cannot be built (an upstream list that cannot be
    resolved, k8s_external without kubernetes, autopath without pods verified).
    """
    metrics = block_metrics(server)
    hosts = server.bind or ("",)
    handler = assemble(
        store,
        server.zones,
        server.plugins,
        addresses=tuple(a for host in hosts for a in own_addresses(host)),
        metrics=metrics,
        root=server.root,
        cache_size=cache_size,
        udp_size=server.bufsize or udp_size,
        traffic=traffic.tally if traffic is not None and server.traffic_on() else None,
    )
    if metrics is not None and handler.view is not None:
        metrics.view = handler.view.name  # CoreDNS labels a view's series with its name
    return Block(server, handler, metrics)
