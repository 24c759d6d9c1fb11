"""The query handler: the fixed chain a Corefile switches on (DESIGN.md 1).

bytes in, bytes out: parse -> answer cache -> kubernetes zone (pure resolver) -> encode.
Names outside the zones are REFUSED until a forwarder is configured. Nothing a client
sends escapes as an exception: a bad packet gets FORMERR/NOTIMP or no reply, and an
internal fault gets SERVFAIL.
"""

from __future__ import annotations

import logging

from .errors import ClusterDNSError
from .resolver import ZoneConfig, resolve
from .rr import QClass, QType, Rcode
from .store import Store
from .wire import (
    AnswerCache,
    Drop,
    Query,
    encode_answer,
    error_response,
    header_only_response,
    parse_header,
    parse_query,
)

log = logging.getLogger("clusterdns.handler")


class Handler:
    """Answers DNS messages for one zone configuration from one store.

    ``cache_size``: answer cache bound in entries. Call :meth:`handle` from the thread that
    mutates ``store`` (the event loop's).
    """

    def __init__(self, store: Store, config: ZoneConfig, cache_size: int = 10000) -> None:
        self.store = store
        self.config = config
        self.cache = AnswerCache(cache_size)

    def handle(self, data: bytes, tcp: bool) -> bytes | None:
        """Answer one DNS message; None means send nothing (RFC 1035 4.1.1, SPEC.md 13).

        ``tcp``: whether the reply may use the 65535-byte TCP limit instead of the UDP one.
        """
        try:
            query = parse_query(data)
        except Drop:
            return None
        except ClusterDNSError as exc:
            ident, flags = parse_header(data)
            return header_only_response(ident, flags, exc.rcode)
        if query.edns is not None and query.edns[1] > 0:
            return error_response(query, Rcode.BADVERS)  # RFC 6891 6.1.3; not a cache key
        limit = query.limit(tcp)
        cached = self.cache.get(query, limit, self.store.generation)
        if cached is not None:
            return cached
        try:
            return self._miss(query, limit)
        except Exception:  # a bug must cost one query, not the server
            log.exception("internal error answering %s type %d", query.qname, query.qtype)
            return error_response(query, Rcode.SERVFAIL)

    def _miss(self, query: Query, limit: int) -> bytes:
        if query.qclass != QClass.IN:
            return error_response(query, Rcode.REFUSED)  # no chaos plugin (SPEC.md 13)
        if query.qtype in (QType.AXFR, QType.IXFR):
            return error_response(query, Rcode.REFUSED)  # no transfer plugin (SPEC.md 13)
        answer = resolve(self.store, query.qname, query.qtype, self.config)
        if answer is None:
            return error_response(query, Rcode.REFUSED)  # not our zone; no forwarder yet
        header, _, tail = encode_answer(query, answer, limit)
        if not answer.chase and not answer.fallthrough:
            self.cache.put(query, limit, header, tail)
        return header + query.question + tail
