"""The pure core: cluster state and what every name answers.

``records`` (slim immutable records), ``convert`` (the only code that knows API field names),
``store`` (the in-memory cache and its indexes, and which answers each change touches),
``exposure`` (host-name indexes for Ingresses and Gateway routes), ``names`` (qname grammar,
reverse names), ``resolver`` (the answer to a question, as the Kubernetes DNS specification
and the RFCs say), ``depends`` (what each answer reads), ``search`` (resolv.conf and the
C libraries' search walk), ``multicluster`` (the clusterset.local names of KEP-1645),
``rr`` and ``errors`` (DNS constants and the errors that carry
an rcode).

May import: the standard library and ``clusterdns.core`` only. No I/O, no asyncio, no
threads, no clock reads (time is a parameter), no third-party packages
(tests/test_layers.py checks it).
"""
