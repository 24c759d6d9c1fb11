"""Corefile text -> typed configuration (CoreDNS's Caddyfile dialect).

The text comes in, dataclasses come out (``import`` reads the files it names). A wrong
argument is a ConfigError naming ``file:line``, and so is a directive or option clusterdns
does not implement: a Corefile is never silently misread. Only directives that
change nothing but logging are warnings. docs/corefile.md lists every directive.

Tokens and blocks: corefile/blocks.py; each plugin's directive: its plugin's parser, found
through the plugin table (``plugins.order``). This module reads the server's own directives
(``DIRECTIVES``) and dispatches the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.defaults import UDP_SIZE
from ..core.errors import ConfigError
from ..core.names import canonical_ip, zone_list
from ..plugins import order
from .blocks import imported_files, parse_blocks, tokenize
from .reader import Directive, Reader, Setup

__all__ = ["ServerConfig", "imported_files", "load", "not_supported", "parse_blocks", "tokenize"]


@dataclass
class ServerConfig:
    """One server block, typed. Addresses are ``host:port`` strings (host may be empty).

    The server's own settings are fields (CoreDNS's bind, health, ready, prometheus, errors,
    reload, root, bufsize); ``plugins`` holds every chain plugin's config by directive name
    (a list for a repeatable one), in the order read: what ``plugins.order`` builds.
    """

    zones: tuple[str, ...]
    port: int
    bind: tuple[str, ...] = ()
    errors: bool = False
    health: str = ""
    lameduck: float = 0.0
    ready: str = ""
    prometheus: str = ""
    reload: tuple[float, float] | None = None
    root: str = ""  # the root plugin: the directory relative file names are taken from
    bufsize: int | None = None  # bufsize: cap on the EDNS UDP payload honoured/advertised
    traffic_view: bool | None = None  # who asks what (docs/traffic.md); needs prometheus
    plugins: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def traffic_on(self) -> bool:
        """Whether the block counts its queries by client for the traffic view
        (``traffic_view on``, ``serve --traffic``; off by default: it costs 7% of the queries
        per CPU second at full load, over the 5% a default may cost; docs/traffic.md)."""
        return bool(self.traffic_view) and bool(self.prometheus)

    def enabled(self) -> tuple[str, ...]:
        """Every plugin the block loads, server settings included (CoreDNS's
        ``coredns_plugin_enabled``)."""
        on = [name for name in ("prometheus", "errors", "bufsize") if getattr(self, name)]
        return (*on, *self.plugins)


def _zone_key(key: str, filename: str, line: int) -> tuple[list[str], int]:
    """``.:53`` / ``dns://cluster.local:5353`` / ``example.org`` / ``10.0.0.0/24:53`` ->
    (zones, port); a CIDR gives its reverse zones (CoreDNS core/dnsserver)."""
    text = key.removeprefix("dns://")
    if "://" in text:
        raise ConfigError(f"{filename}:{line}: {key}: only dns:// servers are supported")
    if "/" in text:  # a CIDR: the port follows the prefix length (fd00::/64:53)
        net, _, rest = text.partition("/")
        bits, sep, port = rest.partition(":")
        zone = f"{net}/{bits}"
    else:
        zone, sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not sep:
        zone, port = text, "53"
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{filename}:{line}: {key}: bad port {port!r}") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"{filename}:{line}: {key}: bad port {port!r}")
    try:
        return zone_list(zone or "."), number
    except ValueError as exc:
        raise ConfigError(f"{filename}:{line}: {key}: {exc}") from None


# Directives that only change what is logged or traced: accepted with a warning. Anything
# else clusterdns does not implement stops the start (it would change answers).
LOG_ONLY = {"debug", "trace", "dnstap", "metadata", "pprof"}


def load(text: str, filename: str = "Corefile") -> list[ServerConfig]:
    """Parse and check a Corefile, ``import`` and snippets expanded. Raises ConfigError
    naming ``file:line``: a directive clusterdns does not support
    (``plugin 'NAME' is not supported by clusterdns``), a bad argument, a zone served twice
    on one port by two blocks without ``view`` (CoreDNS refuses a duplicate server block key
unless the block has a filter).

    Each returned ServerConfig carries its ``warnings`` (logging-only directives that are
    accepted but do nothing), one line each, naming ``file:line``.
    """
    servers: list[ServerConfig] = []
    seen: dict[tuple[str, int], tuple[str, int, tuple[str, ...]]] = {}
    for block in parse_blocks(text, filename):
        where = block.file
        keys = [_zone_key(k, where, block.line) for k in block.keys]
        zones = tuple(dict.fromkeys(z for zs, _ in keys for z in zs))
        # the directives read once, against every key's zones (CoreDNS: a plugin's zones
        # default to all the block's keys, its instance shared by every key's config)
        first = ServerConfig(zones, keys[0][1])
        setup = Setup(zones, first.plugins, first.warnings)
        for directive in block.directives:
            _apply(first, setup, directive, filename)
        # one server per port among the keys (kubespray's `example.com example.io:1053`):
        # CoreDNS serves each key on its own port, with the block's directives
        by_port: dict[int, list[str]] = {}
        for key_zones, port in keys:
            by_port.setdefault(port, []).extend(key_zones)
        for i, (port, port_zones) in enumerate(by_port.items()):
            if i == 0 and len(by_port) == 1:
                server = first
            else:
                server = replace(first, zones=tuple(dict.fromkeys(port_zones)), port=port,
                                 warnings=list(first.warnings) if i == 0 else [])
            _register(server, seen, where, block.line)
            servers.append(server)
    return servers


def _register(
    server: ServerConfig,
    seen: dict[tuple[str, int], tuple[str, int, tuple[str, ...]]],
    where: str,
    line: int,
) -> None:
    """Refuse a zone served twice on one port by blocks without a filter (``view``; CoreDNS
    register.go ``validateZonesAndListeningAddresses``)."""
    if any((p := order.plugin(name)) is not None and p.filters for name in server.plugins):
        # a block with a filter may share a zone and port with any other; only
        # unfiltered blocks are checked and registered
        return
    for zone in server.zones:
        other = seen.get((zone, server.port))
        if other is not None and (
            not other[2] or not server.bind or set(other[2]) & set(server.bind)
        ):
            raise ConfigError(
                f"{where}:{line}: cannot serve dns://{zone}:{server.port}: it is "
                f"already defined at {other[0]}:{other[1]}"
            )
        seen[(zone, server.port)] = (where, line, server.bind)


def not_supported(r: Reader, line: int = 0, name: str = "") -> ConfigError:
    """The error for a directive or option clusterdns does not implement (issue 13)."""
    return ConfigError(
        f"{r.where(line)}: plugin '{name or r.d.name}' is not supported by clusterdns"
    )


# ---- the directives: the server's own, then the plugin table's --------------------------

Parser = Callable[[ServerConfig, Reader], None]


def _apply(server: ServerConfig, setup: Setup, d: Directive, filename: str) -> None:
    r = Reader(filename, d)
    if d.name in LOG_ONLY:
        server.warnings.append(f"{r.where()}: {d.name}: only affects logging here, ignored")
        return
    parser = DIRECTIVES.get(d.name)
    if parser is not None:
        parser(server, r)
        return
    plugin = order.plugin(d.name)
    if plugin is None or plugin.parse is None:
        raise not_supported(r)
    config = plugin.parse(r, setup)
    if plugin.repeatable:
        server.plugins.setdefault(d.name, []).append(config)
    else:
        server.plugins[d.name] = config


def _errors(server: ServerConfig, r: Reader) -> None:
    server.errors = True


def _health(server: ServerConfig, r: Reader) -> None:
    args = r.d.args
    r.count(args, 0, 1, "[ADDRESS]")
    server.health = r.address(args[0], 8080) if args else ":8080"
    for sub in r.d.block:
        if sub.name != "lameduck":
            raise r.error(f"unknown option {sub.name!r}", sub.line)
        r.count(sub.args, 1, 1, "lameduck DURATION", sub.line)
        server.lameduck = r.duration(sub.args[0], sub.line)


def _ready(server: ServerConfig, r: Reader) -> None:
    r.count(r.d.args, 0, 1, "[ADDRESS]")
    server.ready = r.address(r.d.args[0], 8181) if r.d.args else ":8181"


def _prometheus(server: ServerConfig, r: Reader) -> None:
    r.count(r.d.args, 0, 1, "[ADDRESS]")
    server.prometheus = r.address(r.d.args[0], 9153) if r.d.args else "localhost:9153"


def _bind(server: ServerConfig, r: Reader) -> None:
    r.count(r.d.args, 1, 16, "ADDRESS...")
    for arg in r.d.args:
        if canonical_ip(arg) is None:
            raise r.error(f"want an IP address, got {arg!r}")
    server.bind = tuple(r.d.args)


def _reload(server: ServerConfig, r: Reader) -> None:
    args = r.d.args
    r.count(args, 0, 2, "[INTERVAL] [JITTER]")
    interval = r.duration(args[0]) if args else 30.0
    jitter = r.duration(args[1]) if len(args) > 1 else 15.0
    # CoreDNS plugin/reload setup.go: INTERVAL >= 2s, JITTER 0 (off) or >= 1s, and a JITTER
    # above INTERVAL/2 (the 15s default with `reload 2s` or `reload 10s`) is lowered to it.
    if interval < 2 or 0 < jitter < 1:
        raise r.error("want INTERVAL >= 2s and JITTER 0 or >= 1s")
    server.reload = (interval, min(jitter, interval / 2))


def _root(server: ServerConfig, r: Reader) -> None:
    r.count(r.d.args, 1, 1, "PATH")
    server.root = r.d.args[0]


def _traffic_view(server: ServerConfig, r: Reader) -> None:
    """``traffic_view [on|off]`` (clusterdns's own; not CoreDNS's external ``traffic`` plugin,
    an xDS balancer, whose name it avoids)."""
    r.count(r.d.args, 0, 1, "[on|off]")
    if r.d.args and r.d.args[0] not in ("on", "off"):
        raise r.error(f"want on or off, got {r.d.args[0]!r}")
    server.traffic_view = not r.d.args or r.d.args[0] == "on"


def _bufsize(server: ServerConfig, r: Reader) -> None:
    r.count(r.d.args, 0, 1, "[SIZE]")
    server.bufsize = r.integer(r.d.args[0], 512, 4096) if r.d.args else UDP_SIZE


DIRECTIVES: dict[str, Parser] = {
    "errors": _errors,
    "health": _health,
    "ready": _ready,
    "prometheus": _prometheus,
    "bind": _bind,
    "reload": _reload,
    "root": _root,
    "bufsize": _bufsize,
    "traffic_view": _traffic_view,
}
"""The server's own directives -> their parsers. The chain's plugins come from
``plugins.order``; LOG_ONLY ones are warned about; anything else is ``not supported``
(docs/corefile.md)."""


def supported() -> tuple[str, ...]:
    """Every directive clusterdns implements: the server's own and the plugin table's."""
    return (*DIRECTIVES, *(name for name in order.NAMES if name not in order.ALWAYS))
