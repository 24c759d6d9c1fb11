"""Command line: ``clusterdns serve|check|resolvconf|resolve|env`` (``python -m clusterdns``
and CoreDNS's ``-conf PATH`` work too).

Each subcommand has one function that adds its arguments (``add_<command>``) and one that
runs it (``run_<command>``, returning the exit status); ``COMMANDS`` ties them together.
Every default comes from clusterdns/core/defaults.py; every ``HOST:PORT`` is read by
clusterdns.core.names.split_hostport. The README's synopsis lists every option
(tests/test_docs.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from ..core import defaults
from ..core.errors import ConfigError
from ..core.names import absolute, split_hostport
from ..core.resolver import PodMode, ZoneConfig
from ..core.search import DNSPolicy, Libc, ResolvConf, parse_resolv_conf, pod_resolv_conf, walk
from ..core.store import Store
from ..corefile.config import ExternalDirective, GatewayDirective, KubernetesConfig, ServerConfig
from ..server.app import Options, load_conf, run
from ..sources.manifests import ManifestSource, load, summary
from .explain import Exposure, local_query, report, server_query
from .servicelinks import service_env

log = logging.getLogger("clusterdns")

REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
CLUSTER_DNS_IP = "10.96.0.10"  # kubeadm's and kind's kube-dns Service IP
HOST_RESOLV_CONF = Path("/etc/resolv.conf")


# ---- argument types ---------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` with an IP host -> (host, port).
    Raises ArgumentTypeError."""
    try:
        host, port = split_hostport(text)
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want HOST:PORT with an IP host, got {text!r}") from None
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


# ---- serve ----------------------------------------------------------------------------------


def add_serve(serve: argparse.ArgumentParser) -> None:
    """``serve``: what is answered, where the state comes from, and the listeners."""
    _add_serve_answers(serve)
    _add_serve_sources(serve)
    _add_serve_listeners(serve)


def _add_serve_answers(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--zone",
        default=defaults.CLUSTER_DOMAIN,
        help=f"cluster domain (default {defaults.CLUSTER_DOMAIN})",
    )
    serve.add_argument(
        "--ttl", type=parse_ttl, default=defaults.TTL, help=f"record TTL, seconds ({defaults.TTL})"
    )
    serve.add_argument(
        "--external-zone",
        action="append",
        default=[],
        metavar="ZONE",
        help="answer <service>.<namespace>.ZONE with Services' external IPs (k8s_external), "
        "repeatable",
    )
    serve.add_argument(
        "--gateway-zone",
        action="append",
        default=[],
        metavar="ZONE",
        help="answer Ingress hosts, Gateway route hostnames and <service>.<namespace>.ZONE "
        "of LoadBalancer Services under ZONE (k8s_gateway), repeatable",
    )
    serve.add_argument(
        "--pods",
        choices=[m.value for m in PodMode],
        default=PodMode.INSECURE.value,
        help="pod records a-b-c-d.<ns>.pod.<zone> (default insecure, as kind runs)",
    )
    serve.add_argument(
        "--endpoint-pod-names",
        action="store_true",
        help="name endpoints without a hostname by their pod, not their dashed IP",
    )
    serve.add_argument(
        "--cache-size",
        type=int,
        default=defaults.CACHE_SIZE,
        help=f"positive answers kept per server block ({defaults.CACHE_SIZE}), "
        "and a tenth of it of negative ones",
    )
    serve.add_argument(
        "--autopath",
        action="store_true",
        help="answer a pod's search list on the server (needs --pods verified)",
    )


def _add_serve_sources(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--zones",
        action="append",
        type=Path,
        metavar="DIR",
        help=f"manifest directory or file, repeatable (default: ./{defaults.ZONES_DIR})",
    )
    serve.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="follow a live cluster through this kubeconfig (in a pod with "
        "KUBERNETES_SERVICE_HOST set, the service account is used without it)",
    )
    serve.add_argument("--kube-api", metavar="URL", help="override the API server URL")
    serve.add_argument(
        "--startup-timeout",
        type=float,
        default=defaults.STARTUP_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for the first API sync before opening the ports "
        f"({defaults.STARTUP_TIMEOUT:g})",
    )
    serve.add_argument(
        "--zones-interval",
        type=float,
        default=defaults.ZONES_INTERVAL,
        metavar="SECONDS",
        help="how often to look for changed manifest files; 0 never "
        f"({defaults.ZONES_INTERVAL:g})",
    )
    serve.add_argument(
        "--conf",
        type=Path,
        metavar="COREFILE",
        help="run as a Corefile says (CoreDNS's -conf); the flags above then only add "
        "--zones, --kubeconfig, --kube-api and --cache-size",
    )
    serve.add_argument(
        "--kube-watch-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="server-side watch timeout, drawn from [S, 2S]; a stream silent longer "
        "(plus the same again, at most 30 s) is given up (default 300-600 s)",
    )


def _add_serve_listeners(serve: argparse.ArgumentParser) -> None:
    host, port = defaults.LISTEN
    serve.add_argument(
        "--listen",
        type=parse_listen,
        default=defaults.LISTEN,
        metavar="HOST:PORT",
        help=f"UDP and TCP address (default {host}:{port}; port 0 picks a free one)",
    )
    serve.add_argument(
        "--tcp-idle-timeout",
        type=float,
        default=defaults.TCP_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="close a TCP connection idle this long, or slower than this per message "
        f"({defaults.TCP_IDLE_TIMEOUT:g})",
    )
    serve.add_argument(
        "--max-tcp-connections",
        type=int,
        default=defaults.MAX_TCP_CONNECTIONS,
        metavar="N",
        help=f"TCP connections open at once; more are closed at once "
        f"({defaults.MAX_TCP_CONNECTIONS})",
    )
    serve.add_argument(
        "--max-tcp-queries",
        type=int,
        default=defaults.MAX_TCP_QUERIES,
        metavar="N",
        help=f"queries per TCP connection before it is closed ({defaults.MAX_TCP_QUERIES})",
    )
    serve.add_argument(
        "--udp-size",
        "--bufsize",
        dest="udp_size",
        type=int,
        default=defaults.UDP_SIZE,
        metavar="BYTES",
        help="our EDNS payload: UDP replies are at most this and the client's, 512-65535 "
        f"(CoreDNS bufsize; {defaults.UDP_SIZE}, DNS Flag Day 2020)",
    )
    serve.add_argument(
        "--udp-thread",
        action="store_true",
        help="answer UDP cache hits from a dedicated thread (blocking recvfrom/sendto), "
        "everything else on the event loop: about 1.8x the queries per CPU second",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes on the same port (SO_REUSEPORT), each with its own store (1)",
    )
    for flag, what in (("--health", "/health"), ("--ready", "/ready"), ("--metrics", "/metrics")):
        serve.add_argument(
            flag, type=parse_address, metavar="HOST:PORT", help=f"serve {what} here (off)"
        )


def flags_config(args: argparse.Namespace) -> ServerConfig:
    """The server block the ``serve`` flags stand for: the kubernetes zone on
    ``--listen``, nothing forwarded (names outside the zones are REFUSED)."""
    host, port = args.listen
    zones = (absolute(args.zone), *REVERSE_ZONES)
    external = tuple(absolute(z) for z in args.external_zone)
    gateway = tuple(absolute(z) for z in args.gateway_zone)
    return ServerConfig(
        zones=zones + external + gateway,
        k8s_external=ExternalDirective(external) if external else None,
        k8s_gateway=GatewayDirective(gateway) if gateway else None,
        port=port,
        bind=(host,),
        health=args.health or "",
        ready=args.ready or "",
        prometheus=args.metrics or "",
        autopath="@kubernetes" if args.autopath else "",
        kubernetes=KubernetesConfig(
            ZoneConfig(
                zones=zones,
                pods=PodMode(args.pods),
                ttl=args.ttl,
                endpoint_pod_names=args.endpoint_pod_names,
            ),
            startup_timeout=args.startup_timeout,
        ),
    )


def run_serve(args: argparse.Namespace) -> int:
    """Run the server from a Corefile (``--conf``) or from the flags; the exit status."""
    if args.workers < 1:
        log.error("--workers: want 1 or more, got %d", args.workers)
        return 1
    if not 512 <= args.udp_size <= 65535:
        log.error("--udp-size: want 512 to 65535 bytes, got %d", args.udp_size)
        return 1
    options = Options(
        watch_timeout=args.kube_watch_timeout,
        tcp_idle_timeout=args.tcp_idle_timeout,
        max_tcp_connections=args.max_tcp_connections,
        max_tcp_queries=args.max_tcp_queries,
        workers=args.workers,
        udp_thread=args.udp_thread,
        zones=args.zones,
        zones_interval=args.zones_interval,
        kubeconfig=args.kubeconfig or "",
        kube_api=args.kube_api or "",
        corefile=args.conf,
        cache_size=args.cache_size,
        udp_size=args.udp_size,
    )
    if args.conf is not None:
        try:
            servers, options.corefile_digest = load_conf(args.conf)
        except ConfigError as exc:
            log.error("%s", exc)
            return 1
    else:
        servers = [flags_config(args)]
    return run(servers, options)


# ---- check ----------------------------------------------------------------------------------


def add_check(check: argparse.ArgumentParser) -> None:
    """``check [DIR...]``."""
    check.add_argument(
        "paths", nargs="*", type=Path, default=[Path(defaults.ZONES_DIR)], metavar="DIR"
    )


def run_check(args: argparse.Namespace) -> int:
    """Validate manifests: print each error and duplicate, then the counts (as ``serve``
    serves them: duplicates once); 1 if any error (duplicates are warnings)."""
    try:
        result = load(args.paths)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    for line in result.errors:
        print(line, file=sys.stderr)
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(summary(result))
    return 1 if result.errors else 0


# ---- resolvconf -----------------------------------------------------------------------------


def add_resolvconf(rc: argparse.ArgumentParser) -> None:
    """``resolvconf``: the pod's spec fields the kubelet reads."""
    rc.add_argument("--namespace", default="default", help="the pod's namespace")
    rc.add_argument("--cluster-domain", default=defaults.CLUSTER_DOMAIN)
    rc.add_argument(
        "--nameserver", action="append", metavar="IP", help=f"cluster DNS IP ({CLUSTER_DNS_IP})"
    )
    rc.add_argument(
        "--dns-policy",
        default=DNSPolicy.CLUSTER_FIRST.value,
        choices=[p.value for p in DNSPolicy],
        help="the pod's spec.dnsPolicy",
    )
    rc.add_argument("--search", action="append", default=[], help="dnsConfig.searches")
    rc.add_argument("--option", action="append", default=[], help="dnsConfig.options, NAME[:V]")
    rc.add_argument("--ndots", type=int, help="dnsConfig option ndots")
    rc.add_argument(
        "--host-resolv-conf",
        type=Path,
        default=HOST_RESOLV_CONF,
        help="the node's resolv.conf (its search domains are appended; Default uses it)",
    )
    rc.add_argument("--host-network", action="store_true", help="the pod uses hostNetwork")


def _host_conf(path: Path) -> ResolvConf:
    try:
        return parse_resolv_conf(path.read_text())
    except OSError:
        return ResolvConf()


def run_resolvconf(args: argparse.Namespace) -> int:
    """Print a pod's resolv.conf; warn on stderr about search domains over the limits."""
    options = list(args.option) + ([f"ndots:{args.ndots}"] if args.ndots is not None else [])
    conf = pod_resolv_conf(
        args.namespace.lower(),
        cluster_domain=args.cluster_domain,
        nameservers=args.nameserver or [CLUSTER_DNS_IP],
        policy=DNSPolicy(args.dns_policy),
        host=_host_conf(args.host_resolv_conf),
        searches=args.search,
        options=options,
        host_network=args.host_network,
    )
    sys.stdout.write(conf.text())
    if conf.dropped:
        print(
            "search domains over the kubelet's limits (32 domains, 2048 characters), "
            f"dropped: {' '.join(conf.dropped)}",
            file=sys.stderr,
        )
    return 0


# ---- resolve --------------------------------------------------------------------------------


def add_resolve(rs: argparse.ArgumentParser) -> None:
    """``resolve NAME``: the pod, the libc, and where the answers come from."""
    rs.add_argument("name")
    rs.add_argument("--namespace", default="default", help="the pod's namespace (default)")
    rs.add_argument("--resolv-conf", type=Path, help="use this resolv.conf instead")
    rs.add_argument("--type", default="both", choices=["A", "AAAA", "both"])
    rs.add_argument("--libc", default=Libc.GLIBC.value, choices=[lib.value for lib in Libc])
    rs.add_argument(
        "--server",
        type=parse_listen,
        metavar="HOST:PORT",
        help="ask this server (default: answer in-process from --zones)",
    )
    rs.add_argument("--zones", action="append", type=Path, metavar="DIR")
    rs.add_argument("--cluster-domain", default=defaults.CLUSTER_DOMAIN)
    for flag, kind in (("--gateway-zone", "k8s_gateway"), ("--external-zone", "k8s_external")):
        rs.add_argument(
            flag,
            action="append",
            default=[],
            metavar="ZONE",
            help=f"also answer (and explain) {kind} names under ZONE, in-process",
        )


def run_resolve(args: argparse.Namespace) -> int:
    """Walk NAME's candidates; exit 0 resolved, 2 not found, 1 error."""
    if args.resolv_conf is not None:
        try:
            conf = parse_resolv_conf(args.resolv_conf.read_text())
        except OSError as exc:
            print(f"{args.resolv_conf}: {exc.strerror}", file=sys.stderr)
            return 1
    else:
        conf = pod_resolv_conf(args.namespace.lower(), cluster_domain=args.cluster_domain)
    exposure = Exposure(
        tuple(absolute(z) for z in args.gateway_zone),
        tuple(absolute(z) for z in args.external_zone),
    )
    if args.server is not None:
        query = server_query(*args.server)
    else:
        zone = absolute(args.cluster_domain)
        try:
            query = local_query(
                args.zones or [Path(defaults.ZONES_DIR)],
                ZoneConfig(zones=(zone, *REVERSE_ZONES)),
                exposure=exposure,
            )
        except FileNotFoundError as exc:
            print(f"{exc} (pass --zones DIR or --server HOST:PORT)", file=sys.stderr)
            return 1
    qtypes = ("A", "AAAA") if args.type == "both" else (args.type,)
    result = walk(args.name, conf, query, Libc(args.libc), qtypes)
    print("\n".join(report(result)))
    if exposure.gateway or exposure.external:
        print("\n".join(exposure.why(result.name or args.name)))
    if result.resolved:
        return 0
    return 1 if result.error else 2


# ---- env ------------------------------------------------------------------------------------


def add_env(ev: argparse.ArgumentParser) -> None:
    """``env``: the pod's namespace and enableServiceLinks."""
    ev.add_argument("--namespace", default="default", help="the pod's namespace")
    ev.add_argument("--zones", action="append", type=Path, metavar="DIR")
    ev.add_argument(
        "--no-service-links", action="store_true", help="the pod sets enableServiceLinks: false"
    )


def run_env(args: argparse.Namespace) -> int:
    """Print ``NAME=value`` lines, sorted, as the kubelet would set them (enableServiceLinks)."""
    store = Store()
    try:
        ManifestSource(store, args.zones or [Path(defaults.ZONES_DIR)]).load(time.time())
    except FileNotFoundError as exc:
        print(f"{exc} (pass --zones DIR)", file=sys.stderr)
        return 1
    env = service_env(store, args.namespace.lower(), enable_service_links=not args.no_service_links)
    for name in sorted(env):
        print(f"{name}={env[name]}")
    return 0


# ---- the parser and the entry point ---------------------------------------------------------

Adder = Callable[[argparse.ArgumentParser], None]
Runner = Callable[[argparse.Namespace], int]

COMMANDS: dict[str, tuple[str, Adder, Runner]] = {
    "serve": ("answer DNS from manifests (and later the API)", add_serve, run_serve),
    "resolvconf": ("print the resolv.conf the kubelet writes", add_resolvconf, run_resolvconf),
    "resolve": ("walk a pod's search list as its libc does", add_resolve, run_resolve),
    "env": ("print the service variables a pod gets", add_env, run_env),
    "check": ("validate manifests and count what they hold", add_check, run_check),
}
"""Subcommand -> (help, the function adding its arguments, the function running it)."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global options and one subparser per ``COMMANDS`` entry."""
    parser = argparse.ArgumentParser(
        prog="clusterdns", description="Cluster DNS for Kubernetes service discovery."
    )
    parser.add_argument("--version", action="version", version=f"clusterdns {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add, _) in COMMANDS.items():
        add(commands.add_parser(name, help=help_))
    return parser


def coredns_argv(argv: list[str]) -> list[str]:
    """CoreDNS's own command line (``-conf PATH``, as the kube-system Deployment passes
    it) becomes ``serve --conf PATH``, keeping the options around it; an argv that names
    a command is left alone."""
    if "-conf" not in argv or any(a in COMMANDS for a in argv):
        return argv
    at = argv.index("-conf")
    if at + 1 >= len(argv):
        return argv
    rest = argv[:at] + argv[at + 2 :]
    globals_ = [a for a in rest if a.startswith("--log-level")]
    if "--log-level" in rest:
        i = rest.index("--log-level")
        globals_ = rest[i : i + 2]
        rest = rest[:i] + rest[i + 2 :]
    return [*globals_, "serve", "--conf", argv[at + 1], *rest]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clusterdns`` console script; the exit status."""
    args = build_parser().parse_args(coredns_argv(list(sys.argv[1:] if argv is None else argv)))
    logging.basicConfig(
        level=args.log_level.upper(), format="[%(levelname)s] %(message)s", stream=sys.stderr
    )
    return COMMANDS[args.command][2](args)
