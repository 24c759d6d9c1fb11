"""Corefile text -> typed configuration (CoreDNS's Caddyfile dialect).

The text comes in, dataclasses come out (``import`` reads the files it names). A wrong
argument is a ConfigError naming ``file:line``, and so is a directive or option clusterdns
does not implement: a Corefile is never silently misread. Only directives that
change nothing but logging are warnings. docs/corefile.md lists every directive.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.errors import ConfigError
from ..core.names import absolute, canonical_ip, zone_list
from ..plugins.forward import CacheConfig, ForwardConfig
from .reader import Block, Directive, Reader, Token, zones_args

if TYPE_CHECKING:
    from ..plugins.chaos import ChaosConfig
    from ..plugins.hosts import HostsConfig
    from ..plugins.querylog import QueryLogConfig
    from ..plugins.rewrite import RewriteRule
    from ..plugins.template import TemplateConfig



# ---- tokens and blocks --------------------------------------------------------------------


_ENV = re.compile(r"\{\$([A-Za-z_][A-Za-z0-9_]*)\}|\{%([A-Za-z_][A-Za-z0-9_]*)%\}")


def tokenize(text: str, filename: str = "Corefile", origin: int = 0) -> list[Token]:
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
                tokens.append(Token("".join(chars), number, filename, origin))
                i = j + 1
            else:
                j = i
                while j < len(line) and not line[j].isspace():
                    j += 1
                word = line[i:j]
                # "foo{" and "}" glued to words are split like Caddy does at line ends
                if len(word) > 1 and word.endswith("{") and not word.startswith("{$"):
                    tokens.append(Token(word[:-1], number, filename, origin))
                    word = "{"
                tokens.append(Token(word, number, filename, origin))
                i = j
    return tokens


def _same_line(a: Token, b: Token) -> bool:
    return a.line == b.line and a.origin == b.origin and a.file == b.file


MAX_IMPORT_DEPTH = 10  # Caddy's limit on nested imports (a file importing itself)


class _Expander:
    """Expands ``import`` (files by glob, snippets) into tokens (Caddy/CoreDNS import).

    A pattern is a snippet name, or a path relative to the importing Corefile's directory,
    with globs. A glob that matches nothing imports nothing; a plain path that does not
    exist is an error (Caddy). Snippets ``(name) { ... }`` are defined at the top level;
    ``{args[N]}`` in a snippet or file is replaced by the import's N-th argument.
    """

    def __init__(self) -> None:
        self.snippets: dict[str, list[Token]] = {}
        self.origins = 0
        self.files: list[str] = []  # every file imported, in order

    def expand(self, tokens: list[Token], depth: int = 0, top: bool = True) -> list[Token]:
        out: list[Token] = []
        pos = 0
        nesting = 0
        while pos < len(tokens):
            tok = tokens[pos]
            first = pos == 0 or not _same_line(tokens[pos - 1], tok)
            snippet = tok.text.startswith("(") and tok.text.endswith(")")
            if top and nesting == 0 and first and snippet:
                pos = self._snippet(tokens, pos)
                continue
            if tok.text == "import" and first:
                args = []
                pos += 1
                while pos < len(tokens) and _same_line(tokens[pos], tok):
                    args.append(tokens[pos].text)
                    pos += 1
                out.extend(self._import(tok, args, depth, top and nesting == 0))
                continue
            nesting += {"{": 1, "}": -1}.get(tok.text, 0)
            out.append(tok)
            pos += 1
        return out

    def _snippet(self, tokens: list[Token], pos: int) -> int:
        tok = tokens[pos]
        name = tok.text[1:-1]
        if pos + 1 >= len(tokens) or tokens[pos + 1].text != "{":
            raise ConfigError(f"{tok.file}:{tok.line}: snippet {tok.text} has no '{{'")
        depth, end = 0, pos + 1
        while end < len(tokens):
            depth += {"{": 1, "}": -1}.get(tokens[end].text, 0)
            if depth == 0:
                break
            end += 1
        if end >= len(tokens):
            raise ConfigError(f"{tok.file}:{tok.line}: snippet {tok.text}: missing '}}'")
        if name in self.snippets:
            raise ConfigError(f"{tok.file}:{tok.line}: snippet {tok.text} defined twice")
        self.snippets[name] = tokens[pos + 2 : end]
        return end + 1

    def _import(self, tok: Token, args: list[str], depth: int, top: bool) -> list[Token]:
        where = f"{tok.file}:{tok.line}"
        if not args:
            raise ConfigError(f"{where}: import: want a file, glob or snippet name")
        if depth >= MAX_IMPORT_DEPTH:
            raise ConfigError(f"{where}: import: more than {MAX_IMPORT_DEPTH} nested imports")
        pattern, params = args[0], args[1:]
        if pattern in self.snippets:
            self.origins += 1
            body = [
                Token(_params(t.text, params), t.line, t.file, self.origins)
                for t in self.snippets[pattern]
            ]
            return self.expand(body, depth + 1, top)
        base = os.path.dirname(tok.file) or "."
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        if any(c in pattern for c in "*?["):
            paths = sorted(glob.glob(full))
        elif os.path.exists(full):
            paths = [full]
        else:
            raise ConfigError(f"{where}: import: no such file or snippet {pattern!r}")
        out: list[Token] = []
        for path in paths:
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    text = handle.read()
            except OSError as exc:
                raise ConfigError(f"{where}: import {path}: {exc.strerror or exc}") from None
            self.origins += 1
            self.files.append(path)
            body = [
                Token(_params(t.text, params), t.line, t.file, t.origin)
                for t in tokenize(text, path, self.origins)
            ]
            out.extend(self.expand(body, depth + 1, top))
        return out


def _params(text: str, params: list[str]) -> str:
    if "{args[" not in text:
        return text
    return re.sub(
        r"\{args\[(\d+)\]\}",
        lambda m: params[int(m.group(1))] if int(m.group(1)) < len(params) else "",
        text,
    )


def imported_files(text: str, filename: str = "Corefile") -> list[str]:
    """The files the ``import`` lines of a Corefile read (globs expanded now), for the
    reload plugin to notice when one changes (CoreDNS >= 1.7). A Corefile that does not
    parse gives what was found before the error."""
    expander = _Expander()
    with contextlib.suppress(ConfigError):
        expander.expand(tokenize(text, filename))
    return expander.files


def parse_blocks(text: str, filename: str = "Corefile") -> list[Block]:
    """Parse Corefile text into server blocks, with ``import`` and snippets expanded.

    Raises ConfigError (``file:line: ...``, naming the imported file for its lines).
    """
    tokens = _Expander().expand(tokenize(text, filename))
    blocks: list[Block] = []
    pos = 0
    while pos < len(tokens):
        keys: list[str] = []
        first = tokens[pos]
        while pos < len(tokens) and tokens[pos].text != "{":
            if tokens[pos].text == "}":
                raise ConfigError(f"{tokens[pos].file}:{tokens[pos].line}: unexpected '}}'")
            keys.extend(k for k in tokens[pos].text.split(",") if k)
            pos += 1
        if pos >= len(tokens):
            raise ConfigError(
                f"{first.file}:{first.line}: server block {' '.join(keys)} has no '{{'"
            )
        directives, pos = _directives(tokens, pos + 1, first.file)
        blocks.append(Block(keys, first.line, directives, first.file))
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
            raise ConfigError(f"{tok.file}:{tok.line}: unexpected '{{'")
        directive = Directive(tok.text, [], tok.line, file=tok.file)
        pos += 1
        while (
            pos < len(tokens)
            and _same_line(tokens[pos], tok)
            and tokens[pos].text not in ("{", "}")
        ):
            directive.args.append(tokens[pos].text)
            pos += 1
        if pos < len(tokens) and tokens[pos].text == "{" and _same_line(tokens[pos], tok):
            directive.block, pos = _directives(tokens, pos + 1, tok.file)
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
class ServerConfig:
    """One server block, typed. Addresses are ``host:port`` strings (host may be empty)."""

    zones: tuple[str, ...]
    port: int
    bind: tuple[str, ...] = ()
    errors: bool = False
    log: QueryLogConfig | None = None
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
    root: str = ""  # the root plugin: the directory relative file names are taken from
    bufsize: int | None = None  # bufsize: cap on the EDNS UDP payload honoured/advertised
    hosts: HostsConfig | None = None
    rewrite: list[RewriteRule] = field(default_factory=list)
    templates: list[TemplateConfig] = field(default_factory=list)
    chaos: ChaosConfig | None = None
    warnings: list[str] = field(default_factory=list)


def _zone_key(key: str, filename: str, line: int) -> tuple[list[str], int]:
    """``.:53`` / ``dns://cluster.local:5353`` / ``example.org`` / ``10.0.0.0/24:53`` ->
    (zones, port); a CIDR gives its reverse zones (CoreDNS core/dnsserver)."""
    text = key.removeprefix("dns://")
    if "://" in text:
        raise ConfigError(f"{filename}:{line}: {key}: only dns:// servers are supported")
    if "/" in text:  # a CIDR: the port follows the prefix length (fd00::/64:53)
        net, _, rest = text.partition("/")
        bits, sep, port = rest.partition(":")
        zone = f"{net}/{bits}"
    else:
        zone, sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not sep:
        zone, port = text, "53"
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{filename}:{line}: {key}: bad port {port!r}") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"{filename}:{line}: {key}: bad port {port!r}")
    try:
        return zone_list(zone or "."), number
    except ValueError as exc:
        raise ConfigError(f"{filename}:{line}: {key}: {exc}") from None


# Directives that only change what is logged or traced: accepted with a warning. Anything
# else clusterdns does not implement stops the start (it would change answers).
LOG_ONLY = {"debug", "trace", "dnstap", "metadata", "pprof"}


def load(text: str, filename: str = "Corefile") -> list[ServerConfig]:
    """Parse and check a Corefile, ``import`` and snippets expanded. Raises ConfigError
    naming ``file:line``: a directive clusterdns does not support
    (``plugin 'NAME' is not supported by clusterdns``), a bad argument, a zone served twice
    on one port (CoreDNS refuses a duplicate server block key).

    Each returned ServerConfig carries its ``warnings`` (logging-only directives that are
    accepted but do nothing), one line each, naming ``file:line``.
    """
    servers: list[ServerConfig] = []
    seen: dict[tuple[str, int], tuple[str, int, tuple[str, ...]]] = {}
    for block in parse_blocks(text, filename):
        where = block.file
        keys = [_zone_key(k, where, block.line) for k in block.keys]
        ports = {port for _, port in keys}
        if len(ports) != 1:
            raise ConfigError(f"{where}:{block.line}: one port per server block, got {ports}")
        zones = tuple(dict.fromkeys(z for zs, _ in keys for z in zs))
        server = ServerConfig(zones, ports.pop())
        for directive in block.directives:
            _apply(server, directive, filename)
        for zone in zones:
            other = seen.get((zone, server.port))
            if other is not None and (
                not other[2] or not server.bind or set(other[2]) & set(server.bind)
            ):
                raise ConfigError(
                    f"{where}:{block.line}: cannot serve dns://{zone}:{server.port}: it is "
                    f"already defined at {other[0]}:{other[1]}"
                )
            seen[(zone, server.port)] = (where, block.line, server.bind)
        servers.append(server)
    return servers


def not_supported(r: Reader, line: int = 0, name: str = "") -> ConfigError:
    """The error for a directive or option clusterdns does not implement (issue 13)."""
    return ConfigError(
        f"{r.where(line)}: plugin '{name or r.d.name}' is not supported by clusterdns"
    )


def _apply(server: ServerConfig, d: Directive, filename: str) -> None:
    r = Reader(filename, d)
    name, args = d.name, d.args
    if name in ("errors", "loop", "loadbalance"):
        if name == "loadbalance" and args not in ([], ["round_robin"]):
            raise r.error(f"want round_robin, got {' '.join(args)!r}")
        setattr(server, name, True)
    elif name == "log":
        from ..plugins.querylog import parse_log

        server.log = parse_log(r)
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
    elif name == "root":
        r.count(args, 1, 1, "PATH")
        server.root = args[0]
    elif name == "bufsize":
        r.count(args, 0, 1, "[SIZE]")
        server.bufsize = r.integer(args[0], 512, 4096) if args else 1232
    elif name == "hosts":
        from ..plugins.hosts import parse_hosts

        if server.hosts is not None:
            raise r.error("only one hosts per server block (CoreDNS)")
        server.hosts = parse_hosts(r, server.zones)
    elif name == "rewrite":
        from ..plugins.rewrite import parse_rewrite

        server.rewrite.append(parse_rewrite(r))
    elif name == "template":
        from ..plugins.template import parse_template

        server.templates.append(parse_template(r, server.zones))
    elif name == "chaos":
        from ..plugins.chaos import parse_chaos

        server.chaos = parse_chaos(r)
    elif name in LOG_ONLY:
        server.warnings.append(f"{r.where()}: {name}: only affects logging here, ignored")
    else:
        raise not_supported(r)


def _kubernetes(r: Reader, server: ServerConfig) -> KubernetesConfig:
    k = KubernetesConfig(zones_args(r.d.args, server.zones, r))
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
            k.fallthrough = zones_args(args, (), r, line)
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
        elif sub.name in ("apiserver_qps", "apiserver_burst", "apiserver_max_inflight"):
            server.warnings.append(f"{r.where(line)}: kubernetes: {sub.name}: ignored")
        elif sub.name in (
            "tls", "labels", "namespace_labels", "noendpoints", "zonal", "ignore", "multicluster"
        ):
            raise r.error(f"option {sub.name!r} is not supported by clusterdns", line)
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    return k


def _forward(r: Reader) -> ForwardConfig:
    if len(r.d.args) < 2:
        raise r.error(f"want FROM TO..., got {' '.join(r.d.args) or 'nothing'!r}")
    f = ForwardConfig(absolute(r.d.args[0]), tuple(r.d.args[1:]))
    for to in f.to:
        if "://" in to and not to.startswith(("dns://", "tls://")):
            raise r.error(f"only dns:// and tls:// upstreams are supported, got {to!r}")
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
        elif sub.name == "tls":
            r.count(args, 0, 3, "tls [CERT KEY] [CA]", line)
            for path in args:
                if not os.path.isfile(path):
                    raise r.error(f"tls: no such file {path!r}", line)
            f.tls = tuple(args)
        elif sub.name == "tls_servername":
            r.count(args, 1, 1, "tls_servername NAME", line)
            f.tls_servername = args[0]
        elif sub.name in ("next", "failfast_all_unhealthy_upstreams"):
            raise r.error(f"option {sub.name!r} is not supported by clusterdns", line)
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    if f.force_tcp and f.prefer_udp:
        raise r.error("force_tcp and prefer_udp exclude each other")
    return f


def _cache(r: Reader, server: ServerConfig) -> CacheConfig:
    args = list(r.d.args)
    ttl: int | None = None
    if args and args[0].isdigit():
        ttl = r.integer(args.pop(0), 0, 2**31 - 1)
    c = CacheConfig(zones_args(args, server.zones, r))
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
            zones = zones_args(args[1:], c.zones, r, line)
            setattr(c, f"disable_{args[0]}", zones)
        elif sub.name == "prefetch":
            r.count(args, 1, 3, "prefetch AMOUNT [DURATION] [PERCENTAGE%]", line)
            c.prefetch = r.integer(args[0], 1, 2**31 - 1, line)
            for arg in args[1:]:
                if arg.endswith("%"):
                    c.prefetch_percentage = r.integer(arg[:-1], 0, 100, line)
                else:
                    c.prefetch_duration = r.duration(arg, line)
        elif sub.name == "serve_stale":
            r.count(args, 0, 2, "serve_stale [DURATION] [immediate|verify]", line)
            c.serve_stale = r.duration(args[0], line) if args else 3600.0
            if len(args) > 1:
                if args[1] not in ("immediate", "verify"):
                    raise r.error(f"serve_stale: want immediate|verify, got {args[1]!r}", line)
                c.serve_stale_verify = args[1] == "verify"
        elif sub.name == "keepttl":
            c.keepttl = True
        elif sub.name in ("servfail", "serve_stale_policy"):
            raise r.error(f"option {sub.name!r} is not supported by clusterdns", line)
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    return c


# ---- k8s_external and k8s_gateway (docs/exposed-names.md) ----------------------------------

EXPOSURE_DIRECTIVES = ("k8s_external", "k8s_gateway")


def _exposure(server: ServerConfig, r: Reader) -> None:
    """Parse ``k8s_external [ZONES...] {...}`` or ``k8s_gateway ZONES... {...}`` into
    ``server``. Options and their ranges as the CoreDNS plugin's setup.go reads them."""
    d = r.d
    zones = zones_args(d.args, server.zones, r)
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
                e.fallthrough = zones_args(args, (), r, line)
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
            g.fallthrough = zones_args(args, (), r, line)
        elif sub.name == "kubeconfig":
            r.count(args, 1, 2, "kubeconfig PATH [CONTEXT]", line)
            g.kubeconfig = args[0]
            g.context = args[1] if len(args) > 1 else ""
        elif sub.name in ("ingressClasses", "gatewayClasses"):
            # It narrows which objects answer: ignoring it would misread the Corefile.
            raise r.error(f"option {sub.name!r} is not supported by clusterdns", line)
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    server.k8s_gateway = g


def _relative(r: Reader, text: str, line: int) -> str:
    """A relative DNS name (``dns``, ``dns1.kube-system``), lower-case, no trailing dot."""
    name = text.lower().rstrip(".")
    if not name or any(not label or len(label) > 63 for label in name.split(".")):
        raise r.error(f"want a relative DNS name, got {text!r}", line)
    return name
