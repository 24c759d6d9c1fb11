"""Corefile reading beyond single directives (issue 13): import (files, globs, snippets),
CIDR zones, duplicate keys, errors naming the imported file and line."""

from __future__ import annotations

from pathlib import Path

import dns.rcode
import pytest

from clusterdns.core.errors import ConfigError
from clusterdns.corefile.config import load

from .corefile_server import serve, texts


def write(tmp: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp / "Corefile"


def test_top_level_glob_import_of_server_blocks_relative_to_the_corefile(tmp_path: Path) -> None:
    corefile = write(tmp_path, {
        "Corefile": ".:53 {\n  forward . 127.0.0.1\n}\nimport custom/*.server\n",
        "custom/a.server": "a.example:53 {\n  forward . 127.0.0.2\n}\n",
        "custom/b.server": "b.example:53 {\n  forward . 127.0.0.3\n}\n",
        "custom/c.override": "log\n",
    })
    servers = load(corefile.read_text(), str(corefile))
    assert [s.zones for s in servers] == [(".",), ("a.example.",), ("b.example.",)]
    assert [s.plugins.get("forward")[0].to for s in servers] == [("127.0.0.1",), ("127.0.0.2",), ("127.0.0.3",)]


@pytest.mark.parametrize("pattern", ["custom/*.server", "/nonexistent-dir-xyz/*.server"])
def test_a_glob_matching_nothing_imports_nothing(tmp_path: Path, pattern: str) -> None:
    corefile = write(tmp_path, {"Corefile": f".:53 {{\n  import {pattern}\n  errors\n}}\nimport {pattern}\n"})
    (server,) = load(corefile.read_text(), str(corefile))
    assert server.errors and server.plugins.get("log") is None


def test_import_inside_a_block_adds_its_directives(tmp_path: Path) -> None:
    corefile = write(tmp_path, {
        "Corefile": ".:53 {\n  errors\n  import custom/*.override\n  forward . 127.0.0.1\n}\n",
        "custom/log.override": "log\n",
        "custom/hosts.override": "hosts {\n  10.0.0.1 db.example\n  fallthrough\n}\n",
    })
    (server,) = load(corefile.read_text(), str(corefile))
    assert server.plugins.get("log") is not None and server.plugins.get("hosts") is not None
    assert server.plugins.get("hosts").inline == [("10.0.0.1", ("db.example.",))]


def test_snippets_with_arguments() -> None:
    text = """\
(common) {
    errors
    cache {args[0]}
}
.:53 {
    import common 30
    forward . 127.0.0.1
}
example.org:53 {
    import common 60
}
"""
    a, b = load(text)
    assert a.errors and b.errors
    assert a.plugins.get("cache") is not None and a.plugins.get("cache").success_ttl == 30
    assert b.plugins.get("cache") is not None and b.plugins.get("cache").success_ttl == 60


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"Corefile": ".:53 {\n  import extra.conf\n}\n", "extra.conf": "errors\nfrobnicate\n"},
         "{d}/extra.conf:2: plugin 'frobnicate' is not supported by clusterdns"),
        ({"Corefile": ".:53 {\n  import extra.conf\n}\n",
          "extra.conf": "kubernetes cluster.local {\n  pods sometimes\n}\n"},
         "{d}/extra.conf:2: kubernetes: pods: want disabled|insecure|verified, got 'sometimes'"),
        ({"Corefile": "import loop.conf\n", "loop.conf": "import loop.conf\n"},
         "{d}/loop.conf:1: import: more than 10 nested imports"),
        ({"Corefile": "import a.server\n.:53 {\n}\n", "a.server": ".:53 {\n}\n"},
         "{d}/Corefile:2: cannot serve dns://.:53: it is already defined at {d}/a.server:1"),
    ],
)
def test_errors_name_the_imported_file_and_line(
    tmp_path: Path, files: dict[str, str], error: str
) -> None:
    corefile = write(tmp_path, files)
    with pytest.raises(ConfigError) as info:
        load(corefile.read_text(), str(corefile))
    assert str(info.value) == error.format(d=tmp_path)


@pytest.mark.parametrize(
    ("key", "zones"),
    [
        ("10.96.0.0/12", [f"{n}.10.in-addr.arpa." for n in range(96, 112)]),
        ("10.96.0.0/16", ["96.10.in-addr.arpa."]),
        ("10.96.0.0/24", ["0.96.10.in-addr.arpa."]),
        ("10.0.0.0/8", ["10.in-addr.arpa."]),
        ("192.168.1.7/32", ["7.1.168.192.in-addr.arpa."]),
        ("10.0.0.0/23", ["0.0.10.in-addr.arpa.", "1.0.10.in-addr.arpa."]),
        ("fd00:10::/64", ["0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa."]),
        ("fc00::/7", ["c.f.ip6.arpa.", "d.f.ip6.arpa."]),
    ],
)
def test_cidr_zones_become_reverse_zones(key: str, zones: list[str]) -> None:
    (server,) = load(f"{key}:53 {{\n  kubernetes cluster.local {key}\n}}\n")
    assert list(server.zones) == zones
    assert server.plugins.get("kubernetes") is not None
    assert list(server.plugins.get("kubernetes").zones) == ["cluster.local.", *zones]


def test_same_zone_on_different_binds_is_not_a_duplicate() -> None:
    a, b = load(".:53 {\n  bind 127.0.0.1\n}\n.:53 {\n  bind 127.0.0.2\n}\n")
    assert (a.bind, b.bind) == (("127.0.0.1",), ("127.0.0.2",))


CIDR_COREFILE = """\
10.96.0.0/17:53 {
    kubernetes cluster.local 10.96.0.0/17
}
.:53 {
    kubernetes cluster.local {
        fallthrough
    }
}
"""


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "answer"),
    [
        ("1.0.96.10.in-addr.arpa.", "PTR", "NOERROR",
         ["1.0.96.10.in-addr.arpa. 5 IN PTR kubernetes.default.svc.cluster.local."]),
        ("10.100.96.10.in-addr.arpa.", "PTR", "NOERROR",
         ["10.100.96.10.in-addr.arpa. 5 IN PTR web.shop.svc.cluster.local."]),
        ("9.9.96.10.in-addr.arpa.", "PTR", "NXDOMAIN", []),  # in 10.96.0.0/17, unknown
        # 10.96.200.0 is outside the /17: the "." block has no reverse zone and nothing after
        ("1.200.96.10.in-addr.arpa.", "PTR", "SERVFAIL", []),
        ("kubernetes.default.svc.cluster.local.", "A", "NOERROR",
         ["kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"]),
    ],
)
def test_cidr_server_block_serves_its_reverse_zones(
    name: str, qtype: str, rcode: str, answer: list[str]
) -> None:
    with serve(CIDR_COREFILE) as s:
        reply = s.ask(name, qtype)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert texts(reply) == answer


def test_corefile_example_customisations_load_and_answer(tmp_path: Path) -> None:
    """The commented customisations in Corefile.example, uncommented, run."""
    text = (Path(__file__).parent.parent / "Corefile.example").read_text()
    tail = text.split("# ---- Common customisations", 1)[1]
    inside, outside = tail.split("# Beside the block above", 1)
    inner = "\n".join(line[1:] for line in inside.splitlines() if line.startswith("#    "))
    outer = "\n".join(line[2:] for line in outside.splitlines() if line.startswith("# "))
    corefile = f".:53 {{\n{inner}\n    kubernetes cluster.local\n}}\n{outer}\n"
    corefile = corefile.replace("10.150.0.1 10.150.0.2", "127.0.0.1:9").replace(
        "tls://1.1.1.1 tls://1.0.0.1", "tls://127.0.0.1:9")
    (tmp_path / "Corefile").write_text(corefile)
    with serve(corefile, str(tmp_path / "Corefile")) as s:
        assert texts(s.ask("host.minikube.internal.")) == [
            "host.minikube.internal. 60 IN A 192.168.49.1"]
        assert texts(s.ask("db.legacy.example.com.")) == [  # a headless service: its pods
            "db.legacy.example.com. 5 IN A 10.244.1.20", "db.legacy.example.com. 5 IN A 10.244.1.21"]
        assert texts(s.ask("web.shop.internal.")) == ["web.shop.internal. 5 IN A 10.96.100.10"]
        assert s.ask("www.corp.example.").rcode() == dns.rcode.SERVFAIL  # the stub: nobody on :9
    assert len(s.blocks) == 3


def test_reload_digest_covers_imported_files(tmp_path: Path) -> None:
    from clusterdns.server.reload import corefile_digest

    corefile = write(tmp_path, {"Corefile": ".:53 {\n  import custom/*.override\n}\nimport custom/*.server\n"})
    data = corefile.read_bytes()
    before = corefile_digest(corefile, data)
    assert corefile_digest(corefile, data) == before
    write(tmp_path, {"custom/log.override": "log\n"})  # a new file matching the glob
    added = corefile_digest(corefile, data)
    write(tmp_path, {"custom/log.override": "log {\n  class error\n}\n"})  # an edited one
    edited = corefile_digest(corefile, data)
    assert len({before, added, edited}) == 3
