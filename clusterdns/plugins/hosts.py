"""The ``hosts`` plugin: A, AAAA and PTR answers from an /etc/hosts-style file and from
entries inlined in the Corefile (CoreDNS plugin/hosts README).

Semantics kept from CoreDNS: a name outside the plugin's zones goes on down the chain
(PTR questions are looked up whatever the zones); a name with entries answers them
(NODATA for a type it has none of); a PTR with no entry goes on; any other name with no
entry goes on under ``fallthrough``, else gets SERVFAIL (hosts has no SOA to put in an
NXDOMAIN). Inline entries come before the file's. The file is re-read every ``reload``
seconds when its modification time or size changed; a deleted file leaves the inline
entries. ``*.example.com`` matches exactly one label below example.com and makes no PTR.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.names import absolute, canonical_ip, find_zone, reverse_to_ip
from ..core.resolver import Answer
from ..core.rr import RR, QType, Rcode
from .plugin import Ask, Build, Chain, Outcome, Plugin, Started, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup

log = logging.getLogger("clusterdns.plugins.hosts")

Entries = list[tuple[str, tuple[str, ...]]]  # (canonical IP, absolute lower-case names)


@dataclass
class HostsConfig:
    """``hosts [FILE [ZONES...]] { INLINE... ttl reload no_reverse fallthrough }``.

    ``file``: path ("" for none: CoreDNS's /etc/hosts default is kept); times in seconds;
    ``fallthrough``: None off, () every zone, else those zones.
    """

    file: str = "/etc/hosts"
    zones: tuple[str, ...] = (".",)
    inline: Entries = field(default_factory=list)
    ttl: int = 3600
    reload: float = 5.0
    no_reverse: bool = False
    fallthrough: tuple[str, ...] | None = None
    fallthrough_unsupported: bool = False


def parse_line(line: str) -> tuple[str, tuple[str, ...]] | None:
    """One hosts(5) line -> (canonical IP, names), None for a blank/comment/bad line.
    An IPv6 zone index (``fe80::1%eth0``) is dropped, as Go's parser does."""
    words = line.split("#", 1)[0].split()
    if len(words) < 2:
        return None
    parsed = canonical_ip(words[0].split("%", 1)[0])
    if parsed is None:
        return None
    return parsed[0], tuple(absolute(w) for w in words[1:])


def parse_hosts(r: Reader, server_zones: tuple[str, ...]) -> HostsConfig:
    """Parse the ``hosts`` directive. Raises ConfigError naming the line."""
    from ..corefile.reader import zones_args

    args = r.d.args
    config = HostsConfig(zones=server_zones)
    if args:
        config.file = args[0]
        config.zones = zones_args(args[1:], server_zones, r)
    for sub in r.d.block:
        a, line = sub.args, sub.line
        if sub.name == "ttl":
            r.count(a, 1, 1, "ttl SECONDS", line)
            config.ttl = r.integer(a[0], 1, 2**31 - 1, line)
        elif sub.name == "reload":
            r.count(a, 1, 1, "reload DURATION", line)
            config.reload = r.duration(a[0], line)
        elif sub.name == "no_reverse":
            config.no_reverse = True
        elif sub.name == "fallthrough":
            config.fallthrough = zones_args(a, (), r, line)
        elif sub.name == "fallthrough_unsupported":
            config.fallthrough_unsupported = True
        else:
            entry = parse_line(" ".join([sub.name, *a]))
            if entry is None:
                raise r.error(f"want IP NAME... or an option, got {sub.name!r}", line)
            config.inline.append(entry)
    if config.fallthrough_unsupported and config.fallthrough is None:
        raise r.error("fallthrough_unsupported needs fallthrough")
    return config


class HostsTable:
    """Names -> addresses and addresses -> names of a set of hosts entries."""

    def __init__(self, entries: Entries, reverse: bool) -> None:
        self.v4: dict[str, list[str]] = {}
        self.v6: dict[str, list[str]] = {}
        self.names: dict[str, list[str]] = {}
        for ip, names in entries:
            table = self.v6 if ":" in ip else self.v4
            for name in names:
                if ip not in table.setdefault(name, []):
                    table[name].append(ip)
                if reverse and not name.startswith("*."):
                    owners = self.names.setdefault(ip, [])
                    if name not in owners:
                        owners.append(name)

    def lookup(self, qname: str, v6: bool) -> list[str]:
        """Addresses of ``qname`` (exact, else a ``*.`` entry one label up)."""
        table = self.v6 if v6 else self.v4
        found = table.get(qname)
        if found is None and "." in qname[:-1]:
            found = table.get("*." + qname.split(".", 1)[1])
        return found or []


class Hosts:
    """The runtime plugin: :meth:`answer` for the handler, :meth:`reload_if_changed` on a
    timer. ``on_change`` is called after the table changed (the handler drops its answer
    cache)."""

    def __init__(self, config: HostsConfig, root: str = "") -> None:
        self.config = config
        path = config.file
        self.path = os.path.join(root, path) if root and not os.path.isabs(path) else path
        self.stamp: tuple[float, int] | None = None
        self.file_entries: Entries = []
        self.on_change: Callable[[], None] | None = None
        self.table = HostsTable(config.inline, not config.no_reverse)
        self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        """Re-read the file if its mtime or size changed (or it appeared or went);
        return whether the table changed."""
        try:
            st = os.stat(self.path)
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        entries: Entries = []
        if stamp is not None:
            try:
                with open(self.path, encoding="utf-8", errors="replace") as handle:
                    for line in handle:
                        entry = parse_line(line)
                        if entry is not None:
                            entries.append(entry)
            except OSError as exc:
                log.error("hosts: %s: %s", self.path, exc)
                return False
        if entries == self.file_entries:
            return False
        self.file_entries = entries
        self.table = HostsTable(self.config.inline + entries, not self.config.no_reverse)
        if self.on_change is not None:
            self.on_change()
        return True

    def _falls(self, qname: str) -> bool:
        ft = self.config.fallthrough
        return ft is not None and (not ft or find_zone(qname, ft) is not None)

    def answer(self, qname: str, qtype: int) -> Answer | None:
        """The answer for ``qname``/``qtype``, or None to go on down the chain."""
        zone = find_zone(qname, self.config.zones)
        table = self.table
        ttl = self.config.ttl
        if qtype == QType.PTR:
            ip = reverse_to_ip(qname)
            names = table.names.get(ip, []) if ip is not None else []
            if not names:
                return None
            return Answer(Rcode.NOERROR, zone or ".", [RR(qname, QType.PTR, ttl, n) for n in names])
        if zone is None:
            return None
        records: list[RR] = []
        if qtype in (QType.A, QType.AAAA):
            ips = table.lookup(qname, qtype == QType.AAAA)
            records = [RR(qname, qtype, ttl, ip) for ip in ips]
        elif self.config.fallthrough_unsupported and self._falls(qname):
            return None
        if not records and not table.lookup(qname, False) and not table.lookup(qname, True):
            if self._falls(qname):
                return None
            return Answer(Rcode.SERVFAIL, zone)
        return Answer(Rcode.NOERROR, zone, records)



class _HostsStep(Step):
    """hosts in the chain, and the re-reading of its file beside it."""

    def __init__(self, hosts: Hosts, build: Build) -> None:
        super().__init__(self.answer)
        self.hosts = hosts
        hosts.on_change = build.cache.clear  # kept answers may come from the old table
        self.task: asyncio.Task[None] | None = None

    def answer(self, chain: Chain, ask: Ask) -> Outcome | None:
        """Names from the hosts file (or inline), else on down the chain."""
        listed = self.hosts.answer(ask.query.qname, ask.query.qtype)
        if listed is None:
            return None
        return chain.reply(ask.query, listed, ask.limit, not ask.rewritten), "hosts"

    def start(self, started: Started) -> None:
        if self.hosts.config.reload > 0 and self.task is None:
            self.task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _follow(self) -> None:
        """Re-read the file every ``reload`` seconds when it changed (CoreDNS hosts)."""
        hosts = self.hosts
        while True:
            await asyncio.sleep(hosts.config.reload)
            try:
                if hosts.reload_if_changed():
                    log.info("hosts: reloaded %s", hosts.path)
            except Exception:  # a bad file must not end the re-reading
                log.exception("hosts: reading %s", hosts.path)


def _parse(r: Reader, setup: Setup) -> HostsConfig:
    if "hosts" in setup.configs:
        raise r.error("only one hosts per server block (CoreDNS)")
    return parse_hosts(r, setup.zones)


PLUGIN = Plugin(
    "hosts", _parse, lambda config, build: _HostsStep(Hosts(config, build.root), build)
)
"""CoreDNS plugin/hosts: names from a hosts file or inline lines."""
