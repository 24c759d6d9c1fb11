"""The wire layer: our DNS message codec and the answer cache on the hot path.

``wire`` parses queries (header, question, EDNS0 and its options) and re-exports the rest of
the codec; ``message`` holds the message layouts, flags and the parsed ``Query``; ``edns``
the OPT record and the UDP size limit; ``encode`` encodes answers (compression, truncation,
the UDP size limit), error replies and negative answers from the zone SOA template;
``cache`` keeps the answer cache: encoded answers per question, dropped per name when the
store says a change touched them. A cache hit is answered from the packet's bytes without
parsing it.

May import: the standard library, ``clusterdns.core``. No third-party packages: dnslib and
dnspython stay off the hot path.
"""
