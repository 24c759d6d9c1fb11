"""Hostile input and slow clients (issue 14): bounded memory, bounded replies, no silent stops.

One test (or table) per defect of the issue, numbered as there. Everything runs on loopback,
bounded in count and time; in-process servers where the transport is what is tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from clusterdns.__main__ import build_parser
from clusterdns.core import convert
from clusterdns.core.resolver import ZoneConfig
from clusterdns.core.store import Store
from clusterdns.plugins.chain import Handler
from clusterdns.plugins.forward import ForwardConfig, Forwarder
from clusterdns.server.metrics import Metrics
from clusterdns.server.transport import DNSServer
from clusterdns.sources import manifests
from clusterdns.sources.manifests import ManifestSource, load, load_file, summary
from tests.handlers import make_handler

from .conftest import (
    ROOT,
    ZONES,
    big_service_manifest,
    free_port,
    start_clusterdns,
    start_server,
    stop_server,
)
from .test_zones_reload import rewrite
from .upstream import Upstream

NS = "apiVersion: v1\nkind: Namespace\nmetadata: {name: testns}\n"
BIG = "_http._tcp.big.testns.svc.cluster.local."


def svc(name: str, ns: str = "testns", ip: str = "10.96.5.5") -> str:
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n"
        f"spec: {{clusterIP: {ip}, ports: [{{name: http, port: 80}}]}}\n"
    )


def big_store(count: int = 300) -> Store:
    import yaml

    from clusterdns.testing import convert_objects

    store = Store()
    records = convert_objects(
        [*yaml.safe_load_all(NS), *yaml.safe_load_all(big_service_manifest(count))]
    )
    store.add_source("t", synced=True)
    for kind in ("Namespace", "Service", "EndpointSlice", "Pod"):
        store.replace("t", kind, [r for r in records if type(r).__name__ == kind], 1.0)
    return store


# ---- 1, 2: hostile manifests ---------------------------------------------------------------

# 1,000,000 Services from 700 bytes: Lists of ten aliases of Lists of ten aliases ...
BOMB = "a: &a {apiVersion: v1, kind: Service, metadata: {name: x}}\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} {{apiVersion: v1, kind: List, "
    f"items: [{', '.join(['*' + chr(97 + i)] * 10)}]}}\n"
    for i in range(5)
) + "kind: List\napiVersion: v1\nitems: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"

HOSTILE = [
    ("self-alias.yaml", "&a {apiVersion: v1, kind: List, items: [*a]}\n", "recursive"),
    ("nested.yaml", "[" * 100_000 + "]" * 100_000 + "\n", "nested"),
    ("nested.json", "[" * 100_000 + "]" * 100_000, "nested"),
    ("bomb.yaml", BOMB, "alias"),
]


@pytest.mark.parametrize(("name", "text", "reason"), HOSTILE)
def test_hostile_manifest_is_an_error_naming_the_file(
    tmp_path: Path, name: str, text: str, reason: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = load_file(path)
    assert not result.records
    assert len(result.errors) == 1 and str(path) in result.errors[0], result.errors
    assert reason in result.errors[0]


@pytest.mark.parametrize(
    ("limit", "value", "text", "reason"),
    [
        ("MAX_FILE_BYTES", 200, NS * 10, "bytes"),
        ("MAX_OBJECTS", 3, "---\n".join([NS] * 4), "objects"),
    ],
)
def test_size_and_object_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str, value: int, text: str, reason: str
) -> None:
    monkeypatch.setattr(manifests, limit, value, raising=False)
    path = tmp_path / "big.yaml"
    path.write_text(text)
    result = load_file(path)
    assert not result.records and not result.parsed
    assert len(result.errors) == 1 and str(path) in result.errors[0] and reason in result.errors[0]


def test_repeated_errors_are_summarised(tmp_path: Path) -> None:
    path = tmp_path / "ints.json"
    path.write_text('{"kind": "List", "apiVersion": "v1", "items": [' + ",".join(["1"] * 5000) + "]}")
    result = load_file(path)
    assert len(result.errors) <= manifests.MAX_ERRORS_PER_FILE + 1
    assert result.errors[-1].startswith(f"{path}: ... and ") and "4990 more" in result.errors[-1]


def test_check_reports_a_recursive_alias_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(HOSTILE[0][1])
    (tmp_path / "ns.yaml").write_text(NS)
    out = subprocess.run(
        [sys.executable, "-m", "clusterdns", "check", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "bad.yaml" in out.stderr
    assert "Namespace 1" in out.stdout


def answer(port: int, name: str, qtype: str = "A") -> tuple[int, list[str]]:
    msg = dns.query.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=port, timeout=5)
    return msg.rcode(), sorted(rr.to_text() for rrset in msg.answer for rr in rrset)


def eventually(port: int, name: str, want: tuple[int, list[str]], deadline: float = 10) -> None:
    end = time.monotonic() + deadline
    got = answer(port, name)
    while got != want and time.monotonic() < end:
        time.sleep(0.05)
        got = answer(port, name)
    assert got == want


def test_zone_reloading_survives_a_recursive_alias(tmp_path: Path) -> None:
    (tmp_path / "ns.yaml").write_text(NS)
    web = tmp_path / "web.yaml"
    web.write_text(svc("web", ip="10.96.5.1"))
    server = start_server("--zones", str(tmp_path), "--zones-interval", "0.1")
    name = "web.testns.svc.cluster.local."
    try:
        eventually(server.port, name, (dns.rcode.NOERROR, ["10.96.5.1"]))
        (tmp_path / "bad.yaml").write_text(HOSTILE[0][1])
        server.wait_for_log("bad.yaml")
        rewrite(web, svc("web", ip="10.96.5.2"))  # still followed
        eventually(server.port, name, (dns.rcode.NOERROR, ["10.96.5.2"]))
    finally:
        assert stop_server(server) == 0
    assert "Traceback" not in "".join(server.log_lines)


def test_sigterm_stops_the_server_while_zones_load(tmp_path: Path) -> None:
    (tmp_path / "many.yaml").write_text("".join(
        f"---\n{svc(f's{i}', ns='default', ip=f'10.96.{i // 250}.{i % 250 + 1}')}"
        for i in range(40_000)
    ))  # several seconds of parsing
    process = subprocess.Popen(
        [sys.executable, "-m", "clusterdns", "serve", "--listen", "127.0.0.1:0", "--zones",
         str(tmp_path)],
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if "zones: reading" in line:
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=3) == 0  # not after the whole file has loaded
        assert "listening" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ---- 3, 7, 9: TCP ----------------------------------------------------------------------------


class Loop:
    """An asyncio loop on a thread, for in-process servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: object, timeout: float = 10) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def tcp_query(name: str, qtype: str = "SRV", ident: int = 1) -> bytes:
    msg = dns.message.make_query(name, qtype)
    msg.id = ident
    wire = msg.to_wire()
    return len(wire).to_bytes(2, "big") + wire


def read_reply(sock: socket.socket) -> dns.message.Message:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data

    return dns.message.from_wire(exactly(int.from_bytes(exactly(2), "big")))


def test_a_client_that_never_reads_is_closed_and_does_not_delay_shutdown(loop: Loop) -> None:
    server = DNSServer(make_handler(big_store(), ZoneConfig()), "127.0.0.1", 0, idle_timeout=0.5)
    loop.run(server.start())
    clients = []
    for _ in range(2):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.settimeout(0.2)
        burst = tcp_query(BIG) * 200  # ~1.5 MB of replies, never read
        # the server stops reading: it is stuck writing (or has closed)
        with contextlib.suppress(TimeoutError):
            sock.sendall(burst * 5)
        clients.append(sock)
    end = time.monotonic() + 10
    while server._connections and time.monotonic() < end:
        time.sleep(0.05)
    assert not server._connections  # cut off by the write timeout
    loop.run(server.stop(), timeout=5)
    for sock in clients:
        sock.close()


def test_shutdown_with_a_stuck_writer_is_prompt_and_quiet(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text(NS + "---\n" + big_service_manifest(300))
    server = start_server("--zones", str(tmp_path), "--tcp-idle-timeout", "30")
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.settimeout(0.5)
        with contextlib.suppress(TimeoutError):  # the server is stuck writing to us
            sock.sendall(tcp_query(BIG) * 2000)
        server.process.send_signal(signal.SIGTERM)
        # not held by the 30 s write timeout of the stuck connection (15 s leaves room for a
        # loaded machine working through the queries already read)
        assert server.process.wait(timeout=15) == 0
    finally:
        sock.close()
        if server.process.poll() is None:
            server.process.kill()
    time.sleep(0.1)  # the log thread drains the pipe after exit
    text = "".join(server.log_lines)
    assert "CancelledError" not in text and "Traceback" not in text


def test_tcp_answers_out_of_order(loop: Loop) -> None:
    with Upstream() as up:
        up.set_mode("delay", seconds=1.5)
        forwarder = Forwarder(ForwardConfig(".", (up.address,)))
        handler = make_handler(big_store(20), ZoneConfig(), zones=(".",), forwarders=[forwarder])
        server = DNSServer(handler, "127.0.0.1", 0)
        loop.run(server.start())
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(tcp_query("www.example.com.", "A", 1) + tcp_query(BIG, "SRV", 2))
            sock.settimeout(1.0)  # the cluster answer must not wait for the 1.5 s upstream
            first = read_reply(sock)
            assert first.id == 2 and first.answer
            sock.settimeout(5)
            second = read_reply(sock)
            assert second.id == 1
        loop.run(server.stop())


def faulty(store: Store) -> Handler:
    """A handler whose chain has a bug for one name (fault injection: a first step that
    raises)."""
    handler = make_handler(store, ZoneConfig())

    def boom(chain: object, ask: Any) -> None:
        if ask.query.qname.startswith("boom."):
            raise RuntimeError("injected fault")

    handler.runs.insert(0, boom)
    handler.negative = handler.wire_negative = None  # every name goes down the chain
    return handler


def test_any_exception_on_tcp_is_servfail_not_a_dropped_connection(loop: Loop) -> None:
    server = DNSServer(faulty(big_store(5)), "127.0.0.1", 0)
    loop.run(server.start())
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(tcp_query("boom.cluster.local.", "A", 7))
        msg = read_reply(sock)
        assert msg.id == 7 and msg.rcode() == dns.rcode.SERVFAIL
        sock.sendall(tcp_query(BIG, "SRV", 8))  # the connection still serves
        assert read_reply(sock).id == 8
    loop.run(server.stop())


def test_a_failing_forward_is_logged_and_answered_servfail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forwarder = Forwarder(ForwardConfig(".", ("127.0.0.1:9",)))

    async def broken(*args: object) -> bytes:
        raise ValueError("injected fault")

    forwarder.forward = broken  # type: ignore[method-assign]
    handler = make_handler(big_store(5), ZoneConfig(), zones=(".",), forwarders=[forwarder])
    pending = handler.handle(dns.message.make_query("www.example.com.", "A").to_wire(), False)
    assert pending is not None and not isinstance(pending, bytes)

    async def wait() -> bytes | None:
        return await pending  # type: ignore[misc]

    with caplog.at_level(logging.ERROR):
        reply = asyncio.run(wait())
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.SERVFAIL
    assert "injected fault" in caplog.text


def test_autopath_upstream_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from clusterdns.core.resolver import PodMode
    from clusterdns.plugins.autopath import AutoPath

    from .conftest import load_store

    with Upstream() as up:
        up.set_mode("garbage")
        forwarder = Forwarder(ForwardConfig(".", (up.address,)))
        handler = make_handler(load_store(ZONES), ZoneConfig(pods=PodMode.VERIFIED), zones=(".",),
                          forwarders=[forwarder], autopath=AutoPath(["corp.example"]))
        query = dns.message.make_query("www.example.com.shop.svc.cluster.local.", "A")
        pending = handler.handle(query.to_wire(), False, "1", "10.244.1.10")

        async def wait() -> bytes | None:
            assert pending is not None and not isinstance(pending, bytes)
            return await pending  # type: ignore[misc]

        with caplog.at_level(logging.WARNING):
            reply = asyncio.run(wait())
    assert reply is not None
    assert "autopath" in caplog.text


def test_metrics_scrape_copies_every_table() -> None:
    metrics = Metrics("dns://:53", ".")
    metrics.cache_hit("success")
    metrics.proxy_request("1.2.3.4:53", "NOERROR", 0.01)
    metrics.healthcheck_failure("1.2.3.4:53")
    folded = metrics.folded()
    for name, value in vars(metrics).items():
        if isinstance(value, dict):
            assert getattr(folded, name) is not value, name


# ---- 4, 5, 8: EDNS -----------------------------------------------------------------------------


def query_wire(name: str, qtype: str, payload: int | None, options: bytes = b"") -> bytes:
    msg = dns.message.make_query(name, qtype)
    wire = msg.to_wire()
    if payload is None:
        return wire
    header = bytearray(wire[:12])
    struct.pack_into("!H", header, 10, 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, payload, 0, len(options)) + options
    return bytes(header) + wire[12:] + opt


def test_edns_payload_does_not_multiply_cache_entries() -> None:
    handler = make_handler(big_store(), ZoneConfig())
    for payload in range(512, 65535, 97):
        assert isinstance(handler.handle(query_wire(BIG, "SRV", payload), False), bytes)
    assert len(handler.cache.entries) <= 4


@pytest.mark.parametrize(
    ("ours", "payload", "cap"),
    [(None, 65535, 1232), (None, 1000, 1000), (None, None, 512), (4096, 65535, 4096),
     (4096, 3000, 3000), (600, 4096, 600)],
)
def test_udp_replies_are_capped(ours: int | None, payload: int | None, cap: int) -> None:
    kw = {} if ours is None else {"udp_size": ours}
    handler = make_handler(big_store(), ZoneConfig(), **kw)  # type: ignore[arg-type]
    reply = handler.handle(query_wire(BIG, "SRV", payload), False)
    assert isinstance(reply, bytes) and len(reply) <= cap
    msg = dns.message.from_wire(reply)
    assert msg.flags & dns.flags.TC
    if payload is not None:
        assert msg.payload == (ours or 1232)  # what we honour


def test_serve_flag_sets_our_udp_size(tmp_path: Path) -> None:
    assert build_parser().parse_args(["serve", "--udp-size", "4096"]).udp_size == 4096
    (tmp_path / "big.yaml").write_text(NS + "---\n" + big_service_manifest(300))
    server = start_server("--zones", str(tmp_path), "--udp-size", "700")
    try:
        query = dns.message.make_query(BIG, "SRV", use_edns=0, payload=4096)
        reply = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=5)
        assert reply.flags & dns.flags.TC and reply.payload == 700
        assert len(reply.to_wire()) <= 700
    finally:
        stop_server(server)


COOKIE = 10


def option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


NAME = "big.testns.svc.cluster.local."
EDNS_CASES = [
    # (what, packet, rcode, OPT in the reply)
    ("cookie of 8", query_wire(NAME, "A", 1232, option(COOKIE, b"c" * 8)), dns.rcode.NOERROR, True),
    ("cookie of 24", query_wire(NAME, "A", 1232, option(COOKIE, b"c" * 24)), dns.rcode.NOERROR, True),
    ("cookie of 5", query_wire(NAME, "A", 1232, option(COOKIE, b"c" * 5)), dns.rcode.FORMERR, True),
    ("cookie of 41", query_wire(NAME, "A", 1232, option(COOKIE, b"c" * 41)), dns.rcode.FORMERR, True),
    ("option past RDLENGTH", query_wire(NAME, "A", 1232, struct.pack("!HH", 3, 20) + b"x" * 4),
     dns.rcode.FORMERR, True),
    ("half an option header", query_wire(NAME, "A", 1232, b"\x00\x03"), dns.rcode.FORMERR, True),
]


def _opcode(packet: bytes, opcode: int) -> bytes:
    flags = struct.unpack_from("!H", packet, 2)[0] | (opcode << 11)
    return packet[:2] + struct.pack("!H", flags) + packet[4:]


def _two_questions(packet: bytes) -> bytes:
    return packet[:4] + struct.pack("!H", 2) + packet[6:]


EDNS_CASES += [
    ("NOTIFY with OPT", _opcode(query_wire(NAME, "A", 1232), 4), dns.rcode.NOTIMP, True),
    ("STATUS with OPT", _opcode(query_wire(NAME, "A", 1232), 2), dns.rcode.NOTIMP, True),
    ("two questions with OPT", _two_questions(query_wire(NAME, "A", 1232)), dns.rcode.FORMERR, True),
    ("NOTIFY without OPT", _opcode(query_wire(NAME, "A", None), 4), dns.rcode.NOTIMP, False),
]


@pytest.mark.parametrize(("what", "packet", "rcode", "has_opt"), EDNS_CASES, ids=[c[0] for c in EDNS_CASES])
def test_edns_conformance(what: str, packet: bytes, rcode: int, has_opt: bool) -> None:
    handler = make_handler(big_store(3), ZoneConfig())
    # the same question, well formed, first: a cached answer must not hide a bad option
    handler.handle(query_wire(NAME, "A", 1232), False)
    for _ in range(2):
        reply = handler.handle(packet, False)
        assert isinstance(reply, bytes)
        assert reply[3] & 0xF == rcode, what
        msg = dns.message.from_wire(reply)
        assert (msg.edns >= 0) == has_opt, what


# ---- 6: signals and workers ----------------------------------------------------------------------


def test_hup_usr1_reload_and_usr2_is_logged(tmp_path: Path) -> None:
    (tmp_path / "ns.yaml").write_text(NS)
    web = tmp_path / "web.yaml"
    web.write_text(svc("web", ip="10.96.5.1"))
    server = start_server("--zones", str(tmp_path), "--zones-interval", "0")
    name = "web.testns.svc.cluster.local."
    try:
        assert answer(server.port, name) == (dns.rcode.NOERROR, ["10.96.5.1"])
        for sig, ip in ((signal.SIGHUP, "10.96.5.2"), (signal.SIGUSR1, "10.96.5.3")):
            rewrite(web, svc("web", ip=ip))
            server.process.send_signal(sig)
            eventually(server.port, name, (dns.rcode.NOERROR, [ip]))
        server.process.send_signal(signal.SIGUSR2)
        server.wait_for_log("SIGUSR2")
        assert server.process.poll() is None
        assert answer(server.port, name) == (dns.rcode.NOERROR, ["10.96.5.3"])
    finally:
        assert stop_server(server) == 0
    assert "SIGHUP" in "".join(server.log_lines)


def test_hup_notices_an_edited_import_every_time(tmp_path: Path) -> None:
    """A reload signal compares the same digest as the reload loop (Corefile and imports):
    each edit of an imported file is applied, not only the first."""
    extra = tmp_path / "extra.conf"
    extra.write_text("hosts {\n  10.0.0.1 h.example\n}\n")
    corefile = tmp_path / "Corefile"
    corefile.write_text(f".:{free_port()} {{\n  bind 127.0.0.1\n  import extra.conf\n}}\n")
    server = start_clusterdns("-conf", str(corefile))
    try:
        assert answer(server.port, "h.example.") == (dns.rcode.NOERROR, ["10.0.0.1"])
        for ip in ("10.0.0.2", "10.0.0.3"):
            rewrite(extra, f"hosts {{\n  {ip} h.example\n}}\n")
            server.process.send_signal(signal.SIGHUP)
            eventually(server.port, "h.example.", (dns.rcode.NOERROR, [ip]))
    finally:
        assert stop_server(server) == 0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_die_with_their_parent() -> None:
    server = start_server("--zones", str(ZONES), "--workers", "2")
    children = _children(server.process.pid)
    assert len(children) == 2
    try:
        server.process.kill()  # no chance to pass a signal on
        server.process.wait(5)
        end = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < end:
            time.sleep(0.05)
        assert not any(_alive(c) for c in children)
    finally:
        for child in children:
            if _alive(child):
                os.kill(child, signal.SIGKILL)


# ---- 10: names the API server refuses, duplicates, dangling PTR ---------------------------------

BAD_NAMES = [
    ("Service", svc("s" * 70), "metadata.name"),
    ("Service", svc("-web"), "metadata.name"),  # 1web is valid since KEP-5311
    ("Service", svc("web_x"), "metadata.name"),
    ("Service", svc("web", ns="n" * 64), "metadata.namespace"),
    ("Namespace", "apiVersion: v1\nkind: Namespace\nmetadata: {name: -shop}\n", "metadata.name"),
    ("Pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: testns}\n"
     "spec: {hostname: a.b, subdomain: web}\nstatus: {podIP: 10.244.0.9}\n", "spec.hostname"),
    ("Pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: testns}\n"
     f"spec: {{hostname: a, subdomain: {'w' * 64}}}\nstatus: {{podIP: 10.244.0.9}}\n",
     "spec.subdomain"),
]


@pytest.mark.parametrize(("kind", "text", "field"), BAD_NAMES)
def test_names_the_api_server_refuses_are_invalid_objects(
    tmp_path: Path, kind: str, text: str, field: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = load_file(path)
    assert not result.records
    assert len(result.errors) == 1
    assert result.errors[0].startswith(f"{path}: {kind} ") and field in result.errors[0]


def test_valid_names_still_load() -> None:
    assert convert.convert({"kind": "Service", "apiVersion": "v1",
                            "metadata": {"name": "a" * 63, "namespace": "9ns"},
                            "spec": {"clusterIP": "10.96.0.9"}}) is not None


def test_duplicates_warned_and_counted_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a.yaml").write_text(NS + "---\n" + svc("web"))
    (tmp_path / "b.yaml").write_text(svc("web", ip="10.96.5.6"))
    result = load([tmp_path])
    assert "Service 1," in summary(result)
    assert any("b.yaml" in w and "a.yaml" in w and "testns/web" in w for w in result.warnings)
    store = Store()
    with caplog.at_level(logging.WARNING):
        ManifestSource(store, [tmp_path]).load(1.0)
    assert "duplicate" in caplog.text
    assert store.count("Service") == 1
    out = subprocess.run([sys.executable, "-m", "clusterdns", "check", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and "Service 1," in out.stdout and "duplicate" in out.stderr


def test_no_ptr_to_a_service_whose_namespace_does_not_exist(tmp_path: Path) -> None:
    (tmp_path / "ns.yaml").write_text(NS)
    (tmp_path / "s.yaml").write_text(svc("web", ip="10.96.5.7") + "---\n"
                                     + svc("ghost", ns="nowhere", ip="10.96.5.8"))
    store = Store()
    ManifestSource(store, [tmp_path]).load(1.0)
    handler = make_handler(store, ZoneConfig())
    for ip, rcode in (("7", dns.rcode.NOERROR), ("8", dns.rcode.NXDOMAIN)):
        query = dns.message.make_query(f"{ip}.5.96.10.in-addr.arpa.", "PTR")
        reply = handler.handle(query.to_wire(), False)
        assert isinstance(reply, bytes)
        assert dns.message.from_wire(reply).rcode() == rcode
    # and the name it would point to does not resolve either
    reply = handler.handle(dns.message.make_query("ghost.nowhere.svc.cluster.local.", "A").to_wire(), False)
    assert isinstance(reply, bytes) and dns.message.from_wire(reply).rcode() == dns.rcode.NXDOMAIN
