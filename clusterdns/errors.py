"""Errors that carry their meaning. One place (``wire``) maps them to replies."""

from __future__ import annotations

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
