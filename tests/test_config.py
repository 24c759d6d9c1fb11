"""Corefile parsing: good files give typed configuration; bad ones name file:line."""

from __future__ import annotations

import pytest

from clusterdns.core.errors import ConfigError
from clusterdns.corefile.config import load
from clusterdns.corefile.reader import parse_duration

KUBEADM = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""


def test_kubeadm_corefile() -> None:
    (server,) = load(KUBEADM)
    assert server.zones == (".",) and server.port == 53
    assert server.errors and server.plugins.get("loop") and server.plugins.get("loadbalance")
    assert (server.health, server.lameduck, server.ready) == (":8080", 5.0, ":8181")
    assert server.prometheus == ":9153"
    assert server.reload == (30.0, 15.0)
    k = server.plugins.get("kubernetes")
    assert k is not None
    assert k.zones == ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    assert (k.pods, k.ttl, k.fallthrough) == ("insecure", 30, ("in-addr.arpa.", "ip6.arpa."))
    (f,) = server.plugins.get("forward")
    assert (f.zone, f.to, f.max_concurrent, f.max_fails, f.policy) == (
        ".", ("/etc/resolv.conf",), 1000, 2, "random")
    c = server.plugins.get("cache")
    assert c is not None
    assert (c.success_ttl, c.denial_ttl, c.success_capacity) == (30, 30, 9984)
    assert c.disable_success == c.disable_denial == ("cluster.local.",)
    assert server.warnings == []


def test_kubeadm_corefile_plain_cache_form() -> None:
    (server,) = load(KUBEADM.replace(
        "cache 30 {\n       disable success cluster.local\n       disable denial cluster.local\n    }",
        "cache 30"))
    assert server.plugins.get("cache") is not None and server.plugins.get("cache").disable_success == ()


def test_several_blocks_ports_and_options() -> None:
    servers = load("""
# stub domain, as kube-dns stubDomains become
example.org:5353 dns://corp.example:5353 {
    forward . 10.0.0.1:53 [fd00::1]:5353 dns://10.0.0.2 {
        policy sequential
        force_tcp
        max_fails 3
        expire 30s
        health_check 1m30s no_rec domain example.org
        except internal.example.org
    }
}
cluster.local:5353 {
    kubernetes {
        pods verified
        endpoint_pod_names
        namespaces default kube-system
        startup_timeout 500ms
        kubeconfig /etc/kube.conf staging
        endpoint https://10.0.0.1:6443
        fallthrough
    }
    cache {
        success 1000 60 10
        denial 500
    }
    reload 10s 5s
    debug
}
""")
    a, b = servers
    assert a.zones == ("example.org.", "corp.example.") and a.port == 5353
    f = a.plugins.get("forward")[0]
    assert f.to == ("10.0.0.1:53", "[fd00::1]:5353", "dns://10.0.0.2")
    assert (f.policy, f.force_tcp, f.max_fails, f.expire) == ("sequential", True, 3, 30.0)
    assert (f.health_check, f.health_check_recursion, f.health_check_domain) == (
        90.0, False, "example.org.")
    assert f.except_zones == ("internal.example.org.",)
    k = b.plugins.get("kubernetes")
    assert k is not None and k.zones == ("cluster.local.",)
    assert (k.pods, k.endpoint_pod_names, k.namespaces) == ("verified", True, ("default", "kube-system"))
    assert (k.startup_timeout, k.kubeconfig, k.context, k.endpoint, k.fallthrough) == (
        0.5, "/etc/kube.conf", "staging", "https://10.0.0.1:6443", ())
    assert b.plugins.get("cache") is not None
    assert (b.plugins.get("cache").success_capacity, b.plugins.get("cache").success_ttl, b.plugins.get("cache").success_min_ttl) == (1000, 60, 10)
    assert (b.plugins.get("cache").denial_capacity, b.plugins.get("cache").denial_ttl) == (500, 1800)
    assert b.reload == (10.0, 5.0)
    assert b.warnings == ["Corefile:28: debug: only affects logging here, ignored"]


@pytest.mark.parametrize(("line", "want"), [
    ("reload", (30.0, 15.0)),
    ("reload 2s", (2.0, 1.0)),  # the 15s default jitter lowered to INTERVAL/2
    ("reload 10s", (10.0, 5.0)),
    ("reload 1m", (60.0, 15.0)),
    ("reload 2s 5s", (2.0, 1.0)),  # a given jitter above INTERVAL/2 is lowered too
    ("reload 10s 0", (10.0, 0.0)),  # 0: no jitter
    ("reload 10s 1s", (10.0, 1.0)),
])
def test_reload_accepts_what_coredns_accepts(line: str, want: tuple[float, float]) -> None:
    """CoreDNS plugin/reload setup.go: INTERVAL >= 2s, JITTER 0 or >= 1s, JITTER capped at
    INTERVAL/2 (issue 21: `reload 2s` was refused)."""
    (server,) = load(f".:53 {{\n  {line}\n}}")
    assert server.reload == want


@pytest.mark.parametrize("name", ["frobnicate", "etcd", "federation", "proxy", "file",
                                  "nsid", "minimal", "mdns", "filterlist"])
def test_unknown_directive_stops_the_start_naming_the_line(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(f".:53 {{\n    errors\n    {name} foo bar\n}}\n", "conf/Corefile")
    assert str(info.value) == f"conf/Corefile:3: plugin '{name}' is not supported by clusterdns"


@pytest.mark.parametrize("name", ["debug", "trace", "dnstap", "metadata", "pprof"])
def test_logging_only_directives_are_a_warning(name: str) -> None:
    (server,) = load(f".:53 {{\n    {name}\n}}\n", "conf/Corefile")
    assert server.warnings == [f"conf/Corefile:2: {name}: only affects logging here, ignored"]


def test_environment_variables_and_quotes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNS_TTL", "12")
    (server,) = load('.:53 {\n  kubernetes "cluster.local" {\n    ttl {$DNS_TTL}\n  }\n}\n')
    assert server.plugins.get("kubernetes") is not None and server.plugins.get("kubernetes").ttl == 12


def test_several_ports_in_one_blocks_keys() -> None:
    """kubespray's coredns_external_zones: each key on its own port (CoreDNS), the block's
    directives read once for all its keys (a plugin's zones default to all of them)."""
    servers = load("example.com example.net example.io:1053 {\n  errors\n  whoami\n}\n")
    assert [(s.zones, s.port) for s in servers] == [
        (("example.com.", "example.net."), 53), (("example.io.",), 1053)]
    assert all(s.errors and "whoami" in s.plugins for s in servers)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (".:53 {\n  kubernetes cluster.local {\n    pods yes\n  }\n}",
         "Corefile:3: kubernetes: pods: want disabled|insecure|verified, got 'yes'"),
        (".:53 {\n  kubernetes {\n    ttl 3601\n  }\n}",
         "Corefile:3: kubernetes: want a number from 0 to 3600, got '3601'"),
        (".:53 {\n  kubernetes {\n    ttl\n  }\n}",
         "Corefile:3: kubernetes: want ttl SECONDS, got 'nothing'"),
        (".:53 {\n  kubernetes {\n    frobnicate\n  }\n}",
         "Corefile:3: kubernetes: unknown option 'frobnicate'"),
        (".:53 {\n  forward .\n}", "Corefile:2: forward: want FROM TO..., got '.'"),
        (".:53 {\n  forward . https://1.1.1.1\n}",
         "Corefile:2: forward: only dns:// and tls:// upstreams are supported, got 'https://1.1.1.1'"),
        (".:53 {\n  forward . 1.1.1.1 {\n    policy fastest\n  }\n}",
         "Corefile:3: forward: policy: want random|round_robin|sequential, got 'fastest'"),
        (".:53 {\n  forward . 1.1.1.1 {\n    max_concurrent lots\n  }\n}",
         "Corefile:3: forward: want a number from 1 to 1000000000, got 'lots'"),
        (".:53 {\n  forward . 1.1.1.1 {\n    force_tcp\n    prefer_udp\n  }\n}",
         "Corefile:2: forward: force_tcp and prefer_udp exclude each other"),
        (".:53 {\n  health {\n    lameduck five\n  }\n}",
         "Corefile:3: health: want a duration like 5s or 500ms, got 'five'"),
        (".:53 {\n  cache 30 {\n    disable everything\n  }\n}",
         "Corefile:3: cache: disable: want success|denial, got 'everything'"),
        (".:53 {\n  prometheus nowhere:x\n}",
         "Corefile:2: prometheus: want [HOST]:PORT, got 'nowhere:x'"),
        (".:53 {\n  reload 1s\n}",
         "Corefile:2: reload: want INTERVAL >= 2s and JITTER 0 or >= 1s"),
        (".:53 {\n  reload 10s 500ms\n}",
         "Corefile:2: reload: want INTERVAL >= 2s and JITTER 0 or >= 1s"),
        (".:53 {\n  loadbalance weighted\n}",
         "Corefile:2: loadbalance: want round_robin, got 'weighted'"),
        (".:53 {\n  errors\n", "Corefile: missing '}' at the end"),
        (".:53\n  errors\n", "Corefile:1: server block .:53 errors has no '{'"),
        (".:53 {\n  log\n}\n}", "Corefile:4: unexpected '}'"),
        ("(snip) {\n  log\n}", "Corefile: no server block"),
        (".:53 {\n  import nothing-here.conf\n}",
         "Corefile:2: import: no such file or snippet 'nothing-here.conf'"),
        (".:53 {\n}\n.:53 {\n}", "Corefile:3: cannot serve dns://.:53: it is already defined at Corefile:1"),
        ("cluster.local:53 {\n}\nCLUSTER.local.:53 {\n}",
         "Corefile:3: cannot serve dns://cluster.local.:53: it is already defined at Corefile:1"),
        (".:53 {\n  kubernetes cluster.local {\n    noendpoints\n  }\n}",
         "Corefile:3: kubernetes: option 'noendpoints' is not supported by clusterdns"),
        (".:53 {\n  cache {\n    servfail 10 5s\n  }\n}",
         "Corefile:3: cache: option 'servfail' is not supported by clusterdns"),
        (".:53 {\n  kubernetes cluster.local 10.300.0.0/16\n}",
         "Corefile:2: kubernetes: '10.300.0.0/16' does not appear to be an IPv4 or IPv6 network"),
        ("example.org:53 example.io:1053 {\n}\nexample.io:1053 {\n}",
         "Corefile:3: cannot serve dns://example.io.:1053: it is already defined at Corefile:1"),
        (".:dns {\n}", "Corefile:1: .:dns: bad port 'dns'"),
        ('.:53 {\n  forward . "1.1.1.1\n}', "Corefile:2: unclosed quote"),
        ("", "Corefile: no server block"),
    ],
)
def test_bad_corefiles_name_the_line(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    assert str(info.value) == error


@pytest.mark.parametrize(
    ("text", "seconds"), [("5s", 5.0), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0), ("0", 0.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "1m 30s", "-1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
