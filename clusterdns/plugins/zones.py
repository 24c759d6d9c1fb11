"""The server block's own check, built for every block (not a Corefile directive): REFUSED
for classes other than IN (docs/behaviour.md 13), zone transfers (no transfer plugin) and
names outside the block's zones. It sits after the plugins that answer any class or rewrite
the question (chaos, rewrite, template), as the chain has always had it.
"""

from __future__ import annotations

from ..core.names import find_zone
from ..core.rr import QClass, QType, Rcode
from ..dns.encode import error_response
from .plugin import Ask, Build, Chain, Outcome, Plugin, Step


def _run(chain: Chain, ask: Ask) -> Outcome | None:
    query = ask.query
    if query.qclass != QClass.IN or query.qtype in (QType.AXFR, QType.IXFR):
        return error_response(query, Rcode.REFUSED), ""
    if not ask.rewritten and not find_zone(query.qname, chain.zones):
        return error_response(query, Rcode.REFUSED), ""
    return None


def _build(config: object, build: Build) -> Step:
    return Step(_run)


PLUGIN = Plugin("zones", None, _build, in_class=False, always=True)
"""Never answers an IN name of its zones: the fast path may decide before it."""
