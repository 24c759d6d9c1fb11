"""The ``forward`` and ``cache`` directives -> ForwardConfig, CacheConfig (CoreDNS
plugin/forward and plugin/cache READMEs; options and ranges as their setup.go read them).
Errors name ``file:line``.
"""

from __future__ import annotations

import os

from ..core.names import absolute
from ..corefile.reader import Reader, zones_args
from .forward import CacheConfig, ForwardConfig


def parse_forward(r: Reader) -> ForwardConfig:
    """``forward FROM TO... { options }`` -> ForwardConfig. Raises ConfigError naming
    ``file:line`` for a bad argument or an option clusterdns does not implement."""
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


def parse_cache(r: Reader, block_zones: tuple[str, ...]) -> CacheConfig:
    """``cache [TTL] [ZONES...] { options }`` -> CacheConfig; no zones: the server block's
    ``block_zones``. TTLs in seconds. Raises ConfigError naming ``file:line``."""
    args = list(r.d.args)
    ttl: int | None = None
    if args and args[0].isdigit():
        ttl = r.integer(args.pop(0), 0, 2**31 - 1)
    c = CacheConfig(zones_args(args, block_zones, r))
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
