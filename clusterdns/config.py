"""Corefile text -> typed configuration (CoreDNS's Caddyfile dialect).

Pure: the text comes in, dataclasses come out. A wrong argument is a ConfigError naming
``file:line``; a directive clusterdns does not know is a warning naming the line, not a
failure (the server still starts). Supported directives: errors, log, health, ready,
kubernetes, prometheus, forward, cache, loop, reload, loadbalance, bind, autopath,
k8s_external, k8s_gateway.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .errors import ConfigError
from .names import absolute, canonical_ip

KNOWN_IGNORED = {"debug", "whoami", "any", "nsid", "minimal", "trace", "metadata", "root"}


# ---- tokens and blocks --------------------------------------------------------------------


@dataclass
class Token:
    """A word of the Corefile and the line it is on (1-based)."""

    text: str
    line: int


@dataclass
class Directive:
    """``name args... [{ sub-directives }]`` on ``line``."""

    name: str
    args: list[str]
    line: int
    block: list[Directive] = field(default_factory=list)


@dataclass
class Block:
    """A server block: its keys (``.:53``, ``cluster.local:53``) and its directives."""

    keys: list[str]
    line: int
    directives: list[Directive]


_ENV = re.compile(r"\{\$([A-Za-z_][A-Za-z0-9_]*)\}|\{%([A-Za-z_][A-Za-z0-9_]*)%\}")


def tokenize(text: str, filename: str = "Corefile") -> list[Token]:
    """Split Corefile text into tokens: words, quoted strings, ``{`` and ``}``.

    ``#`` starts a comment at the start of a word; ``{$VAR}`` and ``{%VAR%}`` are replaced
    by the environment variable (empty if unset). Raises ConfigError for an unclosed quote.
    """
    tokens: list[Token] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = _ENV.sub(lambda m: os.environ.get(m.group(1) or m.group(2), ""), raw)
        i = 0
        while i < len(line):
            ch = line[i]
            if ch.isspace():
                i += 1
            elif ch == "#":
                break
            elif ch == '"':
                j, chars = i + 1, []
                while j < len(line) and line[j] != '"':
                    if line[j] == "\\" and j + 1 < len(line):
                        j += 1
                    chars.append(line[j])
                    j += 1
                if j >= len(line):
                    raise ConfigError(f"{filename}:{number}: unclosed quote")
                tokens.append(Token("".join(chars), number))
                i = j + 1
            else:
                j = i
                while j < len(line) and not line[j].isspace():
                    j += 1
                word = line[i:j]
                # "foo{" and "}" glued to words are split like Caddy does at line ends
                if len(word) > 1 and word.endswith("{") and not word.startswith("{$"):
                    tokens.append(Token(word[:-1], number))
                    word = "{"
                tokens.append(Token(word, number))
                i = j
    return tokens


def parse_blocks(text: str, filename: str = "Corefile") -> list[Block]:
    """Parse Corefile text into server blocks. Raises ConfigError (``file:line: ...``)."""
    tokens = tokenize(text, filename)
    blocks: list[Block] = []
    pos = 0
    while pos < len(tokens):
        keys: list[str] = []
        line = tokens[pos].line
        while pos < len(tokens) and tokens[pos].text != "{":
            if tokens[pos].text == "}":
                raise ConfigError(f"{filename}:{tokens[pos].line}: unexpected '}}'")
            keys.extend(k for k in tokens[pos].text.split(",") if k)
            pos += 1
        if pos >= len(tokens):
            raise ConfigError(f"{filename}:{line}: server block {' '.join(keys)} has no '{{'")
        if keys and keys[0].startswith("(") and keys[0].endswith(")"):
            raise ConfigError(f"{filename}:{line}: snippets and import are not supported")
        directives, pos = _directives(tokens, pos + 1, filename)
        blocks.append(Block(keys, line, directives))
    if not blocks:
        raise ConfigError(f"{filename}: no server block")
    return blocks


def _directives(tokens: list[Token], pos: int, filename: str) -> tuple[list[Directive], int]:
    """Read directives up to the matching ``}``; return them and the position after it."""
    out: list[Directive] = []
    while pos < len(tokens):
        tok = tokens[pos]
        if tok.text == "}":
            return out, pos + 1
        if tok.text == "{":
            raise ConfigError(f"{filename}:{tok.line}: unexpected '{{'")
        directive = Directive(tok.text, [], tok.line)
        pos += 1
        while (
            pos < len(tokens)
            and tokens[pos].line == tok.line
            and tokens[pos].text not in ("{", "}")
        ):
            directive.args.append(tokens[pos].text)
            pos += 1
        if pos < len(tokens) and tokens[pos].text == "{" and tokens[pos].line == tok.line:
            directive.block, pos = _directives(tokens, pos + 1, filename)
        out.append(directive)
    raise ConfigError(f"{filename}: missing '}}' at the end")


# ---- typed configuration --------------------------------------------------------------------


@dataclass
class ExternalDirective:
    """The ``k8s_external`` directive (CoreDNS plugin/k8s_external README). TTL in seconds."""

    zones: tuple[str, ...]
    ttl: int = 5
    apex: str = "dns"
    headless: bool = False
    fallthrough: tuple[str, ...] | None = None  # None: off; (): every zone


@dataclass
class GatewayDirective:
    """The ``k8s_gateway`` directive (k8s_gateway plugin README). TTL in seconds."""

    zones: tuple[str, ...]
    resources: tuple[str, ...] = ("HTTPRoute", "TLSRoute", "GRPCRoute", "Ingress", "Service")
    ttl: int = 60
    apex: str = "dns1.kube-system"
    secondary: str = ""
    fallthrough: tuple[str, ...] | None = None  # None: off; (): every zone
    kubeconfig: str = ""
    context: str = ""


@dataclass
class KubernetesConfig:
    """The ``kubernetes`` directive (CoreDNS plugin/kubernetes README)."""

    zones: tuple[str, ...]
    pods: str = "disabled"
    ttl: int = 5
    endpoint_pod_names: bool = False
    fallthrough: tuple[str, ...] | None = None  # None: off; () : every zone
    kubeconfig: str = ""
    context: str = ""
    endpoint: str = ""
    namespaces: tuple[str, ...] = ()
    startup_timeout: float = 5.0


@dataclass
class ForwardConfig:
    """The ``forward`` directive (CoreDNS plugin/forward README). Times in seconds."""

    zone: str
    to: tuple[str, ...]
    except_zones: tuple[str, ...] = ()
    max_concurrent: int = 0  # 0: unlimited
    max_fails: int = 2
    expire: float = 10.0
    policy: str = "random"
    force_tcp: bool = False
    prefer_udp: bool = False
    health_check: float = 0.5
    health_check_recursion: bool = True
    health_check_domain: str = "."


@dataclass
class CacheConfig:
    """The ``cache`` directive (CoreDNS plugin/cache README). TTLs in seconds."""

    zones: tuple[str, ...]
    success_capacity: int = 9984
    success_ttl: int = 3600
    success_min_ttl: int = 5
    denial_capacity: int = 9984
    denial_ttl: int = 1800
    denial_min_ttl: int = 5
    disable_success: tuple[str, ...] = ()
    disable_denial: tuple[str, ...] = ()


@dataclass
class ServerConfig:
    """One server block, typed. Addresses are ``host:port`` strings (host may be empty)."""

    zones: tuple[str, ...]
    port: int
    bind: tuple[str, ...] = ()
    errors: bool = False
    log: bool = False
    health: str = ""
    lameduck: float = 0.0
    ready: str = ""
    prometheus: str = ""
    kubernetes: KubernetesConfig | None = None
    forward: list[ForwardConfig] = field(default_factory=list)
    cache: CacheConfig | None = None
    loop: bool = False
    reload: tuple[float, float] | None = None
    loadbalance: bool = False
    autopath: str = ""
    k8s_external: ExternalDirective | None = None
    k8s_gateway: GatewayDirective | None = None
    warnings: list[str] = field(default_factory=list)


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


class _Reader:
    """Checks the arguments of one directive; errors name ``file:line``."""

    def __init__(self, filename: str, directive: Directive) -> None:
        self.filename = filename
        self.d = directive

    def error(self, message: str, line: int | None = None) -> ConfigError:
        return ConfigError(f"{self.filename}:{line or self.d.line}: {self.d.name}: {message}")

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


def _zone_key(key: str, filename: str, line: int) -> tuple[str, int]:
    """``.:53`` / ``dns://cluster.local:5353`` / ``example.org`` -> (zone, port)."""
    text = key.removeprefix("dns://")
    if "://" in text:
        raise ConfigError(f"{filename}:{line}: {key}: only dns:// servers are supported")
    zone, sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not sep:
        zone, port = text, "53"
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{filename}:{line}: {key}: bad port {port!r}") from None
    return absolute(zone or "."), number


def _zones_args(args: list[str], default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(absolute(z) for z in args) if args else default


def load(text: str, filename: str = "Corefile") -> list[ServerConfig]:
    """Parse and check a Corefile. Raises ConfigError naming ``file:line``.

    Each returned ServerConfig carries its ``warnings`` (unknown directives, options
    clusterdns accepts but does not act on), one line each, naming ``file:line``.
    """
    servers: list[ServerConfig] = []
    for block in parse_blocks(text, filename):
        keys = [_zone_key(k, filename, block.line) for k in block.keys]
        ports = {port for _, port in keys}
        if len(ports) != 1:
            raise ConfigError(f"{filename}:{block.line}: one port per server block, got {ports}")
        server = ServerConfig(tuple(z for z, _ in keys), ports.pop())
        for directive in block.directives:
            _apply(server, directive, filename)
        servers.append(server)
    return servers


def _apply(server: ServerConfig, d: Directive, filename: str) -> None:
    r = _Reader(filename, d)
    name, args = d.name, d.args
    if name in ("errors", "log", "loop", "loadbalance"):
        if name == "loadbalance" and args not in ([], ["round_robin"]):
            raise r.error(f"want round_robin, got {' '.join(args)!r}")
        setattr(server, name, True)
    elif name == "health":
        r.count(args, 0, 1, "[ADDRESS]")
        server.health = r.address(args[0], 8080) if args else ":8080"
        for sub in d.block:
            if sub.name != "lameduck":
                raise r.error(f"unknown option {sub.name!r}", sub.line)
            r.count(sub.args, 1, 1, "lameduck DURATION", sub.line)
            server.lameduck = r.duration(sub.args[0], sub.line)
    elif name == "ready":
        r.count(args, 0, 1, "[ADDRESS]")
        server.ready = r.address(args[0], 8181) if args else ":8181"
    elif name == "prometheus":
        r.count(args, 0, 1, "[ADDRESS]")
        server.prometheus = r.address(args[0], 9153) if args else "localhost:9153"
    elif name == "bind":
        r.count(args, 1, 16, "ADDRESS...")
        for arg in args:
            if canonical_ip(arg) is None:
                raise r.error(f"want an IP address, got {arg!r}")
        server.bind = tuple(args)
    elif name == "reload":
        r.count(args, 0, 2, "[INTERVAL] [JITTER]")
        interval = r.duration(args[0]) if args else 30.0
        jitter = r.duration(args[1]) if len(args) > 1 else 15.0
        if interval < 2 or jitter < 1 or jitter > interval / 2:
            raise r.error("want INTERVAL >= 2s and 1s <= JITTER <= INTERVAL/2")
        server.reload = (interval, jitter)
    elif name == "autopath":
        r.count(args, 1, 16, "@kubernetes | RESOLV-CONF")
        server.autopath = args[0]
    elif name == "kubernetes":
        server.kubernetes = _kubernetes(r, server)
    elif name == "forward":
        server.forward.append(_forward(r))
    elif name == "cache":
        server.cache = _cache(r, server)
    elif name in EXPOSURE_DIRECTIVES:
        _exposure(server, r)
    elif name in KNOWN_IGNORED:
        server.warnings.append(f"{filename}:{d.line}: {name}: not supported, ignored")
    else:
        server.warnings.append(f"{filename}:{d.line}: unknown directive {name!r}, ignored")


def _kubernetes(r: _Reader, server: ServerConfig) -> KubernetesConfig:
    k = KubernetesConfig(_zones_args(r.d.args, server.zones))
    for sub in r.d.block:
        args, line = sub.args, sub.line
        if sub.name == "pods":
            r.count(args, 1, 1, "disabled|insecure|verified", line)
            if args[0] not in ("disabled", "insecure", "verified"):
                raise r.error(f"pods: want disabled|insecure|verified, got {args[0]!r}", line)
            k.pods = args[0]
        elif sub.name == "ttl":
            r.count(args, 1, 1, "ttl SECONDS", line)
            k.ttl = r.integer(args[0], 0, 3600, line)
        elif sub.name == "endpoint_pod_names":
            k.endpoint_pod_names = True
        elif sub.name == "fallthrough":
            k.fallthrough = _zones_args(args, ())
        elif sub.name == "kubeconfig":
            r.count(args, 1, 2, "kubeconfig PATH [CONTEXT]", line)
            k.kubeconfig = args[0]
            k.context = args[1] if len(args) > 1 else ""
        elif sub.name == "endpoint":
            r.count(args, 1, 1, "endpoint URL", line)
            k.endpoint = args[0]
        elif sub.name == "namespaces":
            r.count(args, 1, 1000, "namespaces NAMESPACE...", line)
            k.namespaces = tuple(a.lower() for a in args)
        elif sub.name == "startup_timeout":
            r.count(args, 1, 1, "startup_timeout DURATION", line)
            k.startup_timeout = r.duration(args[0], line)
        elif sub.name in ("noendpoints", "labels", "namespace_labels", "ignore", "multicluster"):
            server.warnings.append(
                f"{r.filename}:{line}: kubernetes: {sub.name}: not supported, ignored"
            )
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    return k


def _forward(r: _Reader) -> ForwardConfig:
    if len(r.d.args) < 2:
        raise r.error(f"want FROM TO..., got {' '.join(r.d.args) or 'nothing'!r}")
    f = ForwardConfig(absolute(r.d.args[0]), tuple(r.d.args[1:]))
    for to in f.to:
        if "://" in to and not to.startswith("dns://"):
            raise r.error(f"only dns:// upstreams are supported, got {to!r}")
    for sub in r.d.block:
        args, line = sub.args, sub.line
        if sub.name == "except":
            r.count(args, 1, 1000, "except ZONE...", line)
            f.except_zones = tuple(absolute(a) for a in args)
        elif sub.name == "max_concurrent":
            r.count(args, 1, 1, "max_concurrent N", line)
            f.max_concurrent = r.integer(args[0], 1, 10**9, line)
        elif sub.name == "max_fails":
            r.count(args, 1, 1, "max_fails N", line)
            f.max_fails = r.integer(args[0], 0, 10**6, line)
        elif sub.name == "expire":
            r.count(args, 1, 1, "expire DURATION", line)
            f.expire = r.duration(args[0], line)
        elif sub.name == "policy":
            r.count(args, 1, 1, "random|round_robin|sequential", line)
            if args[0] not in ("random", "round_robin", "sequential"):
                raise r.error(f"policy: want random|round_robin|sequential, got {args[0]!r}", line)
            f.policy = args[0]
        elif sub.name in ("force_tcp", "prefer_udp"):
            setattr(f, sub.name, True)
        elif sub.name == "health_check":
            r.count(args, 1, 4, "health_check DURATION [no_rec] [domain NAME]", line)
            f.health_check = r.duration(args[0], line)
            rest = args[1:]
            while rest:
                if rest[0] == "no_rec":
                    f.health_check_recursion = False
                    rest = rest[1:]
                elif rest[0] == "domain" and len(rest) > 1:
                    f.health_check_domain = absolute(rest[1])
                    rest = rest[2:]
                else:
                    raise r.error(f"health_check: unknown option {rest[0]!r}", line)
        elif sub.name in ("tls", "tls_servername", "next", "failfast_all_unhealthy_upstreams"):
            raise r.error(f"{sub.name}: not supported by clusterdns", line)
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    if f.force_tcp and f.prefer_udp:
        raise r.error("force_tcp and prefer_udp exclude each other")
    return f


def _cache(r: _Reader, server: ServerConfig) -> CacheConfig:
    args = list(r.d.args)
    ttl: int | None = None
    if args and args[0].isdigit():
        ttl = r.integer(args.pop(0), 0, 2**31 - 1)
    c = CacheConfig(_zones_args(args, server.zones))
    if ttl is not None:
        c.success_ttl = c.denial_ttl = ttl
        c.success_min_ttl = min(c.success_min_ttl, ttl)
        c.denial_min_ttl = min(c.denial_min_ttl, ttl)
    for sub in r.d.block:
        args, line = sub.args, sub.line
        if sub.name in ("success", "denial"):
            r.count(args, 1, 3, f"{sub.name} CAPACITY [TTL] [MINTTL]", line)
            values = [r.integer(a, 0, 2**31 - 1, line) for a in args]
            setattr(c, f"{sub.name}_capacity", values[0])
            if len(values) > 1:
                setattr(c, f"{sub.name}_ttl", values[1])
            if len(values) > 2:
                setattr(c, f"{sub.name}_min_ttl", values[2])
        elif sub.name == "disable":
            r.count(args, 1, 1000, "disable success|denial [ZONE...]", line)
            if args[0] not in ("success", "denial"):
                raise r.error(f"disable: want success|denial, got {args[0]!r}", line)
            zones = _zones_args(args[1:], c.zones)
            setattr(c, f"disable_{args[0]}", zones)
        elif sub.name in ("prefetch", "serve_stale", "servfail", "keepttl"):
            server.warnings.append(
                f"{r.filename}:{line}: cache: {sub.name}: not supported, ignored"
            )
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    return c


# ---- k8s_external and k8s_gateway (docs/exposed-names.md) ----------------------------------

EXPOSURE_DIRECTIVES = ("k8s_external", "k8s_gateway")


def _exposure(server: ServerConfig, r: _Reader) -> None:
    """Parse ``k8s_external [ZONES...] {...}`` or ``k8s_gateway ZONES... {...}`` into
    ``server``. Options and their ranges as the CoreDNS plugin's setup.go reads them."""
    d = r.d
    zones = _zones_args(d.args, server.zones)
    if d.name == "k8s_external":
        e = ExternalDirective(zones)
        for sub in d.block:
            args, line = sub.args, sub.line
            if sub.name == "ttl":
                r.count(args, 1, 1, "ttl SECONDS", line)
                e.ttl = r.integer(args[0], 0, 3600, line)
            elif sub.name == "apex":
                r.count(args, 1, 1, "apex LABEL", line)
                e.apex = _relative(r, args[0], line)
            elif sub.name == "headless":
                r.count(args, 0, 0, "headless", line)
                e.headless = True
            elif sub.name == "fallthrough":
                e.fallthrough = _zones_args(args, ())
            else:
                raise r.error(f"unknown option {sub.name!r}", line)
        server.k8s_external = e
        return
    g = GatewayDirective(zones)
    known = GatewayDirective.resources
    for sub in d.block:
        args, line = sub.args, sub.line
        if sub.name == "resources":
            r.count(args, 1, len(known), "resources " + " ".join(known), line)
            for arg in args:
                if arg not in known:
                    raise r.error(f"resources: want some of {' '.join(known)}, got {arg!r}", line)
            g.resources = tuple(dict.fromkeys(args))
        elif sub.name == "ttl":
            r.count(args, 1, 1, "ttl SECONDS", line)
            g.ttl = r.integer(args[0], 0, 3600, line)
        elif sub.name in ("apex", "secondary"):
            r.count(args, 1, 1, f"{sub.name} NAME", line)
            setattr(g, sub.name, _relative(r, args[0], line))
        elif sub.name == "fallthrough":
            g.fallthrough = _zones_args(args, ())
        elif sub.name == "kubeconfig":
            r.count(args, 1, 2, "kubeconfig PATH [CONTEXT]", line)
            g.kubeconfig = args[0]
            g.context = args[1] if len(args) > 1 else ""
        elif sub.name in ("ingressClasses", "gatewayClasses"):
            server.warnings.append(
                f"{r.filename}:{line}: k8s_gateway: {sub.name}: not supported, ignored"
            )
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    server.k8s_gateway = g


def _relative(r: _Reader, text: str, line: int) -> str:
    """A relative DNS name (``dns``, ``dns1.kube-system``), lower-case, no trailing dot."""
    name = text.lower().rstrip(".")
    if not name or any(not label or len(label) > 63 for label in name.split(".")):
        raise r.error(f"want a relative DNS name, got {text!r}", line)
    return name
