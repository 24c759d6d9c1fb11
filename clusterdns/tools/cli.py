"""Command line: ``clusterdns serve|check|resolvconf|resolve|env|top`` (``python -m clusterdns``
and CoreDNS's ``-conf PATH`` work too).

Each subcommand has one function that adds its arguments (``add_<command>``) and one that
runs it (``run_<command>``, returning the exit status); ``COMMANDS`` ties them together.
Every default comes from clusterdns/core/defaults.py; every ``HOST:PORT`` is read by
clusterdns.core.names.split_hostport. The README's synopsis lists every option
(tests/test_docs.py). ``serve`` lives in clusterdns/tools/serve.py, the argument types in
clusterdns/tools/arguments.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from ..core import defaults
from ..core.names import absolute
from ..core.resolver import REVERSE_ZONES, ZoneConfig
from ..core.search import DNSPolicy, Libc, ResolvConf, parse_resolv_conf, pod_resolv_conf, walk
from ..core.store import Store
from ..sources.manifests import ManifestSource, load, summary
from .arguments import Parser, int_range, parse_listen
from .explain import Exposure, local_query, report, server_query
from .serve import add_serve, run_serve
from .servicelinks import service_env
from .top import add_top, run_top

CLUSTER_DNS_IP = "10.96.0.10"  # kubeadm's and kind's kube-dns Service IP
HOST_RESOLV_CONF = Path("/etc/resolv.conf")


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
    rc.add_argument(
        "--ndots", type=int_range(0, 15, ""), help="dnsConfig option ndots (0-15)"
    )
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
    for flag, kind in (
        ("--gateway-zone", "k8s_gateway"),
        ("--external-zone", "k8s_external"),
        ("--clusterset-zone", "multicluster (clusterset.local)"),
    ):
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
        clusterset_zones=tuple(absolute(z) for z in args.clusterset_zone),
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
    try:
        result = walk(args.name, conf, query, Libc(args.libc), qtypes)
    except OSError as exc:  # --server only: refused, unreachable... one line, no traceback
        host, port = args.server
        why = (
            "connection refused (nothing listens there: is clusterdns serve running, and on "
            "that port? Its start-up line says where it listens)"
            if isinstance(exc, ConnectionRefusedError)
            else exc.strerror or str(exc)
        )
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        print(f"cannot ask {where}: {why}", file=sys.stderr)
        return 1
    print("\n".join(report(result)))
    if exposure.gateway or exposure.external or exposure.clusterset:
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
    "serve": (
        "answer DNS from manifests in zones/, a cluster's API, or a Corefile",
        add_serve,
        run_serve,
    ),
    "resolvconf": ("print the resolv.conf the kubelet writes", add_resolvconf, run_resolvconf),
    "resolve": ("walk a pod's search list as its libc does", add_resolve, run_resolve),
    "env": ("print the service variables a pod gets", add_env, run_env),
    "check": ("validate manifests and count what they hold", add_check, run_check),
    "top": ("show who sends the queries, live, from a server's /traffic.json", add_top, run_top),
}
"""Subcommand -> (help, the function adding its arguments, the function running it)."""


def build_parser() -> Parser:
    """The whole command line: global options and one subparser per ``COMMANDS`` entry."""
    parser = Parser(
        prog="clusterdns", description="Cluster DNS for Kubernetes service discovery."
    )
    parser.add_argument("--version", action="version", version=f"clusterdns {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    commands = parser.add_subparsers(dest="command", required=True)
    parser.commands = {}
    for name, (help_, add, _) in COMMANDS.items():
        parser.commands[name] = commands.add_parser(name, help=help_)
        add(parser.commands[name])
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
    parser = build_parser()
    args, unknown = parser.parse_known_args(
        coredns_argv(list(sys.argv[1:] if argv is None else argv))
    )
    if unknown:  # blamed on the subcommand, whose --help lists what it takes
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=args.log_level.upper(), format="[%(levelname)s] %(message)s", stream=sys.stderr
    )
    return COMMANDS[args.command][2](args)
