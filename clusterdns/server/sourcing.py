"""The sources that fill the store: manifest files (zones/, followed every
``--zones-interval``) and the Kubernetes API (list and watch), chosen as ``serve`` and the
Corefile ask (docs/sources.md): the API when a kubeconfig or endpoint is given or when
running in a pod, zones/ otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..core import defaults
from ..core.errors import ConfigError
from ..core.store import Store
from ..corefile.config import ServerConfig
from ..plugins import order
from ..plugins.plugin import Source
from ..sources.manifests import SOURCE as ZONES_SOURCE
from ..sources.manifests import LoadResult, ManifestSource, summary
from .blocks import exposure_kinds
from .health import Readiness

if TYPE_CHECKING:
    from .app import Options

log = logging.getLogger("clusterdns")
T = TypeVar("T")


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


def in_cluster() -> bool:
    """Running in a pod with a service account (``KUBERNETES_SERVICE_HOST`` is set)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


class Sources:
    """The store's sources for one serving process: ``manifests`` (None without zones/)
    and ``kube`` (the KubeSource, None without the API); their readiness checks go to
    ``readiness`` (``zones``, ``kubernetes``)."""

    def __init__(
        self, store: Store, servers: list[ServerConfig], options: Options, readiness: Readiness
    ) -> None:
        self.store = store
        self.servers = servers
        self.options = options
        self.readiness = readiness
        self.kube: Any = None
        self.manifests: ManifestSource | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self._zones_lock = asyncio.Lock()

    def _needs(self) -> list[Source]:
        """What the blocks' plugins need of the API source (``Plugin.source``), the
        primary's (kubernetes) first."""
        needs = [
            plugin.source(config)
            for s in self.servers
            for name, config in s.plugins.items()
            if (plugin := order.plugin(name)) is not None and plugin.source is not None
        ]
        return sorted(needs, key=lambda need: not need.primary)

    def _api_wanted(self) -> bool:
        needs = self._needs()
        explicit = bool(self.options.kubeconfig or self.options.kube_api) or any(
            need.kubeconfig or need.endpoint for need in needs
        )
        return bool(needs) and (explicit or in_cluster())

    async def start(self) -> None:
        """Load zones/ (off the loop) and start following it; start the API source and wait
        for its first sync up to ``startup_timeout`` (then carry on unsynced, logged).
        Raises ConfigError for a missing zones path or an unusable Kubernetes config."""
        use_api = self._api_wanted()
        paths = self.options.zones
        if (
            paths is None
            and self._needs()
            and not use_api
        ):
            paths = [Path(defaults.ZONES_DIR)]
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

        needs = self._needs()
        # the server's flags, else the first plugin that names one, the primary's first
        named = next((n.kubeconfig for n in needs if n.kubeconfig), "")
        kubeconfig = self.options.kubeconfig or named
        endpoint = self.options.kube_api or next((n.endpoint for n in needs if n.endpoint), None)
        context = next((n.context for n in needs if n.context), "")
        try:
            api = api_client(kubeconfig or None, endpoint, context)
        except Exception as exc:  # the client raises several kinds for a bad config
            raise ConfigError(f"cannot load the Kubernetes configuration: {exc}") from None
        # the traffic view names clients by their pods
        pods = any(n.pods for n in needs) or any(s.traffic_on() for s in self.servers)
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
        timeout = next(
            (n.startup_timeout for n in needs if n.startup_timeout is not None),
            defaults.STARTUP_TIMEOUT,
        )
        synced = self.kube.synced
        # On a daemon thread, not the loop's executor: a stop signal cancels this wait, and
        # asyncio.run would otherwise sit in the executor's shutdown until the timeout ends.
        if not await in_thread(lambda: synced.wait(timeout)):
            log.warning(
                "not synced with the API after %.1f s: opening the ports anyway; names not "
                "found answer SERVFAIL until the first sync",
                timeout,
            )

    async def _follow_zones(self) -> None:
        """Poll the manifest files and apply what changed (``--zones-interval``)."""
        while True:
            await asyncio.sleep(self.options.zones_interval)
            await self.rescan_zones()

    async def rescan_zones(self) -> None:
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

    async def stop(self) -> None:
        """Stop following zones/ and stop the API source's watches."""
        for task in self.tasks:
            task.cancel()
        if self.kube is not None:
            await in_thread(self.kube.stop)  # bounded: KubeSource.stop waits 5 s at most
