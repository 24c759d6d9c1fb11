"""Errors that carry their meaning. One place (``wire``) maps them to replies."""

from __future__ import annotations

import errno

from .rr import Rcode


class ClusterDNSError(Exception):
    """Base class of every error clusterdns raises on purpose."""

    rcode: int = Rcode.SERVFAIL


class FormatError(ClusterDNSError):
    """A query that cannot be understood (RFC 1035 4.1.1): answered FORMERR."""

    rcode = Rcode.FORMERR


class NotImplementedOpcode(ClusterDNSError):
    """An opcode other than QUERY (RFC 1035 4.1.1): answered NOTIMP."""

    rcode = Rcode.NOTIMP


class ConvertError(ClusterDNSError):
    """A Kubernetes object that cannot be converted; the message names the field path."""


class ConfigError(ClusterDNSError):
    """Invalid configuration; the message names where (``Corefile:7: ...`` or the flag)."""


class ListenError(ClusterDNSError):
    """A socket that cannot be bound; the message names address, protocol and what to do."""


_LISTEN_HINTS = {
    errno.EACCES: "permission denied (run as root, grant CAP_NET_BIND_SERVICE, or listen on a "
    "port above 1023: --listen 127.0.0.1:1053, or .:1053 in a Corefile)",
    errno.EADDRINUSE: "address already in use (another server holds it: stop it, or pick a "
    "free port with --listen HOST:PORT, or the port in the Corefile)",
    errno.EADDRNOTAVAIL: "address not available (no interface of this machine has it: use "
    "127.0.0.1, 0.0.0.0 or an address `ip addr` shows)",
}


def listen_error(exc: OSError, host: str, port: int, protocol: str) -> ListenError:
    """The one-line error for a failed bind of ``host``:``port`` over ``protocol``
    (``udp``, ``tcp`` or ``http``), e.g. ``cannot listen on 0.0.0.0:53/udp: permission
    denied (run as root, ...)``. Returns the error; the caller raises it."""
    where = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
    # uvloop raises a bare OSError("could not bind ...") from the real one.
    cause = exc.__cause__ if exc.errno is None and isinstance(exc.__cause__, OSError) else exc
    reason = _LISTEN_HINTS.get(cause.errno or 0) or (cause.strerror or str(cause)).lower()
    return ListenError(f"cannot listen on {where}/{protocol}: {reason}")
