"""autopath (docs/behaviour.md 16): a pod's search list walked on the server, found by source IP."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from clusterdns.core.resolver import PodMode, ZoneConfig
from clusterdns.core.store import Store
from clusterdns.plugins.autopath import AutoPath
from clusterdns.plugins.chain import Handler
from clusterdns.plugins.forward import ForwardConfig, Forwarder
from tests.handlers import make_handler

from .conftest import ROOT, ZONES, free_port, load_store, start_clusterdns, stop_server
from .upstream import Upstream

POD_IP = "10.244.1.10"  # shop/web-5d9c7b-aaaaa in zones/
CONFIG = ZoneConfig(ttl=30, pods=PodMode.VERIFIED)


@pytest.fixture(scope="module")
def store() -> Store:
    return load_store(ZONES)


def ask(handler: Handler, name: str, qtype: str = "A", client: str = POD_IP) -> dns.message.Message:
    query = dns.message.make_query(name, qtype)
    reply = handler.handle(query.to_wire(), False, "1", client)
    if reply is not None and not isinstance(reply, bytes):
        reply = asyncio.run(_await(reply))
    assert isinstance(reply, bytes)
    msg = dns.message.from_wire(reply)
    assert msg.question[0].name.to_text() == name  # the question asked, not the one found
    return msg


async def _await(reply: object) -> bytes | None:
    return await reply  # type: ignore[misc,no-any-return]


def chain(msg: dns.message.Message) -> list[str]:
    return [f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rr}"
            for rrset in msg.answer for rr in rrset]


def test_first_search_domain_miss_is_answered_with_a_cname(store: Store) -> None:
    handler = make_handler(store, CONFIG, autopath=AutoPath())
    msg = ask(handler, "kubernetes.default.shop.svc.cluster.local.")
    assert msg.rcode() == dns.rcode.NOERROR
    assert chain(msg) == [
        "kubernetes.default.shop.svc.cluster.local. CNAME kubernetes.default.svc.cluster.local.",
        "kubernetes.default.svc.cluster.local. A 10.96.0.1",
    ]
    assert handler.autopath_search is not None and handler.autopath_search.success == 1
    # svc.ns from the pod's namespace: found at the second element
    msg = ask(handler, "kube-dns.kube-system.shop.svc.cluster.local.")
    assert chain(msg)[0].endswith("CNAME kube-dns.kube-system.svc.cluster.local.")
    # NODATA counts as found: the CNAME tells the client where the name is
    msg = ask(handler, "kubernetes.default.shop.svc.cluster.local.", "AAAA")
    assert msg.rcode() == dns.rcode.NOERROR and chain(msg) == [
        "kubernetes.default.shop.svc.cluster.local. CNAME kubernetes.default.svc.cluster.local."]


def test_not_for_unknown_clients_other_domains_or_existing_names(store: Store) -> None:
    handler = make_handler(store, CONFIG, autopath=AutoPath())
    name = "kubernetes.default.shop.svc.cluster.local."
    assert ask(handler, name, client="192.0.2.1").rcode() == dns.rcode.NXDOMAIN  # not a pod
    assert ask(handler, name, client="").rcode() == dns.rcode.NXDOMAIN
    # a pod in shop asking inside another namespace's domain: not its first search domain
    assert ask(handler, "kubernetes.default.default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    # an existing name is answered as it is, without a CNAME
    assert chain(ask(handler, "web.shop.svc.cluster.local.")) == [
        "web.shop.svc.cluster.local. A 10.96.100.10"]
    # and the autopath answer was not cached for others: the unknown client still gets NXDOMAIN
    assert ask(handler, name).rcode() == dns.rcode.NOERROR
    assert ask(handler, name, client="192.0.2.1").rcode() == dns.rcode.NXDOMAIN
    assert ask(handler, name).rcode() == dns.rcode.NOERROR


def test_every_candidate_missing_returns_the_first_reply(store: Store) -> None:
    handler = make_handler(store, CONFIG, autopath=AutoPath())
    msg = ask(handler, "nosuch.shop.svc.cluster.local.")
    assert msg.rcode() == dns.rcode.NXDOMAIN and msg.answer == []
    assert msg.authority[0].name.to_text() == "cluster.local."


def test_out_of_zone_candidates_go_upstream(store: Store) -> None:
    with Upstream() as up:
        forwarder = Forwarder(ForwardConfig(".", (up.address,)))
        handler = make_handler(store, CONFIG, zones=(".",), forwarders=[forwarder],
                          autopath=AutoPath(["corp.example"]))
        msg = ask(handler, "www.example.com.shop.svc.cluster.local.")
        assert msg.rcode() == dns.rcode.NOERROR
        assert chain(msg) == ["www.example.com.shop.svc.cluster.local. CNAME www.example.com.",
                              "www.example.com. A 93.184.216.34"]
        asked = [q[1] for q in up.queries]
        assert asked == ["www.example.com.corp.example.", "www.example.com."]
        # nothing anywhere: the original NXDOMAIN
        msg = ask(handler, "nosuch.example.com.shop.svc.cluster.local.")
        assert msg.rcode() == dns.rcode.NXDOMAIN


def test_autopath_needs_pods_verified(tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:0 {\n  kubernetes cluster.local {\n    pods insecure\n  }\n"
                        "  autopath @kubernetes\n}\n")
    out = subprocess.run([sys.executable, "-m", "clusterdns", "-conf", str(corefile), "--zones",
                          str(ZONES)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1 and "autopath @kubernetes needs" in out.stderr


def test_glibc_query_counts_with_and_without_autopath(tmp_path: Path) -> None:
    """The README's table: queries a glibc pod (in `default`, at 127.0.0.1) sends."""
    zones = tmp_path / "zones"
    zones.mkdir()
    for f in ZONES.iterdir():
        (zones / f.name).write_text(f.read_text())
    (zones / "client.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: default}\n"
        "status: {phase: Running, podIP: 127.0.0.1, podIPs: [{ip: 127.0.0.1}]}\n")
    counts: dict[tuple[str, bool], int] = {}
    with Upstream() as up:
        for autopath in (False, True):
            port = free_port()
            corefile = tmp_path / f"Corefile{int(autopath)}"
            corefile.write_text(
                f".:{port} {{\n  bind 127.0.0.1\n  kubernetes cluster.local {{\n"
                "    pods verified\n  }\n" + ("  autopath @kubernetes\n" if autopath else "")
                + f"  forward . {up.address}\n}}\n")
            server = start_clusterdns("-conf", str(corefile), "--zones", str(zones))
            try:
                for name in ("kubernetes.default", "web.shop", "www.example.com"):
                    out = subprocess.run(
                        [sys.executable, "-m", "clusterdns", "resolve", name, "--namespace",
                         "default", "--server", f"127.0.0.1:{port}"],
                        capture_output=True, text=True, cwd=ROOT, timeout=60,
                    )
                    assert out.returncode == 0, out.stdout
                    counts[(name, autopath)] = sum(
                        1 for line in out.stdout.splitlines() if line[:4].strip() in ("A", "AAAA"))
            finally:
                stop_server(server)
    assert counts == {
        ("kubernetes.default", False): 4, ("kubernetes.default", True): 2,
        ("web.shop", False): 4, ("web.shop", True): 2,
        ("www.example.com", False): 8, ("www.example.com", True): 2,
    }
