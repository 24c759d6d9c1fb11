"""Manifests follow changes: a running server re-reads changed files (issue 3, item 5)."""

from __future__ import annotations

import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from .conftest import RunningServer, start_server, stop_server

NS = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"


def service(ip: str) -> str:
    return (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
        f"spec: {{clusterIP: {ip}, ports: [{{name: http, port: 80}}]}}\n"
    )


def answer(server: RunningServer) -> tuple[int, list[str]]:
    query = dns.message.make_query("web.shop.svc.cluster.local.", "A")
    msg = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=5)
    return msg.rcode(), sorted(rr.to_text() for rrset in msg.answer for rr in rrset)


def eventually(server: RunningServer, want: tuple[int, list[str]], deadline: float = 10) -> None:
    end = time.monotonic() + deadline
    got = answer(server)
    while got != want and time.monotonic() < end:
        time.sleep(0.05)
        got = answer(server)
    assert got == want


def rewrite(path: Path, text: str) -> None:
    """Write ``text`` so that the change is visible even within one mtime tick."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    if path.stat().st_mtime_ns == before:  # coarse clocks: force a different stamp
        import os

        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def test_changed_broken_and_deleted_files(tmp_path: Path) -> None:
    (tmp_path / "ns.yaml").write_text(NS)
    web = tmp_path / "web.yaml"
    web.write_text(service("10.96.0.20"))
    server = start_server("--zones", str(tmp_path), "--zones-interval", "0.1")
    try:
        eventually(server, (dns.rcode.NOERROR, ["10.96.0.20"]))
        rewrite(web, service("10.96.0.21"))
        eventually(server, (dns.rcode.NOERROR, ["10.96.0.21"]))
        # A file that no longer parses keeps its last good objects ...
        rewrite(web, "kind: [broken")
        server.wait_for_log("web.yaml: keeping its last good objects")
        assert answer(server) == (dns.rcode.NOERROR, ["10.96.0.21"])
        assert "web.yaml:2:1: cannot be read" in server.wait_for_log("cannot be read")
        # ... a deleted file takes them away.
        web.unlink()
        eventually(server, (dns.rcode.NXDOMAIN, []))
        rewrite(tmp_path / "new.json", '{"kind": "Service", "metadata": {"name": "web", '
                '"namespace": "shop"}, "spec": {"clusterIP": "10.96.0.22"}}')
        eventually(server, (dns.rcode.NOERROR, ["10.96.0.22"]))
    finally:
        assert stop_server(server) == 0


def test_file_truncated_while_written_converges(tmp_path: Path) -> None:
    (tmp_path / "ns.yaml").write_text(NS)
    web = tmp_path / "web.yaml"
    full = service("10.96.0.30") + "---\n" + service("10.96.0.30").replace("name: web", "name: api")
    web.write_text(full)
    server = start_server("--zones", str(tmp_path), "--zones-interval", "0.1")
    try:
        eventually(server, (dns.rcode.NOERROR, ["10.96.0.30"]))
        # a writer caught halfway: the file holds a cut document, then the whole new text
        rewrite(web, full[: len(full) // 2 + 17])
        server.wait_for_log("zones reloaded", deadline=10)
        rewrite(web, full.replace("10.96.0.30", "10.96.0.31"))
        eventually(server, (dns.rcode.NOERROR, ["10.96.0.31"]))
        msg = dns.query.udp(dns.message.make_query("api.shop.svc.cluster.local.", "A"),
                            "127.0.0.1", port=server.port, timeout=5)
        assert [rr.to_text() for rr in msg.answer[0]] == ["10.96.0.31"]
    finally:
        assert stop_server(server) == 0
