"""The hosts plugin (CoreDNS plugin/hosts README): inline entries, a hosts file, ttl,
reload, no_reverse, fallthrough; A, AAAA and PTR - on a real server on loopback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dns.rcode
import pytest

from .corefile_server import serve, texts

HOSTS_FILE = """\
# k3s NodeHosts style
172.30.0.2 k3s-server
172.30.0.3 k3s-agent-1 agent1.lan
fd00::3 k3s-agent-1
192.168.1.10 *.apps.lan
"""


def corefile(hosts: str, options: str = "") -> str:
    return f""".:53 {{
    hosts {hosts} {{
        192.168.49.1 host.minikube.internal
        {options}
    }}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"""


@pytest.mark.parametrize(
    ("options", "name", "qtype", "rcode", "answer"),
    [
        ("", "host.minikube.internal.", "A", "NOERROR",
         ["host.minikube.internal. 3600 IN A 192.168.49.1"]),
        ("", "HOST.minikube.internal.", "A", "NOERROR",
         ["HOST.minikube.internal. 3600 IN A 192.168.49.1"]),
        ("", "k3s-server.", "A", "NOERROR", ["k3s-server. 3600 IN A 172.30.0.2"]),
        ("", "k3s-agent-1.", "AAAA", "NOERROR", ["k3s-agent-1. 3600 IN AAAA fd00::3"]),
        ("", "agent1.lan.", "A", "NOERROR", ["agent1.lan. 3600 IN A 172.30.0.3"]),
        ("", "k3s-server.", "AAAA", "NOERROR", []),  # NODATA: the name has an A
        ("", "k3s-server.", "TXT", "NOERROR", []),
        ("", "web.apps.lan.", "A", "NOERROR", ["web.apps.lan. 3600 IN A 192.168.1.10"]),
        ("", "a.b.apps.lan.", "A", "SERVFAIL", []),  # a wildcard matches one label
        ("", "unknown.lan.", "A", "SERVFAIL", []),  # no SOA for an NXDOMAIN: CoreDNS
        ("", "2.0.30.172.in-addr.arpa.", "PTR", "NOERROR",
         ["2.0.30.172.in-addr.arpa. 3600 IN PTR k3s-server."]),
        ("", "3.0.30.172.in-addr.arpa.", "PTR", "NOERROR",
         ["3.0.30.172.in-addr.arpa. 3600 IN PTR agent1.lan.",
          "3.0.30.172.in-addr.arpa. 3600 IN PTR k3s-agent-1."]),
        ("", "1.49.168.192.in-addr.arpa.", "PTR", "NOERROR",
         ["1.49.168.192.in-addr.arpa. 3600 IN PTR host.minikube.internal."]),
        ("ttl 60", "k3s-server.", "A", "NOERROR", ["k3s-server. 60 IN A 172.30.0.2"]),
        ("no_reverse", "2.0.30.172.in-addr.arpa.", "PTR", "NXDOMAIN", []),  # on to kubernetes
        ("fallthrough", "unknown.lan.", "A", "SERVFAIL", []),  # nothing after it: SERVFAIL
        # the cluster still answers behind hosts with fallthrough
        ("fallthrough", "kubernetes.default.svc.cluster.local.", "A", "NOERROR",
         ["kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"]),
        ("", "1.0.96.10.in-addr.arpa.", "PTR", "NOERROR",  # hosts has no entry: next plugin
         ["1.0.96.10.in-addr.arpa. 5 IN PTR kubernetes.default.svc.cluster.local."]),
    ],
)
def test_hosts_answers(
    tmp_path: Path, options: str, name: str, qtype: str, rcode: str, answer: list[str]
) -> None:
    (tmp_path / "hosts").write_text(HOSTS_FILE)
    with serve(corefile(str(tmp_path / "hosts"), options)) as s:
        reply = s.ask(name, qtype)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert texts(reply) == answer


def test_without_fallthrough_the_cluster_zone_is_not_reached(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(HOSTS_FILE)
    with serve(corefile(str(tmp_path / "hosts"))) as s:
        reply = s.ask("kubernetes.default.svc.cluster.local.")
    assert reply.rcode() == dns.rcode.SERVFAIL


def test_zones_limit_what_hosts_answers(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(HOSTS_FILE)
    text = ".:53 {\n  hosts %s lan {\n  }\n  kubernetes cluster.local\n}\n" % (tmp_path / "hosts")
    with serve(text) as s:
        assert texts(s.ask("agent1.lan.")) == ["agent1.lan. 3600 IN A 172.30.0.3"]
        assert s.ask("k3s-server.").rcode() == dns.rcode.SERVFAIL  # outside: no plugin left
        assert texts(s.ask("kubernetes.default.svc.cluster.local."))


def test_reload_picks_up_a_changed_file_and_keeps_inline_entries(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("10.0.0.1 one.lan\n")
    with serve(corefile(str(path), "reload 100ms")) as s:
        assert texts(s.ask("one.lan.")) == ["one.lan. 3600 IN A 10.0.0.1"]
        path.write_text("10.0.0.2 one.lan\n10.0.0.3 two.lan\n")
        stamp = time.time() + 5
        os.utime(path, (stamp, stamp))  # a new mtime even on coarse file systems
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and texts(s.ask("one.lan.")) != [
            "one.lan. 3600 IN A 10.0.0.2"
        ]:
            time.sleep(0.05)
        assert texts(s.ask("one.lan.")) == ["one.lan. 3600 IN A 10.0.0.2"]
        assert texts(s.ask("two.lan.")) == ["two.lan. 3600 IN A 10.0.0.3"]
        path.unlink()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and s.ask("one.lan.").rcode() != dns.rcode.SERVFAIL:
            time.sleep(0.05)
        assert s.ask("one.lan.").rcode() == dns.rcode.SERVFAIL
        assert texts(s.ask("host.minikube.internal.")) == [
            "host.minikube.internal. 3600 IN A 192.168.49.1"
        ]


def test_missing_file_serves_inline_entries(tmp_path: Path) -> None:
    with serve(corefile(str(tmp_path / "absent"))) as s:
        assert texts(s.ask("host.minikube.internal.")) == [
            "host.minikube.internal. 3600 IN A 192.168.49.1"
        ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("hosts {\n  10.0.0.999 bad\n}", "Corefile:3: hosts: want IP NAME... or an option, got '10.0.0.999'"),
        ("hosts {\n  ttl soon\n}", "Corefile:3: hosts: want a number from 1 to 2147483647, got 'soon'"),
        ("hosts {\n  fallthrough_unsupported\n}", "Corefile:2: hosts: fallthrough_unsupported needs fallthrough"),
        ("hosts\n  hosts", "Corefile:3: hosts: only one hosts per server block (CoreDNS)"),
    ],
)
def test_bad_hosts_directives(body: str, error: str) -> None:
    from clusterdns.core.errors import ConfigError
    from clusterdns.corefile.config import load

    with pytest.raises(ConfigError) as info:
        load(".:53 {\n  " + body + "\n}\n")
    assert str(info.value) == error
