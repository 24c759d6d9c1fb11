"""The Corefile: CoreDNS's configuration language, read into typed configuration.

``config`` tokenizes (with ``import`` and snippets), checks each directive and its options,
and refuses what clusterdns does not implement with ``FILE:LINE`` (a Corefile is never
silently misread). Plugin options that belong to one plugin module are parsed by that
module's ``parse_*`` function.

May import: the standard library, ``clusterdns.core``, ``clusterdns.plugins`` (their
option parsers).
"""
