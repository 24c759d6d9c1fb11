"""``clusterdns top`` (clusterdns/tools/top.py) against a real metrics listener on 127.0.0.1
serving /traffic.json: a pod's search walk attributed to it, counted, and its fix named."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from clusterdns.server.metrics import serve_metrics
from clusterdns.server.traffic_page import TrafficView
from clusterdns.tools.cli import main

from .test_traffic import PODS, WEB, ZONE, glibc_walk


@pytest.fixture
def server() -> Iterator[str]:
    view = TrafficView(lambda: PODS, ZONE)
    glibc_walk(view.tally(), WEB, "api.github.com", "shop")
    http = serve_metrics("127.0.0.1:0", CollectorRegistry(), traffic=view.snapshot)
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}"
    finally:
        http.shutdown()
        http.server_close()


def test_top_once_attributes_the_walk_to_the_pod(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["top", "--once", "--server", server]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if "shop/web-0" in line and "10.244.1.10" in line]
    # queries, expansions, NXDOMAIN, waste
    assert [c.strip() for c in row.split("│")[1:5]] == ["8", "6", "6", "75%"], row
    assert "6 of its 8 queries (75%)" in out.replace("\n", " ")
    assert "api.github.com." in out
    assert "search-path waste 75% (6 of 8 pod queries)" in out
    assert "every count is exact" in out


def test_top_since_start_and_a_full_url(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "--once", "--since-start", "--server", server + "/traffic.json"]) == 0
    out = capsys.readouterr().out
    assert "since start" in out and "shop/web-0" in out


def test_connection_refused_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    began = time.monotonic()
    assert main(["top", "--once", "--server", f"127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"clusterdns top: cannot reach http://127.0.0.1:{port}/traffic.json: Connection refused\n"
    )
    assert time.monotonic() - began < 30  # refused at once, not a timeout


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/x", "ftp://127.0.0.1/x/traffic.json: not an http:// or https:// URL"),
        ("http://127.0.0.1:99999", "cannot reach http://127.0.0.1:99999/traffic.json: "),
    ],
)
def test_a_bad_url_is_one_line(url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "--once", "--server", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("clusterdns top: " + message) and err.count("\n") == 1, err


def test_something_else_on_the_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A metrics listener without the traffic view (prometheus_client answers every path)."""
    http = serve_metrics("127.0.0.1:0", CollectorRegistry())
    try:
        assert main(["top", "--once", "--server", f"127.0.0.1:{http.server_address[1]}"]) == 1
    finally:
        http.shutdown()
        http.server_close()
    err = capsys.readouterr().err
    assert "not a traffic snapshot" in err and err.count("\n") == 1, err
