"""The ``k8s_external`` and ``k8s_gateway`` directives -> their resolvers' configurations
(docs/exposed-names.md): options and their ranges as the CoreDNS plugin's and the
k8s_gateway plugin's setup.go read them. Errors name ``file:line``.
"""

from __future__ import annotations

from dataclasses import replace

from ..corefile.reader import Reader, zones_args
from .k8s_external import ExternalConfig
from .k8s_gateway import RESOURCES, GatewayConfig


def parse_external(r: Reader, block_zones: tuple[str, ...]) -> ExternalConfig:
    """``k8s_external [ZONES...] { options }``; no zones: the server block's ``block_zones``.
    Raises ConfigError naming ``file:line``. What the block adds (our addresses, the
    kubernetes directive's namespaces) is filled in when the block is built."""
    e = ExternalConfig(zones_args(r.d.args, block_zones, r))
    for sub in r.d.block:
        args, line = sub.args, sub.line
        if sub.name == "ttl":
            r.count(args, 1, 1, "ttl SECONDS", line)
            e = replace(e, ttl=r.integer(args[0], 0, 3600, line))
        elif sub.name == "apex":
            r.count(args, 1, 1, "apex LABEL", line)
            e = replace(e, apex=_relative(r, args[0], line))
        elif sub.name == "headless":
            r.count(args, 0, 0, "headless", line)
            e = replace(e, headless=True)
        elif sub.name == "fallthrough":
            e = replace(e, fallthrough=zones_args(args, (".",), r, line))
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    return e


def parse_gateway(r: Reader, block_zones: tuple[str, ...]) -> GatewayConfig:
    """``k8s_gateway [ZONES...] { options }``; no zones: the server block's ``block_zones``.
    Raises ConfigError naming ``file:line``."""
    g = GatewayConfig(zones_args(r.d.args, block_zones, r))
    known = RESOURCES
    for sub in r.d.block:
        args, line = sub.args, sub.line
        if sub.name == "resources":
            r.count(args, 1, len(known), "resources " + " ".join(known), line)
            for arg in args:
                if arg not in known:
                    raise r.error(f"resources: want some of {' '.join(known)}, got {arg!r}", line)
            g = replace(g, resources=tuple(dict.fromkeys(args)))
        elif sub.name == "ttl":
            r.count(args, 1, 1, "ttl SECONDS", line)
            g = replace(g, ttl=r.integer(args[0], 0, 3600, line))
        elif sub.name in ("apex", "secondary"):
            r.count(args, 1, 1, f"{sub.name} NAME", line)
            name = _relative(r, args[0], line)
            g = replace(g, apex=name) if sub.name == "apex" else replace(g, secondary=name)
        elif sub.name == "fallthrough":
            g = replace(g, fallthrough=zones_args(args, (".",), r, line))
        elif sub.name == "kubeconfig":
            r.count(args, 1, 2, "kubeconfig PATH [CONTEXT]", line)
            g = replace(g, kubeconfig=args[0])
            g = replace(g, context=args[1] if len(args) > 1 else "")
        elif sub.name in ("ingressClasses", "gatewayClasses"):
            # It narrows which objects answer: ignoring it would misread the Corefile.
            raise r.error(f"option {sub.name!r} is not supported by clusterdns", line)
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    return g


def _relative(r: Reader, text: str, line: int) -> str:
    """A relative DNS name (``dns``, ``dns1.kube-system``), lower-case, no trailing dot."""
    name = text.lower().rstrip(".")
    if not name or any(not label or len(label) > 63 for label in name.split(".")):
        raise r.error(f"want a relative DNS name, got {text!r}", line)
    return name
