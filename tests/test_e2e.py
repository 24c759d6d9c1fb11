"""End to end: a real ``clusterdns serve`` process on 127.0.0.1, queried over real sockets
with dnspython (UDP and TCP) and with ``dig`` where it is installed."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from .conftest import ZONES, RunningServer, start_server, stop_server

HOST = "127.0.0.1"


def udp(server: RunningServer, name: str, qtype: str = "A", **kw: object) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, **kw)  # type: ignore[arg-type]
    return dns.query.udp(query, HOST, port=server.port, timeout=5)


def tcp(server: RunningServer, name: str, qtype: str = "A") -> dns.message.Message:
    return dns.query.tcp(dns.message.make_query(name, qtype), HOST, port=server.port, timeout=5)


def addresses(msg: dns.message.Message) -> set[str]:
    return {rr.to_text() for rrset in msg.answer for rr in rrset}


def test_clusterip_over_udp_and_tcp(coredns_server: RunningServer) -> None:
    for ask in (udp, tcp):
        msg = ask(coredns_server, "svc1.testns.svc.cluster.local.")
        assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
        assert addresses(msg) == {"10.0.0.1"}


def test_nodata_for_aaaa_on_ipv4_only_service(coredns_server: RunningServer) -> None:
    msg = udp(coredns_server, "svc1.testns.svc.cluster.local.", "AAAA")
    assert msg.rcode() == dns.rcode.NOERROR and msg.answer == []
    assert msg.authority[0].rdtype == dns.rdatatype.SOA


def test_0x20_case_echo(coredns_server: RunningServer) -> None:
    for _ in range(2):  # the second answer comes from the answer cache
        msg = udp(coredns_server, "sVc1.TESTns.svc.ClUsTeR.local.")
        assert msg.question[0].name.to_text() == "sVc1.TESTns.svc.ClUsTeR.local."
        assert msg.answer[0].name.to_text() == "sVc1.TESTns.svc.ClUsTeR.local."


def test_edns_present_and_absent(coredns_server: RunningServer) -> None:
    assert udp(coredns_server, "svc1.testns.svc.cluster.local.").edns == -1
    assert udp(coredns_server, "svc1.testns.svc.cluster.local.", use_edns=0).edns == 0


def test_truncation_then_tcp_retry_for_100_endpoints(coredns_server: RunningServer) -> None:
    name = "big.testns.svc.cluster.local."
    truncated = udp(coredns_server, name)
    assert truncated.flags & dns.flags.TC
    full = tcp(coredns_server, name)
    assert not full.flags & dns.flags.TC and len(addresses(full)) == 100
    # dnspython's own fallback does what a stub resolver does: UDP, then TCP on TC.
    msg, used_tcp = dns.query.udp_with_fallback(
        dns.message.make_query(name, "A"), HOST, port=coredns_server.port, timeout=5
    )
    assert used_tcp and len(addresses(msg)) == 100


def test_several_queries_on_one_tcp_connection(coredns_server: RunningServer) -> None:
    with socket.create_connection((HOST, coredns_server.port), timeout=5) as sock:
        names = ["svc1.testns.svc.cluster.local.", "hdls1.testns.svc.cluster.local.", "x.y."]
        for name in names:
            dns.query.send_tcp(sock, dns.message.make_query(name, "A"))
        replies = [dns.query.receive_tcp(sock)[0] for _ in names]
    assert [r.question[0].name.to_text() for r in replies] == names
    assert [r.rcode() for r in replies] == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.REFUSED]


def test_malformed_packets_then_a_good_query(coredns_server: RunningServer) -> None:
    garbage = [
        b"",
        b"\x00",
        b"\xff" * 11,
        struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x05ab",
        struct.pack("!HHHHHH", 2, 0x0100, 0, 0, 0, 0),
        struct.pack("!HHHHHH", 3, 0x8100, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01",
        bytes(range(256)) * 4,
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in garbage:
            sock.sendto(packet, (HOST, coredns_server.port))
    # A TCP client that announces more than it sends, then hangs up.
    with socket.create_connection((HOST, coredns_server.port), timeout=5) as sock:
        sock.sendall(b"\x01\x00" + b"\x00" * 20)
    msg = udp(coredns_server, "svc1.testns.svc.cluster.local.")
    assert addresses(msg) == {"10.0.0.1"}
    assert coredns_server.process.poll() is None


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig(coredns_server: RunningServer, transport: str) -> None:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(coredns_server.port), transport, "+short",
         "svc-dual-stack.testns.svc.cluster.local", "AAAA"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout
    assert out.split() == ["10::3"]
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(coredns_server.port), transport,
         "-x", "10.0.0.1"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout
    assert "status: NOERROR" in out and "svc1.testns.svc.cluster.local." in out
    assert "flags: qr aa rd" in out


def test_default_zones_serve_kubernetes_default() -> None:
    server = start_server("--zones", str(ZONES))
    try:
        msg = udp(server, "kubernetes.default.svc.cluster.local.")
        assert addresses(msg) == {"10.96.0.1"}
        srv = udp(server, "_dns._udp.kube-dns.kube-system.svc.cluster.local.", "SRV")
        assert [rr.port for rr in srv.answer[0]] == [53]
    finally:
        assert stop_server(server) == 0


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_two_workers_share_the_port() -> None:
    server = start_server("--zones", str(ZONES), "--workers", "2")
    try:
        server.wait_for_log("worker 2 of 2)")
        workers = _children(server.process.pid)
        assert len(workers) == 2
        before = {pid: _cpu_ticks(pid) for pid in workers}
        # many client ports: SO_REUSEPORT hashes each to one worker. CPU time is counted in
        # 10 ms ticks, so ask until both have spent one (bounded: 20,000 queries, 30 s).
        deadline = time.monotonic() + 30
        busy: list[int] = []
        for i in range(20_000):
            msg = udp(server, f"n{i}.shop.svc.cluster.local.")
            assert msg.rcode() == dns.rcode.NXDOMAIN
            if i % 100 == 99:
                busy = [pid for pid in workers if _cpu_ticks(pid) > before[pid]]
                if len(busy) == 2 or time.monotonic() > deadline:
                    break
        assert addresses(udp(server, "kubernetes.default.svc.cluster.local.")) == {"10.96.0.1"}
        assert len(busy) == 2, "both workers answered"
    finally:
        assert stop_server(server) == 0
        assert not _children(server.process.pid)
