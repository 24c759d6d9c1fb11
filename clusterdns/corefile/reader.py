"""The Corefile's words and directives, and the argument checks every plugin's parser uses.

Below ``config`` (which reads whole Corefiles) so that a plugin module can parse its own
options without importing the configuration of every other plugin. Errors name
``file:line``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..core.errors import ConfigError
from ..core.names import canonical_ip, zone_list


@dataclass
class Token:
    """A word of the Corefile, the file and line it is on (1-based), and ``origin``: the
    import expansion it came from (0 for the main file), so that two imports of the same
    file never join their lines."""

    text: str
    line: int
    file: str = "Corefile"
    origin: int = 0


@dataclass
class Directive:
    """``name args... [{ sub-directives }]`` on ``line`` of ``file``."""

    name: str
    args: list[str]
    line: int
    block: list[Directive] = field(default_factory=list)
    file: str = "Corefile"


@dataclass
class Block:
    """A server block: its keys (``.:53``, ``cluster.local:53``) and its directives."""

    keys: list[str]
    line: int
    directives: list[Directive]
    file: str = "Corefile"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (``5s``, ``1m30s``, ``500ms``) in seconds. Raises ValueError."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(text)
    return total


class Reader:
    """Checks the arguments of one directive; errors name ``file:line`` (the imported file
    for a directive that came from an ``import``)."""

    def __init__(self, filename: str, directive: Directive) -> None:
        self.filename = directive.file or filename
        self.d = directive

    def error(self, message: str, line: int | None = None) -> ConfigError:
        """A ConfigError ``file:line: directive: message``."""
        return ConfigError(f"{self.filename}:{line or self.d.line}: {self.d.name}: {message}")

    def where(self, line: int = 0) -> str:
        """``file:line`` of the directive (or of ``line`` in it)."""
        return f"{self.filename}:{line or self.d.line}"

    def count(self, args: list[str], low: int, high: int, what: str, line: int = 0) -> None:
        if not low <= len(args) <= high:
            raise self.error(f"want {what}, got {' '.join(args) or 'nothing'!r}", line)

    def integer(self, text: str, low: int, high: int, line: int = 0) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise self.error(f"want a number from {low} to {high}, got {text!r}", line)
        return value

    def duration(self, text: str, line: int = 0) -> float:
        try:
            return parse_duration(text)
        except ValueError:
            raise self.error(f"want a duration like 5s or 500ms, got {text!r}", line) from None

    def address(self, text: str, default_port: int, line: int = 0) -> str:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, str(default_port)
        host = host.strip("[]")
        if host and host != "localhost" and canonical_ip(host) is None:
            raise self.error(f"want [HOST]:PORT, got {text!r}", line)
        self.integer(port, 0, 65535, line)
        return f"{host}:{port}"


def zones_args(
    args: list[str], default: tuple[str, ...], r: Reader | None = None, line: int = 0
) -> tuple[str, ...]:
    """Zone arguments (domains or CIDRs, CoreDNS plugin.Host.NormalizeExact), or
    ``default`` when there are none. Raises ConfigError (via ``r``) for a malformed CIDR."""
    if not args:
        return default
    try:
        return tuple(dict.fromkeys(z for arg in args for z in zone_list(arg)))
    except ValueError as exc:
        if r is None:
            raise ConfigError(str(exc)) from None
        raise r.error(str(exc), line) from None


@dataclass
class Setup:
    """What a plugin's parser may read of the server block it is in (CoreDNS's
    ``dnsserver.Config`` during setup): the block's ``zones`` (absolute, lower-case), the
    ``configs`` of the plugins read so far in it (plugin name -> its config; a list for a
    repeatable plugin), and ``warnings`` to append one line each to (``file:line: ...``)."""

    zones: tuple[str, ...]
    configs: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def relative_name(r: Reader, text: str, line: int) -> str:
    """A relative DNS name (``dns``, ``dns1.kube-system``), lower-case, no trailing dot."""
    name = text.lower().rstrip(".")
    if not name or any(not label or len(label) > 63 for label in name.split(".")):
        raise r.error(f"want a relative DNS name, got {text!r}", line)
    return name
