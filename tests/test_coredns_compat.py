"""clusterdns as CoreDNS in kind: the kubeadm Corefile, unchanged but for ports, run with
`clusterdns -conf`, against a real upstream DNS server (tests/upstream.py) on loopback.

Covers issue 4's cases: cluster names, forwarding, PTR fallthrough, ExternalName chasing,
upstream timeout, max_concurrent, the forward cache, metrics, /health and /ready, SIGTERM
lameduck, loop detection and reload. Every wait polls with a deadline.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from .conftest import ZONES, RunningServer, free_port, start_clusterdns, stop_server
from .kubeapi import KubeAPIServer
from .test_config import KUBEADM
from .upstream import Upstream


@dataclass
class Ports:
    dns: int
    health: int
    ready: int
    metrics: int


def kubeadm_corefile(ports: Ports, upstream: str, changes: dict[str, str] | None = None) -> str:
    """The kubeadm Corefile with its ports (and only them) mapped to free ones, and
    ``forward`` pointed at ``upstream`` (an address or a resolv.conf path)."""
    text = (
        KUBEADM.replace(".:53 {", f".:{ports.dns} {{")
        .replace("    health {", f"    health 127.0.0.1:{ports.health} {{")
        .replace("    ready\n", f"    ready 127.0.0.1:{ports.ready}\n")
        .replace("prometheus :9153", f"prometheus 127.0.0.1:{ports.metrics}")
        .replace("forward . /etc/resolv.conf", f"forward . {upstream}")
    )
    for old, new in (changes or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    up.start()
    yield up
    up.stop()


@dataclass
class Running:
    server: RunningServer
    ports: Ports
    corefile: Path

    def ask(self, name: str, qtype: str = "A", tcp: bool = False, timeout: float = 8.0) -> dns.message.Message:
        query = dns.message.make_query(name, qtype)
        send = dns.query.tcp if tcp else dns.query.udp
        return send(query, "127.0.0.1", port=self.ports.dns, timeout=timeout)

    def http(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics by its full name with labels."""
        _, text = self.http(self.ports.metrics, "/metrics")
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def sample(metrics: dict[str, float], metric: str, /, **labels: str) -> float:
    """The sum of the samples of ``metric`` whose labels include ``labels``."""
    total = 0.0
    for key, value in metrics.items():
        if key.split("{")[0] != metric:
            continue
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            total += value
    return total


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[object]:
    started: list[RunningServer] = []

    def run(text: str, *args: str, ports: Ports) -> Running:
        corefile = tmp_path / "Corefile"
        corefile.write_text(text)
        server = start_clusterdns("-conf", str(corefile), "--zones", str(ZONES), *args)
        started.append(server)
        return Running(server, ports, corefile)

    yield run
    for server in started:
        if server.process.poll() is None:
            stop_server(server)


def ports() -> Ports:
    return Ports(free_port(), free_port(), free_port(), free_port())


def names(msg: dns.message.Message) -> list[str]:
    return sorted(rr.to_text() for rrset in msg.answer for rr in rrset)


def test_kubeadm_corefile_answers_forwards_and_falls_through(launch, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    p = ports()
    dns_ = launch(kubeadm_corefile(p, upstream.address), ports=p)
    msg = dns_.ask("kubernetes.default.svc.cluster.local.")
    assert names(msg) == ["10.96.0.1"] and msg.answer[0].ttl == 30
    msg = dns_.ask("www.example.com.")
    assert names(msg) == ["93.184.216.34"]
    assert dns_.ask("nosuch.example.com.").rcode() == dns.rcode.NXDOMAIN
    # a reverse name the cluster knows is answered here; an unknown one goes upstream
    assert names(dns_.ask("1.0.96.10.in-addr.arpa.", "PTR")) == ["kubernetes.default.svc.cluster.local."]
    dns_.ask("9.9.9.10.in-addr.arpa.", "PTR")
    forwarded = [q[1] for q in upstream.queries]
    assert "9.9.9.10.in-addr.arpa." in forwarded and "1.0.96.10.in-addr.arpa." not in forwarded
    # a cluster name that does not exist is NXDOMAIN here: no fallthrough for cluster.local
    assert dns_.ask("nosuch.default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    assert "nosuch.default.svc.cluster.local." not in [q[1] for q in upstream.queries]
    # ExternalName to an outside name: CNAME first, then the upstream's address
    msg = dns_.ask("payments.shop.svc.cluster.local.")
    assert [r.rdtype for r in msg.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert names(msg) == ["203.0.113.10", "api.payments.example.com."]
    # over TCP too, and a big upstream answer truncated over UDP comes whole over TCP
    assert names(dns_.ask("www.example.com.", tcp=True)) == ["93.184.216.34"]
    assert dns_.ask("big.example.com.").flags & dns.flags.TC
    assert len(names(dns_.ask("big.example.com.", tcp=True))) == 60


def test_forward_through_a_resolv_conf(launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # resolv.conf has no ports: the upstream must listen on 53 (here on 127.0.0.2).
    up = Upstream()
    up.host = "127.0.0.2"
    try:
        up.start(port=53)
    except OSError as exc:
        pytest.skip(f"cannot bind 127.0.0.2:53 here: {exc}")
    try:
        resolv = tmp_path / "resolv.conf"
        resolv.write_text("search example.com\nnameserver 127.0.0.2\noptions ndots:5\n")
        p = ports()
        dns_ = launch(kubeadm_corefile(p, str(resolv)), ports=p)
        assert names(dns_.ask("www.example.com.")) == ["93.184.216.34"]
    finally:
        up.stop()


def test_upstream_timeout_is_servfail_within_the_deadline(launch, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    p = ports()
    dns_ = launch(kubeadm_corefile(p, upstream.address), ports=p)
    upstream.set_mode("timeout")
    began = time.monotonic()
    msg = dns_.ask("www.example.com.")
    assert msg.rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - began < 6.0
    assert dns_.ask("kubernetes.default.svc.cluster.local.").rcode() == dns.rcode.NOERROR


def test_garbage_and_wrong_ids_are_not_taken_as_answers(launch, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    p = ports()
    dns_ = launch(kubeadm_corefile(p, upstream.address), ports=p)
    for mode in ("garbage", "wrong_id", "wrong_question"):
        upstream.set_mode(mode)
        try:
            msg = dns_.ask(f"{mode.replace('_', '-')}.example.com.")
        except dns.exception.Timeout:
            raise AssertionError("".join(dns_.server.log_lines)) from None
        assert msg.rcode() == dns.rcode.SERVFAIL
    upstream.set_mode("normal")
    assert names(dns_.ask("www.example.com.")) == ["93.184.216.34"]


def test_max_concurrent_refuses_the_excess(launch, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    p = ports()
    dns_ = launch(kubeadm_corefile(p, upstream.address, {"max_concurrent 1000": "max_concurrent 2"}), ports=p)
    upstream.set_mode("delay", seconds=1.0)
    rcodes: list[int] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            rcodes.append(dns_.ask(f"n{i}.example.com.").rcode())
        except BaseException as exc:  # a thread's exception would not fail the test
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not errors, errors
    assert len(rcodes) == 6, rcodes
    # at most 2 in flight for the 1 s each takes upstream: most of 6 at once are refused
    assert rcodes.count(dns.rcode.REFUSED) >= 2, rcodes
    assert rcodes.count(dns.rcode.NXDOMAIN) >= 1  # the ones let through were answered
    # (the loop plugin's start-up probe is forwarded too and may be among the refused)
    assert sample(dns_.metrics(), "coredns_forward_max_concurrent_rejects_total") >= rcodes.count(
        dns.rcode.REFUSED)


def test_cache_hit_then_expiry(launch, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    p = ports()
    text = kubeadm_corefile(p, upstream.address, {"cache 30 {": "cache 2 {"})
    dns_ = launch(text, ports=p)
    first = dns_.ask("short.example.com.")
    assert names(first) == ["1.2.3.4"]
    seen = len([q for q in upstream.queries if q[1] == "short.example.com."])
    second = dns_.ask("short.example.com.")
    assert names(second) == ["1.2.3.4"] and second.flags & dns.flags.AA
    assert len([q for q in upstream.queries if q[1] == "short.example.com."]) == seen  # a hit
    m = dns_.metrics()
    assert sample(m, "coredns_cache_hits_total", type="success") == 1
    assert sample(m, "coredns_cache_entries", type="success") >= 1
    # the upstream's TTL (5) is capped at the cache's 2 s: it expires and is asked again
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dns_.ask("short.example.com.")
        if len([q for q in upstream.queries if q[1] == "short.example.com."]) > seen:
            break
        time.sleep(0.1)
    assert len([q for q in upstream.queries if q[1] == "short.example.com."]) > seen
    # cluster answers never come from that cache (disable success/denial cluster.local)
    assert sample(dns_.metrics(), "coredns_cache_entries", type="denial") == 0


def test_metrics_count_known_queries(launch, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    p = ports()
    dns_ = launch(kubeadm_corefile(p, upstream.address), ports=p)
    server = f"dns://:{p.dns}"
    # the loop plugin's HINFO probe (type "other") is counted too: let it come and go first
    deadline = time.monotonic() + 10
    while sample(dns_.metrics(), "coredns_dns_requests_total", type="other") < 1:
        assert time.monotonic() < deadline, "the loop probe never arrived"
        time.sleep(0.05)
    before = dns_.metrics()
    for _ in range(3):
        dns_.ask("kubernetes.default.svc.cluster.local.")
    dns_.ask("kubernetes.default.svc.cluster.local.", "AAAA")
    dns_.ask("nosuch.default.svc.cluster.local.")
    dns_.ask("www.example.com.", "TXT", tcp=True)
    m = dns_.metrics()

    def delta(metric: str, /, **labels: str) -> float:
        return sample(m, metric, **labels) - sample(before, metric, **labels)

    assert delta("coredns_dns_requests_total", server=server, zone=".", proto="udp", family="1", type="A") == 4
    assert delta("coredns_dns_requests_total", proto="udp", type="AAAA") == 1
    assert delta("coredns_dns_requests_total", proto="tcp", type="TXT") == 1
    assert delta("coredns_dns_responses_total", rcode="NOERROR", plugin="kubernetes") == 4
    assert delta("coredns_dns_responses_total", rcode="NXDOMAIN", plugin="kubernetes") == 1
    assert delta("coredns_dns_responses_total", rcode="NOERROR", plugin="forward") == 1
    assert delta("coredns_dns_request_duration_seconds_count", server=server, zone=".") == 6
    assert delta("coredns_dns_request_duration_seconds_bucket", le="+Inf") == 6
    assert delta("coredns_dns_request_size_bytes_count", proto="udp") == 5
    assert delta("coredns_dns_response_size_bytes_count", proto="tcp") == 1
    assert sample(m, "coredns_proxy_request_duration_seconds_count", proxy_name="forward",
                  to=upstream.address, rcode="NOERROR") >= 1
    # the pre-1.11 names the coredns-mixin alerts still query
    assert sample(m, "coredns_forward_responses_total", to=upstream.address, rcode="NOERROR") >= 1
    assert sample(m, "coredns_forward_request_duration_seconds_count", to=upstream.address) >= 1
    assert sample(m, "coredns_plugin_enabled", name="kubernetes") == 1
    assert sample(m, "coredns_panics_total") == 0
    assert sample(m, "coredns_build_info") == 1
    assert sample(m, "coredns_reload_failed_total") == 0
    assert sample(m, "process_resident_memory_bytes") > 0
    assert 'le="0.00025"' in "".join(m)  # CoreDNS's time buckets
    assert 'le="511.0"' in "".join(m)  # CoreDNS's size buckets


def test_health_ready_and_lameduck(launch, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    p = ports()
    dns_ = launch(kubeadm_corefile(p, upstream.address, {"lameduck 5s": "lameduck 2s"}), ports=p)
    assert dns_.http(p.health, "/health") == (200, "OK")
    assert dns_.http(p.ready, "/ready") == (200, "OK")
    assert dns_.http(p.health, "/nope")[0] == 404
    began = time.monotonic()
    dns_.server.process.send_signal(signal.SIGTERM)
    dns_.server.wait_for_log("lameduck")
    # during lameduck: DNS still answers, /health is 200, /ready is 503
    assert names(dns_.ask("kubernetes.default.svc.cluster.local.")) == ["10.96.0.1"]
    status, body = dns_.http(p.ready, "/ready")
    assert status == 503 and "lameduck" in body
    assert dns_.http(p.health, "/health") == (200, "OK")
    assert dns_.server.process.wait(15) == 0
    assert time.monotonic() - began >= 2.0


def test_ready_waits_for_the_api(launch, upstream: Upstream, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    api = KubeAPIServer()
    api.start()
    api.load([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}])
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    api.stop()
    try:
        p = ports()
        text = kubeadm_corefile(p, upstream.address, {
            "ttl 30": f"ttl 30\n       kubeconfig {kubeconfig}\n       startup_timeout 200ms"})
        dns_ = launch(text, ports=p)
        status, body = dns_.http(p.ready, "/ready")
        assert status == 503 and "kubernetes" in body
        assert dns_.http(p.health, "/health") == (200, "OK")
        api.start()
        deadline = time.monotonic() + 30
        while dns_.http(p.ready, "/ready")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dns_.http(p.ready, "/ready") == (200, "OK")
    finally:
        api.stop()


def test_loop_is_detected_and_exits(launch, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    p = ports()
    # The upstream sends the probe straight back to us: a forwarding loop.
    upstream.set_mode("loop", target=("127.0.0.1", p.dns))
    dns_ = launch(kubeadm_corefile(p, upstream.address), ports=p)
    assert dns_.server.process.wait(30) == 1
    line = dns_.server.wait_for_log("Loop (")
    assert "detected for zone" in line and "HINFO" in line


def test_reload_without_losing_a_query(launch, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    p = ports()
    text = kubeadm_corefile(p, upstream.address, {"    reload\n": "    reload 2s 1s\n"})
    dns_ = launch(text, ports=p)
    results: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        try:
            while not stop.is_set():
                msg = dns_.ask("kubernetes.default.svc.cluster.local.", timeout=2)
                results.append(msg.answer[0].ttl if msg.answer else -1)
        except BaseException as exc:  # a lost query: the thread's exception is the test's
            errors.append(exc)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        # an invalid Corefile is refused and counted; the running one stays
        dns_.corefile.write_text(text.replace("pods insecure", "pods sometimes"))
        dns_.server.wait_for_log("reload failed", deadline=15)
        assert sample(dns_.metrics(), "coredns_reload_failed_total") == 1
        dns_.corefile.write_text(text.replace("ttl 30", "ttl 10"))
        deadline = time.monotonic() + 15
        while (not results or results[-1] != 10) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(10)
    assert not errors, errors  # every query was answered: a lost one raised in the thread
    assert results and results[-1] == 10
    assert -1 not in results
    assert set(results) <= {30, 10}


def test_deploy_corefile_runs(launch, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    """The Corefile.example at the top level is a Corefile clusterdns runs."""
    root = Path(__file__).resolve().parent.parent
    text = (root / "Corefile.example").read_text()
    p = ports()
    text = re.sub(r"^\.:53 \{", f".:{p.dns} {{", text, flags=re.M)
    text = re.sub(r"^(\s*)health(\s*\{)", rf"\1health 127.0.0.1:{p.health}\2", text, flags=re.M)
    text = re.sub(r"^(\s*)ready\s*$", rf"\1ready 127.0.0.1:{p.ready}", text, flags=re.M)
    text = text.replace("prometheus :9153", f"prometheus 127.0.0.1:{p.metrics}")
    text = text.replace("forward . /etc/resolv.conf", f"forward . {upstream.address}")
    dns_ = launch(text, ports=p)
    assert names(dns_.ask("kube-dns.kube-system.svc.cluster.local.")) == ["10.96.0.10"]
    assert names(dns_.ask("www.example.com.")) == ["93.184.216.34"]
