"""``/traffic`` and ``/traffic.json`` on the metrics listener: who sends the queries.

The page is one self-contained HTML document (inline CSS and script; charts drawn as inline
SVG by its own script; nothing fetched from anywhere but ``traffic.json`` beside it), so it
works in an air-gapped cluster. It renders the snapshot embedded in it at once, then
fetches ``traffic.json`` every few seconds. Every text from the snapshot (query names,
which a client chooses) is put into the page with ``textContent``, never parsed as HTML.

:class:`TrafficView` holds the tallies of the serving threads (clusterdns/core/traffic.py),
rotates their time buckets and makes the snapshot under one lock; :func:`traffic_app`
wraps a WSGI application (prometheus_client's ``/metrics``) so that the same listener also
answers the two traffic paths; server/metrics.py ``serve_metrics(..., traffic=...)`` uses
it. docs/traffic.md says what the page shows and why it stays on the metrics address.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..core.traffic import TrafficTally, snapshot

Snapshot = Callable[[], dict[str, Any]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
PATHS = ("/traffic", "/traffic.json")


class TrafficView:
    """The tallies of every serving thread, the pods the server knows and the cluster zone:
    what ``snapshot()`` (the callable ``serve_metrics`` takes) reads.

    ``pods``: a callable giving the current map pod IP -> (namespace, name) (read once per
    snapshot); ``clock``: seconds (``time.time``), read only here, off the hot path.
    """

    def __init__(
        self,
        pods: Callable[[], Mapping[str, tuple[str, str]]],
        zone: str,
        clock: Callable[[], float] = time.time,
        rotator: bool = True,
        **tally_options: Any,
    ) -> None:
        self.pods = pods
        self.zone = zone
        self.clock = clock
        # whether snapshot() closes due buckets itself; the server passes False and rotates
        # from its event loop alone, so the tallies' buckets have one writer besides the
        # serving threads' counts
        self.rotator = rotator
        self.tallies: list[TrafficTally] = []
        self.options = tally_options
        self.lock = threading.Lock()

    def tally(self) -> TrafficTally:
        """A new tally for one serving thread (only that thread calls its ``note``)."""
        tally = TrafficTally(self.clock(), **self.options)
        with self.lock:
            self.tallies.append(tally)
        return tally

    def rotate(self) -> None:
        """Close the time buckets that are due (call it every second, e.g. from the event
        loop; :meth:`snapshot` does it too unless the view was made with ``rotator=False``)."""
        now = self.clock()
        with self.lock:
            for tally in self.tallies:
                tally.rotate(now)

    def snapshot(self) -> dict[str, Any]:
        """The ``/traffic.json`` document (clusterdns.core.traffic.snapshot)."""
        pods = self.pods()
        with self.lock:
            now = self.clock()
            if self.rotator:
                for tally in self.tallies:
                    tally.rotate(now)
            return snapshot(self.tallies, pods, self.zone, now)


def traffic_app(inner: WSGIApp, traffic: Snapshot) -> WSGIApp:
    """A WSGI application answering GET ``/traffic`` (the page) and ``/traffic.json`` from
    ``traffic()``, and passing every other request to ``inner`` unchanged. A snapshot that
    raises is a 500 with one line naming the error."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in PATHS:
            return inner(environ, start_response)
        try:
            data = traffic()
        except Exception as exc:  # the page reports it; /metrics keeps working
            body = f"traffic snapshot failed: {type(exc).__name__}: {exc}\n".encode()
            start_response("500 Internal Server Error", _headers("text/plain", body))
            return [body]
        text = json.dumps(data, separators=(",", ":"))
        if path == "/traffic.json":
            body = text.encode()
            start_response("200 OK", _headers("application/json", body))
        else:
            # inside <script>: no "</" can close the element early
            body = PAGE.replace("__SNAPSHOT__", text.replace("<", "\\u003c")).encode()
            start_response("200 OK", _headers("text/html", body))
        return [body]

    return app


def _headers(kind: str, body: bytes) -> list[tuple[str, str]]:
    return [
        ("Content-Type", f"{kind}; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        # the page needs nothing from elsewhere; say so to the browser too
        (
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src 'self' data:",
        ),
    ]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


def serve_wsgi(host: str, port: int, app: WSGIApp) -> Any:
    """Serve ``app`` on ``host:port`` from a daemon thread, a thread per request, as
    prometheus_client's own ``start_http_server`` does (IPv6 hosts included). Returns
    the server (``shutdown()`` then ``server_close()`` stop it). Raises OSError if it
    cannot bind."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    address_family, sockaddr = family[0][0], family[0][4]

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    Server.address_family = address_family
    server = make_server(str(sockaddr[0]), port, app, Server, handler_class=_Quiet)
    name = f"http{host}:{port}"
    threading.Thread(target=server.serve_forever, daemon=True, name=name).start()
    return server


PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>clusterdns traffic</title>
<style>
:root { --bg:#f4f6f9; --card:#fff; --ink:#1d2733; --muted:#687789; --line:#e3e8ef;
  --ok:#2f9e6e; --nodata:#4c8fd6; --nx:#e8833a; --fail:#d64545; --refused:#8e5cc9;
  --other:#9aa5b1; --waste:#e8833a; --useful:#7fb6e6; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
header { background:#18212c; color:#fff; padding:14px 24px; display:flex; align-items:center;
  gap:18px; flex-wrap:wrap; }
header h1 { font-size:18px; margin:0; font-weight:600; letter-spacing:.2px; }
header h1 span { color:#8fb4d9; font-weight:400; }
header .status { margin-left:auto; color:#b7c4d3; font-size:13px; }
.toggle button { background:#273444; color:#cfdae6; border:1px solid #3a4a5d; padding:5px 12px;
  font:inherit; font-size:13px; cursor:pointer; }
.toggle button:first-child { border-radius:6px 0 0 6px; }
.toggle button:last-child { border-radius:0 6px 6px 0; border-left:0; }
.toggle button.on { background:#4c8fd6; color:#fff; border-color:#4c8fd6; }
main { padding:18px 24px 32px; max-width:1400px; margin:0 auto; }
.kpis { display:grid; grid-template-columns:repeat(4,1fr); gap:14px; margin-bottom:14px; }
.kpi, .card { background:var(--card); border:1px solid var(--line); border-radius:10px;
  box-shadow:0 1px 2px rgba(20,30,45,.05); }
.kpi { padding:12px 16px; }
.kpi .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.5px; }
.kpi .value { font-size:26px; font-weight:600; margin-top:2px; }
.kpi .sub { color:var(--muted); font-size:12px; }
.advice { background:#fff8ec; border:1px solid #f3d9ae; border-radius:10px; padding:12px 16px;
  margin-bottom:14px; }
.advice b { color:#a65a12; }
.grid { display:grid; grid-template-columns:1fr 1fr; gap:14px; }
.card { padding:14px 16px; min-width:0; }
.card h2 { font-size:14px; margin:0 0 8px; font-weight:600; }
.card h2 small { color:var(--muted); font-weight:400; }
.legend { display:flex; gap:14px; flex-wrap:wrap; font-size:12px; color:var(--muted); }
.legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:5px;
  vertical-align:-1px; }
svg { display:block; width:100%; }
svg text { font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif; fill:#4a5867; }
svg .grid line { stroke:var(--line); }
.empty { color:var(--muted); padding:30px 0; text-align:center; }
table { width:100%; border-collapse:collapse; font-size:13px; }
th { text-align:left; color:var(--muted); font-weight:500; font-size:12px; padding:6px 8px;
  border-bottom:1px solid var(--line); }
td { padding:7px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.pod { font-weight:600; white-space:nowrap; }
td.pod small { display:block; color:var(--muted); font-weight:400; }
td.adv { color:#3b4754; max-width:560px; }
.bar { height:6px; background:var(--line); border-radius:3px; margin-top:4px; overflow:hidden; }
.bar i { display:block; height:100%; background:var(--waste); }
.wide { grid-column:1 / -1; }
footer { color:var(--muted); font-size:12px; margin-top:14px; }
@media (max-width:900px) { .grid, .kpis { grid-template-columns:1fr; } }
</style>
</head>
<body>
<header>
  <h1>clusterdns <span>traffic by client</span></h1>
  <div class="toggle"><button id="span-window" class="on">Last minute</button><button id="span-start">Since start</button></div>
  <div class="status" id="status">loading</div>
</header>
<main>
  <section class="kpis">
    <div class="kpi"><div class="label">Queries / s</div><div class="value" id="k-qps">-</div><div class="sub" id="k-qps-sub"></div></div>
    <div class="kpi"><div class="label">Search-path waste</div><div class="value" id="k-waste">-</div><div class="sub" id="k-waste-sub"></div></div>
    <div class="kpi"><div class="label">NXDOMAIN</div><div class="value" id="k-nx">-</div><div class="sub" id="k-nx-sub"></div></div>
    <div class="kpi"><div class="label">Clients</div><div class="value" id="k-clients">-</div><div class="sub" id="k-clients-sub"></div></div>
  </section>
  <div class="advice" id="advice"></div>
  <section class="grid">
    <div class="card"><h2>Queries per second by rcode <small id="rate-note"></small></h2><div id="chart-rate"></div><div class="legend" id="legend-rate"></div></div>
    <div class="card"><h2>Top pods <small>queries: search-path expansions / the rest</small></h2><div id="chart-pods"></div></div>
    <div class="card"><h2>Top wasted names <small>expansions per name asked</small></h2><div id="chart-names"></div></div>
    <div class="card"><h2>Waste share per namespace <small>expansions / queries</small></h2><div id="chart-ns"></div></div>
    <div class="card wide"><h2>Clients <small id="clients-note"></small></h2><table id="clients"></table></div>
  </section>
  <footer id="footer"></footer>
</main>
<script id="snapshot" type="application/json">__SNAPSHOT__</script>
<script>
"use strict";
const NS = "http://www.w3.org/2000/svg";
const COLORS = {NOERROR:"#2f9e6e", NODATA:"#4c8fd6", NXDOMAIN:"#e8833a", SERVFAIL:"#d64545",
  REFUSED:"#8e5cc9"};
let data = JSON.parse(document.getElementById("snapshot").textContent);
let span = "window";

function color(rcode) { return COLORS[rcode] || "#9aa5b1"; }
function svg(tag, attrs, parent) {
  const node = document.createElementNS(NS, tag);
  for (const k in attrs) node.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(node);
  return node;
}
function html(tag, attrs, parent, text) {
  const node = document.createElement(tag);
  for (const k in attrs) node.setAttribute(k, attrs[k]);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}
function label(parent, x, y, text, attrs) {
  const t = svg("text", Object.assign({x: x, y: y}, attrs || {}), parent);
  t.textContent = text;
  return t;
}
function fmt(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(0) + "k";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 1 : 0);
}
function pct(x) { return (100 * x).toFixed(x && x < 0.1 ? 1 : 0) + "%"; }
function short(s, n) { return s.length > n ? s.slice(0, n - 1) + "\u2026" : s; }
function nice(max) {
  if (max <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}
function empty(box, text) { box.replaceChildren(); html("div", {class: "empty"}, box, text); }

function rateChart(box, legend, snap) {
  box.replaceChildren(); legend.replaceChildren();
  const pts = snap.series, rcodes = snap.outcomes, W = 640, H = 230, L = 44, R = 10, T = 10, B = 24;
  if (!pts.length) { empty(box, "no queries in the window yet"); return; }
  const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart chart-rate"}, box);
  const stacks = pts.map(p => { let acc = 0; return rcodes.map(r => (acc += p.qps[r] || 0)); });
  const top = nice(Math.max(...stacks.map(s => s[s.length - 1])) * 1.1);
  const x0 = -snap.window_s;
  const x = t => L + (W - L - R) * (t - x0) / (0 - x0);
  const y = v => T + (H - T - B) * (1 - v / top);
  const grid = svg("g", {class: "grid"}, root);
  for (let i = 0; i <= 4; i++) {
    const v = top * i / 4;
    svg("line", {x1: L, x2: W - R, y1: y(v), y2: y(v)}, grid);
    label(root, L - 6, y(v) + 4, fmt(v), {"text-anchor": "end"});
  }
  for (const t of [x0, x0 / 2, 0]) label(root, x(t), H - 6, t ? `${t}s` : "now", {"text-anchor": "middle"});
  for (let k = rcodes.length - 1; k >= 0; k--) {
    let d = "";
    pts.forEach((p, i) => {
      const a = x(Math.max(p.t, x0)), b = x(Math.min(p.t + p.span, 0));
      d += `${i ? "L" : "M"}${a},${y(stacks[i][k])}L${b},${y(stacks[i][k])}`;
    });
    for (let i = pts.length - 1; i >= 0; i--) {
      const p = pts[i], base = k ? stacks[i][k - 1] : 0;
      d += `L${x(Math.min(p.t + p.span, 0))},${y(base)}L${x(Math.max(p.t, x0))},${y(base)}`;
    }
    const area = svg("path", {d: d + "Z", fill: color(rcodes[k]), "fill-opacity": 0.85, class: "series"}, root);
    svg("title", {}, area).textContent = rcodes[k];
  }
  for (const r of rcodes) {
    const item = html("span", {}, legend);
    html("i", {style: `background:${color(r)}`}, item);
    item.appendChild(document.createTextNode(r));
  }
}

function barChart(box, rows, opts) {
  box.replaceChildren();
  if (!rows.length) { empty(box, opts.empty); return; }
  const W = 640, row = 24, L = 200, R = 118, H = rows.length * row + 6;
  const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart " + opts.cls}, box);
  const max = opts.max || Math.max(...rows.map(r => r.total)) || 1;
  rows.forEach((r, i) => {
    const y = i * row + 4, w = (W - L - R) * r.total / max;
    const name = label(root, L - 8, y + 15, short(r.label, 32), {"text-anchor": "end", class: "bar-label"});
    svg("title", {}, name).textContent = r.label;
    svg("rect", {x: L, y: y + 3, width: W - L - R, height: row - 8, rx: 3, fill: "#eef2f6"}, root);
    let x = L;
    for (const part of r.parts) {
      const pw = (W - L - R) * part.value / max;
      if (pw > 0) svg("rect", {x: x, y: y + 3, width: pw, height: row - 8, rx: 3, fill: part.color}, root);
      x += pw;
    }
    label(root, L + Math.max(w, 0) + 6, y + 15, r.text, {});
  });
}

function render() {
  const snap = span === "window" ? data : Object.assign({}, data, data.since_start);
  const c = snap.cluster, pods = c.pods;
  const seconds = span === "window" ? Math.max(data.covered_s, 1) : Math.max(data.since_s, 1);
  const total = snap.totals || {queries: c.queries};
  document.getElementById("k-qps").textContent = fmt(total.queries / seconds);
  document.getElementById("k-qps-sub").textContent = `${fmt(total.queries)} queries in ${fmt(seconds)} s`;
  document.getElementById("k-waste").textContent = pct(pods.waste_share);
  document.getElementById("k-waste-sub").textContent = `${fmt(pods.search_expansions)} expansions of ${fmt(pods.queries)} pod queries`;
  document.getElementById("k-nx").textContent = pct(c.queries ? c.nxdomain / c.queries : 0);
  document.getElementById("k-nx-sub").textContent = `${fmt(c.nxdomain)} answers`;
  document.getElementById("k-clients").textContent = fmt(snap.clients_total);
  document.getElementById("k-clients-sub").textContent = `${fmt(pods.clients)} known pods`;
  const advice = document.getElementById("advice");
  advice.replaceChildren();
  html("b", {}, advice, "Advice: ");
  advice.appendChild(document.createTextNode(c.advice));
  document.getElementById("rate-note").textContent = `last ${data.window_s} s`;
  rateChart(document.getElementById("chart-rate"), document.getElementById("legend-rate"), data);
  const clients = snap.clients.slice(0, 10);
  barChart(document.getElementById("chart-pods"), clients.map(e => ({
    label: e.pod || e.ip, total: e.queries, text: fmt(e.queries),
    parts: [{value: e.search_expansions, color: "#e8833a"}, {value: e.queries - e.search_expansions, color: "#7fb6e6"}],
  })), {cls: "chart-pods", empty: "no clients"});
  const wasted = (c.wasted_names || []).slice(0, 10);
  barChart(document.getElementById("chart-names"), wasted.map(n => ({
    label: n.name, total: n.expansions, text: `${fmt(n.expansions)} (${n.pods} pod${n.pods === 1 ? "" : "s"})`,
    parts: [{value: n.expansions, color: "#e8833a"}],
  })), {cls: "chart-names", empty: "no search-path expansions"});
  barChart(document.getElementById("chart-ns"), snap.namespaces.slice(0, 10).map(n => ({
    label: n.namespace, total: n.waste_share, text: `${pct(n.waste_share)} of ${fmt(n.queries)}`,
    parts: [{value: n.waste_share, color: "#e8833a"}],
  })), {cls: "chart-ns", empty: "no queries from known pods", max: 1});
  const table = document.getElementById("clients");
  table.replaceChildren();
  const head = html("tr", {}, html("thead", {}, table));
  for (const h of ["pod / client", "queries", "expansions", "NXDOMAIN", "waste", "top names", "advice"])
    html("th", {}, head, h);
  const body = html("tbody", {}, table);
  for (const e of snap.clients.slice(0, 25)) {
    const tr = html("tr", {class: "client"}, body);
    const who = html("td", {class: "pod"}, tr, e.pod || e.ip);
    html("small", {}, who, e.pod ? e.ip : "not a known pod");
    html("td", {class: "num"}, tr, fmt(e.queries));
    html("td", {class: "num"}, tr, fmt(e.search_expansions));
    html("td", {class: "num"}, tr, fmt(e.nxdomain));
    const waste = html("td", {class: "num"}, tr, pct(e.waste_share));
    html("i", {style: `width:${100 * e.waste_share}%`}, html("div", {class: "bar"}, waste));
    html("td", {}, tr, e.top_names.slice(0, 3).map(n => `${n.name} (${n.queries})`).join(", "));
    html("td", {class: "adv"}, tr, e.advice);
  }
  document.getElementById("clients-note").textContent = `top ${Math.min(25, snap.clients.length)} of ${snap.clients_total} by queries`;
  const bound = snap.error_bound;
  document.getElementById("footer").textContent = (bound.clients || bound.names)
    ? `Counts are lower bounds: each may be up to ${bound.clients} (clients) / ${bound.names} (names) below the truth (bounded counters under heavy traffic).`
    : "Every count is exact.";
  document.getElementById("status").textContent = `updated ${new Date().toLocaleTimeString()} \u00b7 up ${fmt(data.since_s)} s`;
}

async function refresh() {
  try {
    const reply = await fetch("traffic.json", {cache: "no-store"});
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    data = await reply.json();
    render();
  } catch (err) {
    document.getElementById("status").textContent = `refresh failed: ${err.message}`;
  }
}
for (const [id, which] of [["span-window", "window"], ["span-start", "start"]]) {
  document.getElementById(id).addEventListener("click", () => {
    span = which;
    document.getElementById("span-window").classList.toggle("on", which === "window");
    document.getElementById("span-start").classList.toggle("on", which === "start");
    render();
  });
}
render();
setInterval(refresh, 3000);
</script>
</body>
</html>
"""
