"""The attacks of issue 14 against a real server on loopback, with figures (docs/reliability.md).

Starts ``clusterdns serve`` on 127.0.0.1 at an ephemeral port over a zones/ directory with a
headless Service of 300 endpoints (the big answer), then runs each attack for a few seconds
while a legitimate client asks an ordinary cluster name over UDP, and prints per attack: the
legitimate queries' p50/p99/max latency and losses, the server's RSS before and after, and
attack-specific figures (reply/query byte ratios, how long a non-reading TCP client keeps
its slot, how long a hostile manifest takes to be refused). Everything goes to loopback
only, bounded in time and count; nothing is installed.

Usage: python bench/attacks.py [--seconds 3] [--tcp-idle-timeout 2] [--source DIR]
(``--source``: run the server from another checkout, e.g. ``git archive cd43307 | tar -x -C
/tmp/old`` for the figures before the fixes.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dns.message  # noqa: E402

from tests.conftest import big_service_manifest  # noqa: E402

NS = "apiVersion: v1\nkind: Namespace\nmetadata: {name: testns}\n"
LEGIT = "big.testns.svc.cluster.local."
BIG = "_http._tcp.big.testns.svc.cluster.local."
SELF_ALIAS = "&a {apiVersion: v1, kind: List, items: [*a]}\n"
BOMB = "a: &a {apiVersion: v1, kind: Service, metadata: {name: x}}\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} {{apiVersion: v1, kind: List, "
    f"items: [{', '.join(['*' + chr(97 + i)] * 10)}]}}\n"
    for i in range(5)
) + "kind: List\napiVersion: v1\nitems: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"


LOG: list[str] = []  # the server's log lines


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (/proc)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def server_connections(port: int) -> int:
    """TCP connections of the server on ``port`` that are open (ESTABLISHED, CLOSE_WAIT)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if int(local.split(":")[1], 16) == port and state in ("01", "08"):
            count += 1
    return count


def query(name: str, qtype: str, payload: int | None = None, ident: int = 1) -> bytes:
    msg = dns.message.make_query(name, qtype, use_edns=0 if payload else False,
                                 payload=payload or 1232)
    msg.id = ident
    return msg.to_wire()


class Legit(threading.Thread):
    """Asks LEGIT A over UDP every 2 ms until stopped; keeps latencies (s) and losses."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.lost = 0
        self.done = threading.Event()

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(1.0)
        ident = 0
        while not self.done.is_set():
            ident = (ident + 1) & 0xFFFF
            began = time.perf_counter()
            sock.sendto(query(LEGIT, "A", ident=ident), ("127.0.0.1", self.port))
            try:
                while True:
                    data = sock.recv(65535)
                    if struct.unpack_from("!H", data)[0] == ident:
                        break
                self.latencies.append(time.perf_counter() - began)
            except TimeoutError:
                self.lost += 1
            time.sleep(0.002)
        sock.close()

    def figures(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return f"no answer ({self.lost} lost)"

        def pick(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

        return (f"legit p50 {pick(0.5):.2f} ms, p99 {pick(0.99):.2f} ms, max {lat[-1] * 1000:.1f}"
                f" ms, {len(lat)} answered, {self.lost} lost")


def during(port: int, pid: int, seconds: float, attack: Callable[[float], str]) -> None:
    legit = Legit(port)
    before = rss_mb(pid)
    legit.start()
    try:
        extra = attack(time.monotonic() + seconds)
    finally:
        legit.done.set()
        legit.join(5)
    print(f"  {legit.figures()}; RSS {before:.0f} -> {rss_mb(pid):.0f} MB; {extra}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per attack")
    parser.add_argument("--tcp-idle-timeout", type=float, default=2.0)
    parser.add_argument(
        "--manifest", default="", help="only the hostile manifests whose title has this"
    )
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout to serve from")
    args = parser.parse_args()
    zones = Path(tempfile.mkdtemp(prefix="clusterdns-attacks-"))
    (zones / "big.yaml").write_text(NS + "---\n" + big_service_manifest(300))
    command = [sys.executable, "-m", "clusterdns", "serve", "--listen", "127.0.0.1:0",
               "--zones", str(zones), "--zones-interval", "0.2",
               "--tcp-idle-timeout", str(args.tcp_idle_timeout)]
    print("server:", " ".join(command[1:]))
    env = {**os.environ, "PYTHONPATH": str(args.source), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=args.source, env=env)
    assert server.stderr is not None
    port = 0
    for line in server.stderr:
        match = re.search(r"listening on [0-9.]+:(\d+)", line)
        if match:
            port = int(match.group(1))
            break
    threading.Thread(target=LOG.extend, args=(server.stderr,), daemon=True).start()
    pid = server.pid
    try:
        run_attacks(port, pid, args, zones, server)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            began = time.monotonic()
            code = server.wait(30)
            print(f"SIGTERM: exit {code} after {time.monotonic() - began:.2f} s")
    return 0


def run_attacks(
    port: int, pid: int, args: argparse.Namespace, zones: Path, server: subprocess.Popen[str]
) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if not args.manifest:
        run_packet_attacks(port, pid, args, udp)
    run_manifest_attacks(port, pid, args, zones)
    if not args.manifest:
        run_signals(port, server, udp)


def run_packet_attacks(port: int, pid: int, args: argparse.Namespace, udp: socket.socket) -> None:
    seconds = args.seconds
    addr = ("127.0.0.1", port)

    print("baseline (no attack)")
    def idle(end: float) -> str:
        time.sleep(max(0.0, end - time.monotonic()))
        return ""

    during(port, pid, seconds, idle)

    print("amplification: the big SRV answer over UDP")
    udp.settimeout(2)
    for payload in (None, 1232, 4096, 65535):
        data = query(BIG, "SRV", payload)
        udp.sendto(data, addr)
        reply = udp.recv(65535)
        tc = bool(reply[2] & 0x02)
        print(f"  payload {payload or 'none (512)'}: query {len(data)} B, reply {len(reply)} B, "
              f"ratio {len(reply) / len(data):.1f}, TC {tc}")

    print("EDNS payload sweep: 1000 queries/s for the big SRV, each a distinct payload >= 1232")

    def sweep(end: float) -> str:
        sent = 0
        while time.monotonic() < end:
            udp.sendto(query(BIG, "SRV", 1232 + sent % 64000), addr)
            sent += 1
            time.sleep(0.001)
        return f"{sent} distinct payloads sent"

    during(port, pid, seconds, sweep)

    print(f"slow TCP readers: 50 clients that send 200 queries each and never read "
          f"(idle timeout {args.tcp_idle_timeout} s)")

    def slow_readers(end: float) -> str:
        socks = []
        for _ in range(50):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(addr)
            sock.setblocking(False)
            wire = query(BIG, "SRV")
            with contextlib.suppress(BlockingIOError):
                sock.send((len(wire).to_bytes(2, "big") + wire) * 200)
            socks.append((sock, time.monotonic()))
        # Seen from the server's side (/proc/net/tcp): its connections on the port that are
        # not closed. The client may never learn of the reset: its window is full, and
        # Linux drops a RST beyond it, so the client's own socket state says nothing.
        began = time.monotonic()
        deadline = began + args.tcp_idle_timeout * 3 + 5
        held = server_connections(port)
        while held and time.monotonic() < deadline:
            time.sleep(0.05)
            held = server_connections(port)
        took = time.monotonic() - began
        for sock, _ in socks:
            sock.close()
        # a legitimate TCP query now
        with socket.create_connection(addr, timeout=5) as tcp:
            wire = query(LEGIT, "A")
            began = time.perf_counter()
            tcp.sendall(len(wire).to_bytes(2, "big") + wire)
            tcp.recv(65535)
            tcp_ms = (time.perf_counter() - began) * 1000
        state = f"all 50 closed by the server after {took:.1f} s" if not held else (
            f"{held} of 50 still held by the server after {took:.1f} s")
        return f"{state}; a TCP query after: {tcp_ms:.2f} ms"

    during(port, pid, seconds, slow_readers)

    print("malformed EDNS: 2000 queries/s with a 5-byte COOKIE or an option past RDLENGTH")

    def malformed(end: float) -> str:
        wire = query(LEGIT, "A")
        bad = [wire[:10] + b"\x00\x01" + wire[12:] + b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 9)
               + struct.pack("!HH", 10, 5) + b"c" * 5,
               wire[:10] + b"\x00\x01" + wire[12:] + b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 8)
               + struct.pack("!HH", 3, 20) + b"x" * 4]
        sent = formerr = 0
        fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no stale replies
        fresh.settimeout(0.5)
        began = time.monotonic()
        while time.monotonic() < end:
            fresh.sendto(bad[sent % 2], addr)
            sent += 1
            with contextlib.suppress(TimeoutError):
                reply = fresh.recv(65535)
                formerr += reply[3] & 0xF == 1
            time.sleep(max(0.0, began + sent / 2000 - time.monotonic()))
        fresh.close()
        return f"{sent} sent, {formerr} FORMERR"

    during(port, pid, seconds, malformed)



def run_manifest_attacks(port: int, pid: int, args: argparse.Namespace, zones: Path) -> None:
    seconds = args.seconds
    for name, text in (("self-referencing alias (45 B)", SELF_ALIAS),
                       (f"alias bomb ({len(BOMB)} B, 1,000,000 Services expanded)", BOMB),
                       ("2 MB List of 1,000,000 integers", '{"kind": "List", "apiVersion": "v1", '
                        '"items": [' + ",".join(["1"] * 1_000_000) + "]}"),
                       ("200 KB of nested [[[...]]] (JSON)", "[" * 100_000 + "]" * 100_000)):
        if args.manifest not in name:
            continue
        print(f"hostile manifest in zones/: {name}")
        suffix = ".json" if text.startswith(("{", "[")) else ".yaml"

        def hostile(end: float, text: str = text, suffix: str = suffix) -> str:
            path = zones / f"hostile{suffix}"
            seen = len(LOG)
            path.write_text(text)
            began = time.monotonic()
            error, took = "", float("nan")
            while time.monotonic() < end + 10 and not error:
                for line in LOG[seen:]:
                    if str(path) in line and "ERROR" in line:
                        took = time.monotonic() - began
                        error = line.split(f"{path}: ", 1)[1].strip()
                        break
                time.sleep(0.01)
            time.sleep(max(0.0, end - time.monotonic()))
            path.unlink()
            return (f"the server logged it after {took * 1000:.0f} ms (polling every 0.2 s): "
                    f"{error[:60]!r}")

        during(port, pid, seconds, hostile)



def run_signals(port: int, server: subprocess.Popen[str], udp: socket.socket) -> None:
    addr = ("127.0.0.1", port)
    pid = server.pid
    print("signals: SIGHUP, SIGUSR1, SIGUSR2")
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        if server.poll() is not None:
            print(f"  {sig.name}: not sent, the server has exited ({server.returncode})")
            continue
        os.kill(pid, sig)
        time.sleep(0.3)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fresh:
            fresh.settimeout(2)
            fresh.sendto(query(LEGIT, "A"), addr)
            try:
                answered = bool(fresh.recv(65535))
            except (TimeoutError, ConnectionError):
                answered = False
        print(f"  {sig.name}: running {server.poll() is None}, answers {answered}")


if __name__ == "__main__":
    sys.exit(main())
