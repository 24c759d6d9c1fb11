"""The command line's parser class and argument types: each type checks one word and raises
argparse.ArgumentTypeError naming what it wants. ``HOST:PORT`` is read by
clusterdns.core.names.split_hostport.

A usage error (a bad flag or value, a missing argument, for every subcommand) is one line on
stderr, ``clusterdns serve: error: argument --ttl: want seconds from 0 to 3600, got '-5'
(clusterdns serve --help lists the options)``, and exit status :data:`USAGE_ERROR`.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import sys
from collections.abc import Callable
from typing import NoReturn

from ..core.names import split_hostport
from ..server.workers import auto_workers

USAGE_ERROR = 2  # argparse's exit status for a usage error, kept for every subcommand


class Parser(argparse.ArgumentParser):
    """argparse without the usage block before an error: the one line that matters and a
    pointer to ``--help``, exit status :data:`USAGE_ERROR`. Subparsers are of this class
    too (argparse makes them of the parent's class). ``commands``: the subcommands'
    parsers by name (set by :func:`clusterdns.tools.cli.build_parser`), so that an unknown
    option is blamed on the subcommand it was given to."""

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (PROG --help lists the options)`` and exit."""
        sys.stderr.write(f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")
        sys.exit(USAGE_ERROR)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` with an IP host -> (host, port); the message names
    the part that is wrong (the port out of 0-65535, or a host that is not an IP address).
    Raises ArgumentTypeError."""
    try:
        host, port = split_hostport(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"want an IP address as HOST in HOST:PORT, got {host!r} in {text!r}"
        ) from None
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


def int_range(low: int, high: int, unit: str) -> Callable[[str], int]:
    """An argument type for a whole number of ``unit`` from ``low`` to ``high`` inclusive;
    the type raises ArgumentTypeError (``want 512 to 65535 bytes, got '100'``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            want = f"{low} to {high} {unit}".rstrip()
            raise argparse.ArgumentTypeError(f"want {want}, got {text!r}")
        return value

    return parse


def parse_seconds(text: str) -> float:
    """A duration in seconds, 0 or more and finite. Raises ArgumentTypeError."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"want seconds, 0 or more, got {text!r}")
    return value


def parse_workers(text: str) -> int:
    """``N`` (1 or more) or ``auto``: one worker per CPU this process may use (its
    affinity mask, capped by its cgroup CPU quota), at most one per 256 MiB of its memory
    limit (``server.workers.auto_workers``).
    Raises ArgumentTypeError."""
    if text.strip().lower() == "auto":
        return auto_workers()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(
            f"want a number of processes from 1 to 1024, or auto, got {text!r}"
        )
    return value
