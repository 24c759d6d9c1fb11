"""``clusterdns serve``: its options and how they become a server (from a Corefile with
``--conf``, else one server block the flags stand for). Defaults: clusterdns/core/defaults.py.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ..core import defaults
from ..core.errors import ConfigError
from ..core.names import absolute
from ..core.resolver import REVERSE_ZONES, PodMode, ZoneConfig
from ..corefile.config import ServerConfig
from ..plugins.k8s_external import ExternalConfig
from ..plugins.k8s_gateway import GatewayConfig
from ..plugins.kubernetes_setup import KubernetesConfig
from ..plugins.querylog import QueryLogConfig
from ..server.app import Options, run
from ..server.batch import available as batch_available
from ..server.reload import load_conf
from .arguments import (
    int_range,
    parse_address,
    parse_listen,
    parse_seconds,
    parse_ttl,
    parse_workers,
)

log = logging.getLogger("clusterdns")

# the default of --workers when set (N or auto); the image sets auto (Dockerfile), so that
# kubeadm's own Deployment args (-conf only) get one worker per CPU too
WORKERS_ENV = "CLUSTERDNS_WORKERS"


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
        "--ttl",
        type=parse_ttl,
        default=defaults.TTL,
        metavar="SECONDS",
        help=f"record TTL, seconds ({defaults.TTL})"
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
        type=int_range(1, 100_000_000, "entries"),
        metavar="ENTRIES",
        default=defaults.CACHE_SIZE,
        help=f"positive answers kept per server block ({defaults.CACHE_SIZE}), "
        "and a tenth of it of negative ones",
    )
    serve.add_argument(
        "--autopath",
        action="store_true",
        help="answer a pod's search list on the server (needs --pods verified)",
    )
    serve.add_argument(
        "--traffic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="count queries by client for /traffic and clusterdns top on the --metrics "
        "address (off: it costs 7%% of the queries per CPU second at full load)",
    )
    serve.add_argument(
        "--log",
        action="store_true",
        help="a line per query on stdout, in CoreDNS's log format (the log plugin)",
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
        type=parse_seconds,
        default=defaults.STARTUP_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for the first API sync before opening the ports "
        f"({defaults.STARTUP_TIMEOUT:g})",
    )
    serve.add_argument(
        "--zones-interval",
        type=parse_seconds,
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
        type=parse_seconds,
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
        type=parse_seconds,
        default=defaults.TCP_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="close a TCP connection idle this long, or slower than this per message "
        f"({defaults.TCP_IDLE_TIMEOUT:g})",
    )
    serve.add_argument(
        "--max-tcp-connections",
        type=int_range(1, 1_000_000, "connections"),
        default=defaults.MAX_TCP_CONNECTIONS,
        metavar="N",
        help=f"TCP connections open at once; more are closed at once "
        f"({defaults.MAX_TCP_CONNECTIONS})",
    )
    serve.add_argument(
        "--max-tcp-queries",
        type=int_range(1, 1_000_000_000, "queries"),
        default=defaults.MAX_TCP_QUERIES,
        metavar="N",
        help=f"queries per TCP connection before it is closed ({defaults.MAX_TCP_QUERIES})",
    )
    serve.add_argument(
        "--udp-size",
        "--bufsize",
        dest="udp_size",
        type=int_range(512, 65535, "bytes"),
        default=defaults.UDP_SIZE,
        metavar="BYTES",
        help="our EDNS payload: UDP replies are at most this and the client's, 512-65535 "
        f"(CoreDNS bufsize; {defaults.UDP_SIZE}, DNS Flag Day 2020)",
    )
    serve.add_argument(
        "--udp-thread",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve UDP from a dedicated thread on the fast path (kept answers, certain "
        "NXDOMAINs), many datagrams per system call; misses, TCP and the API on the event "
        "loop (default: on where recvmmsg exists, i.e. Linux: 1.4x the queries per CPU "
        "second of the loop alone)",
    )
    serve.add_argument(
        "--workers",
        type=parse_workers,
        default=os.environ.get(WORKERS_ENV, "1"),
        metavar="N|auto",
        help="N processes on the same port (SO_REUSEPORT), each with its own store; auto: "
        f"one per usable CPU (${WORKERS_ENV}, else 1; the image sets auto)",
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
    # the plugins a Corefile would name, in its words (directive -> config)
    plugins: dict[str, object] = {}
    if args.log:
        plugins["log"] = QueryLogConfig()
    if args.autopath:
        plugins["autopath"] = "@kubernetes"
    if gateway:
        plugins["k8s_gateway"] = GatewayConfig(gateway)
    if external:
        plugins["k8s_external"] = ExternalConfig(external)
    plugins["kubernetes"] = KubernetesConfig(
        ZoneConfig(
            zones=zones,
            pods=PodMode(args.pods),
            ttl=args.ttl,
            endpoint_pod_names=args.endpoint_pod_names,
        ),
        startup_timeout=args.startup_timeout,
    )
    return ServerConfig(
        zones=zones + external + gateway,
        port=port,
        bind=(host,),
        health=args.health or "",
        ready=args.ready or "",
        prometheus=args.metrics or "",
        traffic_view=args.traffic,
        plugins=plugins,
    )


def run_serve(args: argparse.Namespace) -> int:
    """Run the server from a Corefile (``--conf``) or from the flags; the exit status."""
    options = Options(
        watch_timeout=args.kube_watch_timeout,
        tcp_idle_timeout=args.tcp_idle_timeout,
        max_tcp_connections=args.max_tcp_connections,
        max_tcp_queries=args.max_tcp_queries,
        workers=args.workers,
        udp_thread=batch_available() if args.udp_thread is None else args.udp_thread,
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
