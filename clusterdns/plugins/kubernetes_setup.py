"""The ``kubernetes`` directive (CoreDNS plugin/kubernetes README) -> KubernetesConfig: the
resolver's ZoneConfig (what the zone answers) plus where the cluster state comes from.
Errors name ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..core.defaults import STARTUP_TIMEOUT
from ..core.resolver import PodMode, ZoneConfig
from ..corefile.reader import Reader, zones_args

COREDNS_TTL = 5  # seconds: the kubernetes plugin's own default (kubeadm writes ttl 30)
COREDNS_PODS = PodMode.DISABLED  # the plugin's default (kubeadm writes pods insecure)
IGNORED = ("apiserver_qps", "apiserver_burst", "apiserver_max_inflight")  # client tuning
UNSUPPORTED = ("tls", "labels", "namespace_labels", "noendpoints", "zonal", "ignore",
               "multicluster")  # each changes which objects answer: a misread if ignored


@dataclass
class KubernetesConfig:
    """One ``kubernetes`` directive: ``zone``, the resolver's settings (the ``ns_addresses``
    are the server's, filled in when it starts), and the source settings: ``kubeconfig``
    PATH and its ``context``, the API ``endpoint`` URL, ``startup_timeout`` in seconds.

    ``zones``, ``pods``, ``ttl``, ``endpoint_pod_names``, ``namespaces`` and ``fallthrough``
    read the Corefile's view of ``zone``; ``fallthrough`` is None when off and ``()`` for
    every zone, as the directive is written.
    """

    zone: ZoneConfig = field(
        default_factory=lambda: ZoneConfig(ttl=COREDNS_TTL, pods=COREDNS_PODS)
    )
    kubeconfig: str = ""
    context: str = ""
    endpoint: str = ""
    startup_timeout: float = STARTUP_TIMEOUT

    def answering(self, ns_addresses: tuple[str, ...]) -> ZoneConfig:
        """``zone`` with the server's own addresses (NS glue, ``ns.dns.<zone>``)."""
        return replace(self.zone, ns_addresses=ns_addresses)

    @property
    def zones(self) -> tuple[str, ...]:
        """The zones answered, lower-case absolute."""
        return self.zone.zones

    @property
    def pods(self) -> PodMode:
        """``pods`` (a str enum: compares equal to ``"verified"``...)."""
        return self.zone.pods

    @property
    def ttl(self) -> int:
        """Answer TTL, seconds."""
        return self.zone.ttl

    @property
    def endpoint_pod_names(self) -> bool:
        """``endpoint_pod_names``."""
        return self.zone.endpoint_pod_names

    @property
    def namespaces(self) -> tuple[str, ...]:
        """``namespaces``, sorted; empty: every namespace."""
        return tuple(sorted(self.zone.namespaces))

    @property
    def fallthrough(self) -> tuple[str, ...] | None:
        """None: off; ``()``: every zone; else the zones handed on."""
        through = self.zone.fallthrough
        if not through:
            return None
        return () if through == (".",) else through


def parse_kubernetes(
    r: Reader, block_zones: tuple[str, ...], warnings: list[str]
) -> KubernetesConfig:
    """``kubernetes [ZONES...] { options }``; no zones: the server block's ``block_zones``.
    Options that only tune the API client are appended to ``warnings`` and ignored. Raises
    ConfigError naming ``file:line``."""
    k = KubernetesConfig()
    zone = replace(k.zone, zones=zones_args(r.d.args, block_zones, r))
    for sub in r.d.block:
        args, line = sub.args, sub.line
        if sub.name == "pods":
            r.count(args, 1, 1, "disabled|insecure|verified", line)
            if args[0] not in ("disabled", "insecure", "verified"):
                raise r.error(f"pods: want disabled|insecure|verified, got {args[0]!r}", line)
            zone = replace(zone, pods=PodMode(args[0]))
        elif sub.name == "ttl":
            r.count(args, 1, 1, "ttl SECONDS", line)
            zone = replace(zone, ttl=r.integer(args[0], 0, 3600, line))
        elif sub.name == "endpoint_pod_names":
            zone = replace(zone, endpoint_pod_names=True)
        elif sub.name == "fallthrough":
            zone = replace(zone, fallthrough=zones_args(args, (), r, line) or (".",))
        elif sub.name == "kubeconfig":
            r.count(args, 1, 2, "kubeconfig PATH [CONTEXT]", line)
            k.kubeconfig = args[0]
            k.context = args[1] if len(args) > 1 else ""
        elif sub.name == "endpoint":
            r.count(args, 1, 1, "endpoint URL", line)
            k.endpoint = args[0]
        elif sub.name == "namespaces":
            r.count(args, 1, 1000, "namespaces NAMESPACE...", line)
            zone = replace(zone, namespaces=frozenset(a.lower() for a in args))
        elif sub.name == "startup_timeout":
            r.count(args, 1, 1, "startup_timeout DURATION", line)
            k.startup_timeout = r.duration(args[0], line)
        elif sub.name in IGNORED:
            warnings.append(f"{r.where(line)}: kubernetes: {sub.name}: ignored")
        elif sub.name in UNSUPPORTED:
            raise r.error(f"option {sub.name!r} is not supported by clusterdns", line)
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    k.zone = zone
    return k
