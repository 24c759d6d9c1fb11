"""A handler for the tests, wired as every block is (``plugins.chain.assemble``), from the
objects a test has at hand: the resolver's ZoneConfig, ready Forwarders, an AutoPath..."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clusterdns.core.resolver import ZoneConfig
from clusterdns.core.store import Store
from clusterdns.plugins.chain import Handler, assemble


def make_handler(
    store: Store,
    config: ZoneConfig | None,
    *,
    zones: tuple[str, ...] | None = None,
    forwarders: Sequence[Any] = (),
    loadbalance: bool = False,
    autopath: Any = None,
    gateway: Any = None,
    external: Any = None,
    querylog: Any = None,
    metrics: Any = None,
    cache_size: int = 100_000,
    negative_cache_size: int | None = None,
    udp_size: int = 1232,
) -> Handler:
    """``assemble`` with a config per plugin given (directive name -> config)."""
    plugins: dict[str, Any] = {}
    if querylog is not None:
        plugins["log"] = querylog
    if loadbalance:
        plugins["loadbalance"] = True
    if autopath is not None:
        plugins["autopath"] = autopath
    if gateway is not None:
        plugins["k8s_gateway"] = gateway
    if external is not None:
        plugins["k8s_external"] = external
    if config is not None:
        plugins["kubernetes"] = config
    if forwarders:
        plugins["forward"] = list(forwarders)
    return assemble(
        store,
        zones if zones is not None else (config.zones if config else (".",)),
        plugins,
        metrics=metrics,
        cache_size=cache_size,
        negative_cache_size=negative_cache_size,
        udp_size=udp_size,
    )
