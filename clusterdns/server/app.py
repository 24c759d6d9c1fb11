"""Wiring and lifecycle: typed configuration -> sources, store, handlers, listeners, HTTP
endpoints, and their start and stop.

One code path serves both ways of starting clusterdns: the ``serve`` flags are turned into
a :class:`~clusterdns.corefile.config.ServerConfig`, and ``-conf Corefile`` gives a list of them.
Lifecycle: sources sync (up to the kubernetes ``startup_timeout``), ports open, the loop
probe runs, the Corefile is re-read on change; SIGTERM/SIGINT keep answering DNS for the
``lameduck`` period with ``/ready`` at 503, then stop and exit 0.

The jobs around it have their own modules: :mod:`.blocks` (a server block's configuration
-> its handler), :mod:`.sourcing` (the store's sources), :mod:`.reload` (Corefile reload),
:mod:`.signals` (which signal does what) and :mod:`.workers` (several processes on a port).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..core import defaults
from ..core.errors import ClusterDNSError, listen_error
from ..core.names import split_hostport
from ..core.store import KINDS, Store
from ..corefile.config import ServerConfig
from ..plugins.chain import Handler, Mux, for_port
from . import signals
from .blocks import Block, build_block
from .health import Readiness, health_route, serve_http
from .metrics import Collector, registry, serve_metrics
from .reload import Reloader
from .sourcing import Sources
from .traffic_page import TrafficView
from .transport import DNSServer
from .workers import run_workers

log = logging.getLogger("clusterdns")

STOP_GRACE = 10.0  # seconds from "stopping" to a forced exit (after any lameduck)
TRAFFIC_ROTATE = 1.0  # seconds between closing the traffic view's time buckets



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
    zones_interval: float = defaults.ZONES_INTERVAL  # seconds
    kubeconfig: str = ""
    kube_api: str = ""
    corefile: Path | None = None
    corefile_digest: str = ""  # SHA-512 of the Corefile (and its imports) that was loaded
    cache_size: int = defaults.CACHE_SIZE
    workers: int = 1
    worker: int = 0  # this process's index among the workers
    udp_thread: bool = False  # UDP cache hits answered by a dedicated thread (server.UDPThread)
    tcp_idle_timeout: float = defaults.TCP_IDLE_TIMEOUT  # seconds
    max_tcp_connections: int = defaults.MAX_TCP_CONNECTIONS
    max_tcp_queries: int = defaults.MAX_TCP_QUERIES
    udp_size: int = defaults.UDP_SIZE  # bytes: our EDNS payload (serve --udp-size)
    watch_timeout: float = 0.0  # seconds; 0: the reflector's 5-10 minutes


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
        self.sources = Sources(self.store, servers, options, self.readiness)
        self.stop_event = asyncio.Event()
        self.exit_code = 0
        self.watchdog: threading.Timer | None = None  # set once stopping begins
        self.reloader = Reloader(self)
        # who asks what (docs/traffic.md): one view for every block that counts, served
        # on the metrics listener; pods are named from the store when a page is asked for
        self.traffic_zone_set = False
        self.traffic = (
            TrafficView(self.store.pod_names, defaults.CLUSTER_DOMAIN + ".", rotator=False)
            if any(s.traffic_on() for s in servers)
            else None
        )

    # ---- start ------------------------------------------------------------------------

    async def run(self) -> int:
        """Start everything, serve until a signal (or a detected loop), stop; exit status."""
        for server in self.servers:
            for warning in server.warnings:
                log.warning("%s", warning)
        # Before anything can log "listening": a SIGTERM from then on must find them.
        signals.install(asyncio.get_running_loop(), self._on_stop_signal, self._on_reload_signal)
        starting = asyncio.ensure_future(self.sources.start())
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
            self.blocks = [self.build(s) for s in self.servers]
            await self._start_listeners()
            self._start_http()
        except (ClusterDNSError, OSError) as exc:
            log.error("%s", exc)
            await self._stop()
            return 1
        self._log_started()
        if self.traffic is not None:
            self.tasks.append(asyncio.create_task(self._rotate_traffic()))
        reload = next((s.reload for s in self.servers if s.reload), None)
        if reload and self.options.corefile is not None:
            self.tasks.append(asyncio.create_task(self.reloader.follow(*reload)))
        await self.stop_event.wait()
        lameduck = max((s.lameduck for s in self.servers), default=0.0)
        if lameduck > 0 and self.exit_code == 0:
            log.info("lameduck: still answering for %.1f s, /ready says 503", lameduck)
            self.readiness.shutting_down = True
            await asyncio.sleep(lameduck)
        log.info("stopping")
        # Until the loop itself is closed (_run_one cancels it): a hang in the loop's own
        # shutdown counts too.
        self.watchdog = threading.Timer(STOP_GRACE, self._stop_overdue)
        self.watchdog.daemon = True
        self.watchdog.start()
        await self._stop()
        return self.exit_code

    def _stop_overdue(self) -> None:
        """Stopping took longer than :data:`STOP_GRACE`: say where each thread is (for the
        bug report) and exit with the status we meant to. A server told to stop must stop:
        no socket or thread may keep it alive until the kubelet's SIGKILL."""
        log.error("stopping takes longer than %.0f s: exiting now; the threads:", STOP_GRACE)
        faulthandler.dump_traceback(all_threads=True)
        logging.shutdown()
        os._exit(self.exit_code)

    # ---- signals (.signals says which does what) -----------------------------------------

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
            await self.reloader.check()
            if self.sources.manifests is not None:
                await self.sources.rescan_zones()
        except Exception:  # a signal must never end the server
            log.exception("reload on signal failed; keeping the running state")

    async def reload(self, text: str) -> bool:
        """Apply Corefile ``text`` now (:meth:`.reload.Reloader.apply`): True if applied,
        False (logged, counted) when it is invalid and the running configuration stays."""
        return await self.reloader.apply(text)

    def routes(self) -> dict[tuple[str, int], Handler | Mux]:
        by_port: dict[int, list[Handler]] = {}
        hosts: dict[int, tuple[str, ...]] = {}
        for block in self.blocks:
            by_port.setdefault(block.config.port, []).append(block.handler)
            hosts[block.config.port] = block.config.bind or ("0.0.0.0",)
        return {
            (host, port): for_port(handlers)
            for port, handlers in by_port.items()
            for host in hosts[port]
        }

    async def _start_listeners(self) -> None:
        for (host, port), handler in self.routes().items():
            server = self.listener(handler, host, port)
            await server.start()
            self.listeners[(host, port)] = server
        for block in self.blocks:
            self.start_block(block)
            if block.metrics is not None:
                self.collector.add(block.metrics)

    def start_block(self, block: Block) -> None:
        """Start what the block's plugins run beside the chain, once the ports are open
        (the loop plugin probes the first listener; a loop it finds stops the server)."""
        listeners = tuple((host, server.port) for (host, _), server in self.listeners.items())
        block.start(listeners, self.options.worker == 0, self._fail)

    def listener(self, handler: Handler | Mux, host: str, port: int) -> DNSServer:
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
                        host, port = split_hostport(address)
                        raise listen_error(exc, host, port, "http") from None
                    started.add(address)

    def _serve_health(self, address: str) -> Any:
        return serve_http(address, {"/health": health_route})

    def _serve_ready(self, address: str) -> Any:
        return serve_http(address, {"/ready": self.readiness.route})

    def _serve_metrics(self, address: str) -> Any:
        snapshot = self.traffic.snapshot if self.traffic is not None else None
        return serve_metrics(address, registry(self.collector), traffic=snapshot)

    def build(self, server: ServerConfig) -> Block:
        """One block built for this server (start-up and reload): its handler counts into
        the traffic view when the block has it on; the view takes the cluster domain of
        the first block that has a cluster zone."""
        block = build_block(
            server, self.store, self.options.cache_size, self.options.udp_size, self.traffic
        )
        config = block.handler.config
        if self.traffic is not None and config is not None and not self.traffic_zone_set:
            self.traffic.zone = config.cluster_domain
            self.traffic_zone_set = True
        return block

    async def _rotate_traffic(self) -> None:
        """Close the traffic view's time buckets every second (a page asked rarely still
        sees the last minute)."""
        assert self.traffic is not None
        while True:
            await asyncio.sleep(TRAFFIC_ROTATE)
            self.traffic.rotate()

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
        manifests, kube = self.sources.manifests, self.sources.kube
        if manifests is not None:
            sources.append(
                "manifests in " + ", ".join(
                    f"{p}/" if p.is_dir() else str(p) for p in manifests.paths
                )
            )
        if kube is not None:
            sources.append("the Kubernetes API")
        worker = (
            f", worker {self.options.worker + 1} of {self.options.workers}"
            if self.options.workers > 1
            else ""
        )
        unsynced = ""
        if kube is not None and not kube.synced.is_set():
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

    def _fail(self, message: str) -> None:
        """A plugin found the server cannot go on (the loop plugin: a forwarding loop)."""
        log.error("%s", message)
        self.exit_code = 1
        self.stop_event.set()

    # ---- stop ---------------------------------------------------------------------------

    async def _stop(self) -> None:
        for task in [*self.tasks, *self.sources.tasks]:
            task.cancel()
        for server in self.listeners.values():
            await server.stop()
        for block in self.blocks:
            await block.stop()
        for http in self.http:
            http.shutdown()
            http.server_close()
        await self.sources.stop()


def run(servers: list[ServerConfig], options: Options) -> int:
    """Run the server to completion; returns the process exit status.

    With ``options.workers`` > 1, that many processes serve the same port through
    SO_REUSEPORT (:func:`.workers.run_workers`), each with its own sources and store; this
    process waits for them, passes signals on, and returns the worst exit status. Only the
    first worker serves /health, /ready and /metrics (so metrics count its share of the
    queries) and runs the loop probe.
    """
    if options.workers <= 1:
        return _run_one(servers, options)
    return run_workers(servers, options, _run_one)


def loop_name() -> str:
    """``uvloop`` or ``asyncio`` loop: the event loop running now (for the start-up line)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio loop"


def _run_one(servers: list[ServerConfig], options: Options) -> int:
    """Serve in this process: on uvloop where it is installed (a dependency wherever it has
    wheels), on asyncio's own loop elsewhere."""
    app = App(servers, options)
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(app.run())
        return int(uvloop.run(app.run()))
    finally:
        if app.watchdog is not None:
            app.watchdog.cancel()
