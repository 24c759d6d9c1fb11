"""The running server: transports, wiring, lifecycle, health and metrics.

``app`` (turns configuration into handlers and listeners; start-up, signals, reload,
worker processes, the loop probe), ``transport`` (asyncio UDP and TCP, the optional UDP
thread), ``health`` (/health, /ready), ``metrics`` (CoreDNS's metric families, folded at
scrape time).

May import: everything below it (core, dns, plugins, corefile, sources), the standard
library, uvloop (the event loop) and prometheus_client (metrics).
"""
