"""Name helpers: zones, reverse names <-> IPs, dashed-IP labels (docs/behaviour.md 1, 3.3, 5, 6).

Pure functions on lower-case, absolute names (``"svc1.testns.svc.cluster.local."``).
"""

from __future__ import annotations

import ipaddress
import socket

V4_REVERSE = "in-addr.arpa."
V6_REVERSE = "ip6.arpa."


def absolute(name: str) -> str:
    """Return ``name`` lower-cased with exactly one trailing dot (``"."`` for the root)."""
    name = name.strip().lower().rstrip(".")
    return name + "." if name else "."


def canonical_ip(text: str) -> tuple[str, int] | None:
    """Parse an IP address; return ``(canonical text, family 4|6)`` or None if invalid.

    IPv4 in dotted-quad form (nearly every address a cluster holds) is checked with the C
    library's inet_pton, about ten times faster than ``ipaddress``; everything else goes
    through ``ipaddress`` (which rejects leading zeros and gives RFC 5952 IPv6 text).
    """
    if "." in text and ":" not in text:
        try:
            packed = socket.inet_pton(socket.AF_INET, text)
        except OSError:
            return None
        canonical = socket.inet_ntop(socket.AF_INET, packed)
        return (text, 4) if canonical == text else None  # "010.0.0.1" is not canonical
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(ip), ip.version


def find_zone(qname: str, zones: tuple[str, ...]) -> str | None:
    """Return the longest zone in ``zones`` that ``qname`` is at or below, or None.

    ``qname`` and ``zones`` are lower-case absolute names; ``"."`` matches everything.
    """
    best: str | None = None
    for zone in zones:
        if (qname == zone or zone == "." or qname.endswith("." + zone)) and (
            best is None or len(zone) > len(best)
        ):
            best = zone
    return best


def reverse_to_ip(qname: str) -> str | None:
    """Map a full reverse name to the canonical IP it names (RFC 1035 3.5, RFC 3596 2.5).

    ``"1.0.0.10.in-addr.arpa."`` -> ``"10.0.0.1"``; 32 nibbles under ``ip6.arpa.`` -> IPv6.
    Partial names (``"10.in-addr.arpa."``) and malformed labels give None.
    """
    if qname.endswith("." + V4_REVERSE):
        labels = qname[: -len(V4_REVERSE) - 1].split(".")
        if len(labels) != 4 or not all(
            label.isdigit() and len(label) <= 3 and (label == "0" or label[0] != "0")
            for label in labels
        ):
            return None
        if any(int(label) > 255 for label in labels):
            return None
        return ".".join(reversed(labels))
    if qname.endswith("." + V6_REVERSE):
        nibbles = qname[: -len(V6_REVERSE) - 1].split(".")
        if len(nibbles) != 32 or not all(len(n) == 1 and n in "0123456789abcdef" for n in nibbles):
            return None
        hexdigits = "".join(reversed(nibbles))
        return str(ipaddress.IPv6Address(int(hexdigits, 16)))
    return None


def dashed_ip(ip: str) -> str:
    """Endpoint label for an address with no hostname (behaviour.md 3.3, CoreDNS
    ``endpointHostname``).

    IPv4 dots become dashes (``172-0-0-2``); IPv6 colons become dashes and a trailing dash
    gets a ``0`` (``fd00::`` -> ``fd00--0``).
    """
    if "." in ip:
        return ip.replace(".", "-")
    label = ip.replace(":", "-")
    return label + "0" if label.endswith("-") else label


def pod_label_to_ip(label: str) -> tuple[str, int] | None:
    """Parse a pod record label into ``(canonical IP, family)`` (docs/behaviour.md section 5).

    Exactly three dashes and no ``--``: IPv4 (``10-240-0-1``); otherwise dashes become colons
    (``fd00-10-240--5`` -> ``fd00:10:240::5``). Returns None when the result is no IP.
    """
    if label.count("-") == 3 and "--" not in label:
        return canonical_ip(label.replace("-", "."))
    if "." in label:
        return None
    return canonical_ip(label.replace("-", ":"))


def cidr_zones(text: str) -> list[str] | None:
    """The reverse zones of a CIDR zone such as ``10.96.0.0/12`` (CoreDNS plugin/pkg/cidr),
    or None when ``text`` is not a CIDR.

    A prefix on a label boundary (a multiple of 8 bits for IPv4, 4 for IPv6) is one zone
    (``10.96.0.0/16`` -> ``96.10.in-addr.arpa.``); any other prefix is split into the
    subnets of the next boundary (``10.0.0.0/17`` -> 128 zones ``0.0.10.in-addr.arpa.`` ...
    ``127.0.10.in-addr.arpa.``). Host bits are ignored, as Go's
    ParseCIDR does. Raises ValueError for a malformed CIDR.
    """
    if "/" not in text:
        return None
    network = ipaddress.ip_network(text.strip(), strict=False)  # as Go's ParseCIDR
    boundary = 8 if network.version == 4 else 4
    prefix = network.prefixlen
    target = -(-prefix // boundary) * boundary
    subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = (
        [network] if target == prefix else list(network.subnets(new_prefix=target))
    )
    zones = []
    for subnet in subnets:
        labels = subnet.network_address.reverse_pointer.split(".")
        skip = (subnet.max_prefixlen - subnet.prefixlen) // boundary
        zones.append(".".join(labels[skip:]) + ".")
    return zones


def zone_list(text: str) -> list[str]:
    """A zone argument of a Corefile: a domain (made absolute) or a CIDR (its reverse zones,
    :func:`cidr_zones`). Raises ValueError for a malformed CIDR."""
    zones = cidr_zones(text)
    return zones if zones is not None else [absolute(text)]


def split_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` -> (host, port) with the brackets gone
    (``""`` for no host); a bare ``HOST`` takes ``default_port`` when one is given.
    Raises ValueError for a port that is not 0-65535 or a missing one."""
    host, sep, port = text.rpartition(":")
    if not sep or (host and ":" in host and not host.startswith("[")):
        if default_port is None:
            raise ValueError(f"want HOST:PORT, got {text!r}")
        host, port = text, str(default_port)
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"want HOST:PORT, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"want a port from 0 to 65535, got {text!r}")
    return host.strip("[]"), number

