"""Floods and slow clients (issue 7): loopback only, bounded in count and time.

A real server with small TCP limits; the tests check that limits hold and that the
server keeps answering others meanwhile. Every wait polls with a deadline.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from .conftest import ZONES, RunningServer, start_server, stop_server

HOST = "127.0.0.1"
NAME = "kubernetes.default.svc.cluster.local."


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server(
        "--zones", str(ZONES), "--cache-size", "1000", "--tcp-idle-timeout", "1",
        "--max-tcp-connections", "20", "--max-tcp-queries", "3",
    )
    yield running
    assert stop_server(running) == 0


def udp_ok(server: RunningServer) -> bool:
    msg = dns.query.udp(dns.message.make_query(NAME, "A"), HOST, port=server.port, timeout=3)
    return [rr.address for rr in msg.answer[0]] == ["10.96.0.1"]


def framed(name: str = NAME) -> bytes:
    wire = dns.message.make_query(name, "A").to_wire()
    return struct.pack("!H", len(wire)) + wire


def closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """True once the server has closed ``sock`` (recv gives b"" or a reset)."""
    sock.settimeout(0.05)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if sock.recv(65535) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False


def test_connection_flood_is_capped_and_udp_keeps_answering(server: RunningServer) -> None:
    held = [socket.create_connection((HOST, server.port), timeout=3) for _ in range(40)]
    try:
        assert udp_ok(server)
        closed = sum(closed_by_server(sock, 0.5) for sock in held[25:])
        assert closed == 15  # over the cap of 20: closed at once
        # one of the first twenty still gets its answer
        held[0].sendall(framed())
        held[0].settimeout(3)
        length = struct.unpack("!H", held[0].recv(2))[0]
        assert length > 0
    finally:
        for sock in held:
            sock.close()


def answered_connection(server: RunningServer) -> socket.socket:
    """A TCP connection the server has accepted and answered on (the cap may still count
    connections an earlier test closed, until the server has noticed)."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        sock = socket.create_connection((HOST, server.port), timeout=3)
        try:
            sock.sendall(framed())
            if len(sock.recv(65535)) > 2:
                return sock
        except OSError:
            pass
        sock.close()
        time.sleep(0.1)
    raise AssertionError("no TCP connection was answered")


def test_idle_connection_is_closed(server: RunningServer) -> None:
    with answered_connection(server) as sock:
        began = time.monotonic()
        assert closed_by_server(sock, 5)
        assert 0.8 <= time.monotonic() - began < 4


def test_slow_client_is_cut_off_and_blocks_nobody(server: RunningServer) -> None:
    message = framed()
    with answered_connection(server) as slow:
        began = time.monotonic()
        for i, byte in enumerate(message[:12]):  # a byte every 0.2 s: 2.4 s for 12 bytes
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                break
            if i == 2:
                # meanwhile another client is answered at once, over TCP and UDP
                t = time.monotonic()
                reply = dns.query.tcp(dns.message.make_query(NAME, "A"), HOST, port=server.port,
                                      timeout=3)
                assert reply.rcode() == dns.rcode.NOERROR and time.monotonic() - t < 0.5
                assert udp_ok(server)
            time.sleep(0.2)
        assert closed_by_server(slow, 3)
        assert time.monotonic() - began < 5


def test_length_prefix_larger_than_the_data(server: RunningServer) -> None:
    with socket.create_connection((HOST, server.port), timeout=3) as sock:
        sock.sendall(struct.pack("!H", 4000) + framed()[2:])
        assert closed_by_server(sock, 4)
    assert udp_ok(server)


def test_queries_per_connection_are_limited(server: RunningServer) -> None:
    with answered_connection(server) as sock:  # that is query 1 of 3
        sock.sendall(framed() * 4)
        replies = 1
        data = b""
        sock.settimeout(3)
        while True:
            try:
                chunk = sock.recv(65535)
            except (TimeoutError, ConnectionError):
                break
            if not chunk:
                break
            data += chunk
        while len(data) >= 2:
            length = struct.unpack_from("!H", data)[0]
            data = data[2 + length:]
            replies += 1
        assert replies == 3


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_random_name_flood_keeps_memory_bounded(server: RunningServer) -> None:
    """30,000 distinct names over UDP: the answer cache holds 1,000; RSS must not grow
    with the names (a per-name leak of even 200 bytes would show as 6 MB)."""
    pid = server.process.pid
    flood(server, 5000, "warm")  # let allocator pools settle first
    before = rss_kb(pid)
    flood(server, 15000, "flood")
    during = rss_kb(pid)
    flood(server, 15000, "more")
    after = rss_kb(pid)
    assert udp_ok(server)
    print(f"RSS before {before} kB, during {during} kB, after {after} kB")
    assert during - before < 4096, f"RSS grew {during - before} kB over 15,000 names"
    assert after - before < 4096, f"RSS grew {after - before} kB over 30,000 names"


def flood(server: RunningServer, count: int, tag: str) -> None:
    """Send ``count`` distinct NXDOMAIN names, 100 in flight at most, reading replies; at
    least 99% must be answered (a read that times out writes off what is in flight)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sent = answered = lost = 0
        end = time.monotonic() + 60
        while answered + lost < count and time.monotonic() < end:
            while sent < count and sent - answered - lost < 100:
                wire = dns.message.make_query(f"{tag}{sent}.shop.svc.cluster.local.", "A").to_wire()
                sock.sendto(wire, (HOST, server.port))
                sent += 1
            try:
                sock.recv(4096)
                answered += 1
            except TimeoutError:
                lost = sent - answered  # nothing came for 2 s: the rest in flight is lost
        assert answered >= count * 0.99, f"{answered} of {count} answered, {lost} lost"


AUDIT = r"""
import os, sys, tempfile
ALLOWED = (tempfile.gettempdir(), "/dev/", "/proc/")
def hook(event, args):
    path = None
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        mode, flags = args[1], args[2]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        path = args[0] if writing else None
    elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.symlink",
                   "os.truncate", "shutil.rmtree"):
        path = args[0]
    if path is not None:
        path = os.path.abspath(os.fsdecode(path))
        if not path.startswith(ALLOWED):
            sys.stderr.write(f"WRITE {event} {path}\n")
            sys.stderr.flush()
sys.addaudithook(hook)
import runpy
sys.argv = ["clusterdns", *sys.argv[1:]]
runpy.run_module("clusterdns", run_name="__main__")
"""


def test_the_server_writes_nothing_outside_the_temporary_directory(tmp_path: Path) -> None:
    """Least privilege: with a read-only root filesystem nothing may need writing. Every
    file the process opens for writing is reported by an audit hook (PEP 578)."""
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    process = subprocess.Popen(
        [sys.executable, "-c", AUDIT, "serve", "--zones", str(ZONES), "--listen",
         "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--health", "127.0.0.1:0"],
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "listening on" in line:
            break
    port = int(lines[-1].split("listening on 127.0.0.1:")[1].split()[0])
    running = RunningServer(process, port, lines)
    try:
        assert udp_ok(running)
        flood(running, 500, "audit")
        dns.query.tcp(dns.message.make_query(NAME, "A"), HOST, port=port, timeout=3)
    finally:
        assert stop_server(running) == 0
    rest = process.stderr.read()
    writes = [line for line in "".join(lines).splitlines() + rest.splitlines()
              if line.startswith("WRITE ")]
    assert writes == []
