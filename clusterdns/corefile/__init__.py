"""The Corefile: CoreDNS's configuration language, read into typed configuration.

``blocks`` tokenizes (with ``import`` and snippets) into server blocks; ``config`` checks
each directive through its parser (``config.DIRECTIVES``) and refuses what clusterdns does
not implement with ``FILE:LINE`` (a Corefile is never silently misread). ``kubernetes``,
``forward`` and ``exposure`` parse those directives; options that belong to one plugin
module are parsed by that module's ``parse_*`` function (with ``reader``).

May import: the standard library, ``clusterdns.core``, ``clusterdns.plugins`` (their
option parsers).
"""
