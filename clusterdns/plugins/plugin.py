"""What a plugin is (CoreDNS: a ``plugin/NAME`` directory whose setup.go parses the block and
registers a handler, one line in plugin.cfg), and what the chain hands its steps.

A plugin module exports one :class:`Plugin` named ``PLUGIN``; :mod:`.order` lists them in
CoreDNS's plugin.cfg order. From that one table come the Corefile's directive table
(``corefile.config``), each block's chain of steps (:mod:`.chain`), block start/stop
(``server.blocks``), the plugins a block reports as enabled (metrics) and the API kinds the
live source lists. Nothing else names a plugin.

The bottom of ``plugins``: imports only ``core``, ``dns`` and ``corefile.reader``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Union

from ..core.resolver import Answer, ZoneConfig
from ..core.store import Store
from ..dns.message import Query

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup
    from ..dns.cache import AnswerCache, Tags
    from .report import QueryMetrics
    from .viewexpr import Request

Reply = Union[bytes, None, Awaitable[Union[bytes, None]]]  # noqa: UP007 - a runtime alias
"""What answering a query gives: the reply bytes, None (send nothing), or an awaitable of
either (upstream work)."""
Outcome = tuple[Reply, str]
"""A reply and the plugin that made it (metrics' ``plugin`` label), "" for none."""


class Ask:
    """One query on its way down the chain (a miss of the fast path): what the steps read
    and pass on.

    ``query``/``data``: the question (rewritten once ``rewrite`` ran) and its packet;
    ``limit``: the reply's size limit in bytes; ``client``/``port``: the client's address
    ("" and 0 unknown); ``tcp``: the transport; ``rewritten``: the question is a rewritten
    one: its answers stay out of the answer cache (the client's key is another) and it need
    not be under the block's zones (CoreDNS picks the block by the name as asked);
    ``revert``: turns the reply back (rewrite); ``passed``: an answer a step fell through
    with (``fallthrough``), the reply if no later step answers.
    """

    __slots__ = ("query", "data", "limit", "client", "port", "tcp", "rewritten", "revert", "passed")

    def __init__(
        self, query: Query, data: bytes, limit: int, client: str, port: int = 0, tcp: bool = False
    ) -> None:
        self.query = query
        self.data = data
        self.limit = limit
        self.client = client
        self.port = port
        self.tcp = tcp
        self.rewritten = False
        self.revert: Revert | None = None
        self.passed: Answer | None = None


WireNegative = Callable[[bytes, bool, int, "dict[Any, Any]"], "tuple[bytes, Tags] | None"]
"""A certain negative decided from a datagram's bytes: (data, tcp, our EDNS payload, the
calling thread's memo, ``Tally.memo``) -> (reply, tags), or None."""


class Revert(Protocol):
    """Turns the reply to a rewritten question back into one for the question asked."""

    def reply(self, reply: Reply, query: Query, limit: int) -> Reply: ...


class Forwarder(Protocol):
    """What the chain and its steps use of a ``forward`` directive's forwarder."""

    def handles(self, qname: str) -> bool:
        """Whether ``qname`` is under its FROM zone and not under ``except``."""

    def forward(self, query: Query, data: bytes, limit: int) -> Reply:
        """The upstream's reply to ``query`` (``data``: its packet), within ``limit``."""

    async def exchange(self, packet: bytes) -> bytes:
        """One exchange with an upstream; raises on failure."""

    async def lookup(self, qname: str, qtype: int) -> Any:
        """The upstream's records for a name (a dnslib record), or None."""


class Chain(Protocol):
    """The public face of the chain that a step may use (``plugins.chain.Handler``): the
    block's store and zones, the upstreams, and the answer encoder. Never its private parts.
    """

    store: Store
    zones: tuple[str, ...]
    config: ZoneConfig | None

    def forwarder(self, qname: str) -> Forwarder | None:
        """The first forwarder whose zone holds ``qname`` (CoreDNS forward ``FROM``)."""

    def reply(self, query: Query, answer: Answer, limit: int, keep: bool) -> Reply:
        """The reply for ``answer`` within ``limit`` bytes (an outside CNAME target chased
        upstream); with ``keep`` kept in the answer cache under the tags it read."""

    def encode(self, query: Query, answer: Answer, limit: int) -> tuple[bytes, int, bytes]:
        """``encode_answer``: (header, question length, tail)."""

    def keep(
        self,
        query: Query,
        limit: int,
        header: bytes,
        tail: bytes,
        answer: Answer | None,
        tags: Tags | None = None,
    ) -> None:
        """Keep an encoded answer (its tags computed from ``answer`` unless given)."""

    def autopath(self, ask: Ask, answer: Answer) -> Outcome | None:
        """autopath on an NXDOMAIN: the reply along the client's search path, or None."""


class View(Protocol):
    """A block's ``view`` (CoreDNS plugin/view, ``dnsserver.Viewer``): ``name``, and
    ``matches(request)``: whether the block handles a query (every ``expr`` true)."""

    @property
    def name(self) -> str:
        """The view's name (CoreDNS: metadata ``view/name``)."""

    def matches(self, request: Request) -> bool:
        """True when every expression of the view is true for ``request``."""


class Step:
    """A plugin's place in one block's chain: ``run(chain, ask)`` gives an
    :data:`Outcome` or None to go on to the next step. ``start``/``stop``: what runs beside
    the chain while the block serves (timers, writer threads), started on the event loop
    after the listeners opened (:class:`Started`)."""

    def __init__(self, run: Callable[[Chain, Ask], Outcome | None] | None) -> None:
        self.run = run  # None: the plugin runs beside the chain only (start/stop)
        self.name = ""  # set by the chain from the plugin table
        self.in_class = True  # ditto: Plugin.in_class
        # a certain negative decided from the question alone, for the fast path:
        # (query) -> (header, tail, tags) or None (the kubernetes plugin)
        self.negative: Callable[[Query], tuple[bytes, bytes, Tags] | None] | None = None
        # the same from the datagram's bytes, no Query built (the flood's path):
        # (data, tcp, our EDNS payload, the thread's memo) -> (reply, tags) or None
        self.wire_negative: WireNegative | None = None

    def start(self, started: Started) -> None:
        """Start what runs beside the chain (default: nothing)."""

    async def stop(self) -> None:
        """Stop what :meth:`start` started (default: nothing)."""


@dataclass
class Started:
    """What a step's :meth:`Step.start` learns once the block's ports are open:
    ``listeners`` (host, port) pairs, ``first_worker`` (one per node does node-wide work),
    ``fail(message)``: stop the server with exit status 1 and this error line."""

    listeners: tuple[tuple[str, int], ...]
    first_worker: bool
    fail: Callable[[str], None]


@dataclass
class Build:
    """What a plugin's ``build`` gets for one server block (call on the event loop).

    ``store``: the cluster state; ``zones``: the block's zones; ``configs``: every plugin's
    config in the block (name -> config); ``addresses``: the server's own addresses (NS
    glue); ``cache``: the block's answer cache; ``metrics``: the block's counters or None;
    ``root``: the directory relative file names are taken from (root plugin).
    Set by plugins for later ones and the chain: ``config`` (kubernetes: the cluster zone),
    ``forwarders`` (forward), ``rotations`` (loadbalance), ``autopath`` (autopath),
    ``querylog`` (log: sees every query and its reply, the fast path's too), ``view``
    (view: the filter that picks this block among those on the same zone and port).
    """

    store: Store
    zones: tuple[str, ...]
    configs: Mapping[str, Any]
    addresses: tuple[str, ...]
    cache: AnswerCache
    metrics: QueryMetrics | None = None
    root: str = ""
    config: ZoneConfig | None = None
    forwarders: list[Forwarder] = field(default_factory=list)
    rotations: Callable[[Query, Answer, int], list[bytes]] | None = None
    autopath: Any = None
    querylog: Any = None
    view: View | None = None


@dataclass(frozen=True)
class Source:
    """What a plugin needs of the cluster's API source (``Plugin.source``): where to
    connect (``kubeconfig`` path and its ``context``, the API ``endpoint`` URL), how long
    to wait for the first sync (``startup_timeout`` seconds, None: not its say), whether
    Pods must be listed (``pods``), and whether its connection settings come first
    (``primary``: the kubernetes directive's, as CoreDNS's plugins share its client)."""

    kubeconfig: str = ""
    context: str = ""
    endpoint: str = ""
    startup_timeout: float | None = None
    pods: bool = False
    primary: bool = False


@dataclass(frozen=True)
class Plugin:
    """One plugin: its ``name`` (the Corefile directive), ``parse(reader, setup)`` -> its
    config (ConfigError naming ``file:line`` on a bad argument), ``build(config, build)`` ->
    its :class:`Step` in the chain or None (it only configures), and:

    ``repeatable``: several directives per block, the config is the list of them;
    ``in_class``: may answer a plain IN query for a name under the cluster zone (False:
    with only such steps before kubernetes, the fast path may decide NXDOMAIN itself);
    ``always``: built for every block, with no directive (the block's own zone check);
    ``kinds(config)``: the API kinds the live source must list and watch for it;
    ``source(config)``: what it needs of the API source (:class:`Source`; a plugin without
    it needs no cluster); ``filters``: its block may share a zone and port with others, a
    per-query filter choosing (CoreDNS's plugin.Filter: ``view``).
    """

    name: str
    parse: Callable[[Reader, Setup], Any] | None
    build: Callable[[Any, Build], Step | None] | None = None
    repeatable: bool = False
    in_class: bool = True
    always: bool = False
    kinds: Callable[[Any], tuple[str, ...]] | None = None
    source: Callable[[Any], Source] | None = None
    filters: bool = False
