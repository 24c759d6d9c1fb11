"""The ``cache`` plugin (CoreDNS plugin/cache README): the cache of forwarded answers. The
cache itself is ``forward_cache``; forward builds it from this plugin's config. Cluster
answers are kept by the chain and never served stale.
"""

from __future__ import annotations

from ..corefile.reader import Reader, zones_args
from .forward_cache import CacheConfig
from .plugin import Plugin


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


PLUGIN = Plugin("cache", lambda r, setup: parse_cache(r, setup.zones))
"""CoreDNS plugin/cache, for forwarded answers."""
