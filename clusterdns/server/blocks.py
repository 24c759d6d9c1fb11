"""Configuration -> handlers: one server block's resolver configurations, its plugins and
the :class:`Block` that holds them running (forwarders' health checks, the query log, the
hosts file re-reader).

Used by the lifecycle (:mod:`.app`) at start-up and by :mod:`.reload` on a new Corefile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.defaults import UDP_SIZE
from ..core.errors import ConfigError
from ..core.names import canonical_ip
from ..core.resolver import ZoneConfig
from ..core.search import parse_resolv_conf
from ..core.store import Store
from ..corefile.config import ServerConfig
from ..plugins.autopath import AutoPath
from ..plugins.chain import Handler
from ..plugins.chaos import Chaos
from ..plugins.forward import ForwardCache, Forwarder
from ..plugins.hosts import Hosts
from ..plugins.k8s_external import ExternalConfig
from ..plugins.k8s_gateway import GatewayConfig
from ..plugins.querylog import QueryLog
from ..plugins.rewrite import Rewriter
from ..plugins.template import Template
from .metrics import Metrics

log = logging.getLogger("clusterdns")

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


def zone_config(server: ServerConfig) -> ZoneConfig | None:
    """The resolver's configuration for a server block's kubernetes directive, with the
    server's own addresses (NS glue) filled in."""
    if server.kubernetes is None:
        return None
    hosts = server.bind or ("",)
    addresses = tuple(a for host in hosts for a in own_addresses(host))
    return server.kubernetes.answering(addresses)


def exposure_configs(
    server: ServerConfig,
) -> tuple[GatewayConfig | None, ExternalConfig | None]:
    """The resolver configurations of a block's k8s_gateway and k8s_external directives.
    Raises ConfigError for k8s_external without a kubernetes directive (as CoreDNS)."""
    hosts = server.bind or ("",)
    addresses = tuple(a for host in hosts for a in own_addresses(host))
    gateway = external = None
    g = server.k8s_gateway
    if g is not None:
        gateway = GatewayConfig(
            zones=g.zones,
            resources=g.resources,
            ttl=g.ttl,
            apex=g.apex,
            secondary=g.secondary,
            fallthrough=() if g.fallthrough is None else (g.fallthrough or (".",)),
            ns_addresses=addresses,
        )
    e = server.k8s_external
    if e is not None:
        k = server.kubernetes
        if k is None:
            raise ConfigError("k8s_external: the kubernetes plugin is not loaded in this block")
        external = ExternalConfig(
            zones=e.zones,
            ttl=e.ttl,
            apex=e.apex,
            headless=e.headless,
            fallthrough=() if e.fallthrough is None else (e.fallthrough or (".",)),
            ns_addresses=addresses,
            namespaces=frozenset(k.namespaces),
            endpoint_pod_names=k.endpoint_pod_names,
        )
    return gateway, external


def exposure_kinds(servers: list[ServerConfig]) -> tuple[str, ...]:
    """The exposure kinds the API source must list and watch: only what a k8s_gateway
    directive reads (Gateways when it reads a route kind), so RBAC stays least-privilege."""
    kinds: list[str] = []
    for s in servers:
        if s.k8s_gateway is not None:
            wanted = [k for k in s.k8s_gateway.resources if k != "Service"]
            if any(k.endswith("Route") for k in wanted):
                wanted.append("Gateway")
            kinds.extend(wanted)
    return tuple(dict.fromkeys(kinds))


@dataclass
class Block:
    """A server block brought to life: its handler, forwarders and metrics."""

    config: ServerConfig
    handler: Handler
    forwarders: list[Forwarder] = field(default_factory=list)
    metrics: Metrics | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def start(self) -> None:
        """Start what runs beside the handler: forwarders' health checks, the query log
        writer, the hosts file re-reader (call from the event loop)."""
        for forwarder in self.forwarders:
            forwarder.start()
        handler = self.handler
        if handler.querylog is not None:
            handler.querylog.start()
        hosts = handler.hosts
        if hosts is not None and hosts.config.reload > 0 and not self.tasks:
            self.tasks.append(asyncio.create_task(_follow_hosts(hosts)))

    async def stop(self) -> None:
        """Stop what :meth:`start` started; the query log writes what it holds."""
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        for forwarder in self.forwarders:
            await forwarder.stop()
        if self.handler.querylog is not None:
            self.handler.querylog.stop()


async def _follow_hosts(hosts: Hosts) -> None:
    """Re-read a hosts file every ``reload`` seconds when it changed (CoreDNS hosts)."""
    while True:
        await asyncio.sleep(hosts.config.reload)
        try:
            if hosts.reload_if_changed():
                log.info("hosts: reloaded %s", hosts.path)
        except Exception:  # a bad file must not end the re-reading
            log.exception("hosts: reading %s", hosts.path)


def autopath(server: ServerConfig) -> AutoPath | None:
    """The block's autopath (``autopath @kubernetes``), which needs ``pods verified`` to
    know the client pod by its IP; the server's own search domains come from
    /etc/resolv.conf, as CoreDNS takes them. Raises ConfigError otherwise."""
    if not server.autopath:
        return None
    if server.autopath != "@kubernetes":
        raise ConfigError(f"autopath: only @kubernetes is supported, got {server.autopath!r}")
    if server.kubernetes is None or server.kubernetes.pods != "verified":
        raise ConfigError("autopath @kubernetes needs the kubernetes plugin with pods verified")
    try:
        domains = parse_resolv_conf(Path("/etc/resolv.conf").read_text()).search
    except OSError:
        domains = []
    return AutoPath(domains)


def block_metrics(server: ServerConfig, cache: ForwardCache | None) -> Metrics | None:
    """The block's metrics when it has ``prometheus`` (None otherwise): labelled with its
    address and first zone, with its cache's size and the plugins it loads (CoreDNS's
    ``coredns_plugin_enabled``)."""
    if not server.prometheus:
        return None
    address = f"{server.bind[0] if server.bind else ''}:{server.port}"
    metrics = Metrics(f"dns://{address}", server.zones[0])
    if cache is not None:
        metrics.cache_entries = cache.entries
        metrics.cache_zones = ",".join(server.cache.zones) if server.cache else ""
    metrics.plugins = tuple(
        name
        for name, on in (
            ("prometheus", True),
            ("errors", server.errors),
            ("log", server.log is not None),
            ("hosts", server.hosts is not None),
            ("rewrite", bool(server.rewrite)),
            ("template", bool(server.templates)),
            ("chaos", server.chaos is not None),
            ("bufsize", server.bufsize is not None),
            ("loadbalance", server.loadbalance),
            ("cache", server.cache is not None),
            ("k8s_gateway", server.k8s_gateway is not None),
            ("k8s_external", server.k8s_external is not None),
            ("kubernetes", server.kubernetes is not None),
            ("loop", server.loop),
            ("forward", bool(server.forward)),
        )
        if on
    )
    return metrics


def build_block(
    server: ServerConfig, store: Store, cache_size: int, udp_size: int = UDP_SIZE
) -> Block:
    """Handler, forwarders (with cache) and metrics of one server block. ``udp_size``: our
    EDNS payload in bytes, unless the block sets its own (Corefile ``bufsize``).

    Raises ConfigError when an upstream list cannot be resolved.
    """
    cache = ForwardCache(server.cache) if server.cache is not None else None
    metrics = block_metrics(server, cache)
    forwarders = [Forwarder(f, cache=cache, metrics=metrics) for f in server.forward]
    gateway, external = exposure_configs(server)
    handler = Handler(
        store,
        zone_config(server),
        gateway=gateway,
        external=external,
        zones=server.zones,
        forwarders=forwarders,
        metrics=metrics,
        loadbalance=server.loadbalance,
        cache_size=cache_size,
        autopath=autopath(server),
        hosts=Hosts(server.hosts, server.root) if server.hosts is not None else None,
        querylog=QueryLog(server.log) if server.log is not None else None,
        rewriter=Rewriter(server.rewrite) if server.rewrite else None,
        templates=[Template(t) for t in server.templates],
        chaos=Chaos(server.chaos) if server.chaos is not None else None,
        udp_size=server.bufsize or udp_size,
    )
    return Block(server, handler, forwarders, metrics)
