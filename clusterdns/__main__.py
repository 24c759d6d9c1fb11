"""Command line: ``clusterdns serve|check`` (``python -m clusterdns`` works too)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .handler import Handler
from .names import absolute
from .resolver import PodMode, ZoneConfig
from .server import DNSServer
from .sources.kube import KubeSource, api_client
from .sources.manifests import LoadResult, ManifestSource, load
from .store import KINDS, Store

log = logging.getLogger("clusterdns")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port). Raises ArgumentTypeError."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want HOST:PORT with an IP host, got {text!r}") from None
    if not sep or not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"want HOST:PORT, got {text!r}")
    return host, number


def parse_ttl(text: str) -> int:
    """A TTL in seconds, 0..3600 (CoreDNS ``ttl``)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"want seconds from 0 to 3600, got {text!r}")
    return value


def own_addresses(host: str) -> tuple[str, ...]:
    """The addresses this server answers on, for NS glue (SPEC.md 8).

    A specific listen address is itself; a wildcard one is the host's own addresses
    as its name resolves (best effort: empty if it does not).
    """
    if not ipaddress.ip_address(host).is_unspecified:
        return (str(ipaddress.ip_address(host)),)
    with contextlib.suppress(OSError):
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_DGRAM)
        return tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    return ()


def summary(result: LoadResult, store: Store | None = None) -> str:
    """``Namespace 6, Service 8, ... from 2 files`` (+ skipped kinds, + error count)."""
    if store is not None:
        counts = {kind: store.count(kind) for kind in KINDS}
    else:
        by_kind = result.by_kind()
        counts = {kind: len(by_kind[kind]) for kind in KINDS}
    text = ", ".join(f"{kind} {n}" for kind, n in counts.items())
    text += f" from {len(result.files)} file{'s' if len(result.files) != 1 else ''}"
    if result.skipped:
        text += "; skipped " + ", ".join(f"{k} {n}" for k, n in sorted(result.skipped.items()))
    if result.errors:
        text += f"; {len(result.errors)} error{'s' if len(result.errors) != 1 else ''}"
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clusterdns", description="Cluster DNS for Kubernetes service discovery."
    )
    parser.add_argument("--version", action="version", version=f"clusterdns {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="answer DNS from manifests (and later the API)")
    serve.add_argument(
        "--zones",
        action="append",
        type=Path,
        metavar="DIR",
        help="manifest directory or file, repeatable (default: ./zones)",
    )
    serve.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 1053),
        metavar="HOST:PORT",
        help="UDP and TCP address (default 127.0.0.1:1053; port 0 picks a free one)",
    )
    serve.add_argument(
        "--zone", default="cluster.local", help="cluster domain (default cluster.local)"
    )
    serve.add_argument("--ttl", type=parse_ttl, default=30, help="record TTL, seconds (30)")
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
        "--cache-size", type=int, default=10000, help="answer cache bound in entries"
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
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for the first API sync before opening the ports (5)",
    )
    serve.add_argument(
        "--zones-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to look for changed manifest files; 0 never (2)",
    )

    check = commands.add_parser("check", help="validate manifests and count what they hold")
    check.add_argument("paths", nargs="*", type=Path, default=[Path("zones")], metavar="DIR")
    return parser


def use_api(args: argparse.Namespace) -> bool:
    """Whether to follow a live cluster: ``--kubeconfig``/``--kube-api``, or in a pod."""
    return bool(args.kubeconfig or args.kube_api or os.environ.get("KUBERNETES_SERVICE_HOST"))


async def follow_zones(source: ManifestSource, interval: float) -> None:
    """Poll the manifest files every ``interval`` seconds and apply what changed."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        result = await loop.run_in_executor(None, source.scan)
        if result is not None:
            source.apply(result, time.time())
            log.info("zones reloaded: %s", summary(result))


async def serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT or SIGTERM; return the exit status.

    Sources: the ``--zones`` manifests (``./zones`` by default, unless a live cluster is
    followed) and the Kubernetes API. Ports open once the API has synced or after
    ``--startup-timeout`` seconds, whichever comes first (SPEC.md 13).
    """
    loop = asyncio.get_running_loop()
    store = Store()
    tasks: list[asyncio.Task[None]] = []
    manifests: ManifestSource | None = None
    paths = args.zones or ([] if use_api(args) else [Path("zones")])
    if paths:
        manifests = ManifestSource(store, paths)
        try:
            manifests.load(time.time())
        except FileNotFoundError as exc:
            log.error("%s (pass --zones DIR)", exc)
            return 1
        if args.zones_interval > 0:
            tasks.append(asyncio.create_task(follow_zones(manifests, args.zones_interval)))
    kube: KubeSource | None = None
    if use_api(args):
        try:
            api = api_client(args.kubeconfig, args.kube_api)
        except Exception as exc:  # the client raises several kinds for a bad config
            log.error("cannot load the Kubernetes configuration: %s", exc)
            return 1
        kube = KubeSource(store, api, loop, pods=PodMode(args.pods) is PodMode.VERIFIED)
        kube.start()
        synced = await loop.run_in_executor(None, kube.synced.wait, args.startup_timeout)
        if not synced:
            log.warning(
                "not synced with the API after %.1f s: opening the ports anyway; names not "
                "found answer SERVFAIL until the first sync",
                args.startup_timeout,
            )
    host, port = args.listen
    config = ZoneConfig(
        zones=(absolute(args.zone), "in-addr.arpa.", "ip6.arpa."),
        ttl=args.ttl,
        pods=PodMode(args.pods),
        endpoint_pod_names=args.endpoint_pod_names,
        ns_addresses=own_addresses(host),
    )
    server = DNSServer(Handler(store, config, args.cache_size), host, port)
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return 1
    shown = f"[{host}]" if ":" in host else host
    loaded = ", ".join(f"{kind} {store.count(kind)}" for kind in KINDS)
    sources = (["zones " + ", ".join(map(str, paths))] if manifests else []) + (
        ["the Kubernetes API"] if kube else []
    )
    log.info(
        "clusterdns %s listening on %s:%d (UDP, TCP) for %s; %s from %s",
        __version__,
        shown,
        server.port,
        ", ".join(config.zones),
        loaded,
        " and ".join(sources),
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    for task in tasks:
        task.cancel()
    await server.stop()
    if kube is not None:
        await loop.run_in_executor(None, kube.stop)
    return 0


def check(args: argparse.Namespace) -> int:
    """Validate manifests: print each error, then the counts; 1 if any error."""
    try:
        result = load(args.paths)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    for line in result.errors:
        print(line, file=sys.stderr)
    print(summary(result))
    return 1 if result.errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clusterdns`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="[%(levelname)s] %(message)s", stream=sys.stderr
    )
    if args.command == "check":
        return check(args)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
