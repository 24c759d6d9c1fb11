"""The wire layer: our DNS message codec and the answer cache on the hot path.

``wire`` parses queries (header, question, EDNS0 and its options), encodes answers
(compression, truncation, the UDP size limit), builds negative answers from the zone SOA
template, and keeps the answer cache: encoded answers per question, dropped per name when
the store says a change touched them. A cache hit is answered from the packet's bytes
without parsing it.

May import: the standard library, ``clusterdns.core``. No third-party packages: dnslib and
dnspython stay off the hot path.
"""
