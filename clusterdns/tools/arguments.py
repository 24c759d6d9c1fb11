"""The command line's argument types: each checks one word and raises
argparse.ArgumentTypeError naming what it wants. ``HOST:PORT`` is read by
clusterdns.core.names.split_hostport."""

from __future__ import annotations

import argparse
import ipaddress

from ..core.names import split_hostport
from ..server.workers import usable_cpus


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` with an IP host -> (host, port).
    Raises ArgumentTypeError."""
    try:
        host, port = split_hostport(text)
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want HOST:PORT with an IP host, got {text!r}") from None
    return host, port


def parse_address(text: str) -> str:
    """``[HOST]:PORT`` for /health, /ready, /metrics (any host name, ``:PORT`` = every
    address), checked and kept as written. Raises ArgumentTypeError."""
    try:
        split_hostport(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parse_ttl(text: str) -> int:
    """A TTL in seconds, 0..3600 (CoreDNS ``ttl``). Raises ArgumentTypeError."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"want seconds from 0 to 3600, got {text!r}")
    return value


def parse_workers(text: str) -> int:
    """``N`` (1 or more) or ``auto``: one worker per CPU this process may use (its
    affinity mask, capped by its cgroup CPU quota: ``server.workers.usable_cpus``).
    Raises ArgumentTypeError."""
    if text.strip().lower() == "auto":
        return usable_cpus()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"want a number of processes (1 or more) or auto, "
                                         f"got {text!r}")
    return value
