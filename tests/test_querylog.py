"""The log plugin (CoreDNS plugin/log README): one line per query in the Common Log Format,
``class`` filters, names, custom formats; cache hits and forwarded queries are logged too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterdns.core.errors import ConfigError
from clusterdns.corefile.config import load

from .corefile_server import ZONES, Served, serve
from .upstream import Upstream

LINE = re.compile(
    r'^\[INFO\] 127\.0\.0\.1:(\d+) - (\d+) "(\S+) (\S+) (\S+) (udp|tcp) (\d+) (true|false) (\d+)" '
    r"(\S+) (\S+) (\d+) (\d+(?:\.\d+)?)s$"
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


def logged(s: Served, capsys: pytest.CaptureFixture[str]) -> list[str]:
    for block in s.blocks:
        querylog = block.handler.querylog
        if querylog is not None:
            s.call(querylog.flush)
    return [line for line in capsys.readouterr().out.splitlines() if line]


def test_default_format_one_line_per_query_hits_included(
    capsys: pytest.CaptureFixture[str], upstream: Upstream
) -> None:
    text = f".:53 {{\n  log\n  kubernetes cluster.local\n  forward . {upstream.address}\n}}\n"
    with serve(text) as s:
        first = s.ask("web.shop.svc.cluster.local.")
        s.ask("web.shop.svc.cluster.local.")  # an answer-cache hit is logged too
        s.ask("nothere.shop.svc.cluster.local.", "AAAA", tcp=True, use_edns=0, payload=1232)
        s.ask("www.example.com.")  # forwarded
        lines = logged(s, capsys)
    assert len(lines) == 4, lines
    fields = [LINE.match(line) for line in lines]
    assert all(fields), lines
    a, hit, nx, fwd = (m.groups() for m in fields if m)
    assert a[1] == str(first.id)
    assert a[2:9] == ("A", "IN", "web.shop.svc.cluster.local.", "udp", a[6], "false", "512")
    assert (a[9], a[10]) == ("NOERROR", "qr,aa,rd")
    assert hit[2:5] == a[2:5] and hit[9] == "NOERROR"
    assert nx[2:9] == ("AAAA", "IN", "nothere.shop.svc.cluster.local.", "tcp", nx[6], "false", "1232")
    assert (nx[9], nx[10]) == ("NXDOMAIN", "qr,aa,rd")
    assert fwd[4] == "www.example.com." and fwd[9] == "NOERROR"
    assert int(a[11]) == len(first.to_wire())  # {rsize}


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        ("success", ["kubernetes.default.svc.cluster.local."]),
        ("denial", ["nothere.default.svc.cluster.local.", "kubernetes.default.svc.cluster.local."]),
        ("error", ["outside.example."]),
        ("denial error", ["nothere.default.svc.cluster.local.",
                          "kubernetes.default.svc.cluster.local.", "outside.example."]),
        ("all", ["kubernetes.default.svc.cluster.local.", "nothere.default.svc.cluster.local.",
                 "kubernetes.default.svc.cluster.local.", "outside.example."]),
    ],
)
def test_class_filters(capsys: pytest.CaptureFixture[str], classes: str, expected: list[str]) -> None:
    text = f"cluster.local:53 {{\n  log {{\n    class {classes}\n  }}\n  kubernetes cluster.local\n}}\n"
    with serve(text) as s:
        s.ask("kubernetes.default.svc.cluster.local.")  # success
        s.ask("nothere.default.svc.cluster.local.")  # NXDOMAIN: denial
        s.ask("kubernetes.default.svc.cluster.local.", "TXT")  # NODATA: denial
        s.ask("outside.example.")  # REFUSED: error
        lines = logged(s, capsys)
    assert [line.split('"')[1].split()[2] for line in lines] == expected


def test_names_and_custom_format(capsys: pytest.CaptureFixture[str]) -> None:
    text = '.:53 {\n  log shop.svc.cluster.local "{proto} Request: {name} {type} {rcode} {>opcode}"\n  kubernetes cluster.local\n}\n'
    with serve(text) as s:
        s.ask("web.shop.svc.cluster.local.")
        s.ask("kubernetes.default.svc.cluster.local.")
        lines = logged(s, capsys)
    assert lines == ["[INFO] udp Request: web.shop.svc.cluster.local. A NOERROR QUERY"]


def test_logging_happens_off_the_answering_thread(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(".:53 {\n  log\n  kubernetes cluster.local\n}\n") as s:
        querylog = s.blocks[0].handler.querylog
        assert querylog is not None
        s.ask("web.shop.svc.cluster.local.")
        queued = s.call(lambda: len(querylog.queue))
        assert queued in (0, 1)  # queued on the loop; written by the writer thread
        lines: list[str] = []
        end = time.monotonic() + 5
        while time.monotonic() < end and not lines:  # the writer wakes every 0.2 s
            lines = [x for x in capsys.readouterr().out.splitlines() if x]
            time.sleep(0.05)
        assert len(lines) == 1 and "web.shop.svc.cluster.local." in lines[0]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("log {\n    class sometimes\n  }", "Corefile:3: log: class: want success|denial|error|all, got 'sometimes'"),
        ("log {\n    format x\n  }", "Corefile:3: log: unknown option 'format'"),
    ],
)
def test_bad_log_directives(body: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(".:53 {\n  " + body + "\n}\n")
    assert str(info.value) == error



@pytest.mark.parametrize("client", ["10.0.0.1", "fd00::1"])
def test_default_format_fast_path_equals_the_template(client: str) -> None:
    import dns.message

    from clusterdns.plugins.querylog import _COMMON_TEMPLATE, COMMON, compile_format, format_line

    data = dns.message.make_query("Web.Shop.svc.cluster.local.", "AAAA", use_edns=0, payload=1232,
                                  want_dnssec=True).to_wire()
    reply = data[:2] + b"\x81\x83" + data[4:]
    generic = compile_format(COMMON)
    assert generic is not _COMMON_TEMPLATE
    fast = format_line(_COMMON_TEMPLATE, client, 5353, True, data, reply, 0.5)
    assert fast == format_line(generic, client, 5353, True, data, reply, 0.5)
    remote = f"[{client}]" if ":" in client else client
    assert fast == (f'{remote}:5353 - {(data[0] << 8) | data[1]} "AAAA IN Web.Shop.svc.cluster.local. tcp '
                    f'{len(data)} true 1232" NXDOMAIN qr,rd,ra {len(reply)} 0.5s')


def test_serve_log_flag_prints_a_line_per_query(tmp_path: Path) -> None:
    """``clusterdns serve --log`` (no Corefile): each query is a CoreDNS log line on stdout."""
    import dns.message
    import dns.query

    out = (tmp_path / "stdout").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "clusterdns", "serve", "--listen", "127.0.0.1:0", "--log",
         "--zones", str(ZONES)],
        stdout=out, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        port = 0
        deadline = time.monotonic() + 20
        while not port and time.monotonic() < deadline:
            match = re.search(r"listening on [0-9.]+:(\d+)", process.stderr.readline())
            port = int(match.group(1)) if match else 0
        assert port, "no listening line"
        query = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A")
        query.id = 4321
        dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
        text = ""
        while time.monotonic() < deadline and "4321" not in text:
            time.sleep(0.05)  # the log is written by its own thread, in batches
            text = (tmp_path / "stdout").read_text()
        line = next(line for line in text.splitlines() if " 4321 " in line)
        assert line.startswith("[INFO] 127.0.0.1:")
        assert '"A IN kubernetes.default.svc.cluster.local. udp' in line and " NOERROR " in line
    finally:
        process.terminate()
        process.wait(10)
        out.close()
