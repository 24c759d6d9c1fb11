"""``clusterdns top``: the traffic page in a terminal, from a running server's ``/traffic.json``.

Reads the snapshot that clusterdns/core/traffic.py makes (served on the metrics listener,
clusterdns/server/traffic_page.py) and draws it with ``rich``: the cluster's totals and
advice, the clients (pod or address) with their queries, search-path expansions, NXDOMAINs
and the fix each needs, the namespaces, and the most wasted names. ``--once`` prints one
snapshot and exits; otherwise it redraws every ``--interval`` seconds until interrupted.
This module is the only one that imports ``rich`` (tests/test_layers.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

DEFAULT_SERVER = "http://127.0.0.1:9153"  # CoreDNS's prometheus address, the metrics listener
FETCH_TIMEOUT = 5.0  # seconds
MAX_BYTES = 16 * 2**20  # a snapshot is tens of kB; never read more than this


class FetchError(Exception):
    """The snapshot could not be read; the message is one line for the user."""


def add_top(parser: argparse.ArgumentParser) -> None:
    """``top [--server URL] [--once] [--interval SECONDS] [--since-start]``."""
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        metavar="URL",
        help=f"the server's metrics address ({DEFAULT_SERVER}); /traffic.json is read there",
    )
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument(
        "--interval", type=float, default=2.0, metavar="SECONDS", help="refresh period (2)"
    )
    parser.add_argument(
        "--since-start", action="store_true", help="totals since the server started, not the window"
    )


def snapshot_url(server: str) -> str:
    """``/traffic.json`` under ``server`` (``http://host:port`` or a full URL to it)."""
    server = server.strip()
    if "://" not in server:
        server = "http://" + server
    if server.endswith("/traffic.json"):
        return server
    return server.rstrip("/") + "/traffic.json"


def fetch(url: str) -> dict[str, Any]:
    """GET the snapshot. Raises FetchError with one line (unreachable, refused, HTTP
    error, not JSON, a URL that is not http(s))."""
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"{url}: not an http:// or https:// URL")
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as reply:
            body = reply.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
        raise FetchError(f"cannot reach {url}: {reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, a malformed host or port
        raise FetchError(f"cannot reach {url}: {exc}") from None
    if len(body) > MAX_BYTES:
        raise FetchError(f"{url}: reply larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise FetchError(f"{url}: not a traffic snapshot (JSON: {exc})") from None
    if not isinstance(data, dict) or "clients" not in data or "cluster" not in data:
        raise FetchError(f"{url}: not a traffic snapshot (no clients, no cluster)")
    return data


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


def render(data: dict[str, Any], since_start: bool = False, note: str = "") -> RenderableType:
    """The whole view of one snapshot (``since_start``: the since-start span)."""
    span = {**data, **data["since_start"]} if since_start else data
    cluster, pods = span["cluster"], span["cluster"]["pods"]
    seconds = max(data["since_s"] if since_start else data["covered_s"], 1.0)
    head = Text()
    head.append("clusterdns top", style="bold")
    head.append(
        f"  {'since start' if since_start else 'last ' + str(int(data['window_s'])) + ' s'}"
        f"  ·  {span.get('totals', cluster)['queries'] / seconds:.1f} queries/s"
        f"  ·  search-path waste {_pct(pods['waste_share'])}"
        f" ({pods['search_expansions']} of {pods['queries']} pod queries)"
        f"  ·  NXDOMAIN {cluster['nxdomain']}"
        f"  ·  {span['clients_total']} clients, {pods['clients']} known pods"
    )
    if note:
        head.append(f"  ·  {note}", style="red")
    clients = Table(title="Clients", title_justify="left", expand=True, show_edge=False)
    for column, justify in (
        ("pod / client", "left"),
        ("queries", "right"),
        ("expansions", "right"),
        ("NXDOMAIN", "right"),
        ("waste", "right"),
        ("top name", "left"),
    ):
        clients.add_column(column, justify=justify, no_wrap=column != "top name")  # type: ignore[arg-type]
    for entry in span["clients"][:20]:
        who = Text(entry["pod"] or entry["ip"], style="bold" if entry["pod"] else "")
        if entry["pod"]:
            who.append(f" {entry['ip']}", style="dim")
        top = entry["top_names"][0]["name"] if entry["top_names"] else ""
        clients.add_row(
            who,
            str(entry["queries"]),
            str(entry["search_expansions"]),
            str(entry["nxdomain"]),
            _pct(entry["waste_share"]),
            top,
        )
    namespaces = Table(title="Namespaces", title_justify="left", show_edge=False)
    for column in ("namespace", "pods", "queries", "expansions", "waste"):
        namespaces.add_column(column, justify="left" if column == "namespace" else "right")
    for ns in span["namespaces"][:10]:
        namespaces.add_row(
            ns["namespace"],
            str(ns["clients"]),
            str(ns["queries"]),
            str(ns["search_expansions"]),
            _pct(ns["waste_share"]),
        )
    wasted = Table(title="Most wasted names", title_justify="left", show_edge=False)
    for column in ("name asked", "expansions", "pods"):
        wasted.add_column(column, justify="left" if column == "name asked" else "right")
    for name in cluster.get("wasted_names", [])[:10]:
        wasted.add_row(name["name"], str(name["expansions"]), str(name["pods"]))
    advice = [Text(cluster["advice"], style="bold")]
    advice += [Text(f"- {e['advice']}") for e in span["clients"][:10] if e["search_expansions"]]
    bound = span["error_bound"]
    footer = Text(
        f"counts are lower bounds, at most {bound['clients']} (clients) / {bound['names']} "
        "(names) below the truth"
        if bound["clients"] or bound["names"]
        else "every count is exact",
        style="dim",
    )
    side = Table.grid(expand=True, padding=(0, 4))
    side.add_column(ratio=1)
    side.add_column(ratio=1)
    side.add_row(namespaces, wasted)
    return Group(
        head,
        Panel(Group(*advice), title="advice", title_align="left", border_style="yellow"),
        clients,
        Text(""),
        side,
        footer,
    )


def run_top(args: argparse.Namespace) -> int:
    """Print (``--once``) or keep redrawing the server's traffic view; 1 if the first
    snapshot cannot be read (one line on stderr), 0 otherwise (Ctrl-C ends it)."""
    url = snapshot_url(args.server)
    try:
        data = fetch(url)
    except FetchError as exc:
        print(f"clusterdns top: {exc}", file=sys.stderr)
        return 1
    if args.once:
        width = None if sys.stdout.isatty() else 140
        Console(width=width, soft_wrap=False).print(render(data, args.since_start))
        return 0
    interval = max(args.interval, 0.2)
    try:
        with Live(render(data, args.since_start), auto_refresh=False, screen=True) as live:
            while True:
                time.sleep(interval)
                note = ""
                try:
                    data = fetch(url)
                except FetchError as exc:
                    note = f"refresh failed: {exc}"
                live.update(render(data, args.since_start, note), refresh=True)
    except KeyboardInterrupt:
        return 0
