"""Every default a user can change, in one place (flags, Corefile, the pytest plugin and the
classes that take them read these). Units in the names' comments.

Where a value is CoreDNS's or kind's, it is theirs so that a drop-in behaves the same.
"""

from __future__ import annotations

# --- the cluster zone (CoreDNS kubernetes plugin, as kubeadm and kind configure it) --------
CLUSTER_DOMAIN = "cluster.local"
TTL = 30  # seconds: kubeadm's `ttl 30`, the TTL of every cluster answer
LISTEN = ("127.0.0.1", 1053)  # `clusterdns serve` without --listen: no root needed
ZONES_DIR = "zones"  # manifests served when no API source is configured
ZONES_INTERVAL = 2.0  # seconds between looks for changed manifest files
STARTUP_TIMEOUT = 5.0  # seconds to wait for the first API sync before opening the ports

# --- answers kept (docs/design-answers.md) ---------------------------------------------------
CACHE_SIZE = 100_000  # positive answers kept per server block: about 60 MB when full
NEGATIVE_SHARE = 10  # negative answers kept: CACHE_SIZE // NEGATIVE_SHARE

# --- the wire (RFC 6891, RFC 7766) ------------------------------------------------------------
UDP_SIZE = 1232  # bytes: our EDNS payload, DNS Flag Day 2020 (Knot's default)
TCP_IDLE_TIMEOUT = 10.0  # seconds per message and between messages (RFC 7766 6.2.3)
MAX_TCP_CONNECTIONS = 1000  # open at once; more are closed at accept
MAX_TCP_QUERIES = 10_000  # per connection, then it is closed (RFC 7766 6.2.2)
