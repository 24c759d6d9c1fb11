"""Wiring: typed configuration -> sources, store, handlers, listeners, HTTP endpoints.

One code path serves both ways of starting clusterdns: the ``serve`` flags are turned into
a :class:`~clusterdns.corefile.config.ServerConfig`, and ``-conf Corefile`` gives a list of them.
Lifecycle: sources sync (up to the kubernetes ``startup_timeout``), ports open, the loop
probe runs, the Corefile is re-read on change; SIGTERM/SIGINT keep answering DNS for the
``lameduck`` period with ``/ready`` at 503, then stop and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .. import __version__
from ..core.errors import ClusterDNSError, ConfigError, listen_error
from ..core.names import canonical_ip
from ..core.resolver import ZoneConfig
from ..core.search import parse_resolv_conf
from ..core.store import KINDS, Store
from ..corefile.config import ServerConfig, imported_files
from ..corefile.config import load as load_corefile
from ..dns.wire import DEFAULT_UDP_SIZE
from ..plugins import loop as loop_plugin
from ..plugins.autopath import AutoPath
from ..plugins.chain import CACHE_SIZE, Handler, Mux
from ..plugins.chaos import Chaos
from ..plugins.forward import ForwardCache, Forwarder
from ..plugins.hosts import Hosts
from ..plugins.k8s_external import ExternalConfig
from ..plugins.k8s_gateway import GatewayConfig
from ..plugins.querylog import QueryLog
from ..plugins.rewrite import Rewriter
from ..plugins.template import Template
from ..sources.manifests import SOURCE as ZONES_SOURCE
from ..sources.manifests import LoadResult, ManifestSource, summary
from .health import Readiness, health_route, serve_http
from .metrics import Collector, Metrics, registry, serve_metrics
from .transport import DNSServer

log = logging.getLogger("clusterdns")
T = TypeVar("T")

RELOAD_SIGNALS = ("SIGHUP", "SIGUSR1")  # reload the Corefile and zones/ (CoreDNS: SIGUSR1)
IGNORED_SIGNALS = ("SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF")  # logged, not fatal
PR_SET_PDEATHSIG = 1  # linux/prctl.h


async def in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a daemon thread and await its result (or exception).

    Unlike ``run_in_executor``, an abandoned call (SIGTERM while a big zones/ loads) does
    not hold the process at exit: asyncio.run waits for the default executor's threads.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, failed: bool) -> None:
        if future.done():
            return
        if failed:
            future.set_exception(value)
        else:
            future.set_result(value)

    def work() -> None:
        try:
            value: Any = fn()
            failed = False
        except BaseException as exc:  # handed to the awaiting task
            value, failed = exc, True
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, value, failed)

    threading.Thread(target=work, name="clusterdns-load", daemon=True).start()
    return await future


@dataclass
class Options:
    """What comes from the command line besides the server blocks.

    ``zones``: manifest paths (None: ``./zones`` when no API source is configured);
    ``kubeconfig``/``kube_api``: the API source; ``corefile``: the path to re-read with
    ``reload``; ``cache_size``: positive answers kept per server block (entries; negative answers
    have their own bound, a tenth of it).
    ``udp_size``: our EDNS payload in bytes for blocks without ``bufsize`` (issue 14).
    """

    zones: list[Path] | None = None
    zones_interval: float = 2.0
    kubeconfig: str = ""
    kube_api: str = ""
    corefile: Path | None = None
    corefile_digest: str = ""  # SHA-512 of the Corefile (and its imports) that was loaded
    cache_size: int = CACHE_SIZE
    workers: int = 1
    worker: int = 0  # this process's index among the workers
    udp_thread: bool = False  # UDP cache hits answered by a dedicated thread (server.UDPThread)
    tcp_idle_timeout: float = 10.0  # seconds
    max_tcp_connections: int = 1000
    max_tcp_queries: int = 10000
    udp_size: int = DEFAULT_UDP_SIZE  # bytes: our EDNS payload (serve --udp-size)
    watch_timeout: float = 0.0  # seconds; 0: the reflector's 5-10 minutes


def in_cluster() -> bool:
    """Running in a pod with a service account (``KUBERNETES_SERVICE_HOST`` is set)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def own_addresses(host: str) -> tuple[str, ...]:
    """The addresses this server answers on, for NS glue (SPEC.md 8).

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


def build_block(
    server: ServerConfig, store: Store, cache_size: int, udp_size: int = DEFAULT_UDP_SIZE
) -> Block:
    """Handler, forwarders (with cache) and metrics of one server block. ``udp_size``: our
    EDNS payload in bytes, unless the block sets its own (Corefile ``bufsize``).

    Raises ConfigError when an upstream list cannot be resolved.
    """
    address = f"{server.bind[0] if server.bind else ''}:{server.port}"
    metrics = Metrics(f"dns://{address}", server.zones[0]) if server.prometheus else None
    cache = ForwardCache(server.cache) if server.cache is not None else None
    forwarders = [Forwarder(f, cache=cache, metrics=metrics) for f in server.forward]
    if metrics is not None and cache is not None:
        metrics.cache_entries = cache.entries
        metrics.cache_zones = ",".join(server.cache.zones) if server.cache else ""
    if metrics is not None:
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


class App:
    """The running server: owns the store, sources, listeners and HTTP endpoints."""

    def __init__(self, servers: list[ServerConfig], options: Options) -> None:
        self.servers = servers
        self.options = options
        self.store = Store()
        self.readiness = Readiness()
        self.collector = Collector()
        self.blocks: list[Block] = []
        self.listeners: dict[tuple[str, int], DNSServer] = {}
        self.http: list[Any] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.kube: Any = None
        self.manifests: ManifestSource | None = None
        self.stop_event = asyncio.Event()
        self.exit_code = 0
        self.corefile_digest = ""
        self._zones_lock = asyncio.Lock()

    # ---- start ------------------------------------------------------------------------

    async def run(self) -> int:
        """Start everything, serve until a signal (or a detected loop), stop; exit status."""
        for server in self.servers:
            for warning in server.warnings:
                log.warning("%s", warning)
        # Before anything can log "listening": a SIGTERM from then on must find them.
        self._install_signals()
        starting = asyncio.ensure_future(self._start_sources())
        stopping = asyncio.ensure_future(self.stop_event.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():  # SIGTERM while zones/ loads: do not wait for it
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
            log.info("stopping before the sources were loaded")
            await self._stop()
            return self.exit_code
        try:
            starting.result()
            self.blocks = [
                build_block(s, self.store, self.options.cache_size, self.options.udp_size)
                for s in self.servers
            ]
            await self._start_listeners()
            self._start_http()
        except (ClusterDNSError, OSError) as exc:
            log.error("%s", exc)
            await self._stop()
            return 1
        self._log_started()
        if any(s.loop for s in self.servers) and self.options.worker == 0:
            self.tasks.append(asyncio.create_task(self._loop_probe()))
        reload = next((s.reload for s in self.servers if s.reload), None)
        if reload and self.options.corefile is not None:
            self.tasks.append(asyncio.create_task(self._reload_loop(*reload)))
        await self.stop_event.wait()
        lameduck = max((s.lameduck for s in self.servers), default=0.0)
        if lameduck > 0 and self.exit_code == 0:
            log.info("lameduck: still answering for %.1f s, /ready says 503", lameduck)
            self.readiness.shutting_down = True
            await asyncio.sleep(lameduck)
        log.info("stopping")
        await self._stop()
        return self.exit_code

    def _install_signals(self) -> None:
        """SIGTERM/SIGINT stop (after lameduck); SIGHUP/SIGUSR1 reload the Corefile and
        zones/ (CoreDNS reload on SIGUSR1, Knot and most daemons on SIGHUP); SIGUSR2 and
        the like are logged and otherwise ignored: none ends the server unannounced."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_stop_signal, sig.name)
        for name in RELOAD_SIGNALS:
            loop.add_signal_handler(getattr(signal, name), self._on_reload_signal, name)
        for name in IGNORED_SIGNALS:
            if hasattr(signal, name):
                loop.add_signal_handler(getattr(signal, name), log.info, "%s: ignored", name)

    def _on_stop_signal(self, name: str) -> None:
        log.info("%s: stopping", name)
        self.stop_event.set()

    def _on_reload_signal(self, name: str) -> None:
        log.info("%s: reloading the configuration and zones", name)
        self.tasks.append(asyncio.ensure_future(self._reload_now()))

    async def _reload_now(self) -> None:
        """What a reload signal does: re-read the Corefile (if one was given) and apply it
        when it changed, then re-read the zones/ files that changed."""
        try:
            if self.options.corefile is not None:
                try:
                    data = self.options.corefile.read_bytes()
                except OSError as exc:
                    log.error("reload: %s: %s", self.options.corefile, exc)
                    self.collector.reload_failed += 1
                else:
                    digest = hashlib.sha512(data).hexdigest()
                    if digest != (self.corefile_digest or self.options.corefile_digest):
                        self.corefile_digest = digest
                        await self.reload(data.decode("utf-8", "replace"))
            if self.manifests is not None:
                await self._rescan_zones()
        except Exception:  # a signal must never end the server
            log.exception("reload on signal failed; keeping the running state")

    def _api_wanted(self) -> bool:
        has_kubernetes = any(s.kubernetes or s.k8s_gateway for s in self.servers)
        explicit = (
            bool(self.options.kubeconfig or self.options.kube_api)
            or any(
                s.kubernetes and (s.kubernetes.kubeconfig or s.kubernetes.endpoint)
                for s in self.servers
            )
            or any(s.k8s_gateway and s.k8s_gateway.kubeconfig for s in self.servers)
        )
        return has_kubernetes and (explicit or in_cluster())

    async def _start_sources(self) -> None:
        use_api = self._api_wanted()
        paths = self.options.zones
        if (
            paths is None
            and any(s.kubernetes or s.k8s_gateway for s in self.servers)
            and not use_api
        ):
            paths = [Path("zones")]
        if paths:
            self.manifests = ManifestSource(self.store, paths)
            log.info("zones: reading %s", ", ".join(map(str, paths)))
            try:  # parsed off the loop: SIGTERM is heard while a big zones/ loads
                result = await in_thread(self.manifests.read)
            except FileNotFoundError as exc:
                raise ConfigError(f"{exc} (pass --zones DIR)") from None
            self.manifests.apply(result, time.time())
            self.store.mark_synced(ZONES_SOURCE)
            self.readiness.checks["zones"] = lambda: True
            if self.options.zones_interval > 0:
                self.tasks.append(asyncio.create_task(self._follow_zones()))
        if use_api:
            await self._start_api()

    async def _start_api(self) -> None:
        from ..sources.kube import WATCH_TIMEOUT, KubeSource, api_client

        k = next((s.kubernetes for s in self.servers if s.kubernetes), None)
        g = next((s.k8s_gateway for s in self.servers if s.k8s_gateway), None)
        kubeconfig = (
            self.options.kubeconfig or (k.kubeconfig if k else "") or (g.kubeconfig if g else "")
        )
        endpoint = self.options.kube_api or (k.endpoint if k else "") or None
        context = (k.context if k else "") or (g.context if g else "")
        try:
            api = api_client(kubeconfig or None, endpoint, context)
        except Exception as exc:  # the client raises several kinds for a bad config
            raise ConfigError(f"cannot load the Kubernetes configuration: {exc}") from None
        pods = any(
            s.kubernetes and (s.kubernetes.pods == "verified" or s.autopath) for s in self.servers
        )
        loop = asyncio.get_running_loop()
        timeouts = (
            (self.options.watch_timeout, self.options.watch_timeout * 2)
            if self.options.watch_timeout > 0
            else WATCH_TIMEOUT
        )
        self.kube = KubeSource(
            self.store,
            api,
            loop,
            pods=pods,
            watch_timeout=timeouts,
            exposure=exposure_kinds(self.servers),
        )
        self.readiness.checks["kubernetes"] = self.kube.synced.is_set
        self.kube.start()
        timeout = k.startup_timeout if k else 5.0
        if not await loop.run_in_executor(None, self.kube.synced.wait, timeout):
            log.warning(
                "not synced with the API after %.1f s: opening the ports anyway; names not "
                "found answer SERVFAIL until the first sync",
                timeout,
            )

    async def _follow_zones(self) -> None:
        """Poll the manifest files and apply what changed (``--zones-interval``)."""
        while True:
            await asyncio.sleep(self.options.zones_interval)
            await self._rescan_zones()

    async def _rescan_zones(self) -> None:
        """Read the changed files off the loop and apply them; whatever goes wrong is
        logged and the last good state stays: following zones/ never stops."""
        assert self.manifests is not None
        async with self._zones_lock:  # the poll and a reload signal take turns
            try:
                result: LoadResult | None = await in_thread(self.manifests.scan)
                if result is not None:
                    self.manifests.apply(result, time.time())
                    log.info("zones reloaded: %s", summary(result))
            except Exception:
                log.exception("zones: reload failed; keeping the last good state")

    def _routes(self) -> dict[tuple[str, int], Handler | Mux]:
        by_port: dict[int, list[Handler]] = {}
        hosts: dict[int, tuple[str, ...]] = {}
        for block in self.blocks:
            by_port.setdefault(block.config.port, []).append(block.handler)
            hosts[block.config.port] = block.config.bind or ("0.0.0.0",)
        return {
            (host, port): (handlers[0] if len(handlers) == 1 else Mux(handlers))
            for port, handlers in by_port.items()
            for host in hosts[port]
        }

    async def _start_listeners(self) -> None:
        for block in self.blocks:
            block.start()
            if block.metrics is not None:
                self.collector.add(block.metrics)
        for (host, port), handler in self._routes().items():
            server = self._listener(handler, host, port)
            await server.start()
            self.listeners[(host, port)] = server

    def _listener(self, handler: Handler | Mux, host: str, port: int) -> DNSServer:
        options = self.options
        return DNSServer(
            handler,
            host,
            port,
            reuse_port=options.workers > 1,
            udp_thread=options.udp_thread,
            idle_timeout=options.tcp_idle_timeout,
            max_tcp_connections=options.max_tcp_connections,
            max_tcp_queries=options.max_tcp_queries,
        )

    def _start_http(self) -> None:
        if self.options.worker > 0:
            return  # one HTTP endpoint set per node: the first worker's
        started: set[str] = set()
        for s in self.servers:
            routes = (
                (s.health, self._serve_health),
                (s.ready, self._serve_ready),
                (s.prometheus, self._serve_metrics),
            )
            for address, start in routes:
                if address and address not in started:
                    try:
                        self.http.append(start(address))
                    except OSError as exc:
                        host, _, port = address.rpartition(":")
                        raise listen_error(exc, host.strip("[]"), int(port), "http") from None
                    started.add(address)

    def _serve_health(self, address: str) -> Any:
        return serve_http(address, {"/health": health_route})

    def _serve_ready(self, address: str) -> Any:
        return serve_http(address, {"/ready": self.readiness.route})

    def _serve_metrics(self, address: str) -> Any:
        return serve_metrics(address, registry(self.collector))

    def _log_started(self) -> None:
        """One line: version, addresses, event loop, zones, what was loaded from where, and
        whether cluster names answer SERVFAIL because the API has not synced yet."""
        where = ", ".join(
            f"{'[' + h + ']' if ':' in h else h}:{server.port}"
            for (h, _), server in self.listeners.items()
        )
        zones = ", ".join(dict.fromkeys(z for s in self.servers for z in s.zones))
        loaded = ", ".join(
            f"{self.store.count(kind)} {kind}"
            for kind in KINDS
            if kind in KINDS[:4] or self.store.count(kind)
        )
        sources = []
        if self.manifests is not None:
            sources.append(
                "manifests in " + ", ".join(
                    f"{p}/" if p.is_dir() else str(p) for p in self.manifests.paths
                )
            )
        if self.kube is not None:
            sources.append("the Kubernetes API")
        worker = (
            f", worker {self.options.worker + 1} of {self.options.workers}"
            if self.options.workers > 1
            else ""
        )
        unsynced = ""
        if self.kube is not None and not self.kube.synced.is_set():
            unsynced = (
                "; not synced with the API yet: cluster names answer SERVFAIL until the first "
                "full list"
            )
        log.info(
            "clusterdns %s listening on %s (UDP, TCP; %s%s) for %s: %s from %s%s",
            __version__,
            where,
            loop_name(),
            worker,
            zones,
            loaded,
            " and ".join(sources) or "no source",
            unsynced,
        )

    # ---- loop detection (CoreDNS loop plugin) ------------------------------------------

    async def _loop_probe(self) -> None:
        """Run the loop plugin's probe for the first block that has ``loop``."""
        block = next(b for b in self.blocks if b.config.loop)
        block.handler.on_loop = self._loop_found
        host, _ = next(iter(self.listeners))
        port = next(iter(self.listeners.values())).port
        await loop_plugin.probe(block.handler, block.config.zones[0], host, port)

    def _loop_found(self, qname: str) -> None:
        where = ", ".join(f"{h}:{p}" for h, p in self.listeners)
        log.error("%s", loop_plugin.error_line(where, qname))
        self.exit_code = 1
        self.stop_event.set()

    # ---- reload (CoreDNS reload plugin) -------------------------------------------------

    async def _reload_loop(self, interval: float, jitter: float) -> None:
        path = self.options.corefile
        assert path is not None
        # The baseline is the text that was loaded, not what the file holds by now.
        self.corefile_digest = self.options.corefile_digest
        while True:
            await asyncio.sleep(interval + random.uniform(-jitter, jitter))
            try:
                data = path.read_bytes()
            except OSError as exc:
                log.error("reload: %s: %s", path, exc)
                self.collector.reload_failed += 1
                continue
            digest = corefile_digest(path, data)
            if digest == self.corefile_digest:
                continue
            self.corefile_digest = digest
            await self.reload(data.decode("utf-8", "replace"))

    async def reload(self, text: str) -> bool:
        """Apply a new Corefile without dropping a query; keep the old one (and count a
        failure) when it is invalid. Returns whether it was applied."""
        name = str(self.options.corefile or "Corefile")
        try:
            servers = load_corefile(text, name)
            blocks = [
                build_block(s, self.store, self.options.cache_size, self.options.udp_size)
                for s in servers
            ]
        except ClusterDNSError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            self.collector.reload_failed += 1
            return False
        for config in servers:
            for warning in config.warnings:
                log.warning("%s", warning)
        old_blocks, old_listeners = self.blocks, self.listeners
        self.servers, self.blocks = servers, blocks
        for block in blocks:
            block.start()
        self.collector.replace(b.metrics for b in blocks if b.metrics is not None)
        routes = self._routes()
        listeners: dict[tuple[str, int], DNSServer] = {}
        try:
            for key, handler in routes.items():
                server = old_listeners.get(key)
                if server is not None:
                    server.handler = handler  # swapped between two queries: none is lost
                else:
                    server = self._listener(handler, *key)
                    await server.start()
                listeners[key] = server
        except OSError as exc:
            log.error("reload: cannot listen: %s", exc)
            self.collector.reload_failed += 1
        for key, server in old_listeners.items():
            if key not in listeners:
                await server.stop()
        self.listeners = listeners
        for block in old_blocks:
            await block.stop()
        log.info("reloaded %s", name)
        return True

    # ---- stop ---------------------------------------------------------------------------

    async def _stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for server in self.listeners.values():
            await server.stop()
        for block in self.blocks:
            await block.stop()
        for http in self.http:
            http.shutdown()
            http.server_close()
        if self.kube is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.kube.stop)


def run(servers: list[ServerConfig], options: Options) -> int:
    """Run the server to completion; returns the process exit status.

    With ``options.workers`` > 1, that many processes serve the same port through
    SO_REUSEPORT (the kernel spreads queries over them), each with its own sources and
    store; this process waits for them, passes SIGINT/SIGTERM on, and returns the worst
    exit status. Only the first worker serves /health, /ready and /metrics (so metrics
    count its share of the queries) and runs the loop probe.
    """
    if options.workers <= 1:
        return _run_one(servers, options)
    for server in servers:
        if server.port == 0:  # every worker must bind the same port
            server.port = _free_port(server.bind[0] if server.bind else "0.0.0.0")
    children = []
    parent = os.getpid()
    for index in range(options.workers):
        pid = os.fork()
        if pid == 0:
            options.worker = index
            code = 1
            try:
                _die_with_parent(parent)
                code = _run_one(servers, options)
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: Any) -> None:
        log.info("%s: passing it on to %d workers", signal.Signals(signum).name, len(children))
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for name in ("SIGTERM", "SIGINT", *RELOAD_SIGNALS, *IGNORED_SIGNALS):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), forward)
    worst = 0
    for child in children:
        _, status = os.waitpid(child, 0)
        worst = max(worst, os.waitstatus_to_exitcode(status) & 0xFF)
    return worst


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to send this worker SIGTERM when its parent dies (Linux
    PR_SET_PDEATHSIG, prctl(2)), so that no orphan keeps serving old data on the shared
    port after the parent is killed; exit at once if the parent is already gone."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("workers: prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent:
        os._exit(0)


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as udp, socket.socket(family) as tcp:
        tcp.bind((host, 0))
        port = int(tcp.getsockname()[1])
        udp.bind((host, port))
        return port


def loop_name() -> str:
    """``uvloop`` or ``asyncio`` loop: the event loop running now (for the start-up line)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio loop"


def _run_one(servers: list[ServerConfig], options: Options) -> int:
    """Serve in this process: on uvloop where it is installed (a dependency wherever it has
    wheels), on asyncio's own loop elsewhere."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(App(servers, options).run())
    return int(uvloop.run(App(servers, options).run()))


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
