"""Search-path semantics: the kubelet's resolv.conf, and the queries glibc and musl send
(docs/behaviour.md 15). The walk is pure: its answers come from the real resolver on zones/, or from
a table where a test needs an rcode the cluster data cannot produce (SERVFAIL, REFUSED)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clusterdns.core.resolver import ZoneConfig
from clusterdns.core.rr import Rcode
from clusterdns.core.search import (
    DNSPolicy,
    Libc,
    Reply,
    ResolvConf,
    candidates,
    parse_resolv_conf,
    pod_resolv_conf,
    walk,
)
from clusterdns.tools.explain import local_query

from .conftest import ROOT, ZONES, start_server, stop_server

DEFAULT = pod_resolv_conf("default")
SHOP = pod_resolv_conf("shop")
ZONES_QUERY = local_query([ZONES], ZoneConfig())


def sent(result_steps: list, qtypes: bool = False) -> list[str]:  # type: ignore[type-arg]
    return [f"{s.qtype} {s.name}" if qtypes else s.name for s in result_steps]


# ---- resolv.conf ----------------------------------------------------------------------------


def test_cluster_first_resolv_conf() -> None:
    host = parse_resolv_conf("nameserver 172.18.0.1\nsearch corp.example lan\noptions edns0\n")
    conf = pod_resolv_conf("shop", host=host, nameservers=("10.96.0.10",))
    assert conf.text() == (
        "nameserver 10.96.0.10\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lan\n"
        "options ndots:5\n"
    )
    assert conf.ndots == 5


def test_dns_config_options_merge_and_searches_deduplicate() -> None:
    conf = pod_resolv_conf("shop", searches=["svc.cluster.local", "extra.example"],
                           options=["ndots:2", "edns0"])
    assert conf.search == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local",
                           "extra.example"]
    assert conf.options == ["ndots:2", "edns0"] and conf.ndots == 2


def test_policies() -> None:
    host = parse_resolv_conf("nameserver 172.18.0.1\nsearch lan\n")
    default = pod_resolv_conf("shop", policy=DNSPolicy.DEFAULT, host=host)
    assert (default.nameservers, default.search, default.options) == (["172.18.0.1"], ["lan"], [])
    none = pod_resolv_conf("shop", policy=DNSPolicy.NONE, searches=["a.example"], options=["ndots:1"])
    assert (none.nameservers, none.search, none.options) == ([], ["a.example"], ["ndots:1"])
    # hostNetwork pods need ClusterFirstWithHostNet to get the cluster's resolv.conf
    host_net = pod_resolv_conf("shop", host=host, host_network=True)
    assert host_net.nameservers == ["172.18.0.1"]
    with_host_net = pod_resolv_conf("shop", policy=DNSPolicy.CLUSTER_FIRST_WITH_HOST_NET, host=host)
    assert with_host_net.nameservers == ["10.96.0.10"]


def test_search_limits_drop_what_does_not_fit() -> None:
    many = [f"d{i}.example" for i in range(40)]
    conf = pod_resolv_conf("shop", searches=many)
    assert len(conf.search) == 32 and conf.search[3] == "d0.example"
    assert conf.dropped == [f"d{i}.example" for i in range(29, 40)]
    long = ["x" * 250 + f".{i}.example" for i in range(10)]
    conf = pod_resolv_conf("shop", searches=long)
    assert len(" ".join(conf.search)) <= 2048 and conf.dropped


def test_resolvconf_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "clusterdns", "resolvconf", "--namespace", "web-team",
         "--nameserver", "10.96.0.10", "--search", "corp.example", "--ndots", "2",
         "--host-resolv-conf", "/dev/null"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=True,
    ).stdout
    assert out == ("nameserver 10.96.0.10\n"
                   "search web-team.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
                   "options ndots:2\n")


# ---- candidates (docs/behaviour.md 15.2) --------------------------------------------------------------


def test_candidates_glibc_and_musl() -> None:
    assert candidates("kubernetes.default", DEFAULT, Libc.GLIBC) == [
        "kubernetes.default.default.svc.cluster.local.", "kubernetes.default.svc.cluster.local.",
        "kubernetes.default.cluster.local.", "kubernetes.default."]
    # 5 dots or more: glibc tries the name first, then the list; musl the name alone
    name = "a.b.c.d.e.f"
    assert candidates(name, DEFAULT, Libc.GLIBC)[0] == "a.b.c.d.e.f."
    assert len(candidates(name, DEFAULT, Libc.GLIBC)) == 4
    assert candidates(name, DEFAULT, Libc.MUSL) == ["a.b.c.d.e.f."]
    assert candidates("example.com.", DEFAULT, Libc.GLIBC) == ["example.com."]


def test_glibc_kubernetes_default_as_observed() -> None:
    # docs/behaviour.md 15.2, getent ahostsv4 kubernetes.default
    result = walk("kubernetes.default", DEFAULT, ZONES_QUERY, Libc.GLIBC, ("A",))
    assert sent(result.steps) == ["kubernetes.default.default.svc.cluster.local.",
                                  "kubernetes.default.svc.cluster.local."]
    assert result.addresses == ["10.96.0.1"]


def test_glibc_fully_qualified_without_dot_costs_three_queries_first() -> None:
    # docs/behaviour.md 15.2: 4 dots < ndots 5, so the search list comes first
    result = walk("kubernetes.default.svc.cluster.local", DEFAULT, ZONES_QUERY, Libc.GLIBC, ("A",))
    assert len(result.steps) == 4 and result.steps[-1].name == "kubernetes.default.svc.cluster.local."
    assert [s.reply.rcode for s in result.steps] == [Rcode.NXDOMAIN] * 3 + [Rcode.NOERROR]


def test_glibc_goes_on_after_nodata_and_both_types_per_candidate() -> None:
    # `kubernetes` from default: AAAA is NODATA, A answers: the same candidate resolves
    result = walk("kubernetes", DEFAULT, ZONES_QUERY, Libc.GLIBC, ("A", "AAAA"))
    assert sent(result.steps, qtypes=True) == ["A kubernetes.default.svc.cluster.local.",
                                               "AAAA kubernetes.default.svc.cluster.local."]
    # asked for AAAA only, NODATA sends glibc on down the list (then to the name as is)
    result = walk("kubernetes", DEFAULT, ZONES_QUERY, Libc.GLIBC, ("AAAA",))
    assert len(result.steps) == 4 and not result.resolved
    assert "NO_DATA" in result.reason


def test_musl_stops_at_nodata() -> None:
    result = walk("kubernetes", DEFAULT, ZONES_QUERY, Libc.MUSL, ("AAAA",))
    assert len(result.steps) == 1 and "NODATA: musl stops" in result.reason


def test_not_found_walks_everything() -> None:
    result = walk("nosuch", SHOP, ZONES_QUERY, Libc.GLIBC, ("A", "AAAA"))
    assert len(result.steps) == 8 and not result.resolved and not result.error


def table(answers: dict[str, int | tuple[int, list[str]]]) -> object:
    """A query function from a table: name -> rcode, or (rcode, addresses); NXDOMAIN else."""

    def query(name: str, qtype: str) -> Reply:
        entry = answers.get(name, Rcode.NXDOMAIN)
        rcode, addresses = entry if isinstance(entry, tuple) else (entry, [])
        return Reply(rcode, list(addresses), list(addresses))

    return query


FIRST = "kubernetes.default.default.svc.cluster.local."
HIT = "kubernetes.default.svc.cluster.local."


@pytest.mark.parametrize(
    ("rcode", "glibc_steps", "glibc_resolves"),
    [
        # docs/behaviour.md 15.3: the first candidate forced to each rcode
        (Rcode.NXDOMAIN, [FIRST, HIT], True),
        (Rcode.NOERROR, [FIRST, HIT], True),  # NODATA: next candidate
        (Rcode.SERVFAIL, [FIRST, FIRST, HIT], True),  # retried (attempts 2), then next
        (Rcode.REFUSED, [FIRST, FIRST, "kubernetes.default."], False),  # abandons the list
    ],
)
def test_rcode_steers_the_glibc_walk(rcode: int, glibc_steps: list[str], glibc_resolves: bool) -> None:
    query = table({FIRST: rcode, HIT: (Rcode.NOERROR, ["10.96.0.1"])})
    result = walk("kubernetes.default", DEFAULT, query, Libc.GLIBC, ("A",))  # type: ignore[arg-type]
    assert sent(result.steps) == glibc_steps
    assert result.resolved is glibc_resolves


@pytest.mark.parametrize(
    ("rcode", "reason"),
    [(Rcode.NOERROR, "NODATA"), (Rcode.SERVFAIL, "SERVFAIL"), (Rcode.REFUSED, "rcode 5")],
)
def test_musl_continues_only_on_nxdomain(rcode: int, reason: str) -> None:
    query = table({FIRST: rcode, HIT: (Rcode.NOERROR, ["10.96.0.1"])})
    result = walk("kubernetes.default", DEFAULT, query, Libc.MUSL, ("A", "AAAA"))  # type: ignore[arg-type]
    assert not result.resolved and reason in result.reason
    assert {s.name for s in result.steps} == {FIRST}


def test_musl_nxdomain_on_either_type_means_missing() -> None:
    # an existing name must never answer NXDOMAIN for the family it lacks (docs/behaviour.md 15.3)
    def query(name: str, qtype: str) -> Reply:
        if name == FIRST:
            return Reply(Rcode.NOERROR, ["10.0.0.9"], ["10.0.0.9"]) if qtype == "A" else Reply(Rcode.NXDOMAIN)
        if name == HIT:
            return Reply(Rcode.NOERROR, ["10.96.0.1"], ["10.96.0.1"]) if qtype == "A" else Reply(Rcode.NOERROR)
        return Reply(Rcode.NXDOMAIN)

    result = walk("kubernetes.default", DEFAULT, query, Libc.MUSL, ("A", "AAAA"))
    assert result.name == HIT and result.addresses == ["10.96.0.1"]


def test_resolve_command_against_a_running_server() -> None:
    server = start_server("--zones", str(ZONES))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "clusterdns", "resolve", "db-0.db", "--namespace", "shop",
             "--server", f"127.0.0.1:{server.port}", "--type", "A"],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split()[:3] == ["A", "db-0.db.shop.svc.cluster.local.", "NOERROR"]
        assert "resolved: db-0.db.shop.svc.cluster.local. -> 10.244.1.20 after 1 query" in lines
        missing = subprocess.run(
            [sys.executable, "-m", "clusterdns", "resolve", "nosuch", "--namespace", "shop",
             "--server", f"127.0.0.1:{server.port}"],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )
        # the name as is is outside the zone: a serve without forwarder REFUSES it
        assert missing.returncode in (1, 2) and "nosuch." in missing.stdout
    finally:
        stop_server(server)


def test_resolve_command_in_process_exit_codes(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(ResolvConf(["10.96.0.10"], ["shop.svc.cluster.local"], ["ndots:5"]).text())
    ok = subprocess.run(
        [sys.executable, "-m", "clusterdns", "resolve", "web", "--resolv-conf", str(conf)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert ok.returncode == 0 and "-> 10.96.100.10" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "clusterdns", "resolve", "nosuch", "--resolv-conf", str(conf)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert bad.returncode == 2 and "HOST_NOT_FOUND" in bad.stdout
