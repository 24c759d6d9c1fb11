"""The Corefile: CoreDNS's configuration language, read into typed configuration.

``blocks`` tokenizes (with ``import`` and snippets) into server blocks; ``config`` checks
each directive, the server's own (``config.DIRECTIVES``) and the plugins' (their parsers,
found through ``plugins.order``), and refuses what clusterdns does not implement with
``FILE:LINE`` (a Corefile is never silently misread); ``reader`` holds the argument checks
every plugin's parser uses, and ``Setup``, what a parser may read of its block.

May import: the standard library, ``clusterdns.core``, ``clusterdns.plugins`` (their
option parsers).
"""
