"""The traffic view end to end (issue 20's "done when"): a real `clusterdns serve` with its
metrics listener; a pod's glibc-style search walk (ndots:5, A and AAAA) sent from the pod's
own IP (a loopback address the pod has in the manifests); then /traffic.json, `clusterdns top
--once` and the /traffic page in headless chromium all attribute every query to the pod,
count exactly the expansions sent and name the fix."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from .conftest import RunningServer, start_server, stop_server
from .test_traffic_page import CHROMIUM, chromium

ZONES = Path(__file__).resolve().parent.parent / "zones"
POD_IP = "127.0.0.2"  # on lo: a client socket can send from it
WALKER = f"""apiVersion: v1
kind: Pod
metadata: {{namespace: shop, name: walker}}
spec: {{nodeName: kind-worker}}
status: {{phase: Running, podIP: {POD_IP}, podIPs: [{{ip: {POD_IP}}}]}}
"""
SUFFIXES = ("shop.svc.cluster.local.", "svc.cluster.local.", "cluster.local.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    zones = tmp_path_factory.mktemp("zones")
    for path in ZONES.glob("*.yaml"):
        shutil.copy(path, zones / path.name)
    (zones / "walker.yaml").write_text(WALKER)
    metrics = f"127.0.0.1:{_free_port()}"
    server = start_server("--zones", str(zones), "--metrics", metrics, "--traffic")
    try:
        yield server, f"http://{metrics}"
    finally:
        assert stop_server(server) == 0


def _walk(port: int, name: str) -> list[int]:
    """glibc's walk for ``name`` (fewer dots than ndots:5): each search suffix, then the
    name as is, A and AAAA each, stopping at the candidate that answered; from the pod's
    IP. The rcodes, in order."""
    rcodes = []
    for candidate in [f"{name}.{s}" for s in SUFFIXES] + [name + "."]:
        answered = False
        for qtype in ("A", "AAAA"):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind((POD_IP, 0))
                query = dns.message.make_query(candidate, qtype)
                reply = dns.query.udp(query, "127.0.0.1", port=port, sock=sock, timeout=5)
            rcodes.append(reply.rcode())
            answered = answered or bool(reply.answer)
        if answered:
            break
    return rcodes


def _snapshot(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(base + "/traffic.json", timeout=5) as response:
        return dict(json.load(response))


def test_the_walk_is_attributed_counted_and_advised(served: tuple[RunningServer, str]) -> None:
    server, base = served
    rcodes = _walk(server.port, "api.github.com")
    # six cluster candidates NXDOMAIN; the bare name is outside the zones (no forwarder)
    assert rcodes == [dns.rcode.NXDOMAIN] * 6 + [dns.rcode.REFUSED] * 2
    snap = _snapshot(base)
    (walker,) = [c for c in snap["clients"] if c["ip"] == POD_IP]
    assert walker["pod"] == "shop/walker"
    assert walker["queries"] == 8 and walker["search_expansions"] == 6
    assert walker["nxdomain"] == 6
    assert "api.github.com never resolved: fix or drop the lookup" in walker["advice"]
    # clusterdns top --once: the same, in a terminal
    top = subprocess.run(
        [sys.executable, "-m", "clusterdns", "top", "--once", "--server", base],
        capture_output=True, text=True, timeout=30,
    )
    assert top.returncode == 0, top.stderr
    assert "shop/walker" in top.stdout and "api.github.com" in top.stdout


def test_a_name_that_resolves_after_its_walk_gets_the_fix(served: tuple[RunningServer, str]) -> None:
    """``kubernetes.default`` from a pod in shop: NXDOMAIN at shop.svc (A and AAAA), then it
    answers at svc: two expansions, and the advice names a fix that removes them."""
    server, base = served
    before = _client(_snapshot(base))
    rcodes = _walk(server.port, "kubernetes.default")
    assert rcodes == [dns.rcode.NXDOMAIN, dns.rcode.NXDOMAIN, dns.rcode.NOERROR, dns.rcode.NOERROR]
    walker = _client(_snapshot(base))
    assert walker["search_expansions"] - before["search_expansions"] == 2
    advice = walker["advice"]
    assert "kubernetes.default" in advice
    assert any(fix in advice for fix in ("trailing dot", "autopath", "kubernetes.default.svc"))


def _client(snap: dict[str, Any]) -> dict[str, Any]:
    (walker,) = [c for c in snap["clients"] if c["ip"] == POD_IP]
    return walker


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless browser test: /usr/bin/chromium is missing (Debian's chromium package; "
    ".ci/run installs it with apt-get where it can)",
)
def test_the_live_page_shows_the_pod(served: tuple[RunningServer, str]) -> None:
    server, base = served
    _walk(server.port, "web.example.com")
    dom = chromium(base + "/traffic", "--dump-dom").stdout
    assert "shop/walker" in dom
    assert "<svg" in dom and 'class="chart' in dom
