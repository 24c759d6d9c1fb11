"""The running server: transports, wiring, lifecycle, health and metrics.

``app`` (wiring and lifecycle: start-up, listeners, HTTP, plugins' start/stop, stop),
``blocks`` (a server block's configuration -> its handler), ``sourcing`` (zones/ and the
Kubernetes API filling the store), ``reload`` (Corefile reload), ``signals``, ``workers``
(several processes on one port through SO_REUSEPORT), ``transport`` (asyncio UDP and
TCP, the UDP thread, the default where recvmmsg exists), ``batch`` (recvmmsg/sendmmsg
for a serving thread),
``health`` (/health, /ready), ``metrics`` (CoreDNS's metric families, folded at scrape
time), ``traffic_page`` (/traffic and /traffic.json on the metrics listener).

May import: everything below it (core, dns, plugins, corefile, sources), the standard
library, uvloop (the event loop) and prometheus_client (metrics).
"""
