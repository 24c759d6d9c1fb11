"""``/traffic`` and ``/traffic.json`` on the metrics listener (clusterdns/server/traffic_page.py),
read by a real HTTP client and rendered by a real browser (Debian's headless chromium).

``python -m tests.test_traffic_page`` writes the screenshot in docs/traffic.png.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from clusterdns.server.metrics import serve_metrics
from clusterdns.server.traffic_page import TrafficView

from .test_traffic import PODS, WEB, ZONE, glibc_walk

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
MORE_PODS = {
    **PODS,
    "10.244.3.4": ("payments", "api-7d9f-x2k"),
    "10.244.3.5": ("payments", "worker-0"),
    "10.244.4.9": ("monitoring", "prometheus-0"),
}
MORE_ANSWERS = {
    "api.github.com.": {"A": ["140.82.121.6"], "AAAA": ["64:ff9b::8c52:7906"]},
    "api.stripe.com.": {"A": ["52.1.2.3"]},
    "web.shop.svc.cluster.local.": {"A": ["10.96.100.10"]},
    "db.payments.svc.cluster.local.": {"A": ["10.96.7.7"]},
    "kubernetes.default.svc.cluster.local.": {"A": ["10.96.0.1"]},
}


class Clock:
    """A clock the test moves (the view reads time only through it)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def busy_view(clock: Clock) -> TrafficView:
    """A minute of traffic from a few pods: shop/web-0 walks api.github.com the most."""
    view = TrafficView(lambda: MORE_PODS, ZONE, clock=clock)
    tally = view.tally()
    start = clock.now
    for second in range(62):
        clock.now = start + second
        view.rotate()
        for _ in range(3 + second % 7):
            glibc_walk(tally, WEB, "api.github.com", "shop", MORE_ANSWERS)
        for _ in range(2):
            glibc_walk(tally, "10.244.3.4", "api.stripe.com", "payments", MORE_ANSWERS)
            glibc_walk(tally, "10.244.3.5", "db", "payments", MORE_ANSWERS)
        glibc_walk(tally, "10.244.2.7", "web.shop", "default", MORE_ANSWERS)
        glibc_walk(tally, "10.244.4.9", "kubernetes.default.svc.cluster.local.", "monitoring")
        if second % 3 == 0:
            glibc_walk(tally, "10.244.3.5", "ledger", "payments", MORE_ANSWERS)
            glibc_walk(tally, "192.0.2.50", "api.github.com.", "default", MORE_ANSWERS)
    clock.now = start + 62.5
    return view


@pytest.fixture
def listener() -> Iterator[tuple[str, TrafficView, list[int], CollectorRegistry]]:
    """A real metrics listener on 127.0.0.1 (ephemeral port) with /traffic wired in."""
    clock = Clock(time.time() // 5 * 5)  # on a bucket boundary: the same counts every run
    view = busy_view(clock)
    calls = [0]

    def snapshot() -> dict[str, Any]:
        calls[0] += 1
        return view.snapshot()

    reg = CollectorRegistry()
    Counter("probe_total", "A counter the test reads back", registry=reg).inc(3)
    server = serve_metrics("127.0.0.1:0", reg, traffic=snapshot)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", view, calls, reg
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.status, reply.headers["Content-Type"], reply.read()


def test_traffic_json_and_metrics_on_one_listener(listener: Any) -> None:
    base, _view, _calls, reg = listener
    status, kind, body = get(base + "/traffic.json")
    assert (status, kind) == (200, "application/json; charset=utf-8")
    snap = json.loads(body)
    top = snap["clients"][0]
    assert (top["pod"], top["ip"]) == ("shop/web-0", WEB)
    assert top["search_expansions"] * 4 == top["queries"] * 3  # 6 of every 8
    assert "api.github.com." in top["advice"]
    assert {n["namespace"] for n in snap["namespaces"]} == {
        "shop",
        "payments",
        "default",
        "monitoring",
    }
    assert snap["cluster"]["wasted_names"][0]["name"] == "api.github.com"
    assert snap["series"] and snap["outcomes"][0] == "NOERROR"
    # /metrics is prometheus_client's own output, unchanged
    status, kind, body = get(base + "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    assert body == generate_latest(reg)
    status, kind, body = get(base + "/traffic")
    assert kind == "text/html; charset=utf-8"
    page = body.decode()
    assert "<script src" not in page and "<link" not in page and "@import" not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


def test_a_failing_snapshot_is_one_line_and_metrics_go_on() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("pods not listed")

    server = serve_metrics("127.0.0.1:0", CollectorRegistry(), traffic=broken)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(urllib.error.HTTPError) as failed:
            get(base + "/traffic.json")
        assert failed.value.code == 500
        assert failed.value.read() == b"traffic snapshot failed: RuntimeError: pods not listed\n"
        assert get(base + "/metrics")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_snapshots_while_a_serving_thread_notes() -> None:
    """The serving thread notes while the HTTP side rotates and snapshots (CPython's GIL:
    dict copies are atomic); afterwards every query is counted, once."""
    clock = Clock(1000.0)
    view = TrafficView(lambda: PODS, ZONE, clock=clock)
    tally = view.tally()
    done = threading.Event()
    name = b"\x03web\x04shop\x03svc\x07cluster\x05local\x00"

    def serve() -> None:
        for i in range(60_000):
            tally.note(WEB if i % 2 else f"10.9.{i >> 8 & 255}.{i & 255}", name, 0, 1)
        done.set()

    thread = threading.Thread(target=serve)
    thread.start()
    snapshots = 0
    while not done.is_set() or snapshots < 3:
        clock.now += 0.7
        view.snapshot()
        snapshots += 1
    thread.join()
    clock.now += 1.0
    snap = view.snapshot()
    assert snap["since_start"]["totals"] == {"queries": 60_000, "rcodes": {"NOERROR": 60_000}}
    (web,) = [c for c in snap["since_start"]["clients"] if c["ip"] == WEB]
    slack = snap["since_start"]["error_bound"]["clients"]
    assert 30_000 - slack <= web["queries"] <= 30_000
    assert snapshots >= 3


def chromium(url: str, *mode: str, size: str = "1400,1700") -> subprocess.CompletedProcess[str]:
    """Headless chromium on ``url`` with the page's script run for 4.5 s of virtual time
    (the page refreshes every 3 s: one fetch of traffic.json)."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                f"--window-size={size}",
                "--virtual-time-budget=4500",
                *mode,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless browser test: /usr/bin/chromium is missing (Debian's chromium package; "
    ".ci/run installs it with apt-get where it can)",
)
def test_the_page_renders_in_a_real_browser(listener: Any) -> None:
    base, _view, calls, _reg = listener
    result = chromium(base + "/traffic", "--dump-dom")
    dom = result.stdout
    assert "<svg" not in get(base + "/traffic")[2].decode()  # the HTML has no chart itself
    # the script drew the charts: SVG elements with the top pod's name as a bar label
    assert re.search(r'<svg[^>]*class="chart chart-rate"', dom), result.stderr[-2000:]
    assert re.search(r'<path[^>]*class="series"', dom)
    assert re.search(
        r'<svg[^>]*class="chart chart-pods".*?class="bar-label">shop/web-0<', dom, re.S
    )
    assert re.search(r'<td class="pod">shop/web-0<small>10\.244\.1\.10</small></td>', dom)
    assert "api.github.com." in dom
    assert calls[0] >= 3  # the page embedded one snapshot and fetched traffic.json again


def screenshot(path: Path) -> None:
    """Serve a busy minute of traffic and write the page's screenshot to ``path``."""
    clock = Clock(time.time() // 5 * 5)  # on a bucket boundary: the same counts every run
    view = busy_view(clock)
    server = serve_metrics("127.0.0.1:0", CollectorRegistry(), traffic=view.snapshot)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/traffic"
        result = chromium(url, f"--screenshot={path}", "--hide-scrollbars", size="1400,1500")
        print(result.stderr[-500:], file=sys.stderr)
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    screenshot(ROOT / "docs" / "traffic.png")
