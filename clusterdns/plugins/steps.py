"""The chain's steps and what they pass along: :class:`Ask` (one query on its way down
the chain) and the steps of the plugins whose modules predate the chain table (loop, chaos,
rewrite, template, hosts, k8s_gateway, k8s_external, forward) plus the server block's own
checks (``zones``). Each step belongs in its plugin's module; they sit here until those
modules take them (``kubernetes`` already has its own).

A step: ``step(handler, ask) -> (reply, plugin name) | None`` (None: go on to the next).
The order is ``chain.CHAIN`` (CoreDNS plugin.cfg).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Union

from ..core.names import find_zone
from ..core.resolver import Answer
from ..core.rr import QClass, QType, Rcode
from ..dns.encode import error_response
from ..dns.message import Query
from .k8s_external import resolve_external
from .k8s_gateway import resolve_gateway
from .rewrite import InvalidName, Revert

if TYPE_CHECKING:
    from .chain import Handler

Reply = Union[bytes, None, Awaitable[Union[bytes, None]]]  # noqa: UP007 - a runtime alias
Outcome = tuple[Reply, str]  # a reply and the plugin that made it (metrics), "" for none


class Ask:
    """One query on its way down the chain (a cache miss): what the steps read and pass on.

    ``query``/``data``: the question (rewritten once ``rewrite`` ran) and its packet;
    ``limit``: the reply's size limit in bytes; ``client``: the client's IP ("" unknown);
    ``rewritten``: the question is a rewritten one: its answers stay out of the answer cache
    (the client's key is another) and it need not be under the block's zones (CoreDNS picks
    the block by the name as asked); ``revert``: turns the reply back (rewrite);
    ``passed``: an answer a step fell through with (``fallthrough``), the reply if no later
    step answers.
    """

    __slots__ = ("query", "data", "limit", "client", "rewritten", "revert", "passed")

    def __init__(self, query: Query, data: bytes, limit: int, client: str) -> None:
        self.query = query
        self.data = data
        self.limit = limit
        self.client = client
        self.rewritten = False
        self.revert: Revert | None = None
        self.passed: Answer | None = None


Step = Callable[["Handler", Ask], Union[Outcome, None]]  # noqa: UP007 - a runtime alias
"""A plugin's place in the chain: the reply and the plugin's name, or None to go on."""


# --- steps of the plugins whose modules predate the table (each belongs in its module) ---


def loop(handler: Handler, ask: Ask) -> Outcome | None:
    """loop: count our own probes (CoreDNS loop); a name seen a third time goes round."""
    qname = ask.query.qname
    if ask.query.qtype == QType.HINFO and qname in handler.loop_probes:
        handler.loop_probes[qname] += 1
        if handler.loop_probes[qname] > 2 and handler.on_loop is not None:
            handler.on_loop(qname)
    return None


def chaos(handler: Handler, ask: Ask) -> Outcome | None:
    """chaos: ``version.bind`` and friends in class CH."""
    assert handler.chaos is not None
    if ask.query.qclass != QClass.CH:
        return None
    found = handler.chaos.answer(ask.query, ask.limit)
    return None if found is None else (found, "chaos")


def rewrite(handler: Handler, ask: Ask) -> Outcome | None:
    """rewrite: the rest of the chain answers the rewritten question (SERVFAIL when the
    new name is no domain name); :meth:`Handler._miss` reverts the reply."""
    assert handler.rewriter is not None
    try:
        rewritten = handler.rewriter.rewrite(ask.query, ask.data)
    except InvalidName:
        return error_response(ask.query, Rcode.SERVFAIL), "rewrite"
    if rewritten is not None:
        ask.query, ask.data, ask.revert = rewritten
        ask.rewritten = True
    return None


def template(handler: Handler, ask: Ask) -> Outcome | None:
    """template: the first template that matches answers."""
    for template in handler.templates:
        built = template.answer(ask.query, ask.limit)
        if built is not None:
            return built, "template"
    return None


def zones(handler: Handler, ask: Ask) -> Outcome | None:
    """Not a plugin: REFUSED for other classes (docs/behaviour.md 13), zone transfers (no transfer
    plugin) and names outside the block's zones."""
    query = ask.query
    if query.qclass != QClass.IN or query.qtype in (QType.AXFR, QType.IXFR):
        return error_response(query, Rcode.REFUSED), ""
    if not ask.rewritten and not find_zone(query.qname, handler.zones):
        return error_response(query, Rcode.REFUSED), ""
    return None


def hosts(handler: Handler, ask: Ask) -> Outcome | None:
    """hosts: names from a hosts file."""
    assert handler.hosts is not None
    listed = handler.hosts.answer(ask.query.qname, ask.query.qtype)
    if listed is None:
        return None
    return handler.encode(ask.query, listed, ask.limit, not ask.rewritten), "hosts"


def exposed(handler: Handler, ask: Ask, answer: Answer | None, name: str) -> Outcome | None:
    """An exposure plugin's answer (None: not its zone); its NXDOMAIN under
    ``fallthrough`` is kept in ``ask.passed`` (the first one) and the chain goes on."""
    if answer is None:
        return None
    if not answer.fallthrough:
        return handler._answered(ask.query, answer, ask.limit, cache=not ask.rewritten), name
    ask.passed = ask.passed or answer
    return None


def gateway(handler: Handler, ask: Ask) -> Outcome | None:
    """k8s_gateway: names of Gateway API routes and LoadBalancer services."""
    assert handler.gateway is not None
    q = ask.query
    found = resolve_gateway(handler.store, q.qname, q.qtype, handler.gateway)
    return exposed(handler, ask, found, "k8s_gateway")


def external(handler: Handler, ask: Ask) -> Outcome | None:
    """k8s_external: names of services' external addresses."""
    assert handler.external is not None
    q = ask.query
    found = resolve_external(handler.store, q.qname, q.qtype, handler.external)
    return exposed(handler, ask, found, "k8s_external")


def forward(handler: Handler, ask: Ask) -> Outcome | None:
    """forward: the first forwarder whose zone holds the name."""
    forwarder = handler._forwarder(ask.query.qname)
    if forwarder is None:
        return None
    return forwarder.forward(ask.query, ask.data, ask.limit), "forward"
